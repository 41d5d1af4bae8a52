#!/usr/bin/env node
'use strict';
// A WatchSessions subscriber that must never miss or repeat an event: e.g.
// billing. It prints a usage line for every session that ends (RELEASED or
// FAILED), remembers the last sequence it received, and when its stream
// fails or ends (browserd restarting, a network cut, ABORTED for a slow
// subscriber) it subscribes again with `after_sequence` = that sequence: the
// server replays what it missed, then goes on live.
//
//   BROWSERD_API_KEY=browserd_… node subscriber.js [host:port] [--after N]
//
// With a project key it sees that project's sessions; with an admin key,
// every project's; a revoked key makes it give up (UNAUTHENTICATED).
//
// --after N: start after sequence N (0: the whole retained log). Without it
// the first subscription starts "from now"; later ones resume exactly.
// A real subscriber would persist `lastSequence` with its side effects.
//
// When browserd cuts it off for lagging (ABORTED), the status carries a
// google.rpc.ErrorInfo (reason SUBSCRIBER_LAGGED) whose metadata
// `resume_after_sequence` says where to resume: it is read from the
// `grpc-status-details-bin` trailer, never parsed out of the message text.

const { EventEmitter } = require('node:events');
const {
  grpc,
  sessionClient,
  waitForReadyMetadata,
  errorDetails,
  timestampNanos,
  durationSeconds,
} = require('./lib/client');

const TERMINAL = ['SESSION_STATUS_RELEASED', 'SESSION_STATUS_FAILED'];

// Codes after which subscribing again with the same request cannot help:
// the request itself is bad, or the resume point is gone (events lost).
const FATAL = new Set([
  grpc.status.INVALID_ARGUMENT,
  grpc.status.OUT_OF_RANGE,
  grpc.status.UNIMPLEMENTED,
  grpc.status.PERMISSION_DENIED,
  grpc.status.UNAUTHENTICATED,
  grpc.status.FAILED_PRECONDITION,
]);

/** One line per ended session: id, status, end reason, duration. */
function usageLine(session) {
  const created = timestampNanos(session.created_at);
  const ended = timestampNanos(session.ended_at);
  if (created === null || ended === null) {
    throw new Error(`ended session ${session.id} lacks created_at or ended_at`);
  }
  const duration = Number(ended - created) / 1e9;
  const browser = durationSeconds(session.usage) ?? 0;
  const status = session.status.replace('SESSION_STATUS_', '');
  const labels = Object.entries(session.metadata || {})
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
  return (
    `usage session=${session.id} status=${status} end_reason=${session.end_reason} ` +
    `duration=${duration.toFixed(3)}s browser_time=${browser.toFixed(3)}s` +
    (labels ? ` metadata=${labels}` : '')
  );
}

/** The sequence to resume after, from an ABORTED status's ErrorInfo
 *  (SUBSCRIBER_LAGGED, domain browserd.dev); null when it carries none. */
function lagResumePoint(metadata) {
  const info = errorDetails(metadata)['google.rpc.ErrorInfo'];
  if (!info || info.reason !== 'SUBSCRIBER_LAGGED' || info.domain !== 'browserd.dev') return null;
  const resume = info.metadata?.resume_after_sequence;
  return resume !== undefined && /^\d+$/.test(resume) ? resume : null;
}

/**
 * Events: 'subscribe' ({afterSequence}) per stream opened; 'event' (event);
 * 'ended' (session, line) per RELEASED/FAILED; 'disconnect' ({code,
 * details, resumeAfter}) per stream that ended (resumeAfter: the server's
 * resume point on ABORTED, else null); 'error' (err) when it gives up (fatal
 * status, or the server broke its ordering promise); 'stopped'.
 * `apiKey`: as sessionClient's (default: $BROWSERD_API_KEY).
 */
class Subscriber extends EventEmitter {
  constructor({
    address,
    apiKey,
    afterSequence = null,
    statuses = TERMINAL,
    metadata = {},
    log = console.log,
    minBackoffMs = 100,
    maxBackoffMs = 2000,
  }) {
    super();
    this.client = sessionClient(address, { apiKey });
    this.lastSequence = afterSequence === null ? null : String(afterSequence);
    this.filter = { statuses, metadata };
    this.log = log;
    this.minBackoffMs = minBackoffMs;
    this.maxBackoffMs = maxBackoffMs;
    this.failures = 0;
    this.stream = null;
    this.stopped = false;
    this.timer = null;
  }

  start() {
    this.subscribe();
    return this;
  }

  subscribe() {
    if (this.stopped) return;
    const request = { ...this.filter };
    // Unset (not 0) means "from now"; 0 means "the whole retained log".
    if (this.lastSequence !== null) request.after_sequence = this.lastSequence;
    // waitForReady: while browserd is down, the call waits for the channel
    // to come back instead of failing at once.
    const stream = this.client.WatchSessions(request, waitForReadyMetadata());
    this.stream = stream;
    this.emit('subscribe', { afterSequence: this.lastSequence });

    let status = null;
    let drained = false;
    // grpc-js emits 'status' as soon as the call ends, possibly before the
    // last messages are read; resubscribe only once both have happened, or
    // lastSequence could be stale and the replay would repeat events.
    const done = () => {
      if (status === null || !drained || this.stream !== stream) return;
      this.stream = null;
      this.onStreamDone(status);
    };
    stream.on('data', ({ event }) => this.onEvent(stream, event));
    stream.on('error', () => {}); // the same status arrives on 'status'
    stream.on('status', (s) => {
      status = s;
      done();
    });
    stream.on('end', () => {
      drained = true;
      done();
    });
  }

  onEvent(stream, event) {
    if (this.stream !== stream) return; // a stream we already gave up on
    const seq = BigInt(event.sequence);
    if (this.lastSequence !== null && seq <= BigInt(this.lastSequence)) {
      this.fail(
        new Error(`server sent sequence ${seq} after ${this.lastSequence}: duplicate or out of order`),
      );
      return;
    }
    this.failures = 0;
    this.lastSequence = event.sequence;
    this.emit('event', event);
    if (TERMINAL.includes(event.to_status)) {
      const session = event.session;
      if (!session || session.id !== event.session_id || session.status !== event.to_status) {
        this.fail(new Error(`event ${seq} carries an inconsistent session snapshot`));
        return;
      }
      const line = usageLine(session);
      this.log(line);
      this.emit('ended', session, line);
    }
  }

  onStreamDone({ code, details, metadata }) {
    const resumeAfter = code === grpc.status.ABORTED ? lagResumePoint(metadata) : null;
    this.emit('disconnect', { code, details, resumeAfter });
    if (this.stopped) return;
    if (resumeAfter !== null) {
      // Events after our last one that the server skipped past were
      // filtered out for us; never step back (that would repeat events).
      if (this.lastSequence === null || BigInt(resumeAfter) > BigInt(this.lastSequence)) {
        this.lastSequence = resumeAfter;
      }
    }
    if (FATAL.has(code)) {
      this.fail(
        Object.assign(new Error(`WatchSessions: ${grpc.status[code]}: ${details}`), { code }),
      );
      return;
    }
    // OK (server shutting down), UNAVAILABLE, ABORTED (fell behind),
    // CANCELLED, INTERNAL...: resume where we were.
    const delay = Math.min(this.maxBackoffMs, this.minBackoffMs * 2 ** this.failures);
    this.failures += 1;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.subscribe();
    }, delay);
  }

  /** Drops the current stream as a network failure would (it resubscribes). */
  dropStream() {
    this.stream?.cancel();
  }

  fail(err) {
    this.stop();
    this.emit('error', err);
  }

  stop() {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.timer);
    const stream = this.stream;
    this.stream = null;
    stream?.cancel();
    this.client.close();
    this.emit('stopped');
  }
}

module.exports = { Subscriber, usageLine, lagResumePoint, TERMINAL };

if (require.main === module) {
  const args = process.argv.slice(2);
  let address = '127.0.0.1:50051';
  let afterSequence = null;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--after') afterSequence = args[++i];
    else address = args[i];
  }
  if (afterSequence !== null && !/^\d+$/.test(afterSequence)) {
    console.error('--after takes a sequence number');
    process.exit(2);
  }
  const sub = new Subscriber({ address, afterSequence });
  sub.on('subscribe', ({ afterSequence: after }) =>
    console.error(`subscribing ${after === null ? 'from now' : `after sequence ${after}`}`),
  );
  sub.on('disconnect', ({ code, details, resumeAfter }) =>
    console.error(
      `stream ended: ${grpc.status[code]} ${details}; resuming` +
        (resumeAfter === null ? '' : ` after sequence ${resumeAfter} (server's resume point)`),
    ),
  );
  sub.on('error', (err) => {
    console.error(`subscriber failed: ${err.message}`);
    process.exitCode = 1;
  });
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.on(signal, () => {
      console.error(`last sequence: ${sub.lastSequence}`);
      sub.stop();
    });
  }
  sub.start();
}
