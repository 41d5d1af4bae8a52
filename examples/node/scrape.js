#!/usr/bin/env node
'use strict';
// browserd from Node: one session, end to end.
//
// Watches the session's events (WatchSessions), creates a session with
// metadata, drives its browser with puppeteer-core over `connect_url`,
// scrapes a page served by a local HTTP server, checks GetLiveDetails,
// releases the session and checks every answer and event. Any deviation
// from the API contract throws.
//
//   BROWSERD_API_KEY=browserd_… node scrape.js [host:port]   (default 127.0.0.1:50051)
//
// Every call carries the key in BROWSERD_API_KEY (see lib/client.js); a
// browserd on loopback with no key created yet takes calls without one.

const assert = require('node:assert/strict');
const http = require('node:http');
const { randomUUID } = require('node:crypto');
const puppeteer = require('puppeteer-core');
const { grpc, sessionClient, call, timestampNanos } = require('./lib/client');

const PAGE_TITLE = 'browserd example page';
const PAGE = `<!doctype html>
<html>
<head>
  <meta charset="utf-8">
  <title>${PAGE_TITLE}</title>
  <style>h1 { color: rgb(200, 30, 40); }</style>
</head>
<body>
  <h1>Hello from browserd</h1>
  <ul id="primes"><li>2</li><li>3</li><li>5</li><li>7</li><li>11</li></ul>
  <p id="sum"></p>
  <script>
    const primes = [...document.querySelectorAll('#primes li')].map(li => +li.textContent);
    document.getElementById('sum').textContent = String(primes.reduce((a, b) => a + b, 0));
  </script>
</body>
</html>
`;

/** Serves PAGE on an ephemeral 127.0.0.1 port; records each request. */
async function startPageServer() {
  const requests = [];
  const server = http.createServer((req, res) => {
    requests.push({ path: req.url, userAgent: req.headers['user-agent'] || '' });
    if (req.url !== '/') {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(PAGE);
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}/`,
    requests,
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

/**
 * Collects WatchSessions events. Subscribes with a metadata filter unique
 * to this run and after_sequence 0: events stored before the stream got
 * going are replayed, so nothing is lost to a subscribe/create race.
 */
function watchEvents(client, metadata) {
  const events = [];
  const waiters = [];
  let failure = null;
  let ended = false;
  let cancelled = false;
  const stream = client.WatchSessions({ metadata, after_sequence: 0 });
  const settle = () => {
    for (const w of waiters.splice(0)) w();
  };
  stream.on('data', ({ event }) => {
    events.push(event);
    settle();
  });
  stream.on('error', (err) => {
    if (!(cancelled && err.code === grpc.status.CANCELLED)) failure = err;
    ended = true;
    settle();
  });
  stream.on('end', () => {
    ended = true;
    settle();
  });
  return {
    events,
    /** Resolves once `predicate(events)` holds; rejects on stream failure,
     *  stream end or timeout. */
    async waitFor(predicate, what, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        if (failure) throw new Error(`WatchSessions failed: ${failure.message}`);
        if (predicate(events)) return;
        if (ended) throw new Error(`WatchSessions ended before ${what}`);
        const left = deadline - Date.now();
        if (left <= 0) {
          throw new Error(
            `no ${what} within ${timeoutMs} ms; events: ${JSON.stringify(events.map((e) => e.to_status))}`,
          );
        }
        await new Promise((resolve) => {
          const timer = setTimeout(resolve, left);
          waiters.push(() => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
    },
    cancel() {
      cancelled = true;
      stream.cancel();
      if (failure) throw new Error(`WatchSessions failed: ${failure.message}`);
    },
  };
}

/** CREATED(PENDING) -> LIVE -> RELEASED for our session, in order, once each. */
function checkEvents(events, sessionId) {
  assert.ok(events.length > 0, 'the watcher received no event');
  for (const e of events) {
    assert.equal(e.session_id, sessionId, `metadata filter leaked an event of ${e.session_id}`);
    assert.equal(e.session.id, sessionId);
    assert.equal(e.session.status, e.to_status, `event ${e.sequence}: snapshot status differs`);
  }
  const seqs = events.map((e) => BigInt(e.sequence));
  for (let i = 1; i < seqs.length; i++) {
    assert.ok(seqs[i - 1] < seqs[i], `sequences not strictly increasing: ${seqs.join(',')}`);
  }
  const times = events.map((e) => timestampNanos(e.occurred_at));
  for (let i = 1; i < times.length; i++) {
    assert.ok(times[i - 1] <= times[i], 'occurred_at goes backwards');
  }
  assert.deepEqual(
    events.map((e) => [e.from_status, e.to_status, e.end_reason]),
    [
      ['SESSION_STATUS_UNSPECIFIED', 'SESSION_STATUS_PENDING', 'END_REASON_UNSPECIFIED'],
      ['SESSION_STATUS_PENDING', 'SESSION_STATUS_LIVE', 'END_REASON_UNSPECIFIED'],
      ['SESSION_STATUS_LIVE', 'SESSION_STATUS_RELEASED', 'END_REASON_REQUESTED'],
    ],
  );
}

/** Runs the whole scenario against the browserd at `address`, with
 *  `apiKey` (default: $BROWSERD_API_KEY; see sessionClient). */
async function runScenario(address, { apiKey } = {}) {
  const client = sessionClient(address, { apiKey });
  const site = await startPageServer();
  const labels = { example: 'node', run: randomUUID() };
  const watcher = watchEvents(client, labels);
  const result = {};
  try {
    const { session: created } = await call(client, 'CreateSession', {
      metadata: labels,
      timeout: { seconds: 120 },
      keep_alive: true,
      viewport: { width: 1024, height: 700 },
    });
    const sid = created.id;
    result.sessionId = sid;
    assert.equal(created.status, 'SESSION_STATUS_LIVE');
    assert.equal(created.end_reason, 'END_REASON_UNSPECIFIED');
    assert.match(created.connect_url, /^ws:\/\//);
    assert.deepEqual({ ...created.metadata }, labels);
    assert.ok(created.created_at && created.started_at, 'LIVE session lacks created_at/started_at');
    assert.equal(created.keep_alive, true);

    try {
      // defaultViewport: null keeps the viewport browserd launched with.
      const browser = await puppeteer.connect({
        browserWSEndpoint: created.connect_url,
        defaultViewport: null,
      });
      try {
        const page = await browser.newPage();
        const response = await page.goto(site.url, { waitUntil: 'load' });
        assert.equal(response.status(), 200);
        result.heading = await page.$eval('h1', (e) => e.textContent);
        result.primeSum = Number(await page.$eval('#sum', (e) => e.textContent));
        result.headingColor = await page.$eval('h1', (e) => getComputedStyle(e).color);
        result.viewport = await page.evaluate(() => [window.innerWidth, window.innerHeight]);
        assert.equal(result.heading, 'Hello from browserd');
        assert.equal(result.primeSum, 28);
        assert.equal(result.headingColor, 'rgb(200, 30, 40)');
        assert.equal(await page.title(), PAGE_TITLE);
        // The session's viewport is the page's inner size.
        assert.deepEqual(result.viewport, [1024, 700], `inner size ${result.viewport}`);

        const details = await call(client, 'GetLiveDetails', { session_id: sid });
        result.livePages = details.pages.map((p) => ({ url: p.url, title: p.title }));
        assert.ok(
          details.pages.some((p) => p.url === site.url && p.title === PAGE_TITLE && p.target_id),
          `GetLiveDetails does not show our page: ${JSON.stringify(details.pages)}`,
        );
        assert.equal(details.connect_url, created.connect_url);
      } finally {
        await browser.disconnect(); // leaves the browser running
      }

      const { session: still } = await call(client, 'GetSession', { session_id: sid });
      assert.equal(
        still.status,
        'SESSION_STATUS_LIVE',
        `keep_alive session did not stay LIVE after disconnect (${still.end_reason})`,
      );
    } finally {
      result.released = (await call(client, 'ReleaseSession', { session_id: sid })).session;
    }
    const released = result.released;
    assert.equal(released.status, 'SESSION_STATUS_RELEASED');
    assert.equal(released.end_reason, 'END_REASON_REQUESTED');
    assert.ok(released.ended_at, 'released session has no ended_at');
    assert.equal(released.connect_url, '', 'released session still has a connect_url');
    assert.ok(timestampNanos(released.ended_at) >= timestampNanos(released.created_at));
    const { session: again } = await call(client, 'ReleaseSession', { session_id: sid });
    assert.deepEqual(again, released, 'a second ReleaseSession changed the session');

    await watcher.waitFor(
      (evs) => evs.some((e) => e.session_id === sid && e.to_status === 'SESSION_STATUS_RELEASED'),
      `RELEASED event for ${sid}`,
    );
    watcher.cancel();
    checkEvents(watcher.events, sid);
    assert.ok(
      site.requests.some((r) => r.path === '/' && r.userAgent.includes('Chrome')),
      `the page server saw no browser request: ${JSON.stringify(site.requests)}`,
    );
    result.events = watcher.events;
    return result;
  } finally {
    try {
      watcher.cancel();
    } catch {
      // already reported above, or the scenario failed earlier
    }
    client.close();
    await site.close();
  }
}

module.exports = { runScenario, startPageServer };

if (require.main === module) {
  const address = process.argv[2] || '127.0.0.1:50051';
  runScenario(address).then(
    (r) => {
      console.log(
        `session ${r.sessionId}: h1=${JSON.stringify(r.heading)} sum=${r.primeSum} ` +
          `color=${r.headingColor} viewport=${r.viewport}`,
      );
      for (const e of r.events) {
        console.log(`  event ${e.sequence}: ${e.from_status} -> ${e.to_status} ${e.end_reason}`);
      }
      console.log('PASS');
    },
    (err) => {
      console.error(`FAIL: ${err.stack || err}`);
      process.exitCode = 1;
    },
  );
}
