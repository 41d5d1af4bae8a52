'use strict';
// browserd.v1 client for Node: proto/ loaded at run time with
// @grpc/proto-loader (no generated code), promisified unary calls, and the
// API key (BROWSERD_API_KEY) sent with every call.

const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

const PROTO_DIR = path.resolve(__dirname, '..', '..', '..', 'proto');

// keepCase: fields as in the .proto (session_id, connect_url).
// longs: String: uint64 `sequence` and int64 Timestamp.seconds arrive as
//   decimal strings, exact beyond 2^53; compare them with BigInt.
// enums: String: 'SESSION_STATUS_LIVE', not 2.
// defaults: unset scalars read as their zero value; unset messages as null.
// oneofs: the synthetic oneof of `optional uint64 after_sequence`.
// Well-known types (Duration, Timestamp) come with protobufjs.
const LOADER_OPTIONS = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_DIR],
};

const packageDefinition = protoLoader.loadSync('browserd/v1/sessions.proto', LOADER_OPTIONS);
const { browserd } = grpc.loadPackageDefinition(packageDefinition);
const SessionService = browserd.v1.SessionService;

const healthDefinition = protoLoader.loadSync('health/v1/health.proto', {
  ...LOADER_OPTIONS,
  includeDirs: [path.join(path.dirname(require.resolve('grpc-health-check/package.json')), 'proto')],
});
const Health = grpc.loadPackageDefinition(healthDefinition).grpc.health.v1.Health;

// Reconnect quickly after an outage (grpc-js defaults to a 1 s first backoff).
const CHANNEL_OPTIONS = {
  'grpc.initial_reconnect_backoff_ms': 100,
  'grpc.max_reconnect_backoff_ms': 1000,
};

/** `authorization: Bearer <key>` metadata on every call of a client.
 *  An interceptor rather than call credentials: grpc-js refuses to compose
 *  those with an insecure (plaintext) channel. */
function bearerInterceptor(apiKey) {
  return (options, nextCall) =>
    new grpc.InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        metadata.set('authorization', `Bearer ${apiKey}`);
        next(metadata, listener);
      },
    });
}

/**
 * A SessionService client whose every call carries the API key: `apiKey`,
 * else `$BROWSERD_API_KEY`; `''` (or neither set) sends none, which only a
 * server running open (loopback, no key created yet) accepts.
 */
function sessionClient(address, { apiKey } = {}) {
  // trim(): a key read from a file, or from `docker compose exec` on a TTY,
  // ends in "\n" or "\r\n", which metadata values cannot hold.
  const key = (apiKey ?? process.env.BROWSERD_API_KEY ?? '').trim();
  const options = { ...CHANNEL_OPTIONS };
  if (key) options.interceptors = [bearerInterceptor(key)];
  return new SessionService(address, grpc.credentials.createInsecure(), options);
}

function healthClient(address) {
  return new Health(address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
}

/** Call metadata asking grpc-js to wait while the channel is connecting
 *  or in backoff instead of failing at once with UNAVAILABLE (grpc-js takes
 *  this from Metadata options, not from CallOptions). */
function waitForReadyMetadata() {
  const metadata = new grpc.Metadata();
  metadata.setOptions({ waitForReady: true });
  return metadata;
}

/** Calls a unary method and resolves with its response; rejects with the
 *  grpc error (its `.code` is a grpc.status value). */
function call(client, method, request, { timeoutMs = 60_000 } = {}) {
  return new Promise((resolve, reject) => {
    client[method](request, { deadline: Date.now() + timeoutMs }, (err, response) =>
      err ? reject(err) : resolve(response),
    );
  });
}

// The google.rpc messages browserd puts in the `grpc-status-details-bin`
// trailer of a refusal (google/rpc/status.proto, error_details.proto), as
// far as this client reads them. Any is declared here rather than imported:
// the wire format is all that matters.
const RPC_TYPES = protobuf.parse(`
  syntax = "proto3";
  package google.rpc;
  message Any { string type_url = 1; bytes value = 2; }
  message Status { int32 code = 1; string message = 2; repeated Any details = 3; }
  message ErrorInfo { string reason = 1; string domain = 2; map<string, string> metadata = 3; }
  message ResourceInfo { string resource_type = 1; string resource_name = 2; string owner = 3; string description = 4; }
  message BadRequest {
    message FieldViolation { string field = 1; string description = 2; }
    repeated FieldViolation field_violations = 1;
  }
`, { keepCase: true }).root;
const RPC_STATUS = RPC_TYPES.lookupType('google.rpc.Status');

/**
 * The rich error details of a finished call, from its trailers (a grpc-js
 * status object's or error's `metadata`): `{ 'google.rpc.ErrorInfo':
 * {reason, domain, metadata}, ... }`, keyed by message type; types this
 * client does not know are left out. `{}` when there are none.
 */
function errorDetails(metadata) {
  const raw = metadata?.get('grpc-status-details-bin')?.[0];
  if (!raw) return {};
  const status = RPC_STATUS.decode(Buffer.isBuffer(raw) ? raw : Buffer.from(raw));
  const details = {};
  for (const { type_url, value } of status.details) {
    const name = type_url.slice(type_url.lastIndexOf('/') + 1);
    const type = name.startsWith('google.rpc.') && RPC_TYPES.lookup(name);
    if (type instanceof protobuf.Type) {
      details[name] = type.toObject(type.decode(value), { longs: String, defaults: true });
    }
  }
  return details;
}

/** A google.protobuf.Timestamp (with longs: String) as BigInt nanoseconds. */
function timestampNanos(ts) {
  if (!ts) return null;
  return BigInt(ts.seconds) * 1_000_000_000n + BigInt(ts.nanos);
}

/** A google.protobuf.Duration as seconds (a Number, for printing). */
function durationSeconds(d) {
  if (!d) return null;
  return Number(d.seconds) + d.nanos / 1e9;
}

module.exports = {
  grpc,
  PROTO_DIR,
  LOADER_OPTIONS,
  sessionClient,
  healthClient,
  call,
  errorDetails,
  waitForReadyMetadata,
  timestampNanos,
  durationSeconds,
};
