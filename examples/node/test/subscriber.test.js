'use strict';
// subscriber.js against a real browserd: it must print one usage line per
// ended session and, across a network cut or a browserd restart, resume
// with after_sequence without missing or repeating an event.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const { startBrowserd, startProxy, tempDataDir, grpc } = require('../lib/harness');
const protobuf = require('protobufjs');
const { sessionClient, call, errorDetails } = require('../lib/client');
const { Subscriber, TERMINAL } = require('../subscriber');

const SUBSCRIBER_EVENTS = ['subscribe', 'event', 'ended', 'disconnect', 'error', 'stopped'];

/** Records everything a Subscriber does. */
function record(sub) {
  const rec = { subscribes: [], events: [], lines: [], ended: [], disconnects: [], errors: [] };
  sub.on('subscribe', ({ afterSequence }) => rec.subscribes.push(afterSequence));
  sub.on('event', (e) => rec.events.push(e));
  sub.on('ended', (s, line) => {
    rec.ended.push({ id: s.id, status: s.status, reason: s.end_reason });
    rec.lines.push(line);
  });
  sub.on('disconnect', (d) => rec.disconnects.push(d));
  sub.on('error', (err) => rec.errors.push(err));
  return rec;
}

/** Resolves when predicate() holds, re-checked whenever the subscriber
 *  does anything; fails at once on a subscriber error. */
function until(sub, rec, predicate, what, timeoutMs = 20_000) {
  return new Promise((resolve, reject) => {
    let timer;
    const check = () => {
      if (rec.errors.length) return finish(reject, rec.errors[0]);
      if (predicate()) return finish(resolve);
    };
    const finish = (fn, arg) => {
      clearTimeout(timer);
      for (const name of SUBSCRIBER_EVENTS) sub.off(name, check);
      fn(arg);
    };
    timer = setTimeout(
      () => finish(reject, new Error(`timed out waiting for ${what}; ended: ${JSON.stringify(rec.ended)}`)),
      timeoutMs,
    );
    for (const name of SUBSCRIBER_EVENTS) sub.on(name, check);
    check();
  });
}

/** The server's own record: every stored event matching the subscriber's
 *  filter, replayed from the start, up to sequence `last`. */
function storedEvents(address, last) {
  const client = sessionClient(address);
  const events = [];
  return new Promise((resolve, reject) => {
    const stream = client.WatchSessions({ statuses: TERMINAL, after_sequence: 0 });
    const timer = setTimeout(() => {
      stream.cancel();
      reject(new Error(`replay did not reach sequence ${last}`));
    }, 15_000);
    stream.on('data', ({ event }) => {
      events.push(event);
      if (BigInt(event.sequence) >= BigInt(last)) {
        clearTimeout(timer);
        stream.cancel();
        client.close();
        resolve(events);
      }
    });
    stream.on('error', (err) => {
      if (err.code !== grpc.status.CANCELLED) {
        clearTimeout(timer);
        reject(err);
      }
    });
  });
}

const summary = (events) => events.map((e) => `${e.sequence}:${e.session_id}:${e.end_reason}`);

async function createAndRelease(client, metadata = {}) {
  const { session } = await call(client, 'CreateSession', { metadata });
  assert.equal(session.status, 'SESSION_STATUS_LIVE');
  const { session: released } = await call(client, 'ReleaseSession', { session_id: session.id });
  assert.equal(released.status, 'SESSION_STATUS_RELEASED');
  assert.equal(released.end_reason, 'END_REASON_REQUESTED');
  return session.id;
}

test('subscriber resumes with after_sequence across a network cut', async (t) => {
  const server = await startBrowserd();
  t.after(() => server.cleanup());
  const proxy = await startProxy(server.grpcAddress);
  t.after(() => proxy.close());
  const client = sessionClient(server.grpcAddress);
  t.after(() => client.close());

  const lines = [];
  const sub = new Subscriber({
    address: proxy.address,
    afterSequence: 0,
    maxBackoffMs: 500,
    log: (l) => lines.push(l),
  });
  const rec = record(sub);
  t.after(() => sub.stop());
  sub.start();

  const s1 = await createAndRelease(client, { phase: 'before' });
  await until(sub, rec, () => rec.ended.some((e) => e.id === s1), `usage for ${s1}`);
  const seqBeforeCut = sub.lastSequence;

  proxy.cut();
  await until(sub, rec, () => rec.disconnects.length >= 1, 'the stream to fail');
  assert.equal(rec.disconnects[0].code, grpc.status.UNAVAILABLE, JSON.stringify(rec.disconnects[0]));

  // While the subscriber is cut off: a release, and a release-all.
  const s2 = await createAndRelease(client, { phase: 'during' });
  const { session: s3 } = await call(client, 'CreateSession', { metadata: { phase: 'during', team: 'x' } });
  const { released_ids } = await call(client, 'ReleaseAllSessions', { metadata: { team: 'x' } });
  assert.deepEqual(released_ids, [s3.id]);
  assert.ok(!rec.ended.some((e) => e.id === s2), 'the subscriber saw an event while cut off');

  proxy.restore();
  await until(sub, rec, () => rec.ended.some((e) => e.id === s3.id), `usage for ${s3.id} after the cut`);

  // It resubscribed from exactly the last sequence it had seen (possibly
  // several times while the proxy refused connections).
  assert.equal(rec.subscribes[0], '0');
  assert.ok(rec.subscribes.length >= 2);
  assert.deepEqual(new Set(rec.subscribes.slice(1)), new Set([seqBeforeCut]));
  assert.deepEqual(rec.ended, [
    { id: s1, status: 'SESSION_STATUS_RELEASED', reason: 'END_REASON_REQUESTED' },
    { id: s2, status: 'SESSION_STATUS_RELEASED', reason: 'END_REASON_REQUESTED' },
    { id: s3.id, status: 'SESSION_STATUS_RELEASED', reason: 'END_REASON_RELEASE_ALL' },
  ]);
  assert.equal(lines.length, 3);
  for (const [i, id] of [s1, s2, s3.id].entries()) {
    assert.match(lines[i], new RegExp(`^usage session=${id} status=RELEASED end_reason=END_REASON_\\w+ duration=\\d+\\.\\d{3}s`));
  }
  // Nothing missed, nothing repeated: identical to the server's stored log.
  const stored = await storedEvents(server.grpcAddress, sub.lastSequence);
  assert.deepEqual(summary(rec.events), summary(stored));

  sub.stop();
  assert.equal(await server.stop(), 0, `browserd exit code after SIGTERM\n${server.tail()}`);
  assert.deepEqual(rec.errors, []);
});

test('subscriber sees SHUTDOWN, then resumes across a browserd restart', async (t) => {
  const dataDir = tempDataDir();
  let server = await startBrowserd({ dataDir });
  t.after(async () => {
    await server.cleanup();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });
  const port = server.grpcAddress.slice(server.grpcAddress.lastIndexOf(':') + 1);
  let client = sessionClient(server.grpcAddress);

  const lines = [];
  const sub = new Subscriber({
    address: server.grpcAddress,
    afterSequence: 0,
    maxBackoffMs: 500,
    log: (l) => lines.push(l),
  });
  const rec = record(sub);
  t.after(() => sub.stop());
  sub.start();

  const { session: live } = await call(client, 'CreateSession', { metadata: { phase: 'first-run' } });
  const s2 = await createAndRelease(client, { phase: 'first-run' });
  await until(sub, rec, () => rec.ended.some((e) => e.id === s2), `usage for ${s2}`);
  client.close();

  // SIGTERM: browserd ends `live` with SHUTDOWN, delivers that event, then
  // ends the stream with OK and exits 0.
  assert.equal(await server.stop(), 0, `browserd exit code after SIGTERM\n${server.tail()}`);
  await until(sub, rec, () => rec.disconnects.length >= 1, 'the stream to end');
  assert.equal(rec.disconnects[0].code, grpc.status.OK, `stream end on shutdown: ${JSON.stringify(rec.disconnects[0])}`);
  assert.deepEqual(rec.ended.at(-1), {
    id: live.id,
    status: 'SESSION_STATUS_RELEASED',
    reason: 'END_REASON_SHUTDOWN',
  });
  const seqAtShutdown = sub.lastSequence;

  // Same data dir (same SQLite file), same gRPC port.
  server = await startBrowserd({ dataDir, listen: `127.0.0.1:${port}` });
  client = sessionClient(server.grpcAddress);
  t.after(() => client.close());
  const s3 = await createAndRelease(client, { phase: 'second-run' });
  await until(sub, rec, () => rec.ended.some((e) => e.id === s3), `usage for ${s3} after the restart`);

  assert.equal(rec.subscribes[0], '0');
  assert.ok(rec.subscribes.length >= 2);
  assert.deepEqual(new Set(rec.subscribes.slice(1)), new Set([seqAtShutdown]));
  assert.deepEqual(
    rec.ended.map((e) => [e.id, e.reason]),
    [
      [s2, 'END_REASON_REQUESTED'],
      [live.id, 'END_REASON_SHUTDOWN'],
      [s3, 'END_REASON_REQUESTED'],
    ],
  );
  assert.match(lines[1], new RegExp(`^usage session=${live.id} status=RELEASED end_reason=END_REASON_SHUTDOWN duration=`));
  const stored = await storedEvents(server.grpcAddress, sub.lastSequence);
  assert.deepEqual(summary(rec.events), summary(stored));

  sub.stop();
  assert.equal(await server.stop(), 0, `browserd exit code after SIGTERM\n${server.tail()}`);
  assert.deepEqual(rec.errors, []);
});

test('subscriber resumes from the ErrorInfo of an ABORTED (lagging) stream', async (t) => {
  const server = await startBrowserd();
  t.after(() => server.cleanup());
  const client = sessionClient(server.grpcAddress);
  t.after(() => client.close());

  // The trailer decoder on a real refusal from browserd: NOT_FOUND names
  // the session in a google.rpc.ResourceInfo.
  const missing = '00000000-0000-4000-8000-000000000000';
  const notFound = await call(client, 'GetSession', { session_id: missing }).then(
    () => assert.fail('GetSession of an unknown id succeeded'),
    (err) => err,
  );
  assert.equal(notFound.code, grpc.status.NOT_FOUND);
  assert.deepEqual(errorDetails(notFound.metadata)['google.rpc.ResourceInfo'], {
    resource_type: 'browserd.v1.Session',
    resource_name: missing,
    owner: '',
    description: notFound.details,
  });

  // Two sessions end; the subscriber has seen the first one's events only
  // when browserd cuts it off as a lagging subscriber would be: ABORTED
  // with the resume point in an ErrorInfo, and a message that says
  // nothing parseable.
  const s1 = await createAndRelease(client, { phase: 'before' });
  const sub = new Subscriber({ address: server.grpcAddress, afterSequence: 0, maxBackoffMs: 200, log: () => {} });
  const rec = record(sub);
  t.after(() => sub.stop());
  sub.start();
  await until(sub, rec, () => rec.ended.some((e) => e.id === s1), `usage for ${s1}`);
  const seen = sub.lastSequence;
  sub.stream.cancel(); // as if the server had cut it; its status is replaced below
  sub.stream = null;
  const s2 = await createAndRelease(client, { phase: 'skipped' });
  const { session: s3 } = await call(client, 'CreateSession', { metadata: { phase: 'after' } });
  // The server's resume point: after s2's events (which, say, this
  // subscriber's filter did not want), so it must not see them again.
  const stored = await storedEvents(server.grpcAddress, BigInt(seen) + 1n);
  const resumeAfter = String(BigInt(stored.find((e) => e.session_id === s2).sequence));
  const metadata = new grpc.Metadata();
  metadata.set('grpc-status-details-bin', lagStatus(resumeAfter));
  sub.onStreamDone({ code: grpc.status.ABORTED, details: 'behind', metadata });
  assert.equal(rec.disconnects.at(-1).resumeAfter, resumeAfter);
  await call(client, 'ReleaseSession', { session_id: s3.id });
  await until(sub, rec, () => rec.ended.some((e) => e.id === s3.id), `usage for ${s3.id}`);
  assert.equal(rec.subscribes.at(-1), resumeAfter);
  assert.deepEqual(
    rec.ended.map((e) => e.id),
    [s1, s3.id],
    'resumed from the ErrorInfo, past the skipped session',
  );
  assert.deepEqual(rec.errors, []);

  sub.stop();
  assert.equal(await server.stop(), 0, `browserd exit code after SIGTERM\n${server.tail()}`);
});

/** google.rpc.Status bytes for ABORTED with ErrorInfo SUBSCRIBER_LAGGED, as
 *  browserd sends when a subscriber falls behind. */
function lagStatus(resumeAfter) {
  const root = protobuf.parse(`
    syntax = "proto3";
    message Any { string type_url = 1; bytes value = 2; }
    message Status { int32 code = 1; string message = 2; repeated Any details = 3; }
    message ErrorInfo { string reason = 1; string domain = 2; map<string, string> metadata = 3; }
  `, { keepCase: true }).root;
  const ErrorInfo = root.lookupType('ErrorInfo');
  const Status = root.lookupType('Status');
  const info = ErrorInfo.encode({
    reason: 'SUBSCRIBER_LAGGED',
    domain: 'browserd.dev',
    metadata: { resume_after_sequence: resumeAfter },
  }).finish();
  return Buffer.from(
    Status.encode({
      code: grpc.status.ABORTED,
      message: 'behind',
      details: [{ type_url: 'type.googleapis.com/google.rpc.ErrorInfo', value: info }],
    }).finish(),
  );
}
