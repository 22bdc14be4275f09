// Tandem demo app: lobby → room with video grid, chat, people, screen share and
// file transfer. Uses only the public SDK API (/sdk/index.js).
import { TandemClient } from '/sdk/index.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const state = { client: null, room: null, call: null, devMode: false, tiles: new Map(), identity: null, meta: null, sendTo: null };
window.tandemApp = state; // for the browser tests and for poking around in devtools

// ---------- lobby ----------

$('name').value = params.get('name') || localStorage.getItem('tandem.name') || '';
$('room').value = params.get('room') || localStorage.getItem('tandem.room') || 'demo';
if (params.get('token')) $('token').value = params.get('token');

const devProbe = fetch('/dev/token?identity=lobby-probe&room=lobby-probe')
  .then((r) => (state.devMode = r.ok))
  .catch(() => (state.devMode = false))
  .then((dev) => {
    $('token-field').hidden = dev;
    $('mode-note').textContent = dev ? 'Dev mode: the server mints your token.' : 'This server needs an access token from your backend.';
    return dev;
  });

$('lobby-form').addEventListener('submit', (e) => {
  e.preventDefault();
  join().catch((err) => showLobbyError(err));
});
if (params.get('autojoin') && $('name').value) devProbe.then(() => join().catch(showLobbyError));

function showLobbyError(err) {
  console.error(err);
  $('lobby-error').textContent = humanError(err);
  $('lobby-error').hidden = false;
  $('join').disabled = false;
  $('join').textContent = 'Join room';
}

function humanError(err) {
  const code = err?.code;
  if (code === 'token_invalid' || code === 'token_expired') return 'The access token was refused (' + code.replace('_', ' ') + ').';
  if (code === 'forbidden') return 'This token does not allow joining that room.';
  if (code === 'room_full') return 'The room is full.';
  if (code === 'timeout') return 'Could not reach the server.';
  return err?.message || String(err);
}

function slug(s) {
  return s.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 24) || 'guest';
}

async function join() {
  const name = $('name').value.trim();
  const roomName = $('room').value.trim();
  if (!name || !roomName) return;
  localStorage.setItem('tandem.name', name);
  localStorage.setItem('tandem.room', roomName);
  $('lobby-error').hidden = true;
  $('join').disabled = true;
  $('join').textContent = 'Joining…';
  const dev = await devProbe;
  // Identities are unique per room: the same name in two tabs must not kick each other.
  const identity = params.get('identity') || `${slug(name)}-${Math.random().toString(36).slice(2, 6)}`;
  state.identity = identity;
  let token;
  if (dev) {
    token = async () => {
      const r = await fetch(`/dev/token?identity=${encodeURIComponent(identity)}&name=${encodeURIComponent(name)}&room=${encodeURIComponent(roomName)}`);
      if (!r.ok) throw new Error(`dev token: HTTP ${r.status}`);
      return (await r.json()).token;
    };
  } else {
    token = $('token').value.trim();
    if (!token) throw new Error('An access token is required.');
  }
  const client = new TandemClient(location.origin, token);
  state.client = client;
  client.on('state', (s) => setConnState(s));
  client.on('disconnected', (d) => {
    if (d.reconnect || state.client !== client) return;
    // For good (token revoked, removed by the server …): back to the lobby, say why.
    const why = d.code === 4003 ? 'You were disconnected by the server.' : d.code === 4001 ? 'Your access token is no longer valid.' : `Disconnected (${d.reason || d.code}).`;
    backToLobby();
    $('lobby-error').textContent = why;
    $('lobby-error').hidden = false;
  });
  await client.connect();
  state.meta = { name, status: document.hidden ? 'away' : 'online' };
  const room = await client.join(roomName, { metadata: state.meta });
  state.room = room;
  enterRoom(room);
  try {
    state.call = await room.call({
      audio: $('opt-mic').checked,
      video: $('opt-cam').checked ? { width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 24 } } : false,
    });
  } catch (err) {
    toast(`Media unavailable: ${err.message}`);
  }
  if (state.call) wireCall(state.call);
}

// ---------- room ----------

function enterRoom(room) {
  $('lobby').hidden = true;
  $('room-view').hidden = false;
  $('room-name').textContent = room.name;
  document.title = `${room.name} · Tandem`;
  setConnState(state.client.state);
  ensureTile('local', { label: `${room.localParticipant.displayName} (you)`, local: true });
  for (const p of room.participants.values()) ensureTile(p.identity, { participant: p });
  renderPeople();
  room.on('participantJoined', (p) => {
    ensureTile(p.identity, { participant: p });
    renderPeople();
    sysMessage(`${p.displayName} joined`);
  });
  room.on('participantUpdated', (p) => {
    updateTileLabel(p.identity, p);
    renderPeople();
  });
  room.on('participantLeft', (p, reason) => {
    // A participant that only lost its connection may come back in a moment;
    // the call keeps its tile until its connection is gone.
    if (reason === 'left' || reason === 'removed' || !state.call?.peers.has(p.identity)) removeTile(p.identity);
    removeTile(`${p.identity}:screen`);
    renderPeople();
    if (reason !== 'duplicate_identity') sysMessage(`${p.displayName} left`);
  });
  room.on('removed', (reason) => {
    toast(`Removed from the room (${reason})`);
    backToLobby();
  });
  document.addEventListener('visibilitychange', onVisibility);
  wireChat(room);
}

function onVisibility() {
  if (!state.room || state.room.state !== 'joined') return;
  state.meta = { ...state.meta, status: document.hidden ? 'away' : 'online' };
  state.room.setMetadata(state.meta).catch(() => {});
}

function setConnState(s) {
  const el = $('conn-state');
  el.dataset.state = s;
  el.textContent = s === 'reconnecting' ? 'reconnecting…' : s;
}

// ---------- video grid ----------

function ensureTile(key, { participant, label, local, screen } = {}) {
  let t = state.tiles.get(key);
  if (t) return t;
  const el = document.createElement('div');
  el.className = 'tile' + (local ? ' local' : '') + (screen ? ' screen' : '');
  el.dataset.key = key;
  const initial = (label || participant?.displayName || '?').trim().charAt(0).toUpperCase();
  el.innerHTML = `<video autoplay playsinline ${local ? 'muted' : ''}></video>
    <div class="avatar"><span></span></div>
    <div class="label"><span class="nm"></span><span class="muted-ic" hidden>mic off</span></div>
    ${local || screen ? '' : '<div class="badge" data-q="unknown"><i></i><span>connecting</span></div>'}`;
  el.querySelector('.avatar span').textContent = initial;
  const video = el.querySelector('video');
  video.addEventListener('loadeddata', () => el.classList.add('has-video'));
  t = { el, video, participant, key };
  state.tiles.set(key, t);
  if (local || !participant) el.querySelector('.nm').textContent = label;
  else updateTileLabel(key, participant);
  // Screen shares go right after their owner's tile.
  const grid = $('grid');
  const owner = screen ? state.tiles.get(key.replace(/:screen$/, ''))?.el : null;
  if (owner && owner.nextSibling) grid.insertBefore(el, owner.nextSibling);
  else grid.appendChild(el);
  layoutGrid();
  return t;
}

function updateTileLabel(key, p) {
  const t = state.tiles.get(key);
  if (!t) return;
  t.el.querySelector('.nm').textContent = p.displayName;
  t.el.classList.toggle('away', p.metadata?.status === 'away');
}

function removeTile(key) {
  const t = state.tiles.get(key);
  if (!t) return;
  t.video.srcObject = null;
  t.el.remove();
  state.tiles.delete(key);
  layoutGrid();
}

function layoutGrid() {
  // Pick the column count that gives the biggest 16:9 tiles, then center them.
  const grid = $('grid');
  const n = Math.max(1, state.tiles.size);
  const stage = $('stage');
  const gap = window.innerWidth <= 760 ? 6 : 10;
  const W = Math.max(100, stage.clientWidth - (window.innerWidth <= 760 ? 16 : 24));
  const H = Math.max(100, stage.clientHeight);
  // Landscape stages get 16:9 tiles; portrait ones (phones) squarer tiles.
  const aspect = H > W * 1.2 ? 1 : 16 / 9;
  let best = { cols: 1, rows: n, w: 0, score: 0 };
  for (let cols = 1; cols <= n; cols++) {
    const rows = Math.ceil(n / cols);
    const w = Math.min((W - gap * (cols - 1)) / cols, ((H - gap * (rows - 1)) / rows) * aspect);
    // Prefer side-by-side over stacked when the tiles are nearly as big.
    const score = w * (cols > rows ? 1.15 : 1);
    if (score > best.score + 0.5) best = { cols, rows, w, score };
  }
  const w = Math.floor(best.w);
  grid.style.gridTemplateColumns = `repeat(${best.cols}, ${w}px)`;
  grid.style.gridAutoRows = `${Math.floor(w / aspect)}px`;
  grid.dataset.count = String(n);
  // The media path (mesh or through the server's SFU): the SDK switches by itself.
  const via = state.call?.mode === 'sfu' ? ' · via server (SFU)' : state.call ? ' · peer to peer' : '';
  $('people-count').textContent = `${state.room ? state.room.participants.size + 1 : 1} in room${via}`;
}
window.addEventListener('resize', layoutGrid);

// ---------- call ----------

function wireCall(call) {
  const local = state.tiles.get('local');
  if (call.localStream) {
    local.video.srcObject = call.localStream;
    if (call.localStream.getVideoTracks().length) local.el.classList.add('has-video');
  }
  syncButtons();
  call.on('localTrack', ({ stream, source }) => {
    if (source === 'screen') {
      const t = ensureTile('local:screen', { label: 'Your screen', screen: true });
      t.video.muted = true;
      t.video.srcObject = stream;
    } else {
      local.video.srcObject = stream;
      if (source === 'camera') local.el.classList.add('has-video');
    }
    syncButtons();
  });
  call.on('localTrackRemoved', ({ source }) => {
    if (source === 'screen') removeTile('local:screen');
    syncButtons();
  });
  call.on('track', ({ peer, stream, source }) => {
    const p = state.room.participantByIdentity(peer.identity);
    if (source === 'screen') {
      const t = ensureTile(`${peer.identity}:screen`, { label: `${p?.displayName || peer.identity}'s screen`, screen: true });
      t.video.srcObject = stream;
      return;
    }
    const t = ensureTile(peer.identity, { participant: p });
    if (t.video.srcObject !== stream) t.video.srcObject = stream;
  });
  call.on('trackRemoved', ({ peer, source }) => {
    if (source === 'screen') removeTile(`${peer.identity}:screen`);
  });
  call.on('peerLeft', (peer) => {
    if (!state.room.participantByIdentity(peer.identity)) removeTile(peer.identity);
    removeTile(`${peer.identity}:screen`);
  });
  call.on('peerMedia', (peer) => {
    const t = state.tiles.get(peer.identity);
    if (!t) return;
    t.el.querySelector('.muted-ic').hidden = peer.media.audio !== false;
    t.el.classList.toggle('has-video', !!peer.media.video && !!t.video.srcObject);
    renderPeople();
  });
  call.on('stats', (all) => {
    for (const [identity, s] of all) {
      const badge = state.tiles.get(identity)?.el.querySelector('.badge');
      if (!badge) continue;
      badge.dataset.q = s.quality;
      const parts = [s.path === 'unknown' ? 'connecting' : s.path];
      if (s.rtt !== null) parts.push(`${s.rtt} ms`);
      if (s.bitrateIn) parts.push(`${Math.round(s.bitrateIn / 1000)} kb/s`);
      if (s.packetLoss) parts.push(`${(s.packetLoss * 100).toFixed(1)}% loss`);
      badge.querySelector('span').textContent = parts.join(' · ');
      badge.title = `path ${s.path} (${s.localCandidateType}/${s.remoteCandidateType}), rtt ${s.rtt} ms, in ${s.bitrateIn} b/s, out ${s.bitrateOut} b/s, loss ${s.packetLoss}`;
    }
  });
  call.on('mode', () => layoutGrid());
  call.on('file', (transfer) => showTransfer(transfer));
  call.on('mediaError', (err) => toast(`Camera or microphone unavailable: ${err.message}`));
}

function syncButtons() {
  const call = state.call;
  $('btn-mic').setAttribute('aria-pressed', String(!!call?.microphoneEnabled));
  $('btn-cam').setAttribute('aria-pressed', String(!!call?.cameraEnabled));
  $('btn-screen').setAttribute('aria-pressed', String(!!call?.screenSharing));
  const local = state.tiles.get('local');
  if (local) {
    local.el.querySelector('.muted-ic').hidden = !!call?.microphoneEnabled;
    local.el.classList.toggle('has-video', !!call?.cameraEnabled);
  }
}

$('btn-mic').onclick = async () => {
  if (!state.call) return;
  await state.call.setMicrophoneEnabled(!state.call.microphoneEnabled).catch((e) => toast(e.message));
  syncButtons();
};
$('btn-cam').onclick = async () => {
  if (!state.call) return;
  await state.call.setCameraEnabled(!state.call.cameraEnabled).catch((e) => toast(e.message));
  syncButtons();
};
$('btn-screen').onclick = async () => {
  if (!state.call) return;
  if (state.call.screenSharing) state.call.stopScreenShare();
  else await state.call.startScreenShare().catch((e) => e.name !== 'NotAllowedError' && toast(`Screen share failed: ${e.message}`));
  syncButtons();
};
$('btn-leave').onclick = () => leave();
$('btn-side').onclick = () => {
  $('room-view').classList.toggle('side-open');
  $('unread').hidden = true;
};
$('side-close').onclick = () => $('room-view').classList.remove('side-open');
for (const tab of document.querySelectorAll('.tab')) {
  tab.onclick = () => {
    for (const t of document.querySelectorAll('.tab')) t.classList.toggle('active', t === tab);
    $('panel-chat').hidden = tab.dataset.tab !== 'chat';
    $('panel-people').hidden = tab.dataset.tab !== 'people';
  };
}

async function leave() {
  const { room, call, client } = state;
  call?.close();
  await room?.leave().catch(() => {});
  client?.close();
  backToLobby();
}

function backToLobby() {
  state.call?.close();
  state.client?.close();
  Object.assign(state, { client: null, room: null, call: null });
  for (const key of [...state.tiles.keys()]) removeTile(key);
  for (const el of document.querySelectorAll('.msg, .sys')) el.remove();
  $('transfers').innerHTML = '';
  document.removeEventListener('visibilitychange', onVisibility);
  $('room-view').hidden = true;
  $('lobby').hidden = false;
  $('join').disabled = false;
  $('join').textContent = 'Join room';
  document.title = 'Tandem';
}

// ---------- people ----------

function renderPeople() {
  const room = state.room;
  if (!room) return;
  const ul = $('people');
  ul.innerHTML = '';
  const all = [room.localParticipant, ...[...room.participants.values()].sort((a, b) => a.displayName.localeCompare(b.displayName))];
  for (const p of all) {
    const li = document.createElement('li');
    const status = p.metadata?.status === 'away' ? 'away' : 'online';
    li.className = status;
    li.dataset.identity = p.identity;
    const media = p.isLocal ? null : state.call?.peers.get(p.identity)?.media;
    const bits = [status];
    if (media && !media.audio) bits.push('muted');
    if (media?.screen) bits.push('sharing screen');
    li.innerHTML = `<i class="pres"></i><div class="who"><span></span><small></small></div>`;
    li.querySelector('.who span').textContent = p.displayName + (p.isLocal ? ' (you)' : '');
    li.querySelector('.who small').textContent = bits.join(' · ');
    if (!p.isLocal) {
      const b = document.createElement('button');
      b.textContent = 'Send file';
      b.className = 'send-file';
      b.onclick = () => {
        state.sendTo = p.identity;
        $('file-input').click();
      };
      li.appendChild(b);
    }
    ul.appendChild(li);
  }
  $('people-badge').textContent = String(all.length);
  layoutGrid();
}

$('file-input').onchange = () => {
  const file = $('file-input').files[0];
  $('file-input').value = '';
  if (!file || !state.call || !state.sendTo) return;
  try {
    showTransfer(state.call.sendFile(state.sendTo, file));
  } catch (err) {
    toast(err.message);
  }
};

function fmtBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function showTransfer(t) {
  const who = state.room?.participantByIdentity(t.peer.identity)?.displayName || t.peer.identity;
  const el = document.createElement('div');
  el.className = 'xfer';
  el.dataset.id = t.id;
  el.dataset.direction = t.direction;
  el.innerHTML = `<div class="top"><span></span><button class="cancel">Cancel</button></div><progress max="1" value="0"></progress><div class="sub"></div>`;
  el.querySelector('.top span').textContent = `${t.direction === 'send' ? 'To' : 'From'} ${who}: ${t.name}`;
  const sub = el.querySelector('.sub');
  sub.textContent = `0 of ${fmtBytes(t.size)}`;
  el.querySelector('.cancel').onclick = () => t.cancel();
  $('transfers').appendChild(el);
  t.on('progress', (p) => {
    el.querySelector('progress').value = p.fraction;
    sub.textContent = `${fmtBytes(p.bytes)} of ${fmtBytes(p.total)} · ${(p.bitrate / 1e6).toFixed(1)} Mb/s`;
  });
  const finish = (text, ms) => {
    el.querySelector('.cancel').remove();
    sub.textContent = text;
    setTimeout(() => el.remove(), ms);
  };
  t.on('done', ({ sha256, blob }) => {
    el.classList.add('done');
    el.querySelector('progress').value = 1;
    if (blob) {
      const a = document.createElement('a');
      a.href = URL.createObjectURL(blob);
      a.download = t.name;
      a.textContent = 'Save';
      el.querySelector('.top').appendChild(a);
      finish(`${fmtBytes(t.size)} · sha256 verified ${sha256.slice(0, 12)}…`, 120000);
    } else finish(`Delivered · sha256 verified ${sha256.slice(0, 12)}…`, 8000);
  });
  t.on('cancelled', ({ byPeer }) => finish(byPeer ? 'Cancelled by the other side' : 'Cancelled', 6000));
  t.on('error', (err) => finish(`Failed: ${err.message}`, 15000));
}

// ---------- chat ----------

function wireChat(room) {
  const chat = room.chat;
  const box = $('messages');
  const seen = new Set();
  chat.on('message', (m) => {
    if (seen.has(m.offset)) return;
    seen.add(m.offset);
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    box.appendChild(renderMessage(m));
    if (atBottom || m.mine) box.scrollTop = box.scrollHeight;
    if (!m.mine && !$('room-view').classList.contains('side-open')) $('unread').hidden = false;
  });
  chat.on('gap', (g) => {
    $('gap-note').hidden = false;
    $('gap-note').textContent = g.reason === 'epoch_changed' ? 'Chat history was reset on the server.' : 'Some messages from while you were away are no longer available.';
  });
  const older = async () => {
    const first = box.querySelector('.msg');
    const msgs = await chat.loadOlder(30);
    const frag = document.createDocumentFragment();
    for (const m of msgs) if (!seen.has(m.offset)) (seen.add(m.offset), frag.appendChild(renderMessage(m)));
    const prevHeight = box.scrollHeight;
    box.insertBefore(frag, first || $('gap-note').nextSibling);
    box.scrollTop += box.scrollHeight - prevHeight;
    $('load-older').hidden = !chat.hasMore;
  };
  $('load-older').onclick = () => older().catch((e) => toast(e.message));
  chat.ready.then(older).then(() => (box.scrollTop = box.scrollHeight)).catch((e) => toast(`Chat: ${e.message}`));
  $('chat-form').onsubmit = async (e) => {
    e.preventDefault();
    const input = $('chat-input');
    const text = input.value.trim();
    if (!text) return;
    input.value = '';
    try {
      await chat.send(text);
    } catch (err) {
      input.value = text;
      toast(err.code === 'rate_limited' ? 'Slow down a little.' : `Not sent: ${err.message}`);
    }
  };
}

function renderMessage(m) {
  const el = document.createElement('div');
  el.className = 'msg' + (m.mine ? ' mine' : '');
  el.dataset.offset = m.offset;
  const who = m.mine ? 'You' : state.room?.participantByIdentity(m.from)?.displayName || m.data?.name || m.from || 'server';
  const time = new Date(m.ts).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  el.innerHTML = `<div class="meta"><b></b><span></span></div><div class="body"></div>`;
  el.querySelector('b').textContent = who;
  el.querySelector('.meta span').textContent = time;
  el.querySelector('.body').textContent = m.text ?? JSON.stringify(m.data);
  return el;
}

function sysMessage(text) {
  const el = document.createElement('div');
  el.className = 'sys';
  el.textContent = text;
  $('messages').appendChild(el);
}

let toastTimer;
function toast(text) {
  const el = $('toast');
  el.textContent = text;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (el.hidden = true), 4000);
}
