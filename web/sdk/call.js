// Calls in mesh mode: one RTCPeerConnection per remote participant, the server only
// relays signaling. Perfect negotiation (no glare when both sides offer at once),
// ICE restart when a connection fails, ICE servers from the server's connect reply,
// camera/microphone with mute, screen share as an extra track, a peer-to-peer data
// channel for room data, file transfer and per-peer stats.

import { Emitter } from './emitter.js';
import { TandemError } from './errors.js';
import { sendFile, acceptFileChannel, FILE_LABEL_PREFIX } from './files.js';
import { peerStats } from './stats.js';

const SIGNAL_KIND = 'tandem-rtc';

/**
 * One remote participant's connection. Events: `state` (connectionState),
 * `track` ({track, stream, source}), `trackRemoved` ({track, stream, source}),
 * `media` ({audio, video, screen}), `stats` (summary), `closed`.
 */
export class Peer extends Emitter {
  /** @type {RTCPeerConnection} */
  pc;
  /** Remote media by source: 'camera' (audio+video stream) and 'screen'. */
  streams = new Map();
  /** What the remote says it is sending. */
  media = { audio: false, video: false, screen: false };
  /** Latest stats summary (see stats.js), refreshed every `statsInterval`. */
  stats = null;
  closed = false;

  constructor(identity, sid, polite) {
    super();
    this.identity = identity;
    this.sid = sid;
    this.polite = polite;
    this.makingOffer = false;
    this.ignoreOffer = false;
    this.heardFrom = false;
    /** Offers that crossed ours (glare), settled by perfect negotiation. */
    this.collisions = 0;
    /** ICE restarts because ICE never started after a negotiation. */
    this.stuckRestarts = 0;
    this.outbox = [];
    this.remoteSources = {};
    this.chain = Promise.resolve();
    this.dc = null;
    this.screenSenders = [];
    this.graceTimer = null;
    this.restartTimer = null;
    this.stuckTimer = null;
  }

  get connectionState() {
    return this.pc?.connectionState ?? 'closed';
  }
}

/**
 * A mesh call in a room. Create with `room.call(opts)` / `new Call(room, opts)` and
 * `await call.start()`. Events: `peerJoined` (peer), `peerLeft` (peer),
 * `peerState` (peer, state), `track` ({peer, track, stream, source}),
 * `trackRemoved` ({peer, track, stream, source}), `peerMedia` (peer),
 * `localTrack` ({track, stream, source}), `localTrackRemoved` ({track, source}),
 * `data` ({peer, identity, data}), `file` (FileTransfer incoming), `stats` (Map),
 * `mediaError` (Error), `closed`.
 */
export class Call extends Emitter {
  /** @type {Map<string, Peer>} by identity */
  peers = new Map();
  /** @type {MediaStream|null} camera + microphone */
  localStream = null;
  /** @type {MediaStream|null} */
  screenStream = null;
  closed = false;

  #room;
  #opts;
  #offs = [];
  #statsTimer = null;
  /** Signals that arrived while local media was starting, replayed once it is up. */
  #early = [];
  #mediaReady = false;
  #audioEnabled = true;
  #videoEnabled = true;

  /**
   * @param {import('./room.js').Room} room
   * @param {object} [opts] see index.d.ts `CallOptions`
   */
  constructor(room, opts = {}) {
    super();
    this.#room = room;
    this.#opts = {
      audio: true,
      video: true,
      localStream: null,
      rtcConfig: {},
      iceServers: null,
      peerGraceMs: 8000,
      statsInterval: 2000,
      iceRestartDelayMs: 2500,
      ...opts,
    };
  }

  get room() {
    return this.#room;
  }
  get microphoneEnabled() {
    return !!this.localStream?.getAudioTracks().length && this.#audioEnabled;
  }
  get cameraEnabled() {
    return !!this.localStream?.getVideoTracks().length && this.#videoEnabled;
  }
  get screenSharing() {
    return !!this.screenStream;
  }

  /** Acquire camera/microphone (unless disabled) and connect to everyone in the room. */
  async start() {
    const room = this.#room;
    if (room._call && room._call !== this && !room._call.closed) throw new TandemError('already_in_call', 'this room already has a call');
    room._call = this;
    this.#offs.push(
      room.on('_rtc', (s) => this.#onSignal(s)),
      room.on('participantJoined', (p) => this.#onParticipantPresent(p)),
      room.on('participantUpdated', (p) => this.#onParticipantPresent(p)),
      room.on('participantLeft', (p, reason) => this.#onParticipantLeft(p, reason)),
      room.on('reconnected', () => this.#onRoomReconnected()),
      room.on('left', () => this.close()),
      room.on('removed', () => this.close()),
    );
    if (this.#opts.localStream) this.localStream = this.#opts.localStream;
    else if (this.#opts.audio || this.#opts.video) this.localStream = await this.#acquire(this.#opts.audio, this.#opts.video);
    if (this.closed) return this;
    this.#mediaReady = true;
    if (this.localStream) {
      for (const track of this.localStream.getTracks()) {
        // Peers created by offers that arrived while the devices were starting.
        for (const peer of this.peers.values()) {
          if (!peer.closed && !peer.pc.getSenders().some((s) => s.track === track)) peer.pc.addTrack(track, this.localStream);
        }
        this.emit('localTrack', { track, stream: this.localStream, source: track.kind === 'audio' ? 'microphone' : 'camera' });
      }
    }
    // The side that starts later opens the connections: to an impolite peer it sends
    // `hello` (the impolite side then offers), to a polite one it offers itself. So
    // two calls starting at the same instant do not both offer: the first offer
    // always comes from the impolite side. (Perfect negotiation still settles later
    // glare; Chromium can break ICE gathering on the polite side's implicit rollback
    // of an offer whose gathering is under way, so the first offer avoids it.)
    const local = room.localParticipant?.identity ?? '';
    for (const p of room.participants.values()) {
      if (local > p.identity) this.#ensurePeer(p.identity, p.sid, true);
      else room.signal(p.sid, { kind: SIGNAL_KIND, hello: true }).catch(() => {});
    }
    for (const sig of this.#early.splice(0)) this.#onSignal(sig);
    if (this.#opts.statsInterval > 0) this.#statsTimer = setInterval(() => this.refreshStats(), this.#opts.statsInterval);
    return this;
  }

  /** Mute / unmute the microphone (acquires it when the call started without audio). */
  async setMicrophoneEnabled(on) {
    this.#audioEnabled = on;
    let track = this.localStream?.getAudioTracks()[0];
    if (!track && on) track = await this.#addLocalTrack('audio');
    if (track) track.enabled = on;
    this.#broadcastMedia();
  }

  /** Turn the camera off / on (acquires it when the call started without video). */
  async setCameraEnabled(on) {
    this.#videoEnabled = on;
    let track = this.localStream?.getVideoTracks()[0];
    if (!track && on) track = await this.#addLocalTrack('video');
    if (track) track.enabled = on;
    this.#broadcastMedia();
  }

  /**
   * Share the screen (getDisplayMedia) as an extra video track. Resolves with the
   * screen MediaStream. Stops by itself when the user ends it in the browser UI.
   */
  async startScreenShare(constraints = { video: true, audio: false }) {
    if (this.screenStream) return this.screenStream;
    const stream = await navigator.mediaDevices.getDisplayMedia(constraints);
    this.screenStream = stream;
    for (const track of stream.getTracks()) {
      track.addEventListener('ended', () => this.stopScreenShare());
      for (const peer of this.peers.values()) {
        if (!peer.closed) peer.screenSenders.push(peer.pc.addTrack(track, stream));
      }
      this.emit('localTrack', { track, stream, source: 'screen' });
    }
    this.#broadcastMedia();
    return stream;
  }

  stopScreenShare() {
    const stream = this.screenStream;
    if (!stream) return;
    this.screenStream = null;
    for (const peer of this.peers.values()) {
      if (peer.closed) continue;
      for (const sender of peer.screenSenders) {
        try {
          peer.pc.removeTrack(sender);
        } catch {}
      }
      peer.screenSenders = [];
    }
    for (const track of stream.getTracks()) {
      track.stop();
      this.emit('localTrackRemoved', { track, source: 'screen' });
    }
    this.#broadcastMedia();
  }

  /**
   * Send room data peer-to-peer (JSON value, string or ArrayBuffer) to everyone, or
   * to one identity with `{to}`. Returns how many peers it was sent to.
   */
  sendData(data, { to } = {}) {
    const binary = data instanceof ArrayBuffer || ArrayBuffer.isView(data);
    const payload = binary ? data : JSON.stringify({ t: 'data', data });
    let n = 0;
    for (const peer of this.peers.values()) {
      if (to && peer.identity !== to) continue;
      if (peer.dc?.readyState === 'open') {
        peer.dc.send(payload);
        n++;
      }
    }
    return n;
  }

  /**
   * Send a file (File or Blob) to one participant (identity or Participant).
   * Returns a FileTransfer (progress/done/cancelled/error events, `promise`, `cancel()`).
   */
  sendFile(to, file, opts = {}) {
    const identity = typeof to === 'string' ? to : to.identity;
    const peer = this.peers.get(identity);
    if (!peer || peer.closed) throw new TandemError('participant_not_found', `no connection to '${identity}'`);
    return sendFile(peer.pc, peer, file, opts);
  }

  /** Fresh stats for every peer: Map identity → summary (see stats.js). */
  async refreshStats() {
    const out = new Map();
    await Promise.all(
      [...this.peers.values()].map(async (peer) => {
        if (peer.closed) return;
        try {
          peer.stats = await peerStats(peer.pc, peer.stats);
          out.set(peer.identity, peer.stats);
          peer.emit('stats', peer.stats);
        } catch {}
      }),
    );
    this.emit('stats', out);
    return out;
  }

  /** Hang up: close every peer connection and stop local media. */
  close() {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.#statsTimer);
    for (const off of this.#offs) off();
    this.#offs = [];
    if (this.#room._call === this) this.#room._call = null;
    for (const peer of [...this.peers.values()]) {
      // Still in the room: tell the others to drop their side now.
      if (peer.sid && this.#room.state === 'joined') this.#room.signal(peer.sid, { kind: SIGNAL_KIND, bye: true }).catch(() => {});
      this.#closePeer(peer);
    }
    if (!this.#opts.localStream) this.localStream?.getTracks().forEach((t) => t.stop());
    this.screenStream?.getTracks().forEach((t) => t.stop());
    this.screenStream = null;
    this.emit('closed');
  }

  // ---- media -----------------------------------------------------------------

  async #acquire(audio, video) {
    const md = navigator.mediaDevices;
    try {
      return await md.getUserMedia({ audio, video });
    } catch (err) {
      this.emit('mediaError', err);
      // Fall back to whatever is available (no camera, camera busy …).
      for (const c of [{ audio, video: false }, { audio: false, video }]) {
        if (!c.audio && !c.video) continue;
        try {
          return await md.getUserMedia(c);
        } catch {}
      }
      return null;
    }
  }

  async #addLocalTrack(kind) {
    const stream = await navigator.mediaDevices.getUserMedia({ [kind]: kind === 'video' ? this.#opts.video || true : this.#opts.audio || true });
    const track = stream.getTracks()[0];
    if (!this.localStream) this.localStream = new MediaStream();
    this.localStream.addTrack(track);
    for (const peer of this.peers.values()) if (!peer.closed) peer.pc.addTrack(track, this.localStream);
    this.emit('localTrack', { track, stream: this.localStream, source: kind === 'audio' ? 'microphone' : 'camera' });
    return track;
  }

  #mediaState() {
    return { audio: this.microphoneEnabled, video: this.cameraEnabled, screen: this.screenSharing };
  }

  #sources() {
    const s = {};
    if (this.localStream) s[this.localStream.id] = 'camera';
    if (this.screenStream) s[this.screenStream.id] = 'screen';
    return s;
  }

  #broadcastMedia() {
    const media = this.#mediaState();
    for (const peer of this.peers.values()) this.#signal(peer, { media, sources: this.#sources() });
  }

  // ---- peers -----------------------------------------------------------------

  #iceServers() {
    return this.#opts.iceServers || this.#room.client.iceServers || [];
  }

  #ensurePeer(identity, sid, initiate) {
    let peer = this.peers.get(identity);
    if (peer && !peer.closed) {
      if (sid) peer.sid = sid;
      return peer;
    }
    const local = this.#room.localParticipant?.identity ?? '';
    peer = new Peer(identity, sid, local < identity);
    const pc = new RTCPeerConnection({ ...this.#opts.rtcConfig, iceServers: this.#iceServers() });
    peer.pc = pc;
    this.peers.set(identity, peer);

    // Room data: one negotiated channel per peer, present in the very first offer.
    peer.dc = pc.createDataChannel('tandem', { negotiated: true, id: 0, ordered: true });
    peer.dc.binaryType = 'arraybuffer';
    peer.dc.onopen = () => this.#signal(peer, { media: this.#mediaState(), sources: this.#sources() });
    peer.dc.onmessage = (ev) => this.#onData(peer, ev.data);
    peer.dc.onclose = () => {
      // The remote closed its connection (tab closed, left): no need to wait for
      // the ICE timeout when it is also gone from the room.
      if (!peer.sid) this.#closePeer(peer);
    };

    if (this.localStream) for (const t of this.localStream.getTracks()) pc.addTrack(t, this.localStream);
    if (this.screenStream) for (const t of this.screenStream.getTracks()) peer.screenSenders.push(pc.addTrack(t, this.screenStream));

    pc.onnegotiationneeded = async () => {
      if (!initiate && !peer.heardFrom) return; // answer first; tracks ride along in the answer
      try {
        peer.makingOffer = true;
        await pc.setLocalDescription();
        this.#signal(peer, { description: pc.localDescription.toJSON(), sources: this.#sources(), media: this.#mediaState() });
      } catch (err) {
        if (!peer.closed) console.warn('tandem: offer failed', err);
      } finally {
        peer.makingOffer = false;
      }
    };
    pc.onicecandidate = ({ candidate }) => {
      if (candidate) this.#signal(peer, { candidate: candidate.toJSON() });
    };
    pc.onconnectionstatechange = () => this.#onPcState(peer);
    pc.onsignalingstatechange = () => {
      if (pc.signalingState !== 'stable' || !pc.remoteDescription) return;
      // Negotiated, yet ICE never starts: Chromium can lose the polite side's
      // candidates after the implicit rollback of a glare. An ICE restart from the
      // impolite side (the polite one later, as a fallback) gathers afresh.
      clearTimeout(peer.stuckTimer);
      peer.stuckTimer = setTimeout(() => {
        if (!peer.closed && peer.sid && pc.connectionState === 'new' && pc.signalingState === 'stable' && peer.stuckRestarts < 3) {
          peer.stuckRestarts++;
          pc.restartIce();
        }
      }, peer.polite ? 3000 : 1500);
    };
    pc.oniceconnectionstatechange = () => {
      if (pc.iceConnectionState === 'failed' && peer.sid && !peer.closed) pc.restartIce();
    };
    pc.ontrack = (ev) => this.#onTrack(peer, ev);
    pc.ondatachannel = (ev) => this.#onDataChannel(peer, ev.channel);
    this.emit('peerJoined', peer);
    return peer;
  }

  #onPcState(peer) {
    if (peer.closed) return;
    const pc = peer.pc;
    const state = pc.connectionState;
    peer.emit('state', state);
    this.emit('peerState', peer, state);
    clearTimeout(peer.restartTimer);
    if (state === 'failed') {
      if (!peer.sid) return this.#closePeer(peer);
      pc.restartIce();
    } else if (state === 'disconnected') {
      // Often transient; restart ICE if it does not come back by itself.
      peer.restartTimer = setTimeout(() => {
        if (!peer.closed && peer.sid && pc.connectionState === 'disconnected') pc.restartIce();
      }, this.#opts.iceRestartDelayMs);
    }
  }

  #onTrack(peer, ev) {
    const track = ev.track;
    const stream = ev.streams[0] || new MediaStream([track]);
    const declared = peer.remoteSources[stream.id];
    const source = declared === 'screen' ? 'screen' : track.kind === 'audio' ? 'microphone' : 'camera';
    const key = source === 'screen' ? 'screen' : 'camera';
    peer.streams.set(key, stream);
    const detail = { peer, track, stream, source };
    let gone = false;
    const removed = () => {
      if (gone) return;
      gone = true;
      if (key === 'screen' && peer.streams.get('screen') === stream) peer.streams.delete('screen');
      peer.emit('trackRemoved', detail);
      this.emit('trackRemoved', detail);
    };
    stream.addEventListener('removetrack', (e) => {
      if (e.track === track) removed();
    });
    track.addEventListener('ended', removed);
    peer.emit('track', detail);
    this.emit('track', detail);
  }

  #onData(peer, raw) {
    if (typeof raw !== 'string') {
      this.emit('data', { peer, identity: peer.identity, data: raw });
      return;
    }
    let msg;
    try {
      msg = JSON.parse(raw);
    } catch {
      return;
    }
    if (msg.t === 'data') this.emit('data', { peer, identity: peer.identity, data: msg.data });
  }

  async #onDataChannel(peer, dc) {
    if (!dc.label.startsWith(FILE_LABEL_PREFIX)) return;
    const transfer = await acceptFileChannel(dc, peer);
    if (transfer && !this.closed) this.emit('file', transfer);
  }

  #onParticipantPresent(p) {
    const peer = this.peers.get(p.identity);
    if (!peer || peer.closed) return;
    peer.sid = p.sid;
    clearTimeout(peer.graceTimer);
    const queued = peer.outbox;
    peer.outbox = [];
    for (const data of queued) this.#signal(peer, data);
  }

  #onParticipantLeft(p, reason) {
    const peer = this.peers.get(p.identity);
    if (!peer || peer.closed) return;
    if (reason === 'left' || reason === 'removed') return this.#closePeer(peer);
    // Disconnected from the server, maybe only for a moment: media is peer-to-peer
    // and may still flow, so keep the connection a little while.
    peer.sid = null;
    clearTimeout(peer.graceTimer);
    peer.graceTimer = setTimeout(() => {
      if (!peer.sid) this.#closePeer(peer);
    }, this.#opts.peerGraceMs);
    if (peer.dc?.readyState === 'closed' || ['failed', 'closed'].includes(peer.pc.connectionState)) this.#closePeer(peer);
  }

  #onRoomReconnected() {
    const iceServers = this.#iceServers();
    for (const peer of this.peers.values()) {
      if (peer.closed) continue;
      try {
        peer.pc.setConfiguration({ ...peer.pc.getConfiguration(), iceServers });
      } catch {}
      const queued = peer.outbox;
      peer.outbox = [];
      for (const data of queued) this.#signal(peer, data);
      // The network may have changed under us (Wi-Fi → cellular): a connection that
      // is not up gets an ICE restart now that signaling works again.
      if (peer.sid && ['disconnected', 'failed'].includes(peer.pc.connectionState)) peer.pc.restartIce();
    }
  }

  #closePeer(peer) {
    if (peer.closed) return;
    peer.closed = true;
    clearTimeout(peer.graceTimer);
    clearTimeout(peer.restartTimer);
    clearTimeout(peer.stuckTimer);
    try {
      peer.pc.close();
    } catch {}
    if (this.peers.get(peer.identity) === peer) this.peers.delete(peer.identity);
    for (const [source, stream] of peer.streams) {
      for (const track of stream.getTracks()) {
        const detail = { peer, track, stream, source: source === 'screen' ? 'screen' : track.kind === 'audio' ? 'microphone' : 'camera' };
        this.emit('trackRemoved', detail);
      }
    }
    peer.streams.clear();
    peer.emit('closed');
    this.emit('peerLeft', peer);
  }

  // ---- signaling -------------------------------------------------------------

  #signal(peer, data) {
    if (peer.closed) return;
    // Unknown sid (the peer is reconnecting), or we are: hold it until both are back.
    if (!peer.sid || this.#room.state !== 'joined') {
      peer.outbox.push(data);
      return;
    }
    this.#room.signal(peer.sid, { kind: SIGNAL_KIND, ...data }).catch((err) => {
      if (err.code === 'connection_lost' || err.code === 'participant_not_found') peer.outbox.push(data);
    });
  }

  #onSignal({ from, fromIdentity, data }) {
    if (!data || data.kind !== SIGNAL_KIND || this.closed) return;
    if (!this.#mediaReady) {
      this.#early.push({ from, fromIdentity, data });
      return;
    }
    const identity = fromIdentity;
    if (data.hello) {
      // A polite peer started its call: open the connection with an offer. An
      // existing connection it never answered is our offer crossing its hello (both
      // started at once): keep it. One it did answer is from its previous session
      // (page reloaded): start over.
      const old = this.peers.get(identity);
      if (old && !old.closed && !old.heardFrom) {
        old.sid = from;
        return;
      }
      if (old) this.#closePeer(old);
      this.#ensurePeer(identity, from, true);
      return;
    }
    if (data.nocall || data.bye) {
      // Handled at once, not queued: signals that follow (a fresh offer when the
      // other side starts its call) belong to a new connection.
      const old = this.peers.get(identity);
      if (old) this.#closePeer(old);
      return;
    }
    const peer = this.#ensurePeer(identity, from, false);
    peer.sid = from;
    peer.chain = peer.chain.then(() => this.#handleSignal(peer, data)).catch((err) => {
      if (!peer.closed) console.warn('tandem: signal handling failed', err);
    });
  }

  async #handleSignal(peer, data) {
    if (peer.closed) {
      // Closed while this signal waited in its queue: a new offer starts a new connection.
      if (data.description?.type === 'offer' && !this.closed) this.#onSignal({ from: peer.sid, fromIdentity: peer.identity, data: { kind: SIGNAL_KIND, ...data } });
      return;
    }
    const pc = peer.pc;
    if (data.sources) Object.assign(peer.remoteSources, data.sources);
    if (data.media) {
      peer.media = data.media;
      peer.emit('media', peer.media);
      this.emit('peerMedia', peer);
    }
    if (data.description) {
      const d = data.description;
      const collision = d.type === 'offer' && (peer.makingOffer || pc.signalingState !== 'stable');
      if (collision) peer.collisions++;
      peer.ignoreOffer = !peer.polite && collision;
      peer.heardFrom = true;
      if (peer.ignoreOffer) return;
      await pc.setRemoteDescription(d);
      if (d.type === 'offer') {
        await pc.setLocalDescription();
        this.#signal(peer, { description: pc.localDescription.toJSON(), sources: this.#sources(), media: this.#mediaState() });
      }
    } else if (data.candidate) {
      peer.heardFrom = true;
      try {
        await pc.addIceCandidate(data.candidate);
      } catch (err) {
        if (!peer.ignoreOffer) throw err;
      }
    }
  }
}
