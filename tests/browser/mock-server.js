// A small in-memory stand-in for `tandem serve --dev`, speaking protocol v1
// (docs/protocol.md) closely enough to develop the browser SDK without the Rust
// server. The real tests run against target/debug/tandem; this is used only with
// TANDEM_SERVER=mock. Usage: node mock-server.js [port]
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { WebSocketServer } from 'ws';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../web');
const port = Number(process.argv[2] || process.env.PORT || 7880);
const types = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.svg': 'image/svg+xml', '.ts': 'text/plain', '.json': 'application/json' };

const channels = new Map(); // name → {epoch, pubs: [], subs: Set<session>}
const rooms = new Map(); // name → Map<sid, {session, info}>
const sessions = new Set();
let nextSid = 1;

function channel(name) {
  let c = channels.get(name);
  if (!c) channels.set(name, (c = { epoch: Math.random().toString(36).slice(2, 8), pubs: [], subs: new Set() }));
  return c;
}
function head(c) {
  return c.pubs.length ? c.pubs.at(-1).offset : 0;
}
function publish(name, data, from) {
  const c = channel(name);
  const p = { offset: head(c) + 1, data, ts: Date.now() };
  if (from) p.from = from;
  c.pubs.push(p);
  const frame = JSON.stringify({ type: 'publication', channel: name, ...p });
  for (const s of c.subs) s.send(frame);
  return { offset: p.offset, epoch: c.epoch };
}
function roomOf(name) {
  let r = rooms.get(name);
  if (!r) rooms.set(name, (r = new Map()));
  return r;
}
function leaveRoom(s, name, reason) {
  const r = rooms.get(name);
  if (!r || !r.has(s.sid)) return;
  r.delete(s.sid);
  s.rooms.delete(name);
  for (const [cname, c] of channels) if (cname === `room:${name}` || cname.startsWith(`room:${name}:`)) c.subs.delete(s);
  for (const o of r.values()) o.session.send(JSON.stringify({ type: 'participant_left', room: name, sid: s.sid, identity: s.identity, reason }));
  if (!r.size) rooms.delete(name);
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  if (url.pathname === '/dev/token') {
    const claims = { identity: url.searchParams.get('identity') || 'guest', name: url.searchParams.get('name') || undefined, room: url.searchParams.get('room') };
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ token: 'mock.' + Buffer.from(JSON.stringify(claims)).toString('base64url') + '.sig' }));
    return;
  }
  if (req.method === 'POST' && url.pathname.startsWith('/api/v1/')) {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      const b = JSON.parse(body || '{}');
      let result = {};
      if (url.pathname === '/api/v1/connections/disconnect') {
        const code = b.reconnect ? 4010 : 4003;
        let n = 0;
        for (const s of sessions) {
          if (s.identity !== b.identity) continue;
          s.send(JSON.stringify({ type: 'disconnect', code, reason: b.reconnect ? 'reconnect' : 'disconnected', reconnect: !!b.reconnect }));
          s.ws.close(code, b.reconnect ? 'reconnect' : 'disconnected');
          n++;
        }
        result = { disconnected: n };
      } else if (url.pathname === '/api/v1/publish') result = publish(b.channel, b.data);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(result));
    });
    return;
  }
  let rel = url.pathname;
  if (rel === '/' || rel === '') rel = '/app/index.html';
  else if (!/^\/(sdk|examples|app)\//.test(rel)) rel = '/app' + rel;
  if (rel.endsWith('/')) rel += 'index.html';
  const file = path.join(root, path.normalize(rel));
  if (!file.startsWith(root) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) {
    res.writeHead(404);
    res.end('not found');
    return;
  }
  res.writeHead(200, { 'content-type': types[path.extname(file)] || 'application/octet-stream', 'cache-control': 'no-store' });
  fs.createReadStream(file).pipe(res);
});

const wss = new WebSocketServer({ server, path: '/ws' });
wss.on('connection', (ws) => {
  const s = { ws, sid: null, identity: null, rooms: new Set(), send: (f) => ws.readyState === 1 && ws.send(f) };
  sessions.add(s);
  const reply = (id, result) => s.send(JSON.stringify({ type: 'reply', id, result }));
  const error = (id, code, message = code) => s.send(JSON.stringify({ type: 'error', id, code, message }));
  ws.on('message', (raw) => {
    let m;
    try {
      m = JSON.parse(raw.toString());
    } catch {
      return error(undefined, 'malformed');
    }
    const id = m.id;
    if (m.type === 'pong') return;
    if (m.type === 'ping') return id !== undefined ? reply(id, {}) : s.send('{"type":"pong"}');
    if (m.type === 'connect') {
      let claims;
      try {
        claims = JSON.parse(Buffer.from(m.token.split('.')[1], 'base64url').toString());
      } catch {
        error(id, 'token_invalid');
        return ws.close(4001, 'unauthorized');
      }
      s.sid = 'C' + nextSid++;
      s.identity = claims.identity;
      s.name = claims.name;
      return reply(id, { client_id: s.sid, identity: s.identity, name: s.name, protocol: 1, server: 'mock/0', ping_interval_ms: 25000, idle_timeout_ms: 60000, limits: {}, ice_servers: [] });
    }
    if (!s.sid) return error(id, 'not_authenticated');
    switch (m.type) {
      case 'join': {
        const r = roomOf(m.room);
        for (const [sid, o] of r) {
          if (o.info.identity === s.identity) {
            o.session.send(JSON.stringify({ type: 'removed', room: m.room, reason: 'duplicate_identity' }));
            leaveRoom(o.session, m.room, 'duplicate_identity');
          }
        }
        const info = { sid: s.sid, identity: s.identity, name: s.name, metadata: m.metadata ?? {}, joined_at: Date.now() };
        const others = [...roomOf(m.room).values()].map((o) => o.info);
        roomOf(m.room).set(s.sid, { session: s, info });
        s.rooms.add(m.room);
        for (const o of others) roomOf(m.room).get(o.sid).session.send(JSON.stringify({ type: 'participant_joined', room: m.room, participant: info }));
        return reply(id, { room: m.room, participant: info, participants: others });
      }
      case 'leave':
        if (!s.rooms.has(m.room)) return error(id, 'not_joined');
        leaveRoom(s, m.room, 'left');
        return reply(id, {});
      case 'update': {
        const p = rooms.get(m.room)?.get(s.sid);
        if (!p) return error(id, 'not_joined');
        p.info.metadata = m.metadata;
        reply(id, {});
        for (const o of rooms.get(m.room).values()) o.session.send(JSON.stringify({ type: 'participant_updated', room: m.room, participant: p.info }));
        return;
      }
      case 'publish':
        return reply(id, publish(m.channel, m.data, s.identity));
      case 'subscribe': {
        const c = channel(m.channel);
        if (c.subs.has(s)) return error(id, 'already_subscribed');
        const res = { channel: m.channel, epoch: c.epoch, offset: head(c), publications: [] };
        if (m.since) {
          if (m.since.epoch !== c.epoch) Object.assign(res, { recovered: false, reason: 'epoch_changed' });
          else Object.assign(res, { recovered: true, publications: c.pubs.filter((p) => p.offset > m.since.offset) });
        }
        c.subs.add(s);
        return reply(id, res);
      }
      case 'unsubscribe':
        channel(m.channel).subs.delete(s);
        return reply(id, {});
      case 'history': {
        const c = channel(m.channel);
        const limit = m.limit ?? 50;
        let pubs;
        if (m.before !== undefined) pubs = c.pubs.filter((p) => p.offset < m.before).slice(-limit);
        else if (m.since !== undefined) pubs = c.pubs.filter((p) => p.offset > m.since).slice(0, limit);
        else pubs = c.pubs.slice(-limit);
        return reply(id, { channel: m.channel, epoch: c.epoch, offset: head(c), earliest: c.pubs.length ? c.pubs[0].offset : 0, publications: pubs });
      }
      case 'signal': {
        const t = rooms.get(m.room)?.get(m.to);
        if (!s.rooms.has(m.room)) return error(id, 'not_joined');
        if (!t) return error(id, 'participant_not_found');
        t.session.send(JSON.stringify({ type: 'signal', room: m.room, from: s.sid, from_identity: s.identity, data: m.data }));
        return reply(id, {});
      }
      default:
        return error(id, 'unknown_type');
    }
  });
  ws.on('close', () => {
    sessions.delete(s);
    for (const r of [...s.rooms]) leaveRoom(s, r, 'disconnected');
    for (const c of channels.values()) c.subs.delete(s);
  });
});

server.listen(port, '127.0.0.1', () => console.log(`mock tandem on http://127.0.0.1:${port}`));
