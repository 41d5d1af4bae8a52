'use strict';
// Runs scrape.js's scenario against a real browserd (no mocks).

const test = require('node:test');
const assert = require('node:assert/strict');
const { startBrowserd } = require('../lib/harness');
const { runScenario } = require('../scrape');

test('puppeteer-core scrapes a local page through a browserd session', async (t) => {
  const server = await startBrowserd();
  t.after(() => server.cleanup());

  const r = await runScenario(server.grpcAddress);
  assert.equal(r.heading, 'Hello from browserd');
  assert.equal(r.primeSum, 28);
  assert.equal(r.headingColor, 'rgb(200, 30, 40)');
  assert.equal(r.released.status, 'SESSION_STATUS_RELEASED');
  assert.equal(r.released.end_reason, 'END_REASON_REQUESTED');
  assert.deepEqual(
    r.events.map((e) => e.to_status),
    ['SESSION_STATUS_PENDING', 'SESSION_STATUS_LIVE', 'SESSION_STATUS_RELEASED'],
  );

  assert.equal(await server.stop(), 0, `browserd exit code after SIGTERM\n${server.tail()}`);
});
