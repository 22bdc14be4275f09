// File transfer over a data channel: 5 MiB arrives with a matching SHA-256, with
// progress events and backpressure; cancel reaches the other side.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { launch, sdkPeer, until, roomName, makeBytes } from './lib.js';

let browser;
before(async () => (browser = await launch()));
after(async () => browser?.close());

test('a 5 MiB file arrives over a data channel with a matching SHA-256', async () => {
  const room = roomName('files');
  const alice = await sdkPeer(browser, 'alice', room, { call: { audio: false, video: false } });
  const bob = await sdkPeer(browser, 'bob', room, { call: { audio: false, video: false } });
  await until(() => alice.evaluate(() => window.call.peers.get('bob')?.dc?.readyState === 'open'), { what: 'data channel open' });

  // Room data peer-to-peer on the way.
  await bob.evaluate(() => {
    window.gotData = [];
    window.call.on('data', (d) => window.gotData.push([d.identity, d.data]));
  });
  assert.equal(await alice.evaluate(() => window.call.sendData({ hello: 'bob' })), 1);
  await until(() => bob.evaluate(() => window.gotData.length === 1), { what: 'room data' });
  assert.deepEqual(await bob.evaluate(() => window.gotData[0]), ['alice', { hello: 'bob' }]);

  const size = 5 * 1024 * 1024;
  const expected = createHash('sha256').update(makeBytes(size, 12345)).digest('hex');
  await bob.evaluate(() => {
    window.incoming = new Promise((resolve) => {
      window.call.on('file', (t) => {
        let progress = 0;
        t.on('progress', () => progress++);
        t.promise.then(async ({ sha256, blob }) => {
          const own = [...new Uint8Array(await crypto.subtle.digest('SHA-256', await blob.arrayBuffer()))].map((b) => b.toString(16).padStart(2, '0')).join('');
          resolve({ sha256, own, size: blob.size, name: t.name, type: t.type, from: t.peer.identity, progress });
        }, (err) => resolve({ error: err.message }));
      });
    });
  });
  const sent = await alice.evaluate(
    async ({ size, fn }) => {
      const makeBytes = new Function(`return (${fn})`)();
      const file = new File([makeBytes(size, 12345)], 'random.bin', { type: 'application/octet-stream' });
      const t = window.call.sendFile('bob', file);
      let progress = 0;
      t.on('progress', () => progress++);
      const t0 = performance.now();
      const res = await t.promise;
      return { ...res, progress, ms: performance.now() - t0, bytes: t.bytes, state: t.state, peakBuffered: t.peakBuffered };
    },
    { size, fn: makeBytes.toString() },
  );
  const got = await bob.evaluate(() => window.incoming);
  assert.equal(got.error, undefined, got.error);
  assert.equal(sent.state, 'done');
  assert.equal(sent.sha256, expected, 'sender hash');
  assert.equal(got.sha256, expected, 'receiver hash (SDK)');
  assert.equal(got.own, expected, 'receiver hash (WebCrypto over the received blob)');
  assert.equal(got.size, size);
  assert.equal(got.name, 'random.bin');
  assert.equal(got.from, 'alice');
  assert.ok(sent.progress > 3 && got.progress > 3, `progress events: ${sent.progress}/${got.progress}`);
  // Backpressure: never more than the high-water mark (1 MiB) plus one chunk queued.
  assert.ok(sent.peakBuffered > 0 && sent.peakBuffered <= 1024 * 1024 + 16 * 1024, `peak bufferedAmount ${sent.peakBuffered}`);
  console.log(`5 MiB in ${Math.round(sent.ms)} ms (${((size * 8) / sent.ms / 1000).toFixed(1)} Mb/s)`);

  // Cancel from the receiver's side mid-transfer reaches the sender.
  await bob.evaluate(() => {
    window.call.once('file', (t) => t.once('progress', () => t.cancel('no thanks')));
  });
  const cancelled = await alice.evaluate(async () => {
    const file = new Blob([new Uint8Array(20 * 1024 * 1024)]);
    const t = window.call.sendFile('bob', file, { name: 'big.bin' });
    try {
      await t.promise;
      return { state: t.state };
    } catch (err) {
      return { state: t.state, code: err.code, bytes: t.bytes };
    }
  });
  assert.equal(cancelled.state, 'cancelled');
  assert.equal(cancelled.code, 'cancelled');
  assert.ok(cancelled.bytes < 20 * 1024 * 1024);
  await alice.context().close();
  await bob.context().close();
});
