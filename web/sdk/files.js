// Peer-to-peer file transfer over a dedicated RTCDataChannel per file: chunked,
// with backpressure (bufferedAmountLowThreshold), progress events, SHA-256 checked
// on arrival, and cancel from either side.
//
// Wire format on the channel (label `tandem-file:<id>`, protocol `tandem-file/1`):
//   text   {"t":"meta","id","name","size","type"}   sender → receiver, first
//   binary chunk bytes                               sender → receiver
//   text   {"t":"end","sha256"}                      sender → receiver, last
//   text   {"t":"ok"} | {"t":"bad","sha256"}         receiver → sender
//   text   {"t":"cancel","reason"}                   either way

import { Emitter } from './emitter.js';
import { Sha256 } from './sha256.js';
import { TandemError } from './errors.js';

export const FILE_LABEL_PREFIX = 'tandem-file:';
export const FILE_PROTOCOL = 'tandem-file/1';

/** A control message (JSON text) on a file channel, or null for chunks and garbage. */
function controlMessage(data) {
  if (typeof data !== 'string') return null;
  try {
    const msg = JSON.parse(data);
    return msg && typeof msg === 'object' ? msg : null;
  } catch {
    return null;
  }
}

const DEFAULTS = {
  chunkSize: 16 * 1024, // safe with every browser's SCTP message size
  readSize: 256 * 1024, // bytes read from the Blob at a time
  highWaterMark: 1024 * 1024, // pause sending above this bufferedAmount
  lowWaterMark: 256 * 1024, // resume below (bufferedAmountLowThreshold)
  progressInterval: 100, // ms between progress events
};

/** Split `size` bytes into [start, end) ranges of at most `chunk` bytes. */
export function chunkRanges(size, chunk) {
  const out = [];
  for (let at = 0; at < size; at += chunk) out.push([at, Math.min(size, at + chunk)]);
  return out;
}

let seq = 0;
function newId() {
  seq = (seq + 1) % 1e6;
  return `${Date.now().toString(36)}${seq.toString(36)}${Math.random().toString(36).slice(2, 6)}`;
}

/**
 * One file transfer, outgoing or incoming. Events: `progress` ({bytes, total,
 * fraction, bitrate}), `done` ({sha256, blob?}), `cancelled` ({reason, byPeer}),
 * `error` (TandemError). `promise` settles the same way.
 */
export class FileTransfer extends Emitter {
  /** @type {'pending'|'active'|'done'|'cancelled'|'failed'} */
  state = 'pending';
  bytes = 0;
  /** Outgoing: the most bytes ever queued in the channel (backpressure keeps it bounded). */
  peakBuffered = 0;
  sha256 = null;
  /** Incoming only: the received file once done. */
  blob = null;

  #dc;
  #opts;
  #resolve;
  #reject;
  #lastProgress = 0;
  #startedAt = 0;

  constructor(direction, dc, meta, peer, opts) {
    super();
    this.direction = direction;
    this.#dc = dc;
    this.id = meta.id;
    this.name = meta.name;
    this.size = meta.size;
    this.type = meta.type || 'application/octet-stream';
    this.peer = peer;
    this.#opts = { ...DEFAULTS, ...opts };
    this.promise = new Promise((res, rej) => ((this.#resolve = res), (this.#reject = rej)));
    this.promise.catch(() => {});
  }

  get fraction() {
    return this.size ? this.bytes / this.size : 1;
  }

  /** Stop the transfer (either side); the other side gets `cancelled`. */
  cancel(reason = 'cancelled') {
    if (this.#finished()) return;
    try {
      if (this.#dc.readyState === 'open') this.#dc.send(JSON.stringify({ t: 'cancel', reason }));
    } catch {}
    this.#cancelled(reason, false);
    setTimeout(() => this.#dc.close(), 50);
  }

  #finished() {
    return this.state === 'done' || this.state === 'cancelled' || this.state === 'failed';
  }

  #progress(force = false) {
    const now = performance.now();
    if (!force && now - this.#lastProgress < this.#opts.progressInterval) return;
    this.#lastProgress = now;
    const secs = Math.max(0.001, (now - this.#startedAt) / 1000);
    this.emit('progress', { bytes: this.bytes, total: this.size, fraction: this.fraction, bitrate: Math.round((this.bytes * 8) / secs) });
  }

  #cancelled(reason, byPeer) {
    if (this.#finished()) return;
    this.state = 'cancelled';
    this.emit('cancelled', { reason, byPeer });
    this.#reject(new TandemError('cancelled', `transfer cancelled${byPeer ? ' by peer' : ''}: ${reason}`));
  }

  /**
   * @internal The connection under the transfer went away (`pc.close()` fires no
   * `close` on its channels, so the call says so).
   */
  _fail(message) {
    this.#failed(message);
  }

  #failed(message) {
    if (this.#finished()) return;
    this.state = 'failed';
    const err = new TandemError('transfer_failed', message);
    this.emit('error', err);
    this.#reject(err);
    try {
      this.#dc.close();
    } catch {}
  }

  #done(detail) {
    this.state = 'done';
    this.#progress(true);
    this.emit('done', detail);
    this.#resolve(detail);
  }

  // ---- sending -------------------------------------------------------------

  /** @internal */
  async _send(file) {
    const dc = this.#dc;
    const o = this.#opts;
    dc.binaryType = 'arraybuffer';
    dc.bufferedAmountLowThreshold = o.lowWaterMark;
    dc.onmessage = (ev) => {
      const msg = controlMessage(ev.data);
      if (!msg) return;
      if (msg.t === 'ok') {
        this.#done({ sha256: this.sha256 });
        setTimeout(() => dc.close(), 50);
      } else if (msg.t === 'bad') this.#failed(`receiver computed sha256 ${msg.sha256}, sent ${this.sha256}`);
      else if (msg.t === 'cancel') this.#cancelled(msg.reason || 'cancelled', true);
    };
    dc.onclose = () => {
      if (!this.#finished()) this.#failed('data channel closed before the transfer finished');
    };
    if (dc.readyState !== 'open') {
      await new Promise((resolve, reject) => {
        dc.addEventListener('open', resolve, { once: true });
        dc.addEventListener('close', () => reject(new TandemError('transfer_failed', 'data channel closed')), { once: true });
      }).catch(() => {});
      if (dc.readyState !== 'open') return this.#failed('data channel did not open');
    }
    this.state = 'active';
    this.#startedAt = performance.now();
    dc.send(JSON.stringify({ t: 'meta', id: this.id, name: this.name, size: this.size, type: this.type }));
    const hash = new Sha256();
    let queued = 0;
    const drain = () =>
      new Promise((resolve) => {
        const done = () => {
          dc.removeEventListener('bufferedamountlow', done);
          dc.removeEventListener('close', done);
          resolve();
        };
        dc.addEventListener('bufferedamountlow', done);
        dc.addEventListener('close', done);
      });
    try {
      for (const [start, end] of chunkRanges(this.size, o.readSize)) {
        const buf = new Uint8Array(await file.slice(start, end).arrayBuffer());
        hash.update(buf);
        for (const [a, b] of chunkRanges(buf.length, o.chunkSize)) {
          if (this.#finished()) return;
          if (dc.bufferedAmount > o.highWaterMark) await drain();
          if (this.#finished()) return;
          if (dc.readyState !== 'open') return this.#failed('data channel closed during the transfer');
          dc.send(buf.subarray(a, b));
          queued += b - a;
          if (dc.bufferedAmount > this.peakBuffered) this.peakBuffered = dc.bufferedAmount;
          this.bytes = Math.max(0, queued - dc.bufferedAmount);
          this.#progress();
        }
      }
      this.sha256 = hash.hex();
      dc.send(JSON.stringify({ t: 'end', sha256: this.sha256 }));
      this.bytes = this.size;
      this.#progress(true);
    } catch (err) {
      this.#failed(String(err?.message || err));
    }
  }

  // ---- receiving -----------------------------------------------------------

  /** @internal Wire an incoming channel whose `meta` message was already read. */
  _receive() {
    const dc = this.#dc;
    const hash = new Sha256();
    const parts = [];
    this.state = 'active';
    this.#startedAt = performance.now();
    dc.onmessage = (ev) => {
      if (this.#finished()) return;
      if (typeof ev.data !== 'string') {
        const chunk = new Uint8Array(ev.data);
        hash.update(chunk);
        parts.push(chunk);
        this.bytes += chunk.length;
        if (this.bytes > this.size) return this.#failed(`received more than the announced ${this.size} bytes`);
        this.#progress();
        return;
      }
      const msg = controlMessage(ev.data);
      if (!msg) return;
      if (msg.t === 'cancel') this.#cancelled(msg.reason || 'cancelled', true);
      else if (msg.t === 'end') {
        this.sha256 = hash.hex();
        if (this.bytes !== this.size || msg.sha256 !== this.sha256) {
          dc.send(JSON.stringify({ t: 'bad', sha256: this.sha256 }));
          this.#failed(this.bytes !== this.size ? `received ${this.bytes} of ${this.size} bytes` : `sha256 mismatch: got ${this.sha256}, sender says ${msg.sha256}`);
          return;
        }
        dc.send(JSON.stringify({ t: 'ok' }));
        this.blob = new Blob(parts, { type: this.type });
        this.#done({ sha256: this.sha256, blob: this.blob });
      }
    };
    dc.onclose = () => {
      if (!this.#finished()) this.#failed('data channel closed before the transfer finished');
    };
  }
}

/** Start sending `file` (a File or Blob) on a new channel of `pc`. */
export function sendFile(pc, peer, file, opts = {}) {
  const id = newId();
  const dc = pc.createDataChannel(FILE_LABEL_PREFIX + id, { ordered: true, protocol: FILE_PROTOCOL });
  const meta = { id, name: opts.name || file.name || 'file', size: file.size, type: file.type };
  const t = new FileTransfer('send', dc, meta, peer, opts);
  t._send(file);
  return t;
}

/**
 * Wire an incoming file channel: resolves with the FileTransfer once the `meta`
 * message arrived (null if the channel closed first).
 */
export function acceptFileChannel(dc, peer, opts = {}) {
  dc.binaryType = 'arraybuffer';
  return new Promise((resolve) => {
    dc.onmessage = (ev) => {
      const msg = controlMessage(ev.data);
      if (msg?.t !== 'meta') return;
      const t = new FileTransfer('receive', dc, msg, peer, opts);
      t._receive();
      resolve(t);
    };
    dc.onclose = () => resolve(null);
  });
}
