// The WebSocket session: requests and replies, keepalive, automatic reconnect with
// backoff and jitter, and channel subscriptions that recover missed publications
// through the protocol's offsets (see docs/protocol.md).

import { Emitter } from './emitter.js';
import { backoffDelay } from './backoff.js';
import { ChannelCursor } from './cursor.js';
import { Room } from './room.js';
import { TandemError } from './errors.js';

export { TandemError };

export const SDK_VERSION = '0.1.0';
export const PROTOCOL_VERSION = 1;

/** Close codes after which reconnecting with the same token cannot help. */
const FATAL_CLOSE = new Set([4001, 4003, 4006]);
/** Error codes a `connect` reply can carry that end the session. */
const FATAL_CONNECT = new Set(['token_invalid', 'token_expired', 'unsupported_protocol', 'too_many_connections', 'forbidden']);

/** `http://host:7880` / `ws://host:7880` / `ws://host:7880/ws` → the socket URL. */
export function normalizeUrl(url, base = globalThis.location?.href) {
  const u = new URL(url, base);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  if (u.pathname === '/' || u.pathname === '') u.pathname = '/ws';
  return u.toString();
}

export class TandemClient extends Emitter {
  /** @type {'idle'|'connecting'|'connected'|'reconnecting'|'disconnected'} */
  state = 'idle';
  /** The `connect` reply of the current session (client_id, identity, ice_servers …). */
  info = null;
  /** Milliseconds of the last `ping()` round trip. */
  rtt = null;

  #url;
  #token;
  #opts;
  #ws = null;
  #authed = false;
  /** After a reconnect, until rooms are rejoined: app requests wait (internal ones go). */
  #resuming = false;
  #nextId = 1;
  #pending = new Map(); // id → {resolve, reject, timer}
  #waiters = []; // requests made while not authenticated
  #subs = new Map(); // channel → Subscription
  #rooms = new Map(); // room name → Room
  #attempt = 0;
  #retryTimer = null;
  #watchdog = null;
  #refreshTimer = null;
  #lastDisconnect = null;
  #closedByUser = false;
  #firstConnect = null; // {resolve, reject} of the pending connect()
  #everConnected = false;
  #onOnline = () => {
    if (this.state === 'reconnecting' && this.#retryTimer) {
      clearTimeout(this.#retryTimer);
      this.#retryTimer = null;
      this.#open();
    }
  };

  /**
   * @param {string} url `ws(s)://host:port/ws` or the server's http(s) address
   * @param {string | (() => string | Promise<string>)} token a JWT, or a function
   *   returning one (called again before every reconnect, so it can refresh it)
   * @param {object} [opts] see index.d.ts `ClientOptions`
   */
  constructor(url, token, opts = {}) {
    super();
    this.#url = normalizeUrl(url);
    this.#token = token;
    this.#opts = {
      requestTimeout: 10000,
      connectTimeout: 20000,
      backoff: {},
      WebSocket: globalThis.WebSocket,
      clientName: `tandem-js/${SDK_VERSION}`,
      ...opts,
    };
  }

  get url() {
    return this.#url;
  }
  /** True while the session is authenticated (requests go out immediately). */
  get connected() {
    return this.#authed;
  }
  get rooms() {
    return new Map(this.#rooms);
  }
  get subscriptions() {
    return new Map(this.#subs);
  }
  /** ICE servers handed out by the server (fresh after every reconnect). */
  get iceServers() {
    return this.info?.ice_servers || [];
  }

  /**
   * Open the session. Resolves with the `connect` reply once authenticated; rejects
   * on an error that reconnecting cannot fix (bad token …) or after `connectTimeout`.
   * Transient failures (server unreachable) are retried with backoff meanwhile.
   */
  connect() {
    if (this.#authed) return Promise.resolve(this.info);
    if (this.#firstConnect) return this.#firstConnect.promise;
    this.#closedByUser = false;
    let resolve, reject;
    const promise = new Promise((res, rej) => ((resolve = res), (reject = rej)));
    const timer =
      this.#opts.connectTimeout > 0
        ? setTimeout(() => {
            if (this.#firstConnect?.promise !== promise) return;
            this.#firstConnect = null;
            this.close();
            reject(new TandemError('timeout', `could not connect to ${this.#url} in ${this.#opts.connectTimeout} ms`));
          }, this.#opts.connectTimeout)
        : null;
    this.#firstConnect = {
      promise,
      resolve: (v) => (clearTimeout(timer), resolve(v)),
      reject: (e) => (clearTimeout(timer), reject(e)),
    };
    globalThis.addEventListener?.('online', this.#onOnline);
    this.#setState(this.#everConnected ? 'reconnecting' : 'connecting');
    this.#open();
    return promise;
  }

  /** Close for good (no reconnect). Rooms are left by the server when the socket closes. */
  close() {
    this.#closedByUser = true;
    clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    globalThis.removeEventListener?.('online', this.#onOnline);
    const ws = this.#ws;
    this.#teardown(new TandemError('closed', 'client closed'));
    if (ws && ws.readyState <= 1) ws.close(1000, 'client closed');
    for (const room of this.#rooms.values()) room._onClosed();
    this.#rooms.clear();
    if (this.state !== 'disconnected') {
      this.#setState('disconnected');
      this.emit('disconnected', { code: 1000, reason: 'client closed', reconnect: false });
    }
  }

  /** Drop the socket now and reconnect as after a network failure (for apps and tests). */
  reconnectNow() {
    if (this.#ws) this.#ws.close(4000, 'client reconnect');
  }

  /**
   * Send a request and resolve with its `result` (reject with a `TandemError`).
   * Requests made while (re)connecting wait until the session is back.
   */
  request(type, body = {}, { timeout = this.#opts.requestTimeout, internal = false } = {}) {
    return new Promise((resolve, reject) => {
      const job = { type, body, resolve, reject, timeout, timer: null };
      if (timeout > 0) {
        job.timer = setTimeout(() => {
          if (job.id !== undefined) this.#pending.delete(job.id);
          else this.#waiters = this.#waiters.filter((j) => j !== job);
          reject(new TandemError('timeout', `${type}: no reply in ${timeout} ms`));
        }, timeout);
      }
      if (this.state === 'disconnected' || this.state === 'idle') {
        clearTimeout(job.timer);
        reject(new TandemError('closed', 'client is not connected; call connect() first'));
      } else if (this.#authed && (!this.#resuming || internal)) this.#send(job);
      else this.#waiters.push(job);
    });
  }

  /** Round trip to the server; resolves with milliseconds. */
  async ping() {
    const t0 = performance.now();
    await this.request('ping');
    this.rtt = Math.round(performance.now() - t0);
    return this.rtt;
  }

  /** Publish to a channel; resolves with `{offset, epoch}` once durable. */
  publish(channel, data) {
    return this.request('publish', { channel, data });
  }

  /** Page through a channel's history: `{before}` ("load older"), `{since}` or newest. */
  history(channel, { before, since, limit } = {}) {
    const body = { channel };
    if (before !== undefined) body.before = before;
    if (since !== undefined) body.since = since;
    if (limit !== undefined) body.limit = limit;
    return this.request('history', body);
  }

  /**
   * Subscribe to a channel. The returned Subscription survives reconnects: it
   * resubscribes from the last offset it delivered, so every publication is seen once
   * and in order; a `gap` event says when history could not cover a disconnection.
   * @param {string} channel
   * @param {{since?: {offset: number, epoch: string}}} [opts] resume from a known position
   */
  subscribe(channel, opts = {}) {
    if (this.#subs.has(channel)) return this.#subs.get(channel);
    const sub = new Subscription(this, channel, opts, () => this.#subs.delete(channel));
    this.#subs.set(channel, sub);
    if (this.#authed && !this.#resuming) sub._start();
    return sub;
  }

  /**
   * Join a room; resolves with a Room once joined. After a reconnect the room is
   * rejoined automatically (with its latest metadata).
   */
  async join(name, { metadata } = {}) {
    if (this.#rooms.has(name)) throw new TandemError('already_joined', `already in room '${name}'`);
    const room = new Room(this, name, metadata, () => this.#rooms.delete(name));
    this.#rooms.set(name, room);
    try {
      await room._join();
    } catch (err) {
      this.#rooms.delete(name);
      throw err;
    }
    return room;
  }

  // ---- internals -------------------------------------------------------------

  #setState(state) {
    if (this.state === state) return;
    const prev = this.state;
    this.state = state;
    this.emit('state', state, prev);
  }

  async #open() {
    this.#retryTimer = null;
    let token;
    try {
      token = typeof this.#token === 'function' ? await this.#token() : this.#token;
    } catch (err) {
      this.#scheduleRetry({ code: 0, reason: `token provider failed: ${err?.message || err}` });
      return;
    }
    if (this.#closedByUser) return;
    let ws;
    try {
      ws = new this.#opts.WebSocket(this.#url);
    } catch (err) {
      this.#fail(new TandemError('bad_url', String(err?.message || err)));
      return;
    }
    this.#ws = ws;
    this.#lastDisconnect = null;
    let connectError = null;
    ws.onopen = () => {
      const id = this.#nextId++;
      const frame = { id, type: 'connect', token, protocol: PROTOCOL_VERSION, client: this.#opts.clientName };
      this.#pending.set(id, {
        resolve: (info) => this.#onAuthed(info),
        reject: (err) => {
          connectError = err;
        },
        timer: null,
      });
      ws.send(JSON.stringify(frame));
    };
    ws.onmessage = (ev) => {
      if (this.#ws === ws) this.#onFrame(ev.data);
    };
    ws.onclose = (ev) => {
      if (this.#ws !== ws) return;
      this.#onClose(ev.code, ev.reason, connectError);
    };
    ws.onerror = () => {
      /* a close event always follows */
    };
  }

  #onAuthed(info) {
    this.info = info;
    this.#authed = true;
    this.#attempt = 0;
    this.#armWatchdog();
    this.#scheduleRefresh();
    const reconnected = this.#everConnected;
    this.#everConnected = true;
    // Rooms are rejoined first; then the app's waiting requests go out (a chat
    // message typed while offline needs its room) and channels are resubscribed.
    this.#resuming = reconnected;
    const rooms = [...this.#rooms.values()];
    Promise.allSettled(reconnected ? rooms.map((r) => r._rejoin()) : [])
      .then(() => {
        if (!this.#authed || this.info !== info) return;
        this.#resuming = false;
        const waiters = this.#waiters;
        this.#waiters = [];
        for (const job of waiters) this.#send(job);
        return Promise.allSettled([...this.#subs.values()].map((s) => s._start()));
      })
      .then(() => {
        if (!this.#authed || this.info !== info) return;
        this.#setState('connected');
        this.emit('connected', { info, reconnected });
        const first = this.#firstConnect;
        this.#firstConnect = null;
        first?.resolve(info);
      });
  }

  #send(job) {
    const id = this.#nextId++;
    job.id = id;
    this.#pending.set(id, job);
    try {
      this.#ws.send(JSON.stringify({ id, type: job.type, ...job.body }));
    } catch (err) {
      this.#pending.delete(id);
      clearTimeout(job.timer);
      job.reject(new TandemError('connection_lost', String(err?.message || err)));
    }
  }

  #rawSend(obj) {
    if (this.#ws && this.#ws.readyState === 1) this.#ws.send(JSON.stringify(obj));
  }

  /**
   * The server closes the session (4002 `token_expired`) when its token expires. With
   * a token provider the SDK hands it a fresh token first: a fifth of the remaining
   * lifetime before expiry (at most a minute before), and again a few seconds later
   * when the provider or the server fails. A plain string token cannot be renewed:
   * the session then ends at expiry and `connect` fails with `token_expired`.
   */
  #scheduleRefresh() {
    clearTimeout(this.#refreshTimer);
    this.#refreshTimer = null;
    const expiresAt = this.info?.expires_at;
    if (typeof this.#token !== 'function' || !expiresAt) return;
    const left = expiresAt * 1000 - Date.now();
    const early = Math.min(60000, left / 5);
    this.#refreshTimer = setTimeout(() => this.#refresh(), Math.max(0, left - early));
  }

  async #refresh() {
    const info = this.info;
    try {
      const token = await this.#token();
      const result = await this.request('refresh', { token }, { internal: true });
      if (this.info !== info || !this.#authed) return;
      // In place: `info` is also how the rest of the client recognises this session.
      info.expires_at = result.expires_at;
      info.ice_servers = result.ice_servers;
      this.emit('refreshed', { expiresAt: result.expires_at });
      this.#scheduleRefresh();
    } catch (err) {
      if (this.info !== info || !this.#authed) return;
      this.emit('error', new TandemError(err?.code || 'token_invalid', `token refresh failed: ${err?.message || err}`));
      const left = info.expires_at * 1000 - Date.now();
      if (left > 2000) this.#refreshTimer = setTimeout(() => this.#refresh(), Math.min(5000, left / 2));
    }
  }

  #armWatchdog() {
    clearTimeout(this.#watchdog);
    if (!this.info) return;
    // The server pings every ping_interval_ms; silence for much longer means the
    // path is dead even if TCP has not noticed yet.
    const limit = (this.info.ping_interval_ms || 25000) * 1.5 + 5000;
    this.#watchdog = setTimeout(() => {
      if (this.#ws && this.#authed) this.#ws.close(4000, 'server silent');
    }, limit);
  }

  #onFrame(text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      this.emit('error', new TandemError('malformed', 'server sent a frame that is not JSON'));
      return;
    }
    if (this.#authed) this.#armWatchdog();
    switch (msg.type) {
      case 'reply':
      case 'error': {
        const job = msg.id !== undefined && msg.id !== null ? this.#pending.get(msg.id) : undefined;
        if (!job) {
          if (msg.type === 'error') this.emit('error', new TandemError(msg.code, msg.message, msg));
          return;
        }
        this.#pending.delete(msg.id);
        clearTimeout(job.timer);
        if (msg.type === 'reply') job.resolve(msg.result ?? {});
        else job.reject(new TandemError(msg.code, msg.message, msg));
        return;
      }
      case 'publication':
        this.#subs.get(msg.channel)?._onPublication(msg);
        return;
      case 'participant_joined':
      case 'participant_left':
      case 'participant_updated':
      case 'removed':
      case 'signal':
      case 'media_mode':
      case 'tracks':
      case 'sfu_offer':
      case 'sfu_closed':
      case 'sfu_layers':
      case 'active_speakers':
        this.#rooms.get(msg.room)?._onPush(msg);
        return;
      case 'ping':
        this.#rawSend({ type: 'pong' });
        return;
      case 'pong':
        return;
      case 'disconnect':
        this.#lastDisconnect = msg;
        return;
      default:
        this.emit('push', msg);
    }
  }

  #teardown(err) {
    clearTimeout(this.#watchdog);
    clearTimeout(this.#refreshTimer);
    this.#refreshTimer = null;
    const wasAuthed = this.#authed;
    this.#authed = false;
    this.#resuming = false;
    this.#ws = null;
    for (const job of this.#pending.values()) {
      clearTimeout(job.timer);
      job.reject(err);
    }
    this.#pending.clear();
    if (this.#closedByUser) {
      for (const job of this.#waiters) {
        clearTimeout(job.timer);
        job.reject(err);
      }
      this.#waiters = [];
    }
    return wasAuthed;
  }

  #onClose(code, reason, connectError) {
    const notice = this.#lastDisconnect;
    const wasAuthed = this.#teardown(new TandemError('connection_lost', `connection closed (${code})`));
    for (const sub of this.#subs.values()) sub._onConnectionLost();
    if (this.#closedByUser) return;
    let reconnect = notice ? notice.reconnect !== false : !FATAL_CLOSE.has(code);
    if (connectError && FATAL_CONNECT.has(connectError.code)) {
      // An expired token is worth one more try when the app gave a token provider.
      reconnect = connectError.code === 'token_expired' && typeof this.#token === 'function' && this.#everConnected;
    }
    const detail = { code, reason: notice?.reason || reason || connectError?.code || '', reconnect };
    if (!reconnect) {
      this.#fail(connectError || new TandemError(detail.reason || 'disconnected', `closed by server (${code} ${detail.reason})`), detail);
      return;
    }
    this.#scheduleRetry(detail, wasAuthed);
  }

  /** `dropped`: a live session was lost (vs. a reconnect attempt that failed). */
  #scheduleRetry(detail, dropped = false) {
    const delay = backoffDelay(this.#attempt, this.#opts.backoff);
    this.#attempt++;
    this.#setState('reconnecting');
    if (dropped) this.emit('disconnected', { ...detail, reconnect: true });
    this.emit('reconnecting', { attempt: this.#attempt, delay });
    for (const room of this.#rooms.values()) room._onConnectionLost();
    this.#retryTimer = setTimeout(() => this.#open(), delay);
  }

  #fail(err, detail = { code: 0, reason: err.code, reconnect: false }) {
    this.#closedByUser = true;
    this.#teardown(err);
    for (const job of this.#waiters) {
      clearTimeout(job.timer);
      job.reject(err);
    }
    this.#waiters = [];
    globalThis.removeEventListener?.('online', this.#onOnline);
    for (const room of this.#rooms.values()) room._onClosed();
    this.#rooms.clear();
    this.#setState('disconnected');
    this.emit('disconnected', detail);
    const first = this.#firstConnect;
    this.#firstConnect = null;
    first?.reject(err);
  }
}

/**
 * A channel subscription that survives reconnects. Events:
 * `publication` (pub), `gap` ({reason, from, to, epoch}), `subscribed`
 * ({resumed, recovered}), `error` (TandemError), `unsubscribed`.
 */
export class Subscription extends Emitter {
  /** @type {'subscribing'|'subscribed'|'unsubscribed'} */
  state = 'subscribing';
  cursor = new ChannelCursor();
  #client;
  #onDone;
  #buffer = [];
  #syncing = true;
  #ready;
  #readyResolve;
  #readyReject;
  #gen = 0;

  constructor(client, channel, opts, onDone) {
    super();
    this.#client = client;
    this.channel = channel;
    this.#onDone = onDone;
    if (opts.since) {
      this.cursor.epoch = opts.since.epoch;
      this.cursor.offset = opts.since.offset;
    }
    this.#ready = new Promise((res, rej) => ((this.#readyResolve = res), (this.#readyReject = rej)));
    this.#ready.catch(() => {});
  }

  /** Resolves once the first subscribe reply is in. */
  get ready() {
    return this.#ready;
  }
  /** Last offset delivered and its epoch: store it to resume later with `since`. */
  get position() {
    return { offset: this.cursor.offset, epoch: this.cursor.epoch };
  }

  publish(data) {
    return this.#client.publish(this.channel, data);
  }

  /** Older publications for "load older": `history({before, limit})`. */
  history(opts) {
    return this.#client.history(this.channel, opts);
  }

  async unsubscribe() {
    if (this.state === 'unsubscribed') return;
    this.state = 'unsubscribed';
    this.#gen++;
    this.#onDone();
    if (this.#client.connected) {
      try {
        await this.#client.request('unsubscribe', { channel: this.channel });
      } catch (err) {
        if (err.code !== 'not_subscribed' && err.code !== 'connection_lost') throw err;
      }
    }
    this.emit('unsubscribed');
  }

  _onConnectionLost() {
    if (this.state === 'unsubscribed') return;
    this.state = 'subscribing';
    this.#syncing = true;
    this.#gen++;
  }

  async _start() {
    if (this.state === 'unsubscribed') return;
    const gen = ++this.#gen;
    this.state = 'subscribing';
    this.#syncing = true;
    const since = this.cursor.since();
    let res;
    try {
      res = await this.#client.request('subscribe', since ? { channel: this.channel, since } : { channel: this.channel }, { internal: true });
    } catch (err) {
      if (gen !== this.#gen) return;
      if (err.code === 'connection_lost' || err.code === 'timeout') return; // retried on reconnect
      this.state = 'unsubscribed';
      this.#onDone();
      this.emit('error', err);
      this.#readyReject(err);
      return;
    }
    if (gen !== this.#gen) return;
    const r = this.cursor.applySubscribe(res);
    if (r.gap) {
      this.#buffer = this.#buffer.filter((p) => p.offset > this.cursor.offset);
      this.emit('gap', r.gap);
    }
    this.#deliver(r.deliver);
    if (r.page) {
      const ok = await this.#fill(r.page.until, gen);
      if (!ok) return;
    }
    this.#syncing = false;
    this.#flush();
    this.state = 'subscribed';
    this.emit('subscribed', { resumed: !!since, recovered: since ? !r.gap : undefined, epoch: this.cursor.epoch, offset: this.cursor.offset });
    this.#readyResolve(this);
  }

  _onPublication(pub) {
    if (this.state === 'unsubscribed') return;
    if (this.#syncing) {
      this.#buffer.push(pub);
      return;
    }
    const kind = this.cursor.classify(pub);
    if (kind === 'duplicate') return;
    if (kind === 'deliver') {
      this.#deliver([pub]);
      return;
    }
    // A hole in the live stream: fetch what is missing before going on.
    this.#buffer.push(pub);
    this.#syncing = true;
    const gen = this.#gen;
    this.#fill(pub.offset - 1, gen).then((ok) => {
      if (!ok || gen !== this.#gen) return;
      this.#syncing = false;
      this.#flush();
    });
  }

  async #fill(until, gen) {
    for (let guard = 0; guard < 10000 && this.cursor.offset < until; guard++) {
      let res;
      try {
        res = await this.#client.request('history', { channel: this.channel, since: this.cursor.offset, limit: 1000 }, { internal: true });
      } catch (err) {
        if (gen === this.#gen && err.code !== 'connection_lost') this.emit('error', err);
        return false;
      }
      if (gen !== this.#gen) return false;
      const r = this.cursor.applyPage(res, until);
      if (r.gap) this.emit('gap', r.gap);
      this.#deliver(r.deliver);
      if (r.done) break;
    }
    return true;
  }

  #flush() {
    const buf = this.#buffer.sort((a, b) => a.offset - b.offset);
    this.#buffer = [];
    for (const pub of buf) {
      const kind = this.cursor.classify(pub);
      if (kind === 'duplicate') continue;
      if (kind === 'gap') {
        this.emit('gap', { reason: 'history_expired', from: this.cursor.offset + 1, to: pub.offset - 1, epoch: this.cursor.epoch });
      }
      this.#deliver([pub]);
    }
  }

  #deliver(pubs) {
    // Callers pass publications already checked against the cursor.
    for (const p of pubs) {
      this.cursor.advance(p);
      this.emit('publication', { channel: this.channel, offset: p.offset, data: p.data, from: p.from, ts: p.ts });
    }
  }
}
