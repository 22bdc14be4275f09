// The browser SDK (web/sdk) in SFU mode, in Chromium pages against a real
// `tandem serve` with the SFU on:
//   1. five SDK calls in an `auto` room: mesh at first, the SFU once a fifth publisher
//      joins, everyone decoding everyone's video and receiving their audio; a page
//      that leaves disappears everywhere; below the hysteresis floor the room goes
//      back to mesh and media keeps flowing;
//   2. simulcast: a viewer that shows a publisher small (attach() + ResizeObserver)
//      gets a lower layer, and a larger one when the element grows;
//      layers nobody receives are paused at the publisher (`sfu_layers` →
//      setParameters) and resume when the viewer asks for them;
//   3. room data through the SFU: every other page gets it with the right sender,
//      on the reliable and the lossy channel, and `to` reaches only its addressee;
//   4. an SFU call relayed through Tandem's TURN: pages limited to relay candidates
//      (iceTransportPolicy 'relay') reach the SFU through the built-in TURN server
//      whose credentials the connect reply carries, and decode each other's video
//      over a `relay` candidate pair; the TURN counters show the allocations and
//      the bytes both ways; a token refresh hands the open SFU connection fresh
//      TURN credentials; without ICE servers such a page cannot connect at all;
//   5. H.264 simulcast (`videoCodec: 'h264'`): the viewer decodes H.264, and the size
//      it shows the publisher at picks the layer (widths read from the SPS).
//
// Usage: node sdk.test.mjs <path to tandem binary>
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checks, until, sleep, startServer as start, launchChromium } from './harness.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const webDir = resolve(here, '../../web');
const tandem = process.argv[2];
const { check, crashed, finish } = checks();

const servers = [];
async function startServer(sfuExtra, extra = '') {
  const server = await start(tandem, { key: 'sdkkey', secret: 'sdk-sfu-test-secret-0123456789abcdef', sfuExtra, extra, webDir });
  servers.push(server);
  return server;
}

const browser = await launchChromium([
  '--autoplay-policy=no-user-gesture-required',
  '--disable-background-timer-throttling',
  '--disable-renderer-backgrounding',
]);

/**
 * An SDK page joined to `room` as `identity`, with `window.call` from `callOpts`.
 * With `ttl` its client gets a token function minting tokens that short-lived, so
 * the SDK refreshes them (`window.refreshes` counts it).
 */
async function sdkPage(server, identity, room, callOpts, { ttl } = {}) {
  const context = await browser.newContext();
  if (ttl) await context.exposeFunction('mintToken', () => server.token(identity, ttl));
  const page = await context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) console.log(`# ${identity}: ${m.text()}`);
  });
  page.on('pageerror', (e) => console.log(`# ${identity} page error: ${e.message}`));
  await page.goto(`http://${server.addr}/healthz`);
  await page.evaluate(
    async ([token, room, callOpts, renew]) => {
      const T = await import('/sdk/index.js');
      window.client = await T.connect(location.origin, renew ? () => window.mintToken() : token);
      window.refreshes = 0;
      window.client.on('refreshed', () => window.refreshes++);
      window.room = await window.client.join(room);
      window.got = { data: [], removed: [], modes: [] };
      window.call = await window.room.call(callOpts);
      window.call.on('data', ({ identity, data, lossy }) => window.got.data.push({ identity, data, lossy }));
      window.call.on('trackRemoved', ({ peer, source }) => window.got.removed.push(`${peer.identity}:${source}`));
      window.call.on('mode', (m) => window.got.modes.push(m));
      // Inbound media per remote identity, through whichever path carries it.
      window.media = async () => {
        const out = {};
        const sfuStats = window.call.sfu?.pc ? await window.call.sfu.pc.getStats() : null;
        for (const [identity, peer] of window.call.peers) {
          const stats = peer.pc ? await peer.pc.getStats() : sfuStats;
          const stream = peer.streams.get('camera');
          const ids = new Set(stream ? stream.getTracks().filter((t) => t.readyState === 'live').map((t) => t.id) : []);
          const m = { via: peer.via, frames: 0, audio: 0, width: 0 };
          for (const s of stats ? stats.values() : []) {
            if (s.type !== 'inbound-rtp' || !ids.has(s.trackIdentifier)) continue;
            if (s.kind === 'video') {
              m.frames += s.framesDecoded || 0;
              m.width = Math.max(m.width, s.frameWidth || 0);
              m.codec = stats.get(s.codecId)?.mimeType;
            } else m.audio += s.packetsReceived || 0;
          }
          out[identity] = m;
        }
        return { mode: window.call.mode, roomMode: window.room.mediaMode, sfu: !!window.call.sfu, peers: out };
      };
    },
    [server.token(identity), room, callOpts, !!ttl],
  );
  return page;
}

const media = (page) => page.evaluate(() => window.media());

/** q/h/f simulcast with small layer bitrates (kbit/s), so the loopback estimate reaches the top soon. */
const smallLayers = (q, h, f) => [
  { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: q * 1000 },
  { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: h * 1000 },
  { rid: 'f', scaleResolutionDownBy: 1, maxBitrate: f * 1000 },
];

/** A receive-only SDK page with a 1280 px wide `window.video` element to attach to. */
async function viewerPage(server, identity, room) {
  const page = await sdkPage(server, identity, room, { audio: false, video: false });
  await page.evaluate(() => {
    const v = document.createElement('video');
    v.autoplay = true;
    v.muted = true;
    v.style.width = '1280px';
    document.body.append(v);
    window.video = v;
  });
  return page;
}

/** Every page decodes growing video and receives audio from each of `others(i)`. */
async function flowing(pages, names, want, deadline) {
  const before = await Promise.all(pages.map(media));
  return until(deadline, async () => {
    const now = await Promise.all(pages.map(media));
    const ok = now.every((s, i) =>
      names.filter((n) => n !== names[i]).every((n) => {
        const m = s.peers[n];
        const b = before[i].peers[n];
        return m && m.via === want && m.frames > (b?.via === want ? b.frames : 0) + 1 && m.audio > 10;
      }),
    );
    return { ok, now };
  });
}

try {
  // ---- 1. auto room: mesh → SFU → mesh ---------------------------------------------
  const auto = await startServer('policy = "auto"\nauto_sfu_above = 4\nauto_mesh_at_or_below = 2\n');
  // Small, slow video: 5 pages and a debug-build SFU share 2 cores here.
  const small = { audio: true, video: { width: 320, height: 180, frameRate: 8 } };
  const names = ['u0', 'u1', 'u2', 'u3', 'u4'];
  const pages = [];
  for (const n of names.slice(0, 4)) pages.push(await sdkPage(auto, n, 'auto', small));
  const mesh = await flowing(pages, names.slice(0, 4), 'mesh', 45000);
  check('four publishers stay in mesh and see each other', mesh.ok && mesh.now.every((s) => s.mode === 'mesh'), mesh.now);

  pages.push(await sdkPage(auto, 'u4', 'auto', small));
  const sfu = await flowing(pages, names, 'sfu', 90000);
  check('a fifth publisher moves the room to the SFU: every page decodes the four others via the SFU', sfu.ok && sfu.now.every((s) => s.mode === 'sfu' && s.sfu), sfu.now);
  const noMesh = await Promise.all(pages.map((p) => p.evaluate(() => [...window.call.peers.values()].every((peer) => !peer.pc))));
  check('the mesh connections are closed after the switch', noMesh.every(Boolean), noMesh);

  // u4 closes its page: its tracks and peer go away everywhere.
  await pages[4].context().close();
  pages.pop();
  const gone = await until(20000, async () => {
    const s = await Promise.all(pages.map((p) => p.evaluate(() => ({ has: window.call.peers.has('u4'), removed: window.got.removed.filter((r) => r.startsWith('u4:')) }))));
    return { ok: s.every((x) => !x.has && x.removed.length > 0), s };
  });
  check('a page that leaves has its tracks removed on every other page', gone.ok, gone.s);
  const stillSfu = await Promise.all(pages.map((p) => p.evaluate(() => window.call.mode)));
  check('four publishers keep the room on the SFU (hysteresis)', stillSfu.every((m) => m === 'sfu'), stillSfu);

  // Down to two publishers: back to mesh, and media keeps flowing.
  await pages[3].context().close();
  await pages[2].context().close();
  const two = pages.slice(0, 2);
  const back = await flowing(two, names.slice(0, 2), 'mesh', 45000);
  check('two publishers go back to mesh and media flows peer to peer', back.ok && back.now.every((s) => s.mode === 'mesh'), back.now);
  const legClosed = await until(15000, async () => {
    const s = await Promise.all(two.map((p) => p.evaluate(() => !window.call.sfu)));
    return { ok: s.every(Boolean), s };
  });
  check('the SFU connection is closed after going back to mesh', legClosed.ok, legClosed.s);
  for (const p of two) await p.context().close();

  // ---- 2. simulcast through the SDK ------------------------------------------------
  const fixed = await startServer('policy = "sfu"\n');
  const pub = await sdkPage(fixed, 'pub', 'sim', {
    audio: false,
    video: { width: 1280, height: 720, frameRate: 15 },
    simulcast: smallLayers(40, 100, 600),
  });
  const viewer = await viewerPage(fixed, 'viewer', 'sim');
  const width = async () => (await media(viewer)).peers.pub?.width ?? 0;
  const up = await until(60000, async () => ({ ok: (await width()) >= 640, w: await width() }));
  check('the viewer moves up from the q layer with its bandwidth estimate', up.ok, up);
  const layers = await viewer.evaluate(() => [...window.call.peers.get('pub').sfuTracks.values()].map((t) => t.layers));
  check('the SDK publishes q/h/f simulcast', JSON.stringify(layers) === '[["q","h","f"]]', layers);
  // Layers nobody receives are paused at the publisher: its outbound-rtp per rid
  // stops encoding, and a layer comes back when the viewer asks for it.
  const encoded = () =>
    pub.evaluate(async () => {
      const pc = window.call.sfu.pc;
      const out = {};
      for (const s of (await pc.getStats()).values()) {
        if (s.type === 'outbound-rtp' && s.kind === 'video' && s.rid) out[s.rid] = { frames: s.framesEncoded || 0, bytes: s.bytesSent || 0 };
      }
      const sender = pc.getSenders().find((x) => x.track?.kind === 'video');
      for (const e of sender.getParameters().encodings) if (out[e.rid]) out[e.rid].active = e.active;
      return out;
    });
  await viewer.evaluate(() => {
    window.detach = window.call.attach(window.video, 'pub');
    window.video.style.width = '160px';
  });
  const down = await until(30000, async () => ({ ok: (await width()) === 320, w: await width() }));
  check('a small attached video gets the small layer (frameWidth drops to 320)', down.ok, down);
  await sleep(2500);
  check('and stays there', (await width()) === 320, await width());
  const offWhileSmall = await until(15000, async () => {
    const s = await encoded();
    return { ok: s.h?.active === false && s.f?.active === false, s };
  });
  check('nobody receives h and f: the publisher pauses them', offWhileSmall.ok, offWhileSmall.s);
  await viewer.evaluate(() => (window.video.style.width = '1280px'));
  const again = await until(40000, async () => ({ ok: (await width()) >= 640, w: await width() }));
  check('a larger video element gets a larger layer again (paused layers are turned back on)', again.ok, again);

  await viewer.evaluate(() => window.call.setVideoLayer('pub', 'q'));
  const paused = await until(30000, async () => {
    const [w, s] = [await width(), await encoded()];
    return { ok: w === 320 && s.h?.active === false && s.f?.active === false && s.q?.active === true, w, s };
  });
  check('pinned to q: the publisher stops sending h and f (sfu_layers)', paused.ok, paused);
  if (paused.ok) {
    await sleep(2000);
    const later = await encoded();
    check(
      'paused layers encode nothing while q goes on',
      later.h.frames <= paused.s.h.frames + 1 && later.f.frames <= paused.s.f.frames + 1 && later.q.frames > paused.s.q.frames,
      { before: paused.s, after: later },
    );
  }
  await viewer.evaluate(() => window.call.setVideoLayer('pub', 'f'));
  const resumed = await until(30000, async () => {
    const [w, s] = [await width(), await encoded()];
    return { ok: w >= 640 && s.f?.active === true && s.f.frames > (paused.s?.f?.frames ?? 0) + 5, w, s };
  });
  check('asking for f resumes it at the publisher and the viewer gets the large video again', resumed.ok, resumed);
  const pauses = Number((await (await fetch(`http://${fixed.addr}/metrics`)).text()).match(/^tandem_sfu_layer_pauses_total (\d+)/m)?.[1] ?? 0);
  check('layer pauses are counted', pauses >= 2, { pauses });
  const bad = await viewer.evaluate(async () => {
    const codes = [];
    for (const f of [() => window.call.setVideoSize('pub', -3), () => window.call.setVideoLayer('pub', 'x'), () => window.call.setVideoSize('nobody', 100)]) {
      codes.push(await f().then(() => 'ok', (e) => e.code));
    }
    return codes;
  });
  check('bad sizes and layers get typed errors', JSON.stringify(bad) === '["bad_argument","bad_request","participant_not_found"]', bad);

  // ---- 3. room data through the SFU ------------------------------------------------
  const none = { audio: false, video: false };
  const dp = [];
  for (const n of ['d0', 'd1', 'd2']) dp.push(await sdkPage(fixed, n, 'data', none));
  const open = await until(20000, async () => {
    const s = await Promise.all(dp.map((p) => p.evaluate(() => window.call.sfu?.connectionState)));
    return { ok: s.every((x) => x === 'connected'), s };
  });
  check('data-only SDK calls connect to the SFU', open.ok, open.s);
  await sleep(500); // the server sees the channels open shortly after the pages
  const sent = await until(15000, async () => {
    await dp[0].evaluate(() => window.call.sendData({ n: 'reliable' }));
    await dp[1].evaluate(() => window.call.sendData({ n: 'lossy' }, { lossy: true }));
    await dp[2].evaluate(() => window.call.sendData({ n: 'private' }, { to: 'd0' }));
    await sleep(500);
    const got = await Promise.all(dp.map((p) => p.evaluate(() => window.got.data)));
    const has = (i, from, n, lossy) => got[i].some((d) => d.identity === from && d.data?.n === n && d.lossy === lossy);
    const ok =
      has(1, 'd0', 'reliable', false) && has(2, 'd0', 'reliable', false) && !has(0, 'd0', 'reliable', false) &&
      has(0, 'd1', 'lossy', true) && has(2, 'd1', 'lossy', true) &&
      has(0, 'd2', 'private', false) && !got[1].some((d) => d.data?.n === 'private');
    return { ok, got };
  });
  check('room data via the SFU reaches the others with the right sender (reliable, lossy, to)', sent.ok, sent.got);

  // ---- 4. the SFU through Tandem's TURN relay ------------------------------------
  const relayed = await startServer(
    'policy = "sfu"\n',
    '[turn]\nenabled = true\nudp_bind = "127.0.0.1:0"\ntcp_bind = "127.0.0.1:0"\n' +
      'relay_bind_ip = "127.0.0.1"\nsecret = "sdk-sfu-turn-test-secret"\n',
  );
  const relayOnly = { audio: true, video: { width: 320, height: 240, frameRate: 15 }, simulcast: false, rtcConfig: { iceTransportPolicy: 'relay' } };
  // r0's tokens live 10 s, so its SDK refreshes them (and the TURN credentials) mid-call.
  const rp = [await sdkPage(relayed, 'r0', 'relay', relayOnly, { ttl: '10s' }), await sdkPage(relayed, 'r1', 'relay', relayOnly)];
  const viaRelay = await flowing(rp, ['r0', 'r1'], 'sfu', 45000);
  check("relay-only pages decode each other's video (framesDecoded growing) and receive audio via the SFU", viaRelay.ok && viaRelay.now.every((s) => s.mode === 'sfu'), viaRelay.now);
  const candidates = await Promise.all(
    rp.map((p) =>
      p.evaluate(async () => {
        const pc = window.call.sfu?.pc;
        const stats = pc ? [...(await pc.getStats()).values()] : [];
        const transport = stats.find((s) => s.type === 'transport' && s.selectedCandidatePairId);
        const pair = stats.find((s) => s.id === transport?.selectedCandidatePairId);
        const local = stats.find((s) => s.id === pair?.localCandidateId);
        const remote = stats.find((s) => s.id === pair?.remoteCandidateId);
        const turnUrls = window.client.iceServers.flatMap((s) => [].concat(s.urls)).filter((u) => u.startsWith('turn'));
        return { local: local?.candidateType, url: local?.url, remote: remote?.candidateType, turnUrls };
      }),
    ),
  );
  check(
    "their SFU connection runs over a relay candidate of Tandem's TURN to the SFU's host candidate",
    candidates.every((c) => c.local === 'relay' && c.turnUrls.includes(c.url) && c.remote === 'host'),
    candidates,
  );
  // The counters are read until they show the media in both directions: sampled
  // once, right after the first decoded frames, they may not have caught up yet.
  const counter = (text, name, labels = '') =>
    [...text.matchAll(new RegExp(`^${name}(\\{[^}]*\\})? (\\d+)`, 'gm'))]
      .filter((m) => (m[1] || '').includes(labels))
      .reduce((a, m) => a + Number(m[2]), 0);
  const turnCounts = await until(15000, async () => {
    const text = await relayed.metrics();
    const counts = {
      allocations: counter(text, 'tandem_turn_allocations_total'),
      toSfu: counter(text, 'tandem_turn_relayed_bytes_total', 'to_peer'),
      fromSfu: counter(text, 'tandem_turn_relayed_bytes_total', 'to_client'),
      denied: counter(text, 'tandem_turn_denied_peer_total'),
    };
    const ok = counts.allocations >= 2 && counts.toSfu > 20000 && counts.fromSfu > 20000 && counts.denied === 0;
    return { ok, ...counts };
  });
  check(
    'the TURN server allocated the relays and carried the media both ways, never refusing the SFU',
    turnCounts.ok,
    turnCounts,
  );
  // A token refresh brings new TURN credentials (the REST username carries their
  // expiry): the open SFU connection is handed them, and media keeps flowing.
  const before = await rp[0].evaluate(() => {
    window.sfuPc = window.call.sfu?.pc;
    return { refreshes: window.refreshes, username: window.sfuPc?.getConfiguration().iceServers.find((s) => s.username)?.username };
  });
  const renewed = await until(25000, async () => {
    const s = await rp[0].evaluate(() => ({
      refreshes: window.refreshes,
      samePc: !!window.sfuPc && window.call.sfu?.pc === window.sfuPc,
      pc: window.sfuPc?.getConfiguration().iceServers.find((s) => s.username)?.username,
      client: window.client.iceServers.find((s) => s.username)?.username,
    }));
    return { ok: s.refreshes > before.refreshes && s.samePc && s.pc === s.client && s.pc !== before.username, before, s };
  });
  check('a token refresh hands the open SFU connection the fresh TURN credentials', renewed.ok, renewed);
  const afterRefresh = await flowing(rp, ['r0', 'r1'], 'sfu', 30000);
  check('media keeps flowing through the relay after the refresh', afterRefresh.ok, afterRefresh.now);
  const stranded = await sdkPage(relayed, 'r2', 'relay', { ...relayOnly, iceServers: [] });
  await sleep(8000);
  const strandedState = await stranded.evaluate(() => window.call.sfu?.connectionState ?? 'none');
  check('a relay-only page without ICE servers cannot reach the SFU (the relay is what carries the others)', strandedState !== 'connected', strandedState);

  // ---- 5. H.264 simulcast -----------------------------------------------------------
  const h264 = await startServer('policy = "sfu"\n');
  await sdkPage(h264, 'hpub', 'h264', {
    audio: false,
    video: { width: 1280, height: 720, frameRate: 15 },
    videoCodec: 'h264',
    simulcast: smallLayers(60, 150, 600),
  });
  const hview = await viewerPage(h264, 'hview', 'h264');
  const hstate = async () => {
    const { frames = 0, width = 0, codec } = (await media(hview)).peers.hpub || {};
    return { frames, width, codec };
  };
  const hup = await until(60000, async () => {
    const st = await hstate();
    return { ok: st.codec === 'video/H264' && st.width >= 640, st };
  });
  check('an H.264 simulcast track reaches the viewer and moves up with its estimate', hup.ok, hup.st);
  await hview.evaluate(() => {
    window.call.attach(window.video, 'hpub');
    window.video.style.width = '160px';
  });
  const hdown = await until(30000, async () => {
    const st = await hstate();
    return { ok: st.codec === 'video/H264' && st.width === 320, st };
  });
  check('a small attached video gets the small H.264 layer (width from the SPS)', hdown.ok, hdown.st);
  const decodedBefore = (await hstate()).frames;
  await sleep(2000);
  const decodedAfter = await hstate();
  check('and keeps decoding it', decodedAfter.frames > decodedBefore && decodedAfter.width === 320, { decodedBefore, decodedAfter });
} catch (e) {
  crashed(e);
} finally {
  await browser.close().catch(() => {});
  for (const s of servers) s.stop();
}
finish();
