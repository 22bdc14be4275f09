// Perfect negotiation under glare, ICE restart, mute/unmute, stats, and ICE staying
// on loopback inside the test namespace.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launch, sdkPeer, expectMediaFlowing, inbound, until, roomName } from './lib.js';

let browser;
before(async () => (browser = await launch()));
after(async () => browser?.close());

const media = { audio: true, video: { width: 320, height: 180, frameRate: 15 } };

test('two calls start at the same instant; then both renegotiate at once: glare settled', async () => {
  const room = roomName('glare');
  const a = await sdkPeer(browser, 'alice', room);
  const b = await sdkPeer(browser, 'bob', room);
  // Both are in the room with their devices open; both start their call at the same
  // instant, so both offer to each other at once.
  const prepare = async (m) => void (window.stream = await navigator.mediaDevices.getUserMedia(m));
  await Promise.all([a.evaluate(prepare, media), b.evaluate(prepare, media)]);
  const startAt = Date.now() + 400;
  const start = async (at) => {
    await new Promise((r) => setTimeout(r, at - Date.now()));
    window.call = await window.room.call({ localStream: window.stream });
  };
  await Promise.all([a.evaluate(start, startAt), b.evaluate(start, startAt)]);
  try {
    await expectMediaFlowing(a, 'bob');
  } catch (err) {
    const dump = () => {
      const p = [...window.call.peers.values()][0];
      if (!p) return 'no peer';
      const pc = p.pc;
      const cands = (d) => (d?.sdp.match(/a=candidate/g) || []).length;
      const ufrag = (d) => d?.sdp.match(/a=ice-ufrag:(\S+)/)?.[1];
      return { polite: p.polite, collisions: p.collisions, stuck: p.stuckRestarts, gather: pc.iceGatheringState, sig: pc.signalingState, conn: pc.connectionState, ice: pc.iceConnectionState, log: p.log,
        local: [ufrag(pc.localDescription), cands(pc.localDescription)], remote: [ufrag(pc.remoteDescription), cands(pc.remoteDescription)],
        tr: pc.getTransceivers().map((t) => [t.mid, t.direction, t.currentDirection, t.receiver.track.kind, t.sender.track?.kind]) };
    };
    console.log('alice', JSON.stringify(await a.evaluate(dump)));
    console.log('bob', JSON.stringify(await b.evaluate(dump)));
    throw err;
  }
  await expectMediaFlowing(b, 'alice');
  const roles = await Promise.all([a, b].map((p) => p.evaluate(() => [...window.call.peers.values()][0].polite)));
  assert.notEqual(roles[0], roles[1], 'exactly one polite side');
  // Starting at once does not even collide: the polite side says hello, the
  // impolite side offers.
  const counters = () => Promise.all([a, b].map((p) => p.evaluate(() => { const x = [...window.call.peers.values()][0]; return { c: x.collisions, r: x.stuckRestarts }; })));
  assert.deepEqual(await counters(), [{ c: 0, r: 0 }, { c: 0, r: 0 }]);

  // Real glare: both renegotiate at the same instant (a new transceiver each), so
  // both offers cross; perfect negotiation settles it (the polite side rolls back).
  const at = Date.now() + 300;
  const renegotiate = async (at) => {
    await new Promise((r) => setTimeout(r, at - Date.now()));
    [...window.call.peers.values()][0].pc.addTransceiver('video', { direction: 'recvonly' });
  };
  await Promise.all([a.evaluate(renegotiate, at), b.evaluate(renegotiate, at)]);
  await until(
    () => Promise.all([a, b].map((p) => p.evaluate(() => { const pc = [...window.call.peers.values()][0].pc; return pc.signalingState === 'stable' && pc.getTransceivers().length === 4 && pc.getTransceivers().every((t) => t.mid !== null); }))).then((x) => x.every(Boolean)),
    { what: 'both renegotiations done' },
  );
  const after = await counters();
  console.log(`glare: alice ${after[0].c} collision(s), bob ${after[1].c}`);
  assert.ok(after[0].c + after[1].c >= 1, 'the offers crossed');
  await expectMediaFlowing(a, 'bob', 'bob after glare');
  await expectMediaFlowing(b, 'alice', 'alice after glare');

  // Stats an app can show.
  const stats = await a.evaluate(async () => {
    await window.call.refreshStats();
    await new Promise((r) => setTimeout(r, 1100));
    const s = (await window.call.refreshStats()).get('bob');
    const { _raw, ...rest } = s;
    return rest;
  });
  assert.equal(stats.path, 'direct');
  assert.equal(stats.localCandidateType, 'host');
  assert.equal(typeof stats.rtt, 'number');
  assert.ok(stats.bitrateIn > 10000, `bitrate in ${stats.bitrateIn}`);
  assert.ok(stats.bitrateOut > 10000, `bitrate out ${stats.bitrateOut}`);
  assert.equal(typeof stats.packetLoss, 'number');
  assert.ok(['good', 'fair', 'poor'].includes(stats.quality));

  // ICE only ever used loopback addresses (the namespace has nothing else).
  const addrs = await a.evaluate(async () => {
    const pc = window.call.peers.get('bob').pc;
    const out = new Set();
    for (const s of (await pc.getStats()).values()) if (s.type === 'local-candidate' || s.type === 'remote-candidate') out.add(s.address || s.ip);
    return [...out];
  });
  assert.ok(addrs.length > 0 && addrs.every((x) => x === '127.0.0.1' || x === '::1'), `candidates: ${addrs}`);

  // Mute: the remote learns it; the audio track is disabled locally.
  await a.evaluate(() => window.call.setMicrophoneEnabled(false));
  await until(() => b.evaluate(() => window.call.peers.get('alice').media.audio === false), { what: 'mute seen by bob' });
  await a.evaluate(() => window.call.setCameraEnabled(false));
  await until(() => b.evaluate(() => window.call.peers.get('alice').media.video === false), { what: 'camera off seen by bob' });
  await a.evaluate(() => Promise.all([window.call.setMicrophoneEnabled(true), window.call.setCameraEnabled(true)]));
  await until(() => b.evaluate(() => { const m = window.call.peers.get('alice').media; return m.audio && m.video; }), { what: 'unmute seen by bob' });

  // ICE restart: new credentials are negotiated and media keeps flowing.
  const ufrag = () => window.call.peers.get('bob').pc.localDescription.sdp.match(/a=ice-ufrag:(\S+)/)[1];
  const before = await a.evaluate(ufrag);
  await a.evaluate(() => window.call.peers.get('bob').pc.restartIce());
  await until(async () => (await a.evaluate(ufrag)) !== before && (await inbound(a, 'bob')).state === 'connected', { what: 'ICE restarted' });
  await expectMediaFlowing(a, 'bob', 'bob after ICE restart');
  await a.context().close();
  await b.context().close();
});

test('a peer that joins without media gets media from the others (renegotiation)', async () => {
  const room = roomName('recvonly');
  const a = await sdkPeer(browser, 'alice', room, { call: media });
  const b = await sdkPeer(browser, 'bob', room, { call: { audio: false, video: false } });
  await expectMediaFlowing(b, 'alice', 'alice at a media-less bob');
  // Bob turns his camera and microphone on later: a renegotiation adds them.
  await b.evaluate(() => Promise.all([window.call.setCameraEnabled(true), window.call.setMicrophoneEnabled(true)]));
  await expectMediaFlowing(a, 'bob', 'bob after turning media on');
  await a.context().close();
  await b.context().close();
});

test('an offer to someone not in a call is withdrawn; their call connects later', async () => {
  const room = roomName('late');
  const a = await sdkPeer(browser, 'alice', room);
  const b = await sdkPeer(browser, 'bob', room);
  await a.evaluate((m) => window.room.call(m).then((c) => void (window.call = c)), media);
  // Alice offered to Bob, who has no call: Bob's SDK says so and Alice drops it.
  await until(() => a.evaluate(() => window.call.peers.size === 0), { what: 'offer withdrawn' });
  await new Promise((r) => setTimeout(r, 300));
  await b.evaluate((m) => window.room.call(m).then((c) => void (window.call = c)), media);
  await expectMediaFlowing(a, 'bob');
  await expectMediaFlowing(b, 'alice');
  // Bob hangs up but stays in the room: Alice drops her side at once.
  await b.evaluate(() => window.call.close());
  await until(() => a.evaluate(() => window.call.peers.size === 0), { what: 'bye handled' });
  assert.equal(await a.evaluate(() => window.room.participants.size), 1);
  await a.context().close();
  await b.context().close();
});
