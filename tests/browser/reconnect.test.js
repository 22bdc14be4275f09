// The WebSocket is cut mid-conversation (server API disconnect, close 4010): the SDK
// reconnects by itself, rejoins, resubscribes from its last offset, and the app sees
// every message sent meanwhile exactly once, in order.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launch, sdkPeer, until, roomName, serverApi } from './lib.js';

let browser;
before(async () => (browser = await launch()));
after(async () => browser?.close());

test('messages sent while a client is cut off all arrive once, in order', async () => {
  const room = roomName('reconnect');
  const alice = await sdkPeer(browser, 'alice', room);
  // Bob waits 0.75–1.5 s before reconnecting, so Alice's burst lands in the gap.
  const bob = await sdkPeer(browser, 'bob', room, { backoff: { min: 1500, max: 1500 } });
  await bob.evaluate(async () => {
    window.got = [];
    window.states = [];
    window.closes = [];
    window.gaps = [];
    window.client.on('state', (s) => window.states.push(s));
    window.client.on('disconnected', (d) => window.closes.push(d.code));
    window.room.chat.on('message', (m) => window.got.push([m.offset, m.text, m.from]));
    window.room.chat.on('gap', (g) => window.gaps.push(g));
    await window.room.chat.ready;
  });
  await alice.evaluate(() => window.room.chat.ready);

  const sent = [];
  const send = async (text) => {
    const ack = await alice.evaluate((t) => window.room.chat.send(t), text);
    sent.push([ack.offset, text]);
  };
  for (let i = 0; i < 10; i++) await send(`before ${i}`);
  await until(() => bob.evaluate(() => window.got.length === 10), { what: 'first 10 at bob' });

  // Cut Bob's socket three times while Alice keeps talking; the server API also
  // publishes into the room chat meanwhile.
  for (let round = 0; round < 3; round++) {
    const res = await serverApi('/api/v1/connections/disconnect', { identity: 'bob', reconnect: true });
    assert.ok(res, 'disconnect accepted');
    await until(() => bob.evaluate((n) => window.closes.length === n, round + 1), { what: 'bob cut off', timeout: 5000 });
    for (let i = 0; i < 15; i++) await send(`round ${round} msg ${i}`);
    const pub = await serverApi('/api/v1/publish', { channel: `room:${room}:chat`, data: { text: `server notice ${round}` } });
    sent.push([pub.offset, `server notice ${round}`]);
    assert.notEqual(await bob.evaluate(() => window.client.state), 'connected', 'the burst was sent while bob was away');
    await until(() => bob.evaluate(() => window.client.state === 'connected'), { what: 'bob back', timeout: 10000 });
    for (let i = 0; i < 5; i++) await send(`after round ${round} msg ${i}`);
  }

  await until(() => bob.evaluate((n) => window.got.length >= n, sent.length), { what: `all ${sent.length} messages at bob`, timeout: 15000 });
  await new Promise((r) => setTimeout(r, 500)); // nothing more (no duplicates) trickles in
  const got = await bob.evaluate(() => window.got);
  sent.sort((a, b) => a[0] - b[0]);
  assert.deepEqual(
    got.map(([o, t]) => [o, t]),
    sent,
    'every message exactly once and in offset order',
  );
  const info = await bob.evaluate(() => ({ states: window.states, closes: window.closes, gaps: window.gaps, room: window.room.state, others: window.room.participants.size }));
  assert.deepEqual(info.closes, [4010, 4010, 4010]);
  assert.equal(info.gaps.length, 0);
  assert.equal(info.room, 'joined');
  assert.equal(info.others, 1);
  assert.ok(info.states.filter((s) => s === 'reconnecting').length === 3, JSON.stringify(info.states));

  // Alice saw Bob come back into the room.
  assert.ok(await alice.evaluate(() => !!window.room.participantByIdentity('bob')));

  // A latecomer pages back through the whole history with "load older".
  const carol = await sdkPeer(browser, 'carol', room);
  const older = await carol.evaluate(async () => {
    const chat = window.room.chat;
    await chat.ready;
    const offsets = [];
    let pages = 0;
    while (chat.hasMore && pages < 100) {
      const msgs = await chat.loadOlder(7);
      offsets.unshift(...msgs.map((m) => m.offset));
      pages++;
    }
    return { offsets, pages };
  });
  assert.deepEqual(older.offsets, sent.map(([o]) => o));
  assert.equal(older.pages, Math.ceil(sent.length / 7));
  await carol.context().close();
  await alice.context().close();
  await bob.context().close();
});
