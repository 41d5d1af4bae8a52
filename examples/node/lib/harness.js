'use strict';
// Test support: a real browserd child process, and a TCP proxy that can cut
// the network between a client and it. Nothing here imitates browserd.

const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');
const { grpc, healthClient, waitForReadyMetadata } = require('./client');

const REPO = path.resolve(__dirname, '..', '..', '..');
const BROWSERD_BIN = process.env.BROWSERD_BIN || path.join(REPO, 'target', 'debug', 'browserd');
const LISTENING = /browserd listening.*\bgrpc=(\S+).*\bcdp=(\S+)/;
const KEY_PREFIX = 'browserd_';

// Every test starts its own browserd, which knows only the keys the test
// makes: a key from the caller's environment would be refused by all of them.
delete process.env.BROWSERD_API_KEY;

function tempDataDir() {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'browserd-node-'));
}

/**
 * `browserd keys create --data-dir`: writes a key for `project` (created if
 * missing) straight into the data dir's database, no server needed, and
 * returns the key, which the command prints alone on stdout. A server
 * started on the data dir afterwards requires keys.
 */
function createKey(dataDir, { project, admin = false }) {
  const args = ['keys', 'create', '--project', project, '--data-dir', dataDir];
  if (admin) args.push('--admin');
  args.push('--description', `examples/node test key for ${project}`);
  // execFileSync throws with the exit code and stderr when it fails.
  const lines = execFileSync(BROWSERD_BIN, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
    .split('\n')
    .filter(Boolean);
  if (lines.length !== 1 || !lines[0].startsWith(KEY_PREFIX)) {
    throw new Error(`keys create printed ${JSON.stringify(lines)}, not one key line`);
  }
  return lines[0];
}

/** The id in `browserd_<16 hex id>_<secret>`: events name their actor
 *  `key/<id>`. */
function keyId(key) {
  return key.slice(KEY_PREFIX.length).split('_', 1)[0];
}

/**
 * Starts `browserd serve` on `dataDir` (default: a new temp dir), gRPC on
 * `listen` (default port 0, read back from the log), and resolves once gRPC
 * health says SERVING. `stop()` sends SIGTERM and resolves with the exit code.
 */
async function startBrowserd({ dataDir, listen = '127.0.0.1:0', timeoutMs = 60_000 } = {}) {
  const ownsDataDir = !dataDir;
  dataDir ??= tempDataDir();
  const child = spawn(
    BROWSERD_BIN,
    // The examples' sites run on this machine's loopback, which browserd's
    // egress policy refuses unless allowed (its own ports stay closed to
    // pages whatever this says).
    ['serve', '--listen', listen, '--cdp-listen', '127.0.0.1:0', '--data-dir', dataDir, '--warm-pool', '0',
      '--egress-allow', '127.0.0.1'],
    { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, RUST_LOG: 'info', NO_COLOR: '1' } },
  );
  const log = [];
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const spawnFailed = new Promise((_, reject) => child.once('error', reject));
  const listening = new Promise((resolve, reject) => {
    readline.createInterface({ input: child.stderr }).on('line', (line) => {
      log.push(line);
      const m = LISTENING.exec(line);
      if (m) resolve({ grpc: m[1], cdp: m[2] });
    });
    exited.then(({ code, signal }) =>
      reject(new Error(`browserd exited (${code ?? signal}) before listening:\n${log.join('\n')}`)),
    );
  });
  const tail = () => log.slice(-40).join('\n');
  const server = {
    dataDir,
    log,
    tail,
    grpcAddress: null,
    cdpAddress: null,
    /** SIGTERM; resolves with the exit code (null if killed by a signal). */
    async stop(graceMs = 60_000) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      const { code } = await exited;
      clearTimeout(timer);
      return code;
    },
    kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
    /** Kills browserd if still running; removes the data dir it made. */
    async cleanup() {
      server.kill();
      await exited;
      if (ownsDataDir) fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
  const deadline = Date.now() + timeoutMs;
  try {
    const addrs = await Promise.race([listening, spawnFailed, timeout(timeoutMs, 'the listening log line')]);
    server.grpcAddress = addrs.grpc;
    server.cdpAddress = addrs.cdp;
    await waitServing(addrs.grpc, deadline, exited, tail);
  } catch (err) {
    await server.cleanup();
    throw err;
  }
  return server;
}

function timeout(ms, what) {
  return new Promise((_, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    t.unref();
  });
}

/** Polls grpc.health.v1 until browserd.v1.SessionService is SERVING. */
async function waitServing(address, deadline, exited, tail) {
  const health = healthClient(address);
  let gone = null;
  exited.then((e) => {
    gone = e;
  });
  let last = null;
  try {
    while (Date.now() < deadline) {
      if (gone) throw new Error(`browserd exited (${gone.code ?? gone.signal}):\n${tail()}`);
      try {
        const reply = await new Promise((resolve, reject) =>
          health.Check(
            { service: 'browserd.v1.SessionService' },
            waitForReadyMetadata(),
            { deadline: Date.now() + 2000 },
            (err, res) => (err ? reject(err) : resolve(res)),
          ),
        );
        if (reply.status === 'SERVING') return;
        last = `status ${reply.status}`;
      } catch (err) {
        last = err.message;
      }
      await new Promise((r) => setTimeout(r, 50)); // poll interval
    }
    throw new Error(`browserd not SERVING in time (${last}):\n${tail()}`);
  } finally {
    health.close();
  }
}

/** A TCP proxy to `target` whose connections can be cut and refused. */
async function startProxy(target) {
  const [host, port] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
  const sockets = new Set();
  let down = false;
  let accepted = 0;
  const server = net.createServer((client) => {
    if (down) {
      client.destroy();
      return;
    }
    accepted += 1;
    const upstream = net.connect(port, host);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {});
    }
    client.pipe(upstream).pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    address: `127.0.0.1:${server.address().port}`,
    get accepted() {
      return accepted;
    },
    /** Drops every connection and refuses new ones until restore(). */
    cut() {
      down = true;
      for (const s of sockets) s.destroy();
    },
    restore() {
      down = false;
    },
    close() {
      down = true;
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

module.exports = { startBrowserd, startProxy, tempDataDir, createKey, keyId, BROWSERD_BIN, grpc };
