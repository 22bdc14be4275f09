// Tokens expire: with a token function the SDK hands the server a fresh token before
// `exp` (the session, its room and its subscriptions go on without a reconnect); with
// a plain string token the server ends the session at expiry (close 4002) and the
// client stops with `token_expired`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launch, sdkPage, until, roomName } from './lib.js';

let browser;
before(async () => (browser = await launch()));
after(async () => browser?.close());

const TTL = 6; // seconds; the SDK refreshes a fifth of the lifetime early

test('a token function keeps a session alive past several expiries; a string token ends it', async () => {
  const room = roomName('refresh');
  const page = await sdkPage(browser);
  await page.evaluate(
    async ({ room, ttl }) => {
      const mint = async (identity) =>
        (await (await fetch(`/dev/token?identity=${identity}&room=${room}&ttl=${ttl}`)).json()).token;
      window.log = { refreshed: [], disconnected: [], states: [], errors: [] };
      // Renewing client: a token function.
      window.renewing = new window.T.TandemClient(location.origin, () => mint('renew'));
      window.renewing.on('refreshed', (r) => window.log.refreshed.push(r.expiresAt));
      window.renewing.on('disconnected', (d) => window.log.disconnected.push(['renew', d.code]));
      await window.renewing.connect();
      window.renewRoom = await window.renewing.join(room);
      window.got = [];
      window.renewRoom.chat.on('message', (m) => window.got.push(m.text));
      await window.renewRoom.chat.ready;
      // Lapsing client: the same kind of token, as a string.
      window.lapsing = new window.T.TandemClient(location.origin, await mint('lapse'));
      window.lapsing.on('disconnected', (d) => window.log.disconnected.push(['lapse', d.code, d.reason]));
      window.lapsing.on('state', (s) => window.log.states.push(s));
      await window.lapsing.connect();
    },
    { room, ttl: TTL },
  );
  const firstExpiry = await page.evaluate(() => window.renewing.info.expires_at);

  // Past two lifetimes of the first token.
  await until(() => page.evaluate(() => window.log.refreshed.length >= 2), { timeout: 4 * TTL * 1000, what: 'two refreshes' });
  const log = await page.evaluate(() => window.log);
  assert.ok(log.refreshed[0] > firstExpiry, `expiry moved on: ${JSON.stringify(log)}`);
  assert.ok(!log.disconnected.some(([who]) => who === 'renew'), `the renewing session never dropped: ${JSON.stringify(log)}`);
  assert.equal(await page.evaluate(() => window.renewing.state), 'connected');
  // Its room chat still works, in the same session.
  await page.evaluate(() => window.renewRoom.chat.send('still here'));
  await until(() => page.evaluate(() => window.got.includes('still here')), { what: 'chat after refresh' });

  // The string token lapsed: closed with 4002, then no more retries.
  await until(() => page.evaluate(() => window.lapsing.state === 'disconnected'), { timeout: 3 * TTL * 1000, what: 'lapsing session to end' });
  const after = await page.evaluate(() => window.log);
  assert.ok(
    after.disconnected.some(([who, code]) => who === 'lapse' && code === 4002),
    `lapsing client saw 4002: ${JSON.stringify(after.disconnected)}`,
  );
});
