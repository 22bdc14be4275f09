// Outside dev mode the demo takes a token (there is no /dev/token); a bad token is
// refused with a readable message; a good one joins.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { launch, newPage, until, roomName, ARTIFACTS } from './lib.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = process.env.TANDEM_BIN || path.join(ROOT, 'target/debug/tandem');
// Not 7882: the dev server of this suite runs its SFU (UDP and ICE-TCP) there.
const PORT = Number(process.env.TANDEM_PROD_PORT || 7890);
const KEYS = 'prodkey:0123456789abcdef0123456789abcdef-prod';
let browser;
let server;
let dataDir;

before(async () => {
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tandem-prod-'));
  server = spawn(BIN, ['serve', '--keys', KEYS, '--bind', `127.0.0.1:${PORT}`, '--data-dir', dataDir, '--web-dir', path.join(ROOT, 'web')], { stdio: ['ignore', 'ignore', 'pipe'] });
  server.stderr.on('data', () => {});
  await until(() => fetch(`http://127.0.0.1:${PORT}/healthz`).then((r) => r.ok), { what: 'non-dev server' });
  browser = await launch();
});
after(async () => {
  await browser?.close();
  server?.kill();
  if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
});

test('outside dev mode the demo asks for a token and uses it', async () => {
  assert.equal((await fetch(`http://127.0.0.1:${PORT}/dev/token?identity=x&room=y`)).status, 404);
  const room = roomName('prod');
  const page = await newPage(browser, null, { viewport: { width: 1100, height: 700 } });
  await page.goto(`http://127.0.0.1:${PORT}/`);
  await page.waitForSelector('#token-field:not([hidden])');
  await page.screenshot({ path: `${ARTIFACTS}/lobby-token.png` });

  await page.fill('#name', 'Dana');
  await page.fill('#room', room);
  await page.fill('#token', 'not-a-jwt');
  await page.click('#join');
  await until(() => page.evaluate(() => !document.querySelector('#lobby-error').hidden), { what: 'error shown' });
  assert.match(await page.textContent('#lobby-error'), /token was refused/);

  const token = execFileSync(BIN, ['token', '--keys', KEYS, '--identity', 'dana', '--name', 'Dana', '--room', room]).toString().trim();
  await page.fill('#token', token);
  await page.click('#join');
  await until(() => page.evaluate(() => window.tandemApp.room?.state === 'joined' && !!window.tandemApp.call), { what: 'joined with a token' });
  assert.equal(await page.evaluate(() => window.tandemApp.room.localParticipant.identity), 'dana');
  await page.context().close();
});
