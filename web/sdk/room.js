// A joined room: participants with presence and metadata, room chat with acks and
// history paging, peer signaling. Created by `client.join()`.

import { Emitter } from './emitter.js';
import { Call } from './call.js';

/** A participant as the SDK shows it. The object stays the same across reconnects. */
export class Participant {
  constructor(info, isLocal = false) {
    this.isLocal = isLocal;
    this._update(info);
  }
  _update(info) {
    this.sid = info.sid;
    this.identity = info.identity;
    this.name = info.name ?? this.name ?? null;
    this.metadata = info.metadata ?? {};
    this.joinedAt = info.joined_at ?? this.joinedAt ?? Date.now();
  }
  /** Display name: the token's name, else `metadata.name`, else the identity. */
  get displayName() {
    return this.name || (this.metadata && typeof this.metadata === 'object' && this.metadata.name) || this.identity;
  }
}

/**
 * Events: `participantJoined` (p), `participantLeft` (p, reason),
 * `participantUpdated` (p), `signal` ({from, fromIdentity, participant, data}),
 * `mediaMode` ('mesh' | 'sfu'), `reconnecting`, `reconnected`, `removed` (reason),
 * `left`.
 */
export class Room extends Emitter {
  /** @type {Map<string, Participant>} remote participants by sid */
  participants = new Map();
  /** @type {Participant|null} */
  localParticipant = null;
  /** @type {'joining'|'joined'|'reconnecting'|'left'} */
  state = 'joining';
  /**
   * How media travels in this room, as the server says (`media_mode`): `mesh` (peer
   * to peer; also when the server runs no SFU) or `sfu`. A call follows it by itself.
   * @type {'mesh'|'sfu'}
   */
  mediaMode = 'mesh';

  #client;
  #onDone;
  #metadata;
  #chat = null;
  #byIdentity = new Map();
  /** @internal the running Call, if any */
  _call = null;

  constructor(client, name, metadata, onDone) {
    super();
    this.#client = client;
    this.name = name;
    this.#metadata = metadata;
    this.#onDone = onDone;
  }

  get client() {
    return this.#client;
  }

  /** The remote participant with this identity, if present. */
  participantByIdentity(identity) {
    return this.#byIdentity.get(identity);
  }

  /** Send a `signal` payload to one participant (by sid). */
  signal(to, data) {
    return this.#client.request('signal', { room: this.name, to, data });
  }

  /** Replace this participant's metadata (presence); everyone gets participantUpdated. */
  async setMetadata(metadata) {
    await this.#client.request('update', { room: this.name, metadata });
    this.#metadata = metadata;
    if (this.localParticipant) this.localParticipant.metadata = metadata;
  }

  /**
   * Start a mesh call in this room (camera/microphone unless disabled in `opts`).
   * Resolves once local media is acquired and offers to the others are under way.
   */
  async call(opts = {}) {
    const call = new Call(this, opts);
    await call.start();
    return call;
  }

  /** Room chat on `room:NAME:chat` (subscribed on first use). */
  get chat() {
    if (!this.#chat) this.#chat = new Chat(this, `room:${this.name}:chat`);
    return this.#chat;
  }

  async leave() {
    if (this.state === 'left') return;
    const wasJoined = this.#client.connected;
    this.state = 'left';
    this.#onDone();
    try {
      await this.#chat?._close();
      if (wasJoined) await this.#client.request('leave', { room: this.name });
    } catch (err) {
      if (!['not_joined', 'connection_lost', 'closed'].includes(err.code)) throw err;
    } finally {
      this.#finish();
    }
  }

  // ---- called by the client -------------------------------------------------

  async _join() {
    const res = await this.#client.request('join', this.#joinBody());
    this.#applyJoin(res, false);
    this.state = 'joined';
  }

  async _rejoin() {
    // 'joining': the first join is still waiting to be sent; it goes out next.
    if (this.state === 'left' || this.state === 'joining') return;
    try {
      const res = await this.#client.request('join', this.#joinBody(), { internal: true });
      this.#applyJoin(res, true);
      this.state = 'joined';
      this.emit('reconnected');
    } catch (err) {
      if (err.code === 'connection_lost') return; // next reconnect tries again
      this.state = 'left';
      this.#onDone();
      this.emit('removed', err.code);
      this.#finish();
    }
  }

  _onConnectionLost() {
    if (this.state === 'joined') {
      this.state = 'reconnecting';
      this.emit('reconnecting');
    }
  }

  _onClosed() {
    if (this.state === 'left') return;
    this.state = 'left';
    this.#finish();
  }

  _onPush(msg) {
    if (this.state === 'left') return;
    switch (msg.type) {
      case 'participant_joined': {
        const info = msg.participant;
        if (info.sid === this.localParticipant?.sid) return;
        let p = this.#byIdentity.get(info.identity);
        if (p) {
          // Same identity on a new connection (it reconnected): same object, new sid.
          this.participants.delete(p.sid);
          p._update(info);
        } else {
          p = new Participant(info);
          this.#byIdentity.set(p.identity, p);
        }
        this.participants.set(p.sid, p);
        this.emit('participantJoined', p);
        return;
      }
      case 'participant_updated': {
        const info = msg.participant;
        if (info.sid === this.localParticipant?.sid) {
          this.localParticipant._update(info);
          this.emit('participantUpdated', this.localParticipant);
          return;
        }
        const p = this.participants.get(info.sid);
        if (!p) return;
        p._update(info);
        this.emit('participantUpdated', p);
        return;
      }
      case 'participant_left': {
        const p = this.participants.get(msg.sid);
        if (!p) return;
        this.participants.delete(msg.sid);
        if (this.#byIdentity.get(p.identity) === p) this.#byIdentity.delete(p.identity);
        this.emit('participantLeft', p, msg.reason);
        return;
      }
      case 'media_mode':
        if (msg.mode === this.mediaMode) return;
        this.mediaMode = msg.mode;
        this.emit('mediaMode', msg.mode);
        return;
      case 'tracks':
      case 'sfu_offer':
      case 'sfu_closed':
      case 'sfu_layers':
      case 'active_speakers':
        // The SFU connection's own signaling, handled by the call (sfu.js).
        this.emit('_sfu', msg);
        return;
      case 'removed':
        this.state = 'left';
        this.#onDone();
        this.emit('removed', msg.reason);
        this.#finish();
        return;
      case 'signal': {
        const detail = {
          from: msg.from,
          fromIdentity: msg.from_identity,
          participant: this.participants.get(msg.from) || this.#byIdentity.get(msg.from_identity) || null,
          data: msg.data,
        };
        if (msg.data?.kind === 'tandem-rtc') {
          // The SDK's own call signaling. An offer (or a file sender's request for a
          // side connection) while this participant is not in a call: say so, so the
          // other side drops it (and fails the file at once) instead of waiting.
          if (this._call && !this._call.closed) this.emit('_rtc', detail);
          else if (msg.data.description?.type === 'offer' || (msg.data.hello && msg.data.side)) this.signal(msg.from, { kind: 'tandem-rtc', nocall: true }).catch(() => {});
          return;
        }
        this.emit('signal', detail);
        return;
      }
    }
  }

  // ---- internals -------------------------------------------------------------

  #joinBody() {
    const body = { room: this.name };
    if (this.#metadata !== undefined) body.metadata = this.#metadata;
    return body;
  }

  #applyJoin(res, rejoin) {
    if (this.localParticipant) this.localParticipant._update(res.participant);
    else this.localParticipant = new Participant(res.participant, true);
    const seen = new Set();
    const joined = [];
    const updated = [];
    for (const info of res.participants || []) {
      seen.add(info.identity);
      let p = this.#byIdentity.get(info.identity);
      if (p) {
        if (p.sid !== info.sid) this.participants.delete(p.sid);
        p._update(info);
        updated.push(p);
      } else {
        p = new Participant(info);
        this.#byIdentity.set(p.identity, p);
        joined.push(p);
      }
      this.participants.set(p.sid, p);
    }
    if (rejoin) {
      for (const [sid, p] of [...this.participants]) {
        if (seen.has(p.identity)) continue;
        this.participants.delete(sid);
        this.#byIdentity.delete(p.identity);
        this.emit('participantLeft', p, 'disconnected');
      }
      for (const p of updated) this.emit('participantUpdated', p);
      for (const p of joined) this.emit('participantJoined', p);
    }
  }

  #finish() {
    this.#chat?._close().catch(() => {});
    for (const p of this.participants.values()) this.emit('participantLeft', p, 'left');
    this.participants.clear();
    this.#byIdentity.clear();
    this.emit('left');
  }
}

/**
 * Room chat. Events: `message` ({offset, from, data, text, ts, mine}) exactly once per
 * message in order (also across reconnects), `gap` when history could not cover a
 * disconnection. `send()` resolves with the server's ack `{offset, epoch}`.
 */
export class Chat extends Emitter {
  #room;
  #sub;
  #oldest = null; // lowest offset loaded so far (history paging)
  #earliest = null;

  constructor(room, channel) {
    super();
    this.#room = room;
    this.channel = channel;
    this.#sub = room.client.subscribe(channel);
    this.#sub.on('publication', (pub) => {
      const msg = this.#toMessage(pub);
      if (this.#oldest === null) this.#oldest = msg.offset;
      this.emit('message', msg);
    });
    this.#sub.on('gap', (gap) => this.emit('gap', gap));
    this.#sub.on('error', (err) => this.emit('error', err));
  }

  /** Resolves once subscribed. */
  get ready() {
    return this.#sub.ready.then(() => this);
  }
  get subscription() {
    return this.#sub;
  }
  /** False once "load older" reached the start of the retained history. */
  get hasMore() {
    return this.#oldest === null || this.#oldest > Math.max(1, this.#earliest ?? 1);
  }

  /** Send a chat message (a string becomes `{text}`); resolves with the ack. */
  send(message) {
    const data = typeof message === 'string' ? { text: message } : message;
    return this.#sub.publish(data);
  }

  /**
   * Load the `limit` messages older than anything loaded so far ("load older").
   * The first call returns the newest history. Resolves with messages in ascending order.
   */
  async loadOlder(limit = 50) {
    await this.#sub.ready;
    const before = this.#oldest ?? this.#sub.cursor.offset + 1;
    if (before <= 1) {
      this.#oldest = 1;
      return [];
    }
    const res = await this.#sub.history({ before, limit });
    this.#earliest = res.earliest;
    const msgs = res.publications.map((p) => this.#toMessage({ ...p, channel: this.channel }));
    if (msgs.length) this.#oldest = msgs[0].offset;
    else this.#oldest = Math.max(1, res.earliest || 1);
    return msgs;
  }

  async _close() {
    await this.#sub.unsubscribe();
  }

  #toMessage(pub) {
    const data = pub.data;
    return {
      offset: pub.offset,
      from: pub.from ?? null,
      data,
      text: data && typeof data === 'object' && typeof data.text === 'string' ? data.text : typeof data === 'string' ? data : null,
      ts: pub.ts,
      mine: pub.from !== undefined && pub.from === this.#room.localParticipant?.identity,
    };
  }
}
