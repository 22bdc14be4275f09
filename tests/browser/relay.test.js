// ICE servers come from the server: with the built-in TURN enabled, the connect reply
// hands out short-lived credentials, the SDK passes them to its peer connections, and
// a relay-only call (iceTransportPolicy 'relay') flows through TURN — the stats say
// `relay`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { launch, newPage, until, roomName, expectMediaFlowing } from './lib.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = process.env.TANDEM_BIN || path.join(ROOT, 'target/debug/tandem');
const PORT = 7886;
let browser;
let server;
let dataDir;

before(async () => {
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tandem-relay-'));
  server = spawn(BIN, ['serve', '--dev', '--bind', `127.0.0.1:${PORT}`, '--data-dir', dataDir, '--web-dir', path.join(ROOT, 'web')], {
    env: {
      ...process.env,
      TANDEM_TURN__ENABLED: 'true',
      TANDEM_TURN__UDP_BIND: '"127.0.0.1:34780"',
      TANDEM_TURN__TCP_BIND: '"127.0.0.1:34781"',
      TANDEM_TURN__RELAY_BIND_IP: '"127.0.0.1"',
      TANDEM_TURN__SECRET: '"relay-test-secret-0123456789"',
      // TURN refuses loopback peers by default; this test has nothing else.
      TANDEM_TURN__ALLOWED_PEER_IPS: '["127.0.0.1/32"]',
    },
    stdio: ['ignore', 'ignore', 'ignore'],
  });
  await until(() => fetch(`http://127.0.0.1:${PORT}/healthz`).then((r) => r.ok), { what: 'server with TURN' });
  browser = await launch();
});
after(async () => {
  await browser?.close();
  server?.kill();
  if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
});

async function peer(identity, room) {
  const page = await newPage(browser, null);
  await page.goto(`http://127.0.0.1:${PORT}/examples/minimal.html?noauto=1`);
  await page.evaluate(
    async ({ identity, room }) => {
      const T = await import('/sdk/index.js');
      const token = async () => (await (await fetch(`/dev/token?identity=${identity}&room=${room}`)).json()).token;
      window.client = await T.connect(location.origin, token);
      window.room = await window.client.join(room);
      window.call = await window.room.call({ audio: true, video: { width: 320, height: 180 }, rtcConfig: { iceTransportPolicy: 'relay' } });
    },
    { identity, room },
  );
  return page;
}

test('a relay-only call through the built-in TURN, with its ICE servers from the server', async () => {
  const room = roomName('relay');
  const alice = await peer('alice', room);
  const bob = await peer('bob', room);
  const servers = await alice.evaluate(() => window.client.iceServers);
  assert.ok(servers.some((s) => [].concat(s.urls).some((u) => u.startsWith('turn:')) && s.username && s.credential), JSON.stringify(servers));
  await expectMediaFlowing(alice, 'bob', 'bob via TURN');
  await expectMediaFlowing(bob, 'alice', 'alice via TURN');
  const info = await alice.evaluate(async () => {
    const pc = window.call.peers.get('bob').pc;
    const conf = pc.getConfiguration();
    const s = (await window.call.refreshStats()).get('bob');
    return { conf: conf.iceServers, client: window.client.iceServers, path: s.path, local: s.localCandidateType };
  });
  assert.deepEqual(
    info.conf.map((s) => [].concat(s.urls).sort()),
    info.client.map((s) => [].concat(s.urls).sort()),
    'the peer connection uses the ICE servers of the connect reply',
  );
  assert.equal(info.path, 'relay');
  assert.equal(info.local, 'relay');
  await alice.context().close();
  await bob.context().close();
});
