// Calls. In mesh mode: one RTCPeerConnection per remote participant, the server only
// relays signaling. Perfect negotiation (no glare when both sides offer at once),
// ICE restart when a connection fails, ICE servers from the server's connect reply,
// camera/microphone with mute, screen share as an extra track, a peer-to-peer data
// channel for room data, file transfer and per-peer stats. In SFU mode the media goes
// through the server's SFU (`sfu.js`); the room's `media_mode` pushes switch between
// the two, and remote tracks reach the app through the same Peer objects and events
// whichever path carries them (see "Migration" below). Files always go peer to peer:
// in SFU mode over a data-only side connection (see "Files in SFU mode" below).

import { Emitter } from './emitter.js';
import { TandemError } from './errors.js';
import { sendFile, acceptFileChannel, FILE_LABEL_PREFIX } from './files.js';
import { peerStats } from './stats.js';
import { SfuLeg } from './sfu.js';
import { preferCodec } from './codecs.js';

const SIGNAL_KIND = 'tandem-rtc';
/** Mesh signals kept per participant while in SFU mode (replayed if the room goes back). */
const MAX_PARKED = 64;

/**
 * One remote participant in the call. Events: `state` (connectionState),
 * `track` ({track, stream, source}), `trackRemoved` ({track, stream, source}),
 * `media` ({audio, video, screen}), `stats` (summary), `closed`.
 */
export class Peer extends Emitter {
  /** @type {RTCPeerConnection|null} the mesh connection (null while media goes via the SFU) */
  pc = null;
  /** Remote media by source: 'camera' (audio+video stream) and 'screen'. */
  streams = new Map();
  /** What the remote says it is sending. */
  media = { audio: false, video: false, screen: false };
  /** Latest stats summary (see stats.js), refreshed every `statsInterval`. */
  stats = null;
  closed = false;
  /**
   * True while `pc` is a data-only side connection for files in SFU mode (the media
   * comes through the SFU); it becomes the mesh connection if the room goes back.
   */
  side = false;

  constructor(identity, sid, polite) {
    super();
    this.identity = identity;
    this.sid = sid;
    this.polite = polite;
    /** Remote tracks by path, to tell when the new path covers the old (migration). */
    this.meshTracks = new Set();
    this.sfuTracks = new Map(); // track → SFU track info
    this.sfuStreams = new Map(); // 'camera' | 'screen' → MediaStream built from SFU tracks
    /** Requested video width per source (`setVideoSize`), re-applied to new SFU tracks. */
    this.videoSize = new Map();
    /** File transfers in flight over `pc`, either way (they keep a side connection open). */
    this.transfers = new Set();
    this._resetMesh();
  }

  /** Mesh connection state, fresh for a new connection to the same participant. */
  _resetMesh() {
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
    this.lossyDc = null;
    this.screenSenders = [];
    this.meshStreams = new Map();
    this.side = false;
    /** Side connection: remote tracks and media state held until it becomes the mesh one. */
    this.sideTracks = [];
    this.sideMedia = null;
    clearTimeout(this.graceTimer);
    clearTimeout(this.restartTimer);
    clearTimeout(this.stuckTimer);
    clearTimeout(this.idleTimer);
    clearTimeout(this.connectTimer);
    this.graceTimer = null;
    this.restartTimer = null;
    this.stuckTimer = null;
    this.idleTimer = null;
    this.connectTimer = null;
  }

  /** `mesh` or `sfu`: the path this participant's media currently arrives on. */
  get via() {
    return this.pc && !this.side ? 'mesh' : 'sfu';
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
 * `data` ({peer, identity, data, lossy}), `file` (FileTransfer incoming), `stats` (Map),
 * `mediaError` (Error), `mode` ('mesh' | 'sfu'), `activeSpeakers`
 * ([{peer, identity, level}], SFU mode), `closed`.
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
  /** 'mesh' or 'sfu' (the room's `media_mode`), and the SFU connection when used. */
  #mode = 'mesh';
  /** @type {SfuLeg|null} */
  #leg = null;
  /** Mesh signals received in SFU mode, by identity (see #parkSignal). */
  #parked = new Map();
  #migrationTimer = null;

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
      simulcast: true,
      videoCodec: null,
      migrationTimeoutMs: 8000,
      fileIdleMs: 15000,
      fileConnectTimeoutMs: 15000,
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
  /** `mesh` or `sfu`: how this call's media travels now (the room's `media_mode`). */
  get mode() {
    return this.#mode;
  }
  /** The SFU connection while in SFU mode (for stats and debugging), else null. */
  get sfu() {
    return this.#leg;
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
      room.on('mediaMode', (mode) => this.#mediaReady && this.#setMode(mode)),
      room.on('_sfu', (msg) => this.#leg?._onPush(msg)),
      // A token refresh brings fresh TURN credentials in its reply.
      room.client.on('refreshed', () => this.#useFreshIceServers()),
    );
    if (this.#opts.localStream) this.localStream = this.#opts.localStream;
    else if (this.#opts.audio || this.#opts.video) this.localStream = await this.#acquire(this.#opts.audio, this.#opts.video);
    if (this.closed) return this;
    this.#mediaReady = true;
    if (this.localStream) {
      for (const track of this.localStream.getTracks()) {
        // Peers created by offers that arrived while the devices were starting.
        for (const peer of this.peers.values()) {
          if (!peer.closed && peer.pc && !peer.side && !peer.pc.getSenders().some((s) => s.track === track)) peer.pc.addTrack(track, this.localStream);
        }
        this.emit('localTrack', { track, stream: this.localStream, source: track.kind === 'audio' ? 'microphone' : 'camera' });
      }
    }
    if (room.mediaMode === 'sfu') {
      this.#mode = 'sfu';
      for (const sig of this.#early.splice(0)) this.#onSignal(sig);
      this.#startSfu();
    } else {
      this.#startMesh();
      for (const sig of this.#early.splice(0)) this.#onSignal(sig);
    }
    if (this.#opts.statsInterval > 0) this.#statsTimer = setInterval(() => this.refreshStats(), this.#opts.statsInterval);
    return this;
  }

  /** Mute / unmute the microphone (acquires it when the call started without audio). */
  async setMicrophoneEnabled(on) {
    this.#audioEnabled = on;
    let track = this.localStream?.getAudioTracks()[0];
    if (!track && on) track = await this.#addLocalTrack('audio');
    if (track) track.enabled = on;
    if (track) await this.#leg?.setMuted(track, !on);
    this.#broadcastMedia();
  }

  /** Turn the camera off / on (acquires it when the call started without video). */
  async setCameraEnabled(on) {
    this.#videoEnabled = on;
    let track = this.localStream?.getVideoTracks()[0];
    if (!track && on) track = await this.#addLocalTrack('video');
    if (track) track.enabled = on;
    if (track) await this.#leg?.setMuted(track, !on);
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
        if (!peer.closed && peer.pc && !peer.side) peer.screenSenders.push(peer.pc.addTrack(track, stream));
      }
      this.#leg?.addTrack(track, stream, 'screen').catch((err) => this.emit('mediaError', err));
      this.emit('localTrack', { track, stream, source: 'screen' });
    }
    this.#broadcastMedia();
    return stream;
  }

  stopScreenShare() {
    const stream = this.screenStream;
    if (!stream) return;
    this.screenStream = null;
    for (const track of stream.getTracks()) this.#leg?.removeTrack(track).catch(() => {});
    for (const peer of this.peers.values()) {
      if (peer.closed || !peer.pc) continue;
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
   * Send room data (JSON value, string or ArrayBuffer) to everyone, or to one
   * identity with `{to}`; `{lossy: true}` sends unordered without retransmissions
   * (for state that the next message supersedes, e.g. cursors). Mesh: over each peer
   * connection; SFU mode: once, through the SFU, which tells receivers the sender
   * (`to` is then applied by the receiving SDKs and needs a JSON value). Returns how
   * many peers it was sent to (SFU mode: the other participants, once sent).
   */
  sendData(data, { to, lossy = false } = {}) {
    const binary = data instanceof ArrayBuffer || ArrayBuffer.isView(data);
    if (binary && to && this.#mode === 'sfu') throw new TandemError('bad_argument', "binary data with 'to' needs a mesh connection");
    const payload = binary ? data : JSON.stringify(to ? { t: 'data', data, to } : { t: 'data', data });
    if (this.#mode === 'sfu') return this.#leg?.send(payload, { lossy }) ? this.#room.participants.size : 0;
    let n = 0;
    for (const peer of this.peers.values()) {
      if (to && peer.identity !== to) continue;
      const dc = lossy ? peer.lossyDc : peer.dc;
      if (dc?.readyState === 'open') {
        dc.send(payload);
        n++;
      }
    }
    return n;
  }

  /**
   * Send a file (File or Blob) to one participant (identity or Participant), always
   * peer to peer: over the mesh connection, or in SFU mode over a data-only side
   * connection opened (or reused) for it. Returns a FileTransfer
   * (progress/done/cancelled/error events, `promise`, `cancel()`).
   */
  sendFile(to, file, opts = {}) {
    const identity = typeof to === 'string' ? to : to?.identity;
    if (!file || typeof file.size !== 'number' || typeof file.slice !== 'function') throw new TandemError('bad_argument', 'sendFile needs a File or Blob');
    let peer = this.peers.get(identity);
    if (!peer || peer.closed || !peer.pc) {
      const p = this.#room.participantByIdentity(identity);
      if (this.closed || this.#mode !== 'sfu' || !p || p.isLocal) throw new TandemError('participant_not_found', `no peer-to-peer connection to '${identity}'`);
      peer = this.#openSide(p);
    }
    const transfer = sendFile(peer.pc, peer, file, opts);
    this.#trackTransfer(peer, transfer);
    return transfer;
  }

  /**
   * Fresh stats for every peer: Map identity → summary (see stats.js). In SFU mode
   * each peer shows the summary of the connection to the server.
   */
  async refreshStats() {
    const out = new Map();
    const leg = this.#leg;
    let sfu = null;
    if (leg?.pc) {
      try {
        sfu = leg.stats = await peerStats(leg.pc, leg.stats);
      } catch {}
    }
    await Promise.all(
      [...this.peers.values()].map(async (peer) => {
        if (peer.closed) return;
        try {
          if (!peer.pc || (peer.side && sfu)) {
            if (!sfu) return;
            peer.stats = sfu;
            out.set(peer.identity, sfu);
            peer.emit('stats', sfu);
            return;
          }
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
    clearTimeout(this.#migrationTimer);
    this.#leg?.close();
    this.#leg = null;
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
    for (const peer of this.peers.values()) if (!peer.closed && peer.pc && !peer.side) peer.pc.addTrack(track, this.localStream);
    await this.#leg?.addTrack(track, this.localStream, kind === 'audio' ? 'microphone' : 'camera');
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
    // In SFU mode the server tells the others (`muted` in its `tracks` push).
    if (this.#mode === 'sfu') return;
    const media = this.#mediaState();
    for (const peer of this.peers.values()) this.#signal(peer, { media, sources: this.#sources() });
  }

  // ---- peers -----------------------------------------------------------------

  /** Puts `videoCodec` first on every video transceiver before an offer or answer. */
  #preferVideoCodec(pc) {
    if (!this.#opts.videoCodec) return;
    for (const t of pc.getTransceivers()) {
      if (t.receiver.track?.kind === 'video' && !t.stopped) preferCodec(t, this.#opts.videoCodec);
    }
  }

  #iceServers() {
    return this.#opts.iceServers || this.#room.client.iceServers || [];
  }

  /**
   * New ICE servers from the server (a reconnect or a token refresh carries fresh
   * TURN credentials): every open connection takes them for its next gathering (an
   * ICE restart), so a restart late in a long call does not use expired ones.
   */
  #useFreshIceServers() {
    const iceServers = this.#iceServers();
    for (const peer of this.peers.values()) {
      if (peer.closed || !peer.pc) continue;
      try {
        peer.pc.setConfiguration({ ...peer.pc.getConfiguration(), iceServers });
      } catch {}
    }
    this.#leg?.useIceServers();
  }

  /** The Peer for `identity`, created (and announced with `peerJoined`) if needed. */
  #peerFor(identity, sid) {
    let peer = this.peers.get(identity);
    if (peer && !peer.closed) {
      if (sid) peer.sid = sid;
      return peer;
    }
    const local = this.#room.localParticipant?.identity ?? '';
    peer = new Peer(identity, sid, local < identity);
    this.peers.set(identity, peer);
    this.emit('peerJoined', peer);
    return peer;
  }

  /** The Peer for `identity` with a mesh connection (opened now if it has none). */
  #ensurePeer(identity, sid, initiate) {
    const peer = this.#peerFor(identity, sid);
    if (!peer.pc) this.#openMesh(peer, initiate);
    return peer;
  }

  #openMesh(peer, initiate) {
    peer._resetMesh();
    const pc = new RTCPeerConnection({ ...this.#opts.rtcConfig, iceServers: this.#iceServers() });
    peer.pc = pc;
    // Opened in SFU mode, it only carries files (see "Files in SFU mode").
    peer.side = this.#mode === 'sfu';

    // Room data: negotiated channels per peer, present in the very first offer.
    peer.dc = pc.createDataChannel('tandem', { negotiated: true, id: 0, ordered: true });
    peer.lossyDc = pc.createDataChannel('tandem-lossy', { negotiated: true, id: 1, ordered: false, maxRetransmits: 0 });
    for (const dc of [peer.dc, peer.lossyDc]) {
      dc.binaryType = 'arraybuffer';
      dc.onmessage = (ev) => peer.pc === pc && this.#onData(peer, peer.identity, ev.data, dc === peer.lossyDc);
    }
    peer.dc.onopen = () => !peer.side && this.#signal(peer, { media: this.#mediaState(), sources: this.#sources() });
    peer.dc.onclose = () => {
      // The remote closed its connection (tab closed, left, side connection idle): no
      // need to wait for the ICE timeout when it is also gone from the room.
      if (peer.pc !== pc) return;
      if (peer.side) this.#dropSide(peer, 'the peer-to-peer connection closed');
      else if (!peer.sid) this.#closePeer(peer);
    };

    if (peer.side) this.#watchSide(peer, pc);
    else {
      if (this.localStream) for (const t of this.localStream.getTracks()) pc.addTrack(t, this.localStream);
      if (this.screenStream) for (const t of this.screenStream.getTracks()) peer.screenSenders.push(pc.addTrack(t, this.screenStream));
    }

    pc.onnegotiationneeded = async () => {
      if (!initiate && !peer.heardFrom) return; // answer first; tracks ride along in the answer
      try {
        peer.makingOffer = true;
        this.#preferVideoCodec(pc);
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
  }

  #onPcState(peer) {
    if (peer.closed || !peer.pc) return;
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
    // On a side connection the SFU carries this participant's media: hold the track
    // until the connection becomes the mesh one (the other side switched first).
    if (peer.side) return void peer.sideTracks.push(ev);
    const track = ev.track;
    const stream = ev.streams[0] || new MediaStream([track]);
    const declared = peer.remoteSources[stream.id];
    const source = declared === 'screen' ? 'screen' : track.kind === 'audio' ? 'microphone' : 'camera';
    const key = source === 'screen' ? 'screen' : 'camera';
    peer.streams.set(key, stream);
    peer.meshStreams.set(key, stream);
    peer.meshTracks.add(track);
    const detail = { peer, track, stream, source };
    let gone = false;
    const removed = () => {
      if (gone) return;
      gone = true;
      peer.meshTracks.delete(track);
      // Superseded by the SFU's copy (migration): the app keeps showing that one.
      if (peer.streams.get(key) !== stream) return;
      if (key === 'screen') peer.streams.delete('screen');
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

  #onData(peer, identity, raw, lossy) {
    if (typeof raw !== 'string') {
      this.emit('data', { peer, identity, data: raw, lossy });
      return;
    }
    let msg;
    try {
      msg = JSON.parse(raw);
    } catch {
      return;
    }
    if (msg.to && msg.to !== this.#room.localParticipant?.identity) return;
    if (msg.t === 'data') this.emit('data', { peer, identity, data: msg.data, lossy });
  }

  async #onDataChannel(peer, dc) {
    if (!dc.label.startsWith(FILE_LABEL_PREFIX)) return;
    const transfer = await acceptFileChannel(dc, peer);
    if (!transfer || this.closed) return;
    this.#trackTransfer(peer, transfer);
    this.emit('file', transfer);
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
    // Without a mesh connection nothing can keep flowing: the server ended its SFU
    // session with its socket, and a rejoin brings its tracks back.
    if (reason === 'left' || reason === 'removed' || !peer.pc) return this.#closePeer(peer);
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
    // The server ended our SFU session with the old socket: start a new one (its
    // connection is built with the fresh ICE servers).
    this.#leg?.restart();
    this.#useFreshIceServers();
    for (const peer of this.peers.values()) {
      if (peer.closed || !peer.pc) continue;
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
    this.#failTransfers(peer, `the connection to '${peer.identity}' closed`);
    clearTimeout(peer.graceTimer);
    clearTimeout(peer.restartTimer);
    clearTimeout(peer.stuckTimer);
    clearTimeout(peer.idleTimer);
    clearTimeout(peer.connectTimer);
    try {
      peer.pc?.close();
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

  // ---- SFU mode: what the app asks for ----------------------------------------

  /**
   * Tell the SFU how wide (in CSS pixels × devicePixelRatio, or any pixel count) the
   * app shows `who`'s video (`source` camera or screen): the server then never sends
   * a simulcast layer larger than needed, and picks within that bound from its
   * bandwidth estimate. `null` removes the bound. Kept across migrations and applied
   * to the participant's future tracks; has no effect in mesh mode (no layers).
   */
  async setVideoSize(who, width, { source = 'camera' } = {}) {
    if (width !== null && !(Number.isFinite(width) && width > 0)) throw new TandemError('bad_argument', `video width must be a positive number of pixels or null, not ${width}`);
    const peer = this.#peerOf(who);
    const w = width === null ? null : Math.max(1, Math.round(width));
    peer.videoSize.set(source, w);
    await Promise.all(this.#sfuVideo(peer, source).filter((t) => t.layers.length).map((t) => this.#leg.setLayer(t.id, 'auto', w)));
  }

  /**
   * Pin `who`'s simulcast layer (`rid`: one of the track's layers, e.g. `q`), or
   * `auto` to let the server choose again. SFU mode only.
   */
  async setVideoLayer(who, rid, { source = 'camera' } = {}) {
    if (typeof rid !== 'string' || !rid) throw new TandemError('bad_argument', `layer must be a rid string such as "q" or "auto", not ${rid}`);
    const peer = this.#peerOf(who);
    const tracks = this.#sfuVideo(peer, source);
    if (!tracks.length) throw new TandemError('bad_argument', `no ${source} video from '${peer.identity}' through the SFU`);
    const w = rid === 'auto' ? peer.videoSize.get(source) : undefined;
    await Promise.all(tracks.map((t) => this.#leg.setLayer(t.id, rid, w)));
  }

  /**
   * Stop (or resume) receiving `who`'s media in SFU mode, e.g. for tiles scrolled
   * out of view: `kind` 'video' | 'audio' | undefined (both), `source` optional.
   */
  async setSubscribed(who, enabled, { kind, source } = {}) {
    const peer = this.#peerOf(who);
    const infos = [...peer.sfuTracks.values()].filter((t) => (!kind || t.kind === kind) && (!source || t.source === source));
    await Promise.all(infos.map((t) => this.#leg.setSubscribed(t.id, !!enabled)));
  }

  /**
   * Show `who`'s `source` stream in `video` and keep the SFU informed of its size
   * (ResizeObserver → setVideoSize). Returns a function that stops watching.
   */
  attach(video, who, { source = 'camera' } = {}) {
    const identity = typeof who === 'string' ? who : who.identity;
    const show = () => {
      const stream = this.peers.get(identity)?.streams.get(source);
      if (stream && video.srcObject !== stream) video.srcObject = stream;
    };
    show();
    const offTrack = this.on('track', ({ peer }) => peer.identity === identity && show());
    let last = 0;
    const resize = new ResizeObserver(() => {
      const w = Math.round(video.clientWidth * (globalThis.devicePixelRatio || 1));
      if (!w || w === last || !this.peers.has(identity)) return;
      last = w;
      this.setVideoSize(identity, w, { source }).catch(() => {});
    });
    resize.observe(video);
    return () => {
      offTrack();
      resize.disconnect();
    };
  }

  #peerOf(who) {
    const identity = typeof who === 'string' ? who : who?.identity;
    const peer = this.peers.get(identity);
    if (!peer || peer.closed) throw new TandemError('participant_not_found', `'${identity}' is not in this call`);
    return peer;
  }

  #sfuVideo(peer, source) {
    if (!this.#leg) return [];
    return [...peer.sfuTracks.values()].filter((t) => t.kind === 'video' && t.source === source);
  }

  // ---- modes and migration ---------------------------------------------------
  //
  // The room's `media_mode` push decides the path. On a change the new path is set
  // up first (the SFU connection, or mesh connections to everyone); its tracks reach
  // the app as `track` events on the same Peer objects, replacing the old streams;
  // once the new path carries at least as many tracks from every peer as the old
  // one (or after `migrationTimeoutMs`), the old path is closed without telling the
  // app about the tracks that were replaced. Brief freezes are expected.

  #setMode(mode) {
    if (this.closed || mode === this.#mode || (mode !== 'sfu' && mode !== 'mesh')) return;
    this.#mode = mode;
    if (mode === 'sfu') this.#startSfu();
    else this.#startMesh();
    this.emit('mode', mode);
  }

  /** Opens mesh connections to every participant that has none. */
  #startMesh() {
    const room = this.#room;
    // The side that starts later opens the connections: to an impolite peer it sends
    // `hello` (the impolite side then offers), to a polite one it offers itself. So
    // two calls starting at the same instant do not both offer: the first offer
    // always comes from the impolite side. (Perfect negotiation still settles later
    // glare; Chromium can break ICE gathering on the polite side's implicit rollback
    // of an offer whose gathering is under way, so the first offer avoids it.)
    // Signals parked during SFU mode go first: a peer that switched back before us
    // may already have offered.
    const parked = [...this.#parked.values()].flat();
    this.#parked.clear();
    for (const sig of parked) this.#onSignal(sig);
    for (const p of room.participants.values()) {
      const peer = this.peers.get(p.identity);
      // A side connection (files) becomes the mesh connection: no new handshake.
      if (peer?.pc && peer.side && !peer.closed) this.#upgradeSide(peer);
      else if (!peer?.pc) this.#connectMesh(p);
    }
    if (this.#leg) this.#retireWhenCovered('sfu');
  }

  /** Opens the mesh connection to participant `p` (see #startMesh for who offers). */
  #connectMesh(p) {
    const local = this.#room.localParticipant?.identity ?? '';
    if (local > p.identity) this.#ensurePeer(p.identity, p.sid, true);
    else this.#room.signal(p.sid, { kind: SIGNAL_KIND, hello: true }).catch(() => {});
  }

  #startSfu() {
    this.#parked.clear();
    if (!this.#leg) {
      const leg = new SfuLeg(this.#room, {
        simulcast: this.#opts.simulcast,
        rtcConfig: this.#opts.rtcConfig,
        iceServers: () => this.#iceServers(),
        videoCodec: this.#opts.videoCodec,
      });
      this.#leg = leg;
      leg.on('track', (t) => this.#onSfuTrack(t));
      leg.on('trackEnded', (t) => this.#onSfuTrackEnded(t));
      leg.on('trackMuted', (t) => this.#onSfuTrackMuted(t));
      leg.on('data', ({ sid, payload, lossy }) => this.#onSfuData(sid, payload, lossy));
      leg.on('speakers', (list) => this.#onSpeakers(list));
      leg.on('error', (err) => console.warn('tandem: sfu negotiation failed', err));
      const tracks = [];
      if (this.localStream) for (const track of this.localStream.getTracks()) tracks.push({ track, stream: this.localStream, source: track.kind === 'audio' ? 'microphone' : 'camera' });
      if (this.screenStream) for (const track of this.screenStream.getTracks()) tracks.push({ track, stream: this.screenStream, source: 'screen' });
      leg.start(tracks).catch(() => {});
    }
    if ([...this.peers.values()].some((p) => p.pc && !p.side)) this.#retireWhenCovered('mesh');
  }

  /** Closes the `old` path once the current one covers it, or after the timeout. */
  #retireWhenCovered(old) {
    clearTimeout(this.#migrationTimer);
    const mode = this.#mode;
    const deadline = Date.now() + this.#opts.migrationTimeoutMs;
    const check = () => {
      if (this.closed || this.#mode !== mode) return;
      if (Date.now() < deadline && !this.#covered(old)) {
        this.#migrationTimer = setTimeout(check, 250);
        return;
      }
      if (old === 'mesh') {
        for (const peer of [...this.peers.values()]) {
          if (!peer.pc || peer.side) continue;
          // A file in flight keeps its connection, without media, until it ends.
          if (peer.transfers.size) this.#demoteToSide(peer);
          else this.#dropMesh(peer);
        }
      } else {
        const leg = this.#leg;
        this.#leg = null;
        leg?.close();
      }
    };
    check();
  }

  #covered(old) {
    const peers = [...this.peers.values()].filter((p) => !p.closed);
    if (old === 'mesh') {
      if (this.#leg?.connectionState !== 'connected') return false;
      return peers.every((p) => !p.pc || p.side || p.sfuTracks.size >= p.meshTracks.size);
    }
    const live = (p) => [...p.sfuTracks.values()].filter((t) => !(t.muted && t.source === 'screen')).length;
    return peers.every((p) => live(p) === 0 || (p.pc?.connectionState === 'connected' && p.meshTracks.size >= live(p)));
  }

  /**
   * Closes `peer`'s mesh connection. The Peer stays while the SFU carries its media
   * (its mesh-only tracks are reported removed); otherwise it is gone.
   */
  #dropMesh(peer) {
    if (!peer.sfuTracks.size && this.#mode === 'mesh') return this.#closePeer(peer);
    this.#closeLink(peer, `the connection to '${peer.identity}' closed`);
    if (!this.#room.participantByIdentity(peer.identity)) this.#closePeer(peer);
  }

  /** Closes `peer`'s peer-to-peer connection (mesh or side); the Peer stays. */
  #closeLink(peer, why) {
    this.#failTransfers(peer, why);
    const pc = peer.pc;
    this.#forgetMeshMedia(peer);
    peer.pc = null;
    peer._resetMesh();
    try {
      pc?.close();
    } catch {}
  }

  /** Reports `peer`'s mesh-only streams removed (those the SFU's did not replace). */
  #forgetMeshMedia(peer) {
    for (const [key, stream] of peer.meshStreams) {
      if (peer.streams.get(key) !== stream) continue;
      peer.streams.delete(key);
      for (const track of stream.getTracks()) {
        const detail = { peer, track, stream, source: key === 'screen' ? 'screen' : track.kind === 'audio' ? 'microphone' : 'camera' };
        peer.emit('trackRemoved', detail);
        this.emit('trackRemoved', detail);
      }
    }
    peer.meshStreams = new Map();
    peer.meshTracks.clear();
  }

  /** Mesh signals in SFU mode: kept only from each peer's latest hello or offer on. */
  #parkSignal(sig) {
    const d = sig.data;
    const id = sig.fromIdentity;
    if (d.hello || d.description?.type === 'offer') this.#parked.set(id, [sig]);
    else if (d.candidate && this.#parked.has(id) && this.#parked.get(id).length < MAX_PARKED) this.#parked.get(id).push(sig);
  }

  // ---- files in SFU mode: data-only side connections ---------------------------
  //
  // Files never go through the server. In SFU mode `sendFile` opens a peer-to-peer
  // connection without media to the receiver, negotiated exactly like a mesh one
  // (same Peer, same perfect negotiation, ICE servers and restarts; its signals say
  // `side` so the receiver does not park them as it parks mesh signals in SFU mode).
  // It is reused for further files and closed (with a `bye`) once no transfer has
  // used it for `fileIdleMs`. A mesh connection carrying a file when the room moves
  // to the SFU stays, stripped of its media, as a side connection until the file is
  // done; a side connection becomes the mesh connection when the room moves back.

  /** Opens a side connection to participant `p`; the same side rule as #connectMesh. */
  #openSide(p) {
    const peer = this.#peerFor(p.identity, p.sid);
    const local = this.#room.localParticipant?.identity ?? '';
    const initiate = local > p.identity;
    this.#openMesh(peer, initiate);
    if (!initiate) this.#signal(peer, { hello: true });
    return peer;
  }

  /** A new side connection: fail its files if it never connects, close it when idle. */
  #watchSide(peer, pc) {
    peer.connectTimer = setTimeout(() => {
      if (peer.pc === pc && peer.side && pc.connectionState !== 'connected') this.#dropSide(peer, `could not connect peer to peer to '${peer.identity}'`);
    }, this.#opts.fileConnectTimeoutMs);
    this.#idleSide(peer);
  }

  #trackTransfer(peer, transfer) {
    peer.transfers.add(transfer);
    clearTimeout(peer.idleTimer);
    const done = () => {
      peer.transfers.delete(transfer);
      this.#idleSide(peer);
    };
    transfer.promise.then(done, done);
  }

  /** (Re)starts the idle timer of a side connection that carries no file now. */
  #idleSide(peer) {
    clearTimeout(peer.idleTimer);
    if (!peer.side || peer.closed || peer.transfers.size) return;
    const pc = peer.pc;
    peer.idleTimer = setTimeout(() => {
      if (peer.pc !== pc || !peer.side || peer.transfers.size) return;
      this.#signal(peer, { bye: true });
      this.#dropSide(peer, 'idle');
    }, this.#opts.fileIdleMs);
  }

  /** Closes a side connection; a Peer that only existed for it goes too. */
  #dropSide(peer, why) {
    this.#closeLink(peer, why);
    if (!peer.sfuTracks.size || !this.#room.participantByIdentity(peer.identity)) this.#closePeer(peer);
  }

  /** Mesh → SFU with a file in flight: keep the connection for the file, without media. */
  #demoteToSide(peer) {
    const pc = peer.pc;
    peer.side = true;
    this.#forgetMeshMedia(peer);
    // Renegotiates (tagged `side`); the SCTP association and its channels carry on.
    for (const sender of pc.getSenders()) {
      try {
        if (sender.track) pc.removeTrack(sender);
      } catch {}
    }
    peer.screenSenders = [];
    this.#idleSide(peer);
  }

  /** SFU → mesh: the side connection takes the media and becomes the mesh connection. */
  #upgradeSide(peer) {
    const pc = peer.pc;
    peer.side = false;
    clearTimeout(peer.idleTimer);
    clearTimeout(peer.connectTimer);
    if (this.localStream) for (const t of this.localStream.getTracks()) pc.addTrack(t, this.localStream);
    if (this.screenStream) for (const t of this.screenStream.getTracks()) peer.screenSenders.push(pc.addTrack(t, this.screenStream));
    // What the other side sent while this was a side connection (it switched first).
    if (peer.sideMedia) {
      peer.media = peer.sideMedia;
      peer.sideMedia = null;
      peer.emit('media', peer.media);
      this.emit('peerMedia', peer);
    }
    for (const ev of peer.sideTracks.splice(0)) {
      const stream = ev.streams[0];
      if (ev.track.readyState === 'live' && (!stream || stream.getTracks().includes(ev.track))) this.#onTrack(peer, ev);
    }
    this.#signal(peer, { media: this.#mediaState(), sources: this.#sources() });
  }

  /** Fails `peer`'s file transfers: the connection under them is going away. */
  #failTransfers(peer, why) {
    for (const t of [...peer.transfers]) t._fail(why);
  }

  // ---- SFU mode: remote tracks onto Peers ------------------------------------

  #identityOf(sid) {
    return this.#room.participants.get(sid)?.identity ?? sid;
  }

  #onSfuTrack(info) {
    const peer = this.#peerFor(this.#identityOf(info.sid), info.sid);
    peer.sfuTracks.set(info.track, info);
    if (info.kind === 'video' && info.layers.length) {
      const w = peer.videoSize.get(info.source);
      if (w) this.#leg?.setLayer(info.id, 'auto', w).catch(() => {});
    }
    // A stopped screen share stays on the server as a muted track.
    if (!(info.muted && info.source === 'screen')) this.#showSfuTrack(peer, info);
    this.#updateSfuMedia(peer);
  }

  #onSfuTrackEnded(info) {
    const peer = this.peers.get(this.#identityOf(info.sid));
    if (!peer) return;
    peer.sfuTracks.delete(info.track);
    this.#hideSfuTrack(peer, info);
    this.#updateSfuMedia(peer);
  }

  #onSfuTrackMuted(info) {
    const peer = this.peers.get(this.#identityOf(info.sid));
    if (!peer) return;
    peer.sfuTracks.set(info.track, info);
    if (info.source === 'screen') {
      if (info.muted) this.#hideSfuTrack(peer, info);
      else this.#showSfuTrack(peer, info);
    }
    this.#updateSfuMedia(peer);
  }

  #sfuKey(info) {
    return info.source === 'screen' || info.source === 'screen_audio' ? 'screen' : 'camera';
  }

  #sfuDetail(peer, info, stream) {
    const source = this.#sfuKey(info) === 'screen' ? 'screen' : info.kind === 'audio' ? 'microphone' : 'camera';
    return { peer, track: info.track, stream, source };
  }

  #showSfuTrack(peer, info) {
    const key = this.#sfuKey(info);
    let stream = peer.sfuStreams.get(key);
    if (!stream) peer.sfuStreams.set(key, (stream = new MediaStream()));
    if (!stream.getTracks().includes(info.track)) stream.addTrack(info.track);
    peer.streams.set(key, stream);
    const detail = this.#sfuDetail(peer, info, stream);
    peer.emit('track', detail);
    this.emit('track', detail);
  }

  #hideSfuTrack(peer, info) {
    const key = this.#sfuKey(info);
    const stream = peer.sfuStreams.get(key);
    if (!stream?.getTracks().includes(info.track)) return;
    stream.removeTrack(info.track);
    const current = peer.streams.get(key) === stream;
    if (!stream.getTracks().length) {
      peer.sfuStreams.delete(key);
      if (current) peer.streams.delete(key);
    }
    if (!current) return; // superseded by a mesh stream
    const detail = this.#sfuDetail(peer, info, stream);
    peer.emit('trackRemoved', detail);
    this.emit('trackRemoved', detail);
  }

  #updateSfuMedia(peer) {
    if (peer.pc && !peer.side) return; // a mesh peer says it itself
    const live = [...peer.sfuTracks.values()].filter((t) => !t.muted);
    const media = {
      audio: live.some((t) => t.kind === 'audio' && t.source !== 'screen_audio'),
      video: live.some((t) => t.kind === 'video' && t.source !== 'screen'),
      screen: live.some((t) => t.source === 'screen'),
    };
    if (JSON.stringify(media) === JSON.stringify(peer.media)) return;
    peer.media = media;
    peer.emit('media', media);
    this.emit('peerMedia', peer);
  }

  #onSfuData(sid, payload, lossy) {
    const identity = this.#identityOf(sid);
    this.#onData(this.peers.get(identity) ?? null, identity, payload, lossy);
  }

  #onSpeakers(list) {
    const speakers = list.map(({ participant, level }) => {
      const identity = this.#identityOf(participant);
      return { peer: this.peers.get(identity) ?? null, identity, level };
    });
    this.emit('activeSpeakers', speakers);
  }

  // ---- signaling -------------------------------------------------------------

  #signal(peer, data) {
    if (peer.closed) return;
    // Unknown sid (the peer is reconnecting), or we are: hold it until both are back.
    if (!peer.sid || this.#room.state !== 'joined') {
      peer.outbox.push(data);
      return;
    }
    // `side` lets a receiver in SFU mode tell them from mesh signals (which it parks).
    const tagged = peer.side ? { ...data, side: true } : data;
    this.#room.signal(peer.sid, { kind: SIGNAL_KIND, ...tagged }).catch((err) => {
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
    // In SFU mode mesh signals wait (in case the room goes back); side connections
    // (files) and the connection already open to this peer are handled now.
    if (this.#mode === 'sfu' && !data.bye && !data.nocall && !data.side && (data.hello || !this.peers.get(identity)?.pc)) {
      this.#parkSignal({ from, fromIdentity, data });
      return;
    }
    if (data.hello) {
      // A polite peer started its call: open the connection with an offer. An
      // existing connection it never answered is our offer crossing its hello (both
      // started at once): keep it. One it did answer is from its previous session
      // (page reloaded): start over.
      const old = this.peers.get(identity);
      if (old?.pc && !old.closed && !old.heardFrom) {
        old.sid = from;
        return;
      }
      if (old?.pc) this.#dropMesh(old);
      this.#ensurePeer(identity, from, true);
      return;
    }
    if (data.nocall || data.bye) {
      // Handled at once, not queued: signals that follow (a fresh offer when the
      // other side starts its call) belong to a new connection.
      const old = this.peers.get(identity);
      if (!old?.pc) return;
      if (old.side) return this.#dropSide(old, data.nocall ? `'${identity}' is not in a call` : `'${identity}' closed the connection`);
      // Its side connection closed while ours had become the mesh one: connect anew.
      const p = data.side && this.#mode === 'mesh' && this.#room.participantByIdentity(identity);
      if (!p) return this.#dropMesh(old);
      this.#closeLink(old, `'${identity}' closed the connection`);
      this.#connectMesh(p);
      return;
    }
    const peer = this.#ensurePeer(identity, from, false);
    peer.sid = from;
    peer.chain = peer.chain.then(() => this.#handleSignal(peer, data)).catch((err) => {
      if (!peer.closed) console.warn('tandem: signal handling failed', err);
    });
  }

  async #handleSignal(peer, data) {
    if (peer.closed || !peer.pc) {
      // Closed while this signal waited in its queue: a new offer starts a new connection.
      if (data.description?.type === 'offer' && !this.closed) this.#onSignal({ from: peer.sid, fromIdentity: peer.identity, data: { kind: SIGNAL_KIND, ...data } });
      return;
    }
    const pc = peer.pc;
    if (data.sources) Object.assign(peer.remoteSources, data.sources);
    if (data.media && peer.side) peer.sideMedia = data.media;
    else if (data.media) {
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
        this.#preferVideoCodec(pc);
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
