// Files in SFU mode: five data-only SDK pages in an `auto` room of the dev server
// (which runs the SFU: more than four publishers move a room to it, two or fewer
// move it back). Files still go peer to peer, over data-only side connections:
//   - a file in flight when the room moves mesh → SFU finishes over the mesh
//     connection it started on (kept, without media, until it is done);
//   - in SFU mode files open side connections (both ways of opening one: a direct
//     offer, and a `hello` to an impolite peer), arrive intact (SHA-256), report
//     progress, and add nothing to the SFU's data counters;
//   - typed errors: `participant_not_found` for nobody, `transfer_failed` at once for
//     someone in the room but not in a call;
//   - idle side connections close; a side connection carrying a file when the room
//     moves back to mesh becomes the mesh connection and the file completes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { launch, sdkPeer, until, roomName, makeBytes, BASE } from './lib.js';

let browser;
before(async () => (browser = await launch()));
after(async () => browser?.close());

const IDLE_MS = 2500;
const sha = (size, seed) => createHash('sha256').update(makeBytes(size, seed)).digest('hex');

/** The SFU's counters that file bytes would grow if they went through the server. */
async function sfuCounters() {
  const text = await (await fetch(`${BASE}/metrics`)).text();
  const value = (name) => Number(text.match(new RegExp(`^${name} (\\d+)$`, 'm'))?.[1] ?? NaN);
  return { data: value('tandem_sfu_data_bytes_forwarded_total'), bytesIn: value('tandem_sfu_bytes_in_total') };
}

/** Page helpers: `send(to, name, size, seed, {gated})`, incoming files in `received`. */
function install(page) {
  return page.evaluate((fn) => {
    const makeBytes = new Function(`return (${fn})`)();
    const hex = async (blob) => [...new Uint8Array(await crypto.subtle.digest('SHA-256', await blob.arrayBuffer()))].map((b) => b.toString(16).padStart(2, '0')).join('');
    window.received = {};
    window.call.on('file', (t) => {
      const rec = (window.received[t.name] = { from: t.peer.identity, progress: 0, state: 'active' });
      t.on('progress', () => rec.progress++);
      t.promise.then(
        async ({ sha256, blob }) => Object.assign(rec, { sha256, size: blob.size, own: await hex(blob), state: 'done' }),
        (err) => Object.assign(rec, { state: 'failed', error: `${err.code}: ${err.message}` }),
      );
    });
    window.sent = {};
    window.gates = {};
    window.send = (to, name, size, seed, { gated = false } = {}) => {
      const blob = new Blob([makeBytes(size, seed)]);
      // Gated: the first 256 KiB read goes out, the rest waits for `gates[name]()`,
      // so the transfer is surely in flight across a mode change.
      let open;
      const gate = gated ? new Promise((r) => (open = r)) : null;
      window.gates[name] = () => open?.();
      let reads = 0;
      const file = gated
        ? { name, size, type: '', slice: (a, b) => ({ arrayBuffer: async () => (reads++ > 0 && (await gate), blob.slice(a, b).arrayBuffer()) }) }
        : new File([blob], name);
      const t = window.call.sendFile(to, file);
      const rec = (window.sent[name] = { progress: 0, state: 'active', pc: window.call.peers.get(to)?.pc });
      t.on('progress', () => rec.progress++);
      t.promise.then(
        ({ sha256 }) => Object.assign(rec, { sha256, state: 'done' }),
        (err) => Object.assign(rec, { state: 'failed', error: `${err.code}: ${err.message}` }),
      );
      return true;
    };
  }, makeBytes.toString());
}

const sent = (page, name) => page.evaluate((n) => ({ ...window.sent[n], pc: undefined }), name);
const received = (page, name) => page.evaluate((n) => window.received[n] ?? null, name);
const mode = (page) => page.evaluate(() => ({ mode: window.call.mode, sfu: window.call.sfu?.connectionState ?? null }));

/** Waits until `name` is done on both sides and checks it arrived intact, with progress. */
async function delivered(from, to, name, size, seed, fromId) {
  const want = sha(size, seed);
  const got = await until(async () => {
    const s = await sent(from, name);
    const r = await received(to, name);
    if (s.state === 'failed' || r?.state === 'failed') return { s, r };
    return s.state === 'done' && r?.state === 'done' && { s, r };
  }, { timeout: 30000, what: `${name} delivered` });
  assert.equal(got.s.state, 'done', JSON.stringify(got));
  assert.equal(got.r.state, 'done', JSON.stringify(got));
  assert.equal(got.s.sha256, want, `${name}: sender hash`);
  assert.equal(got.r.sha256, want, `${name}: receiver hash (SDK)`);
  assert.equal(got.r.own, want, `${name}: receiver hash (WebCrypto over the blob)`);
  assert.equal(got.r.size, size);
  assert.equal(got.r.from, fromId);
  assert.ok(got.s.progress > 0 && got.r.progress > 0, `${name}: progress events ${got.s.progress}/${got.r.progress}`);
}

test('files go peer to peer in SFU mode and across mesh ↔ SFU migrations', async () => {
  const room = roomName('files-sfu');
  const ids = ['a0', 'a1', 'a2', 'a3', 'a4'];
  // Data-only pages, but a0 and a1 send audio: the connection that becomes the mesh
  // one must carry media again.
  const opts = { call: { audio: false, video: false, fileIdleMs: IDLE_MS } };
  const withAudio = { call: { ...opts.call, audio: true } };
  const pages = {};
  for (const id of ids.slice(0, 4)) {
    pages[id] = await sdkPeer(browser, id, room, id === 'a0' || id === 'a1' ? withAudio : opts);
    await install(pages[id]);
  }
  const { a0, a1, a2, a3 } = pages;
  await until(() => a0.evaluate(() => window.call.peers.get('a1')?.dc?.readyState === 'open'), { what: 'a0 ↔ a1 mesh data channel', timeout: 20000 });
  assert.equal((await mode(a0)).mode, 'mesh');

  // 1. A file in flight while the room moves to the SFU finishes on its mesh connection.
  const big = 1024 * 1024;
  await a0.evaluate((size) => window.send('a1', 'migrating.bin', size, 1, { gated: true }), big);
  await until(async () => (await received(a1, 'migrating.bin'))?.progress > 0, { what: 'the gated file started' });
  pages.a4 = await sdkPeer(browser, 'a4', room, opts);
  await install(pages.a4);
  const { a4 } = pages;
  const all = Object.values(pages);
  await until(async () => (await Promise.all(all.map(mode))).every((m) => m.mode === 'sfu' && m.sfu === 'connected'), { what: 'every page in SFU mode', timeout: 30000 });
  // The migration is over (other mesh connections closed); a0 ↔ a1 stays for the file.
  const kept = await until(
    () =>
      a0.evaluate(() => {
        const p = window.call.peers;
        const others = ['a2', 'a3', 'a4'].every((id) => !p.get(id)?.pc);
        return others && p.get('a1')?.side === true && { same: p.get('a1').pc === window.sent['migrating.bin'].pc, via: p.get('a1').via };
      }),
    { what: 'mesh closed except the connection carrying the file', timeout: 20000 },
  );
  assert.deepEqual(kept, { same: true, via: 'sfu' });
  assert.equal((await sent(a0, 'migrating.bin')).state, 'active');
  await a0.evaluate(() => window.gates['migrating.bin']());
  await delivered(a0, a1, 'migrating.bin', big, 1, 'a0');

  // 2. SFU mode: fresh side connections, nothing through the SFU.
  const size = 300 * 1024;
  const before = await sfuCounters();
  assert.ok(Number.isFinite(before.data), 'the dev server exports the SFU metrics');
  await a4.evaluate((size) => window.send('a0', 'offered.bin', size, 2), size); // a4 > a0: a4 offers
  await a1.evaluate((size) => window.send('a3', 'hello.bin', size, 3), size); // a1 < a3: a1 asks a3 to offer
  await delivered(a4, a0, 'offered.bin', size, 2, 'a4');
  await delivered(a1, a3, 'hello.bin', size, 3, 'a1');
  const after = await sfuCounters();
  assert.ok(after.data - before.data < size / 4, `SFU data bytes grew by ${after.data - before.data}`);
  assert.ok(after.bytesIn - before.bytesIn < size, `SFU bytes in grew by ${after.bytesIn - before.bytesIn}`);
  const sides = await a3.evaluate(() => ({ side: window.call.peers.get('a1')?.side, mode: window.call.mode }));
  assert.deepEqual(sides, { side: true, mode: 'sfu' }, 'the receiver accepted a side connection');

  // Idle side connections close on both ends (the Peer of a data-only participant goes too).
  await until(
    async () => (await Promise.all([a4.evaluate(() => !window.call.peers.get('a0')?.pc), a0.evaluate(() => !window.call.peers.get('a4')?.pc)])).every(Boolean),
    { what: 'idle side connections closed', timeout: IDLE_MS + 15000 },
  );

  // Typed errors: nobody by that name.
  const bad = await a0.evaluate(() => {
    try {
      window.call.sendFile('nobody', new Blob(['x']));
    } catch (err) {
      return err.code;
    }
  });
  assert.equal(bad, 'participant_not_found');
  // Someone in the room but not in a call answers `nocall`: the file fails at once.
  const bystander = await sdkPeer(browser, 'a5', room, {});
  // a5's join reaches a0 as a push; until then a5 is nobody to a0.
  await until(() => a0.evaluate(() => !!window.room.participantByIdentity('a5')), { what: 'a0 sees a5 join' });
  const refused = await a0.evaluate(async () => {
    const t = window.call.sendFile('a5', new Blob([new Uint8Array(1000)]));
    const t0 = performance.now();
    const code = await t.promise.then(() => 'done', (err) => err.code);
    return { code, ms: performance.now() - t0, peer: window.call.peers.has('a5') };
  });
  assert.equal(refused.code, 'transfer_failed');
  assert.ok(refused.ms < 5000, `failed after ${refused.ms} ms`);
  assert.equal(refused.peer, false, 'no Peer left behind');
  await bystander.context().close();

  // 3. Back to mesh with a file in flight on a side connection: it becomes the mesh one.
  await a0.evaluate((size) => window.send('a1', 'upgrading.bin', size, 4, { gated: true }), big);
  await until(async () => (await received(a1, 'upgrading.bin'))?.progress > 0, { what: 'the second gated file started', timeout: 20000 });
  for (const id of ['a2', 'a3', 'a4']) await pages[id].context().close();
  await until(async () => (await Promise.all([a0, a1].map(mode))).every((m) => m.mode === 'mesh'), { what: 'a0 and a1 back in mesh', timeout: 30000 });
  const upgraded = await until(
    () => a0.evaluate(() => {
      const p = window.call.peers.get('a1');
      return p && !p.side && p.pc?.connectionState === 'connected' && { same: p.pc === window.sent['upgrading.bin'].pc, via: p.via };
    }),
    { what: 'the side connection became the mesh connection', timeout: 20000 },
  );
  assert.deepEqual(upgraded, { same: true, via: 'mesh' });
  await a0.evaluate(() => window.gates['upgrading.bin']());
  await delivered(a0, a1, 'upgrading.bin', big, 4, 'a0');
  // a0's audio reaches a1 over that connection.
  const audioIn = () =>
    a1.evaluate(async () => {
      const p = window.call.peers.get('a0');
      if (p?.via !== 'mesh' || !p.streams.get('camera')?.getAudioTracks().length) return 0;
      let n = 0;
      for (const s of (await p.pc.getStats()).values()) if (s.type === 'inbound-rtp' && s.kind === 'audio') n += s.packetsReceived || 0;
      return n;
    });
  const first = await until(audioIn, { what: "a0's audio over the mesh connection", timeout: 20000 });
  await until(async () => (await audioIn()) > first + 10, { what: "a0's audio to keep flowing" });
  // Mesh room data over that connection.
  await a1.evaluate(() => {
    window.gotData = [];
    window.call.on('data', (d) => window.gotData.push(d.data));
  });
  await until(() => a0.evaluate(() => window.call.sendData({ hi: 'a1' }, { to: 'a1' }) === 1), { what: 'mesh data channel to a1' });
  await until(() => a1.evaluate(() => window.gotData.some((d) => d?.hi === 'a1')), { what: 'mesh room data' });
  await until(() => a0.evaluate(() => !window.call.sfu), { what: 'the SFU connection closed after going back to mesh', timeout: 20000 });
  for (const p of [a0, a1]) await p.context().close();
});
