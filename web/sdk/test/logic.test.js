// Unit tests of the SDK's pure logic: run with `node --test web/sdk/test/`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { backoffDelay } from '../backoff.js';
import { ChannelCursor } from '../cursor.js';
import { Sha256 } from '../sha256.js';
import { chunkRanges } from '../files.js';
import { summarizeStats } from '../stats.js';
import { normalizeUrl } from '../client.js';

const pub = (offset) => ({ offset, data: { n: offset }, ts: offset });

test('backoff grows, is capped and jittered within [half, full]', () => {
  const opts = { min: 100, max: 1000, factor: 2 };
  assert.equal(backoffDelay(0, opts, () => 0), 50);
  assert.equal(backoffDelay(0, opts, () => 0.999999), 100);
  assert.equal(backoffDelay(3, opts, () => 0.999999), 800);
  assert.equal(backoffDelay(10, opts, () => 0.999999), 1000);
  for (let a = 0; a < 20; a++) {
    const d = backoffDelay(a, opts);
    const nominal = Math.min(1000, 100 * 2 ** a);
    assert.ok(d >= nominal / 2 && d <= nominal, `attempt ${a}: ${d}`);
  }
});

test('cursor: first subscribe starts at the head, live stream dedupes', () => {
  const c = new ChannelCursor();
  assert.equal(c.since(), undefined);
  const r = c.applySubscribe({ epoch: 'e1', offset: 5, publications: [] });
  assert.deepEqual(r.deliver, []);
  assert.equal(c.offset, 5);
  assert.deepEqual(c.since(), { offset: 5, epoch: 'e1' });
  assert.equal(c.classify(pub(5)), 'duplicate');
  assert.equal(c.classify(pub(6)), 'deliver');
  c.advance(pub(6));
  assert.equal(c.classify(pub(6)), 'duplicate');
  assert.equal(c.classify(pub(8)), 'gap');
});

test('cursor: recovery delivers only what was missed', () => {
  const c = new ChannelCursor();
  c.applySubscribe({ epoch: 'e1', offset: 3, publications: [] });
  c.advance(pub(4));
  const r = c.applySubscribe({ epoch: 'e1', offset: 7, recovered: true, publications: [pub(4), pub(5), pub(6), pub(7)] });
  assert.deepEqual(r.deliver.map((p) => p.offset), [5, 6, 7]);
  assert.equal(r.gap, null);
  assert.equal(r.page, null);
  assert.equal(c.offset, 7);
});

test('cursor: epoch change is reported as a gap and restarts offsets', () => {
  const c = new ChannelCursor();
  c.applySubscribe({ epoch: 'e1', offset: 10, publications: [] });
  const r = c.applySubscribe({ epoch: 'e2', offset: 2, recovered: false, reason: 'epoch_changed', publications: [] });
  assert.equal(r.gap.reason, 'epoch_changed');
  assert.equal(c.epoch, 'e2');
  assert.equal(c.offset, 2);
  assert.equal(c.classify(pub(3)), 'deliver');
});

test('cursor: history_expired reports exactly the lost range', () => {
  const c = new ChannelCursor();
  c.applySubscribe({ epoch: 'e1', offset: 10, publications: [] });
  const r = c.applySubscribe({ epoch: 'e1', offset: 30, recovered: false, reason: 'history_expired', publications: [pub(25), pub(26)] });
  assert.deepEqual(r.gap, { reason: 'history_expired', from: 11, to: 24, epoch: 'e1' });
  assert.deepEqual(r.deliver.map((p) => p.offset), [25, 26]);
  assert.equal(c.offset, 30);
});

test('cursor: too_many pages through history until the head', () => {
  const c = new ChannelCursor();
  c.applySubscribe({ epoch: 'e1', offset: 10, publications: [] });
  const r = c.applySubscribe({ epoch: 'e1', offset: 2500, recovered: false, reason: 'too_many', publications: [] });
  assert.deepEqual(r.page, { since: 10, until: 2500 });
  let p1 = c.applyPage({ epoch: 'e1', offset: 2600, earliest: 1, publications: Array.from({ length: 1000 }, (_, i) => pub(11 + i)) }, 2500);
  assert.equal(p1.done, false);
  assert.equal(c.offset, 1010);
  c.applyPage({ epoch: 'e1', offset: 2600, earliest: 1, publications: Array.from({ length: 1000 }, (_, i) => pub(1011 + i)) }, 2500);
  const p3 = c.applyPage({ epoch: 'e1', offset: 2600, earliest: 1, publications: Array.from({ length: 590 }, (_, i) => pub(2011 + i)) }, 2500);
  assert.equal(p3.done, true);
  assert.equal(c.offset, 2600);
});

test('cursor: a hole in a history page is reported', () => {
  const c = new ChannelCursor();
  c.applySubscribe({ epoch: 'e1', offset: 10, publications: [] });
  const r = c.applyPage({ epoch: 'e1', offset: 20, earliest: 15, publications: [pub(15), pub(16)] }, 20);
  assert.deepEqual(r.gap, { reason: 'history_expired', from: 11, to: 14, epoch: 'e1' });
  assert.equal(c.offset, 16);
});

test('sha256 matches node:crypto for any chunking', () => {
  for (const n of [0, 1, 55, 56, 63, 64, 65, 119, 120, 4097, 100003]) {
    const b = randomBytes(n);
    const h = new Sha256();
    for (let i = 0; i < n; ) {
      const k = Math.min(n - i, 1 + ((i * 7919) % 997));
      h.update(b.subarray(i, i + k));
      i += k;
    }
    assert.equal(h.hex(), createHash('sha256').update(b).digest('hex'), `n=${n}`);
  }
});

test('file chunk ranges cover the file exactly', () => {
  assert.deepEqual(chunkRanges(0, 10), []);
  assert.deepEqual(chunkRanges(25, 10), [[0, 10], [10, 20], [20, 25]]);
  const r = chunkRanges(5 * 1024 * 1024 + 3, 16384);
  assert.equal(r.length, 321);
  assert.equal(r.at(-1)[1], 5 * 1024 * 1024 + 3);
});

test('stats: path, rtt, bitrate, loss and quality', () => {
  const base = (bytes, pkts, lost) => [
    { id: 'T', type: 'transport', selectedCandidatePairId: 'P' },
    { id: 'P', type: 'candidate-pair', localCandidateId: 'L', remoteCandidateId: 'R', currentRoundTripTime: 0.012, bytesReceived: bytes, bytesSent: bytes },
    { id: 'L', type: 'local-candidate', candidateType: 'host', protocol: 'udp' },
    { id: 'R', type: 'remote-candidate', candidateType: 'relay' },
    { id: 'V', type: 'inbound-rtp', kind: 'video', bytesReceived: bytes, packetsReceived: pkts, packetsLost: lost, framesDecoded: pkts / 10, framesPerSecond: 30 },
  ];
  const a = summarizeStats(base(1000, 100, 0), null, 1000);
  assert.equal(a.path, 'relay');
  assert.equal(a.rtt, 12);
  assert.equal(a.bitrateIn, null);
  const b = summarizeStats(base(126000, 200, 5), a._raw, 2000);
  assert.equal(b.bitrateIn, 1000000);
  assert.equal(b.packetLoss, 5 / 105);
  assert.equal(b.quality, 'fair');
  assert.equal(b.framesDecoded, 20);
});

test('urls: http origins map to the /ws endpoint', () => {
  assert.equal(normalizeUrl('http://127.0.0.1:7880'), 'ws://127.0.0.1:7880/ws');
  assert.equal(normalizeUrl('https://x.example/'), 'wss://x.example/ws');
  assert.equal(normalizeUrl('ws://h:1/ws'), 'ws://h:1/ws');
});
