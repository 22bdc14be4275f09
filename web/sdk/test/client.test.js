// The client's state machine against an in-memory fake server (no browser, no
// network): reconnect with recovery, fatal closes, requests held during a reconnect,
// live gaps filled from history.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TandemClient } from '../client.js';

class FakeServer {
  constructor() {
    this.epoch = 'e1';
    this.log = new Map(); // channel → [{offset, data, from, ts}]
    this.sockets = new Set();
    this.frames = []; // every client frame, for order checks
    this.refuse = false;
    this.dropLive = false; // drop live pushes (to create gaps)
    this.nextSid = 1;
  }
  pubs(ch) {
    if (!this.log.has(ch)) this.log.set(ch, []);
    return this.log.get(ch);
  }
  publish(ch, data, from) {
    const list = this.pubs(ch);
    const p = { offset: list.length + 1, data, ts: Date.now(), ...(from ? { from } : {}) };
    list.push(p);
    if (!this.dropLive) for (const s of this.sockets) if (s.subs.has(ch)) s.push({ type: 'publication', channel: ch, ...p });
    return p;
  }
  cut(code = 4010, reconnect = true) {
    for (const s of [...this.sockets]) {
      s.push({ type: 'disconnect', code, reason: 'test', reconnect });
      s.serverClose(code);
    }
  }
}

function fakeWebSocketFor(server) {
  return class FakeWebSocket {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.subs = new Set();
      this.rooms = new Set();
      queueMicrotask(() => {
        if (server.refuse) return this.serverClose(1006);
        this.readyState = 1;
        server.sockets.add(this);
        this.onopen?.();
      });
    }
    push(obj) {
      if (this.readyState === 1) queueMicrotask(() => this.onmessage?.({ data: JSON.stringify(obj) }));
    }
    serverClose(code) {
      if (this.readyState === 3) return;
      this.readyState = 3;
      server.sockets.delete(this);
      queueMicrotask(() => queueMicrotask(() => this.onclose?.({ code, reason: '' })));
    }
    close(code = 1000) {
      this.serverClose(code);
    }
    send(text) {
      const m = JSON.parse(text);
      server.frames.push(m);
      const reply = (result) => this.push({ type: 'reply', id: m.id, result });
      const error = (code) => this.push({ type: 'error', id: m.id, code, message: code });
      switch (m.type) {
        case 'connect':
          if (m.token !== 'good') {
            error('token_invalid');
            this.push({ type: 'disconnect', code: 4001, reason: 'unauthorized', reconnect: false });
            return this.serverClose(4001);
          }
          this.sid = `C${server.nextSid++}`;
          return reply({ client_id: this.sid, identity: 'me', protocol: 1, server: 'fake', ping_interval_ms: 25000, idle_timeout_ms: 60000, limits: {}, ice_servers: [] });
        case 'join':
          this.rooms.add(m.room);
          return reply({ room: m.room, participant: { sid: this.sid, identity: 'me', metadata: m.metadata ?? {}, joined_at: 1 }, participants: [] });
        case 'publish':
          if (m.channel.startsWith('room:') && !this.rooms.has(m.channel.split(':')[1])) return error('forbidden');
          return reply({ offset: server.publish(m.channel, m.data, 'me').offset, epoch: server.epoch });
        case 'subscribe': {
          const list = server.pubs(m.channel);
          const res = { channel: m.channel, epoch: server.epoch, offset: list.length, publications: [] };
          if (m.since) Object.assign(res, { recovered: true, publications: list.filter((p) => p.offset > m.since.offset) });
          this.subs.add(m.channel);
          return reply(res);
        }
        case 'history': {
          const list = server.pubs(m.channel);
          const pubs = m.since !== undefined ? list.filter((p) => p.offset > m.since).slice(0, m.limit ?? 50) : list.filter((p) => m.before === undefined || p.offset < m.before).slice(-(m.limit ?? 50));
          return reply({ channel: m.channel, epoch: server.epoch, offset: list.length, earliest: list.length ? 1 : 0, publications: pubs });
        }
        case 'unsubscribe':
          this.subs.delete(m.channel);
          return reply({});
        default:
          return reply({});
      }
    }
  };
}

const tick = (ms = 5) => new Promise((r) => setTimeout(r, ms));
async function until(fn, ms = 2000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (fn()) return;
    await tick();
  }
  throw new Error('timed out');
}

function client(server, token = 'good') {
  return new TandemClient('ws://fake/ws', token, { WebSocket: fakeWebSocketFor(server), backoff: { min: 20, max: 40 }, connectTimeout: 2000 });
}

test('reconnect recovers missed publications exactly once, in order', async () => {
  const server = new FakeServer();
  const c = client(server);
  const states = [];
  c.on('state', (s) => states.push(s));
  await c.connect();
  const sub = c.subscribe('news');
  const got = [];
  sub.on('publication', (p) => got.push(p.offset));
  await sub.ready;
  server.publish('news', 1);
  server.publish('news', 2);
  await until(() => got.length === 2);
  server.cut();
  for (let i = 0; i < 5; i++) server.publish('news', 3 + i); // while away
  await until(() => c.state === 'connected' && got.length === 7);
  server.publish('news', 8);
  await until(() => got.length === 8);
  assert.deepEqual(got, [1, 2, 3, 4, 5, 6, 7, 8]);
  assert.deepEqual(states, ['connecting', 'connected', 'reconnecting', 'connected']);
  const resub = server.frames.filter((f) => f.type === 'subscribe');
  assert.deepEqual(resub.at(-1).since, { offset: 2, epoch: 'e1' });
  c.close();
});

test('a bad token is fatal: connect() rejects and nothing retries', async () => {
  const server = new FakeServer();
  const c = client(server, 'bad');
  const disc = [];
  c.on('disconnected', (d) => disc.push(d));
  await assert.rejects(c.connect(), (err) => err.code === 'token_invalid');
  assert.equal(c.state, 'disconnected');
  await tick(100);
  assert.equal(server.frames.filter((f) => f.type === 'connect').length, 1);
  assert.equal(disc.length, 1);
  assert.equal(disc[0].reconnect, false);
});

test('the server being down at first is retried until it is up', async () => {
  const server = new FakeServer();
  server.refuse = true;
  const c = client(server);
  const attempts = [];
  c.on('reconnecting', (r) => attempts.push(r.attempt));
  const p = c.connect();
  await until(() => attempts.length >= 3);
  server.refuse = false;
  await p;
  assert.equal(c.state, 'connected');
  c.close();
});

test('requests made while reconnecting wait for the rejoin, then go out in order', async () => {
  const server = new FakeServer();
  const c = client(server);
  await c.connect();
  const room = await c.join('r1');
  server.cut();
  await until(() => c.state === 'reconnecting');
  const ack = room.chat.send('typed while offline'); // needs the room: must follow the rejoin
  const res = await ack;
  assert.equal(res.offset, 1);
  const types = server.frames.map((f) => f.type);
  const lastJoin = types.lastIndexOf('join');
  const publish = types.indexOf('publish');
  assert.ok(lastJoin < publish, `join before publish: ${types.join(',')}`);
  c.close();
});

test('a hole in the live stream is filled from history before going on', async () => {
  const server = new FakeServer();
  const c = client(server);
  await c.connect();
  const sub = c.subscribe('feed');
  const got = [];
  sub.on('publication', (p) => got.push(p.offset));
  await sub.ready;
  server.publish('feed', 'a');
  server.dropLive = true;
  server.publish('feed', 'b');
  server.publish('feed', 'c');
  server.dropLive = false;
  server.publish('feed', 'd'); // arrives with 2 and 3 missing
  await until(() => got.length === 4);
  assert.deepEqual(got, [1, 2, 3, 4]);
  c.close();
});
