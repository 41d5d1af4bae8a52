'use strict';
// scrape.js's scenario with an API key, against a browserd whose keys were
// made offline with `browserd keys create --data-dir` before it started (so
// it requires them from its first call).

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const { startBrowserd, tempDataDir, createKey, keyId, grpc } = require('../lib/harness');
const { sessionClient, call } = require('../lib/client');
const { runScenario } = require('../scrape');

test('with a project key, puppeteer-core scrapes through that project\'s session', async (t) => {
  const dataDir = tempDataDir();
  t.after(() => fs.rmSync(dataDir, { recursive: true, force: true }));
  const key = createKey(dataDir, { project: 'scrapers' });
  const server = await startBrowserd({ dataDir });
  t.after(() => server.cleanup());

  // Without the key, and with its last character changed, nothing is answered.
  const mistyped = key.slice(0, -1) + (key.endsWith('A') ? 'B' : 'A');
  for (const apiKey of ['', mistyped]) {
    const client = sessionClient(server.grpcAddress, { apiKey });
    t.after(() => client.close());
    await assert.rejects(call(client, 'ListSessions', {}), (err) => {
      assert.equal(err.code, grpc.status.UNAUTHENTICATED, err.message);
      return true;
    });
  }

  const r = await runScenario(server.grpcAddress, { apiKey: key });
  assert.equal(r.heading, 'Hello from browserd');
  assert.equal(r.released.project, 'scrapers');
  assert.equal(r.released.end_reason, 'END_REASON_REQUESTED');
  assert.deepEqual(new Set(r.events.map((e) => e.actor)), new Set([`key/${keyId(key)}`]));

  assert.equal(await server.stop(), 0, `browserd exit code after SIGTERM\n${server.tail()}`);
});
