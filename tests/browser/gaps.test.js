// Recovery at the edges, each against its own server: history trimmed while away
// (explicit `gap` event), more missed than one recovery returns (paged, no gap), and
// server restarts (same data: recovered; wiped data: `epoch_changed` gap).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { launch, newPage, until, roomName } from './lib.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = process.env.TANDEM_BIN || path.join(ROOT, 'target/debug/tandem');
let browser;
const servers = new Set();
before(async () => (browser = await launch()));
after(async () => {
  await browser?.close();
  for (const s of servers) await s.stop();
});

async function startServer(port, env = {}, dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tandem-gap-'))) {
  const proc = spawn(BIN, ['serve', '--dev', '--bind', `127.0.0.1:${port}`, '--data-dir', dataDir, '--web-dir', path.join(ROOT, 'web')], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'ignore', 'ignore'],
  });
  await until(() => fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.ok), { what: `server on ${port}` });
  const s = {
    url: `http://127.0.0.1:${port}`,
    dataDir,
    stop: async () => {
      servers.delete(s);
      if (proc.exitCode === null) {
        const exited = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGTERM');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
        if (proc.exitCode === null) proc.kill('SIGKILL');
      }
    },
  };
  servers.add(s);
  return s;
}

/** A page on `server` connected as `identity`, joined, recording chat and gaps. */
async function peer(server, identity, room, backoff) {
  const page = await newPage(browser, null);
  await page.goto(`${server.url}/examples/minimal.html?noauto=1`);
  await page.evaluate(
    async ({ identity, room, backoff }) => {
      const T = await import('/sdk/index.js');
      const token = async () => (await (await fetch(`/dev/token?identity=${identity}&room=${room}`)).json()).token;
      window.client = await T.connect(location.origin, token, { backoff });
      window.room = await window.client.join(room);
      window.got = [];
      window.gaps = [];
      window.room.chat.on('message', (m) => window.got.push(m.text));
      window.room.chat.on('gap', (g) => window.gaps.push(g));
      await window.room.chat.ready;
    },
    { identity, room, backoff },
  );
  return page;
}

const api = (server, p, body) =>
  fetch(server.url + p, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'Basic ' + Buffer.from('devkey:secret').toString('base64') },
    body: JSON.stringify(body),
  }).then((r) => r.json());

async function cutAndTalk(server, alice, bob, texts) {
  const closes = await bob.evaluate(() => window.client.state);
  assert.equal(closes, 'connected');
  await api(server, '/api/v1/connections/disconnect', { identity: 'bob', reconnect: true });
  await until(() => bob.evaluate(() => window.client.state !== 'connected'), { what: 'bob cut' });
  for (const t of texts) await alice.evaluate((t) => window.room.chat.send(t), t);
}

test('history trimmed while away: the app gets an explicit gap', async () => {
  const server = await startServer(7883, { TANDEM_HISTORY__MAX_COUNT: '5' });
  const room = roomName('trim');
  const alice = await peer(server, 'alice', room, {});
  const bob = await peer(server, 'bob', room, { min: 1500, max: 1500 });
  await alice.evaluate(() => window.room.chat.send('m1'));
  await until(() => bob.evaluate(() => window.got.length === 1), { what: 'm1' });
  await cutAndTalk(server, alice, bob, Array.from({ length: 12 }, (_, i) => `m${i + 2}`));
  await until(() => bob.evaluate(() => window.client.state === 'connected' && window.got.length === 6), { what: 'retained ones', timeout: 10000 });
  assert.deepEqual(await bob.evaluate(() => window.got), ['m1', 'm9', 'm10', 'm11', 'm12', 'm13']);
  const gaps = await bob.evaluate(() => window.gaps);
  assert.equal(gaps.length, 1);
  assert.equal(gaps[0].reason, 'history_expired');
  assert.equal(gaps[0].from, 2);
  assert.equal(gaps[0].to, 8);
  await server.stop();
});

test('more missed than one recovery returns: paged in, no gap', async () => {
  const server = await startServer(7884, { TANDEM_HISTORY__RECOVERY_MAX: '3' });
  const room = roomName('paged');
  const alice = await peer(server, 'alice', room, {});
  const bob = await peer(server, 'bob', room, { min: 1500, max: 1500 });
  const texts = Array.from({ length: 10 }, (_, i) => `p${i}`);
  await cutAndTalk(server, alice, bob, texts);
  await until(() => bob.evaluate(() => window.client.state === 'connected' && window.got.length === 10), { what: 'all 10', timeout: 10000 });
  await alice.evaluate(() => window.room.chat.send('live'));
  await until(() => bob.evaluate(() => window.got.length === 11), { what: 'live after paging' });
  assert.deepEqual(await bob.evaluate(() => window.got), [...texts, 'live']);
  assert.deepEqual(await bob.evaluate(() => window.gaps), []);
  await server.stop();
});

test('server restart: same data recovers everything, wiped data is an epoch_changed gap', async () => {
  let server = await startServer(7885);
  const dataDir = server.dataDir;
  const room = roomName('restart');
  const alice = await peer(server, 'alice', room, { min: 200, max: 1000 });
  const bob = await peer(server, 'bob', room, { min: 200, max: 1000 });
  await alice.evaluate(() => window.room.chat.send('before restart'));
  await until(() => bob.evaluate(() => window.got.length === 1), { what: 'first' });
  // Bob is cut off, Alice's message is committed, then the server restarts on the
  // same data: Bob recovers it from the durable log.
  await cutAndTalk(server, alice, bob, ['while bob was away']);
  await server.stop();
  server = await startServer(7885, {}, dataDir);
  await until(() => Promise.all([alice, bob].map((p) => p.evaluate(() => window.client.state === 'connected' && window.room.state === 'joined'))).then((x) => x.every(Boolean)), { what: 'both back', timeout: 15000 });
  await until(() => bob.evaluate(() => window.got.length === 2), { what: 'recovered across restart' });
  assert.deepEqual(await bob.evaluate(() => window.got), ['before restart', 'while bob was away']);
  assert.deepEqual(await bob.evaluate(() => window.gaps), []);
  // Now the data directory is wiped: the log's epoch changes and the app is told.
  await server.stop();
  server = await startServer(7885);
  await until(() => bob.evaluate(() => window.client.state === 'connected' && window.gaps.length === 1), { what: 'epoch gap', timeout: 15000 });
  assert.equal((await bob.evaluate(() => window.gaps))[0].reason, 'epoch_changed');
  await until(() => alice.evaluate(() => window.client.state === 'connected' && window.room.state === 'joined'), { what: 'alice back' });
  await alice.evaluate(() => window.room.chat.send('new epoch'));
  await until(() => bob.evaluate(() => window.got.at(-1) === 'new epoch'), { what: 'live in the new epoch' });
  await server.stop();
});
