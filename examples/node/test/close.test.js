'use strict';
// Puppeteer's browser.close() on a browser connected to a browserd session
// sends CDP `Browser.close`: browserd answers it and releases the session
// with END_REASON_CLIENT_CLOSED, whatever keep_alive says, instead of the
// browser exiting under it (which would read as a crash).

const test = require('node:test');
const assert = require('node:assert/strict');
const puppeteer = require('puppeteer-core');
const { startBrowserd } = require('../lib/harness');
const { sessionClient, call } = require('../lib/client');

for (const keepAlive of [true, false]) {
  test(`puppeteer browser.close() releases a keep_alive=${keepAlive} session as CLIENT_CLOSED`, async (t) => {
    const server = await startBrowserd();
    t.after(() => server.cleanup());
    const client = sessionClient(server.grpcAddress);
    t.after(() => client.close());

    const { session } = await call(client, 'CreateSession', { keep_alive: keepAlive });
    assert.equal(session.status, 'SESSION_STATUS_LIVE');
    const browser = await puppeteer.connect({ browserWSEndpoint: session.connect_url, defaultViewport: null });
    const page = await browser.newPage();
    assert.equal(await page.evaluate(() => 6 * 7), 42);
    const disconnected = new Promise((resolve) => browser.once('disconnected', resolve));
    await browser.close(); // resolves once browserd answered Browser.close
    await disconnected;

    const { session: ended } = await call(client, 'GetSession', { session_id: session.id });
    assert.equal(ended.status, 'SESSION_STATUS_RELEASED', `ended ${ended.status} (${ended.end_reason}): ${ended.error}`);
    assert.equal(ended.end_reason, 'END_REASON_CLIENT_CLOSED');
    assert.equal(ended.error, '');

    // The session is over: its connect_url no longer opens anything.
    await assert.rejects(puppeteer.connect({ browserWSEndpoint: session.connect_url }));
    assert.equal(await server.stop(), 0, `browserd exit code after SIGTERM\n${server.tail()}`);
  });
}
