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
  // Bob waits 2–4 s before reconnecting, so Alice's burst lands in the gap even on a
  // loaded machine (16 acknowledged publishes took over 1.5 s under load).
  const bob = await sdkPeer(browser, 'bob', room, { backoff: { min: 4000, max: 4000 } });
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
    // Bob types while offline: the send waits for the rejoin, then goes out.
    const bobSend = bob.evaluate((r) => window.room.chat.send(`bob offline ${r}`).then((ack) => ack.offset), round);
    for (let i = 0; i < 15; i++) await send(`round ${round} msg ${i}`);
    const pub = await serverApi('/api/v1/publish', { channel: `room:${room}:chat`, data: { text: `server notice ${round}` } });
    sent.push([pub.offset, `server notice ${round}`]);
    assert.notEqual(await bob.evaluate(() => window.client.state), 'connected', 'the burst was sent while bob was away');
    await until(() => bob.evaluate(() => window.client.state === 'connected'), { what: 'bob back', timeout: 10000 });
    sent.push([await bobSend, `bob offline ${round}`]);
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

test('an abrupt network drop (TCP proxy killed) is recovered the same way', async () => {
  const net = await import('node:net');
  const target = new URL(process.env.TANDEM_URL || 'http://127.0.0.1:7880');
  const sockets = new Set();
  let accepting = true;
  const proxy = net.createServer((client) => {
    if (!accepting) return client.destroy();
    const upstream = net.connect(Number(target.port), target.hostname);
    sockets.add(client);
    sockets.add(upstream);
    client.pipe(upstream);
    upstream.pipe(client);
    const done = () => (client.destroy(), upstream.destroy(), sockets.delete(client), sockets.delete(upstream));
    client.on('error', done).on('close', done);
    upstream.on('error', done).on('close', done);
  });
  await new Promise((r) => proxy.listen(0, '127.0.0.1', r));
  const proxyUrl = `http://127.0.0.1:${proxy.address().port}`;
  try {
    const room = roomName('drop');
    const alice = await sdkPeer(browser, 'alice', room);
    // Bob's page and socket go through the proxy (same origin, so the origin check passes).
    const bobPage = await alice.context().browser().newContext().then((c) => c.newPage());
    await bobPage.goto(`${proxyUrl}/examples/minimal.html?noauto=1`);
    await bobPage.evaluate(async (room) => {
      window.T = await import('/sdk/index.js');
      const token = async () => (await (await fetch(`/dev/token?identity=bob&room=${room}`)).json()).token;
      window.client = await window.T.connect(location.origin, token, { backoff: { min: 1500, max: 1500 } });
      window.room = await window.client.join(room);
      window.got = [];
      window.closes = [];
      window.client.on('disconnected', (d) => window.closes.push(d.code));
      window.room.chat.on('message', (m) => window.got.push(m.offset));
      await window.room.chat.ready;
    }, room);
    await alice.evaluate(() => window.room.chat.ready);
    const offsets = [];
    const send = async (t) => offsets.push((await alice.evaluate((t) => window.room.chat.send(t), t)).offset);
    for (let i = 0; i < 5; i++) await send(`a${i}`);
    // Pull the plug: every proxied socket dies without a close frame, and new
    // connections are refused for a moment.
    accepting = false;
    for (const s of sockets) s.destroy();
    await until(() => bobPage.evaluate(() => window.closes.length === 1), { what: 'bob notices the drop' });
    for (let i = 0; i < 20; i++) await send(`b${i}`);
    await new Promise((r) => setTimeout(r, 1000));
    accepting = true;
    for (let i = 0; i < 5; i++) await send(`c${i}`);
    await until(() => bobPage.evaluate((n) => window.got.length >= n, offsets.length), { what: 'all messages at bob', timeout: 20000 });
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(await bobPage.evaluate(() => window.got), offsets);
    assert.deepEqual(await bobPage.evaluate(() => window.closes), [1006]);
    await bobPage.context().close();
    await alice.context().close();
  } finally {
    for (const s of sockets) s.destroy();
    proxy.close();
  }
});

test('a WebSocket blip does not drop the peer-to-peer call', async () => {
  const { expectMediaFlowing } = await import('./lib.js');
  const room = roomName('blip');
  const media = { audio: true, video: { width: 320, height: 180, frameRate: 15 } };
  const alice = await sdkPeer(browser, 'alice', room, { call: media });
  const bob = await sdkPeer(browser, 'bob', room, { call: media, backoff: { min: 500, max: 500 } });
  await expectMediaFlowing(alice, 'bob');
  await alice.evaluate(() => (window.pcBefore = window.call.peers.get('bob').pc));
  await bob.evaluate(() => (window.pcBefore = window.call.peers.get('alice').pc));
  await serverApi('/api/v1/connections/disconnect', { identity: 'bob', reconnect: true });
  await until(() => bob.evaluate(() => window.client.state === 'connected' && window.room.state === 'joined'), { what: 'bob back', timeout: 10000 });
  await until(() => alice.evaluate(() => window.room.participantByIdentity('bob')?.sid === window.call.peers.get('bob')?.sid), { what: 'alice sees bob again' });
  // Same peer connections on both sides, media still flowing.
  assert.ok(await alice.evaluate(() => window.call.peers.get('bob').pc === window.pcBefore));
  assert.ok(await bob.evaluate(() => window.call.peers.get('alice').pc === window.pcBefore));
  await expectMediaFlowing(alice, 'bob', 'bob after the blip');
  // Signaling works with Bob's new sid: a screen share renegotiates.
  await bob.evaluate(() => window.call.startScreenShare());
  await until(() => alice.evaluate(() => window.call.peers.get('bob').streams.has('screen')), { what: 'screen after blip' });
  await alice.context().close();
  await bob.context().close();
});
