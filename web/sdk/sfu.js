// The SFU leg of a call: one RTCPeerConnection to the server for a room, negotiated
// over the WebSocket as docs/sfu.md ("What a client does") describes. It publishes
// the local tracks (video with simulcast when the browser can), receives everyone's
// tracks, relays room data over the `chat` / `lossy` data channels, and reconnects
// when the server ends the session. It knows nothing of the app-facing Peer objects:
// `call.js` maps what it reports (by participant sid) onto them.

import { Emitter } from './emitter.js';
import { preferCodec } from './codecs.js';
import { backoffDelay } from './backoff.js';

/** Data channel labels on the SFU connection (relayed by label to everyone else). */
export const SFU_CHANNELS = { reliable: 'chat', lossy: 'lossy' };

/**
 * Simulcast encodings for a camera track `width` pixels wide, lowest layer first
 * (the SFU starts subscribers on the first): three layers from 960 px, two from
 * 480 px, none below (small video gains nothing from layers, and Chromium itself
 * drops layers for small inputs). Bitrates scale with the pixels of each layer.
 */
export function simulcastEncodings(width, height) {
  if (!(width >= 480)) return null;
  const layers = width >= 960 ? [['q', 4], ['h', 2], ['f', 1]] : [['h', 2], ['f', 1]];
  return layers.map(([rid, scale]) => ({
    rid,
    scaleResolutionDownBy: scale,
    maxBitrate: Math.round(Math.max(80000, ((width / scale) * ((height || (width * 9) / 16) / scale)) * 1.5)),
  }));
}

/** Splits a message relayed by the SFU into its sender's sid and the payload. */
export function unwrapRelayed(raw) {
  if (typeof raw === 'string') {
    const at = raw.indexOf('\n');
    return at < 0 ? null : { sid: raw.slice(0, at), payload: raw.slice(at + 1) };
  }
  const bytes = new Uint8Array(raw);
  const at = bytes.indexOf(10);
  if (at < 0) return null;
  return { sid: new TextDecoder().decode(bytes.subarray(0, at)), payload: bytes.slice(at + 1).buffer };
}

/**
 * Events: `track` ({sid, id, source, kind, track, muted}), `trackEnded` (same),
 * `trackMuted` (same, with the new `muted`), `data` ({sid, payload, lossy}),
 * `state` (connectionState), `speakers` ([{participant, level}]), `error` (Error).
 */
export class SfuLeg extends Emitter {
  /** @type {RTCPeerConnection|null} */
  pc = null;
  closed = false;

  #room;
  #opts;
  /** Local tracks to publish: track → {source, stream, transceiver}. */
  #local = new Map();
  /** Remote: mid → track info from the `tracks` push; mid → MediaStreamTrack. */
  #meta = new Map();
  #remote = new Map();
  /** mid → the info announced with `track` (so ends and mutes are reported once). */
  #announced = new Map();
  #channels = {};
  /** Negotiation steps (own offers, answers to server offers) run one at a time. */
  #chain = Promise.resolve();
  #ownOfferPending = false;
  #generation = 0;
  /** Failed connections in a row, and the pending delayed restart (see `#restartAfterFailure`). */
  #failures = 0;
  #retryTimer = null;
  /** mid → simulcast rids the server last asked this publisher to send (`sfu_layers`). */
  #wantedLayers = new Map();
  /** Sender parameter changes run one at a time (getParameters/setParameters pairs). */
  #params = Promise.resolve();

  /**
   * @param {import('./room.js').Room} room
   * @param {{simulcast?: boolean|RTCRtpEncodingParameters[], rtcConfig?: RTCConfiguration,
   *   iceServers?: () => RTCIceServer[], videoCodec?: string}} opts  `iceServers` is asked
   *   at every (re)connect, so fresh TURN credentials are used; `videoCodec` (e.g.
   *   `h264`) goes first in the video offer.
   */
  constructor(room, opts = {}) {
    super();
    this.#room = room;
    this.#opts = { simulcast: true, rtcConfig: {}, iceServers: () => [], ...opts };
  }

  get connectionState() {
    return this.pc?.connectionState ?? 'closed';
  }

  /** Remote tracks as the server last listed them (the `tracks` push). */
  get tracks() {
    return [...this.#meta.values()];
  }

  /** Opens the connection and publishes `tracks` ([{track, stream, source}]). */
  start(tracks = []) {
    for (const t of tracks) this.#local.set(t.track, { source: t.source, stream: t.stream, transceiver: null });
    return this.#negotiate(() => this.#connect());
  }

  /** Publishes one more track (screen share, a late camera) and re-offers. */
  addTrack(track, stream, source) {
    if (this.#local.has(track)) return Promise.resolve();
    // A stopped screen share leaves its transceiver muted: reuse it.
    for (const [old, info] of this.#local) {
      if (info.source === source && old.readyState === 'ended' && info.transceiver && old.kind === track.kind) {
        this.#local.delete(old);
        this.#local.set(track, { ...info, stream });
        return this.#negotiate(async () => {
          await info.transceiver.sender.replaceTrack(track);
          await this.#mute(info.transceiver.mid, false);
        });
      }
    }
    this.#local.set(track, { source, stream, transceiver: null });
    return this.#negotiate(() => this.#offer());
  }

  /**
   * Stops sending `track`. The SFU has no "unpublish" yet, so the track is muted on
   * the server (subscribers see `muted` and stop rendering it) and its sender emptied;
   * its m-line is reused by the next track of the same source.
   */
  removeTrack(track) {
    const info = this.#local.get(track);
    if (!info?.transceiver) {
      this.#local.delete(track);
      return Promise.resolve();
    }
    return this.#negotiate(async () => {
      await info.transceiver.sender.replaceTrack(null);
      await this.#mute(info.transceiver.mid, true);
    });
  }

  /** Mutes or unmutes a published track on the server (`sfu_mute`). */
  setMuted(track, muted) {
    const info = this.#local.get(track);
    if (!info) return Promise.resolve();
    return this.#negotiate(() => info.transceiver && this.#mute(info.transceiver.mid, muted));
  }

  /** Pins a layer (`rid`) or bounds the automatic choice (`rid` "auto", `maxWidth`). */
  setLayer(trackId, rid, maxWidth) {
    const body = { room: this.#room.name, track: trackId, rid };
    if (maxWidth !== undefined && maxWidth !== null) body.max_width = maxWidth;
    return this.#room.client.request('sfu_layer', body);
  }

  /** Starts or stops receiving one remote track (`sfu_subscribe`). */
  setSubscribed(trackId, enabled) {
    return this.#room.client.request('sfu_subscribe', { room: this.#room.name, track: trackId, enabled });
  }

  /** Sends room data to everyone else through the SFU; false when not open. */
  send(payload, { lossy = false } = {}) {
    const ch = this.#channels[lossy ? SFU_CHANNELS.lossy : SFU_CHANNELS.reliable];
    if (ch?.readyState !== 'open') return false;
    ch.send(payload);
    return true;
  }

  /** Ends the SFU session (`sfu_leave`) and closes the connection. */
  close({ leave = true } = {}) {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.#retryTimer);
    this.#teardown();
    if (leave && this.#room.state === 'joined') this.#room.client.request('sfu_leave', { room: this.#room.name }).catch(() => {});
    this.emit('state', 'closed');
  }

  /** Called by the call with the room's SFU pushes (`tracks`, `sfu_offer`, …). */
  _onPush(msg) {
    if (this.closed) return;
    switch (msg.type) {
      case 'tracks':
        this.#setTracks(msg.tracks || []);
        return;
      case 'sfu_offer': {
        // An offer that arrives while our own is unanswered was voided by it: the
        // server offers again after replying (docs/protocol.md, negotiation rules).
        if (this.#ownOfferPending) return;
        const gen = this.#generation;
        this.#negotiate(() => gen === this.#generation && this.#answer(msg));
        return;
      }
      case 'sfu_closed':
        // ICE/DTLS timed out or the server lost us: start a fresh session.
        this.#restartAfterFailure();
        return;
      case 'active_speakers':
        this.emit('speakers', msg.speakers || []);
        return;
      case 'sfu_layers':
        this.#setActiveLayers(msg.mid, msg.active || []);
        return;
    }
  }

  /**
   * Gives the open connection the current ICE servers (fresh TURN credentials after
   * a token refresh). It keeps the relay it has; the new ones count from its next
   * gathering, and a restart builds a new connection with them anyway.
   */
  useIceServers() {
    const pc = this.pc;
    if (!pc || this.closed) return;
    try {
      pc.setConfiguration({ ...pc.getConfiguration(), iceServers: this.#opts.iceServers() });
    } catch {}
  }

  /** A new connection and session (after `sfu_closed` or a WebSocket reconnect). */
  restart() {
    clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    if (this.closed) return Promise.resolve();
    this.#teardown();
    return this.#negotiate(() => this.#connect());
  }

  /**
   * A restart after the connection failed, delayed with backoff while failures
   * repeat (a path that cannot work — no reachable relay, say — would otherwise
   * make a new connection, and a new TURN allocation, many times a second).
   */
  #restartAfterFailure() {
    if (this.closed || this.#retryTimer) return;
    const delay = backoffDelay(this.#failures++, { min: 500, max: 15000 });
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      this.restart();
    }, delay);
  }

  // ---- internals -------------------------------------------------------------

  #negotiate(step) {
    const run = this.#chain.then(() => (this.closed ? undefined : step()));
    this.#chain = run.catch((err) => {
      if (!this.closed) this.emit('error', err);
    });
    return run;
  }

  #teardown() {
    this.#generation++;
    this.#wantedLayers.clear();
    for (const mid of [...this.#announced.keys()]) this.#end(mid);
    this.#meta.clear();
    this.#remote.clear();
    for (const info of this.#local.values()) info.transceiver = null;
    for (const ch of Object.values(this.#channels)) ch.onmessage = null;
    this.#channels = {};
    if (this.pc) {
      this.pc.onconnectionstatechange = null;
      this.pc.ontrack = null;
      try {
        this.pc.close();
      } catch {}
      this.pc = null;
    }
  }

  async #connect() {
    // The server is ICE-lite with host candidates in its answer; the call's TURN
    // servers (Tandem's own, from the connect reply) give a relayed path when the
    // SFU's port cannot be reached directly (or with iceTransportPolicy 'relay').
    const pc = new RTCPeerConnection({ ...this.#opts.rtcConfig, iceServers: this.#opts.iceServers() });
    this.pc = pc;
    const gen = this.#generation;
    pc.onconnectionstatechange = () => {
      if (this.pc !== pc) return;
      this.emit('state', pc.connectionState);
      // The server notices too (sfu_closed), but only after its ICE timeout.
      if (pc.connectionState === 'failed') this.#restartAfterFailure();
      if (pc.connectionState === 'connected') this.#failures = 0;
    };
    pc.ontrack = (ev) => {
      if (this.pc !== pc) return;
      this.#remote.set(ev.transceiver.mid, ev.track);
      this.#reconcile();
    };
    this.#channels = {
      [SFU_CHANNELS.reliable]: pc.createDataChannel(SFU_CHANNELS.reliable),
      [SFU_CHANNELS.lossy]: pc.createDataChannel(SFU_CHANNELS.lossy, { ordered: false, maxRetransmits: 0 }),
    };
    for (const [label, ch] of Object.entries(this.#channels)) {
      ch.binaryType = 'arraybuffer';
      ch.onmessage = (ev) => {
        const m = unwrapRelayed(ev.data);
        if (m) this.emit('data', { sid: m.sid, payload: m.payload, lossy: label === SFU_CHANNELS.lossy });
      };
    }
    if (gen === this.#generation) await this.#offer();
  }

  #addTransceivers() {
    for (const [track, info] of this.#local) {
      if (info.transceiver || track.readyState === 'ended') continue;
      const init = { direction: 'sendonly', streams: [info.stream] };
      if (track.kind === 'video' && info.source === 'camera') {
        const s = track.getSettings();
        const sim = this.#opts.simulcast;
        const encodings = Array.isArray(sim) ? sim : sim ? simulcastEncodings(s.width, s.height) : null;
        if (encodings) init.sendEncodings = encodings;
      }
      info.transceiver = this.pc.addTransceiver(track, init);
      if (track.kind === 'video') preferCodec(info.transceiver, this.#opts.videoCodec);
    }
  }

  async #offer() {
    const pc = this.pc;
    this.#addTransceivers();
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    const tracks = {};
    for (const info of this.#local.values()) {
      if (info.transceiver?.mid) tracks[info.transceiver.mid] = { source: info.source };
    }
    this.#ownOfferPending = true;
    let reply;
    try {
      reply = await this.#room.client.request('sfu_offer', { room: this.#room.name, sdp: offer.sdp, tracks });
    } finally {
      this.#ownOfferPending = false;
    }
    if (this.pc !== pc) return;
    await pc.setRemoteDescription({ type: 'answer', sdp: reply.sdp });
    // A muted camera or microphone stays muted in the new session.
    for (const [track, info] of this.#local) {
      if (!track.enabled && info.transceiver?.mid) await this.#mute(info.transceiver.mid, true);
    }
  }

  async #answer(msg) {
    const pc = this.pc;
    await pc.setRemoteDescription({ type: 'offer', sdp: msg.sdp });
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    await this.#room.client.request('sfu_answer', { room: this.#room.name, sdp: answer.sdp, revision: msg.revision });
  }

  async #mute(mid, muted) {
    if (!mid) return;
    await this.#room.client.request('sfu_mute', { room: this.#room.name, mid, muted });
  }

  /**
   * The server says which simulcast layers of our track on `mid` anyone receives:
   * stop encoding the others (saves uplink and CPU) and resume them when listed
   * again. Queued behind earlier parameter changes; only the latest set is applied.
   */
  #setActiveLayers(mid, active) {
    this.#wantedLayers.set(mid, active);
    const pc = this.pc;
    this.#params = this.#params
      .then(() => this.#applyLayers(pc, mid))
      .catch((err) => {
        if (!this.closed && this.pc === pc) this.emit('error', err);
      });
  }

  async #applyLayers(pc, mid) {
    const active = this.#wantedLayers.get(mid);
    if (!active || this.closed || this.pc !== pc) return;
    // Only our own published senders, by mid; an unknown mid is ignored.
    const info = [...this.#local.values()].find((i) => i.transceiver && i.transceiver.mid === mid);
    if (!info) return;
    const sender = info.transceiver.sender;
    const params = sender.getParameters();
    const own = (params.encodings || []).filter((e) => e.rid);
    // Never switch every layer off: a set naming none of our rids is not for us.
    if (!own.some((e) => active.includes(e.rid))) return;
    let changed = false;
    for (const e of own) {
      const on = active.includes(e.rid);
      if (e.active !== on) {
        e.active = on;
        changed = true;
      }
    }
    if (changed) await sender.setParameters(params);
  }

  #setTracks(list) {
    this.#meta = new Map(list.map((t) => [t.mid, t]));
    this.#reconcile();
  }

  /** Reports tracks that have both their `tracks` entry and their `ontrack`. */
  #reconcile() {
    for (const [mid, done] of [...this.#announced]) {
      const meta = this.#meta.get(mid);
      if (!meta || meta.id !== done.id || this.#remote.get(mid) !== done.track) this.#end(mid);
      else if (!!meta.muted !== done.muted) {
        done.muted = !!meta.muted;
        this.emit('trackMuted', { ...done });
      }
    }
    for (const [mid, meta] of this.#meta) {
      const track = this.#remote.get(mid);
      if (!track || this.#announced.has(mid)) continue;
      const info = { sid: meta.participant, id: meta.id, source: meta.source || (meta.kind === 'audio' ? 'microphone' : 'camera'), kind: meta.kind, track, muted: !!meta.muted, layers: meta.layers || [] };
      this.#announced.set(mid, info);
      this.emit('track', { ...info });
    }
  }

  #end(mid) {
    const info = this.#announced.get(mid);
    if (!info) return;
    this.#announced.delete(mid);
    this.emit('trackEnded', info);
  }
}
