// Chromium participants through Tandem's SFU: each publishes fake camera + microphone
// and must decode every other participant's video and receive their audio; a
// participant that closes its page has its tracks removed for the others.
//
// Usage: node sfu.test.mjs <path to tandem binary>
import { readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checks, until as poll, sleep, startServer, launchChromium } from './harness.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const tandem = process.argv[2];
const PARTICIPANTS = 3;
const { check, crashed, finish } = checks();
const server = await startServer(tandem, { key: 'browserkey', secret: 'browser-test-secret-0123456789abcdef' });
const { addr, token } = server;
const browser = await launchChromium();
const script = readFileSync(join(here, 'participant.js'), 'utf8');
/** `what` names the condition for the reader; the result says whether it held. */
const until = (what, deadlineMs, fn) => poll(deadlineMs, fn, 250);

try {
  const pages = [];
  const sids = [];
  for (let i = 0; i < PARTICIPANTS; i++) {
    const context = await browser.newContext();
    const page = await context.newPage();
    page.on('console', (m) => {
      if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) {
        console.log(`page ${i}: ${m.text()}`);
      }
    });
    await page.goto(`http://${addr}/healthz`); // same origin as the WebSocket
    await page.addScriptTag({ content: script });
    const sid = await page.evaluate(
      ([url, t]) => window.sfuTest.start(url, t, 'call', { publish: true }),
      [`ws://${addr}/ws`, token(`user${i}`)],
    );
    pages.push(page);
    sids.push(sid);
  }

  // Everyone decodes everyone else's video and receives their audio.
  const all = await until('media flows', 30000, async () => {
    const stats = await Promise.all(pages.map((p) => p.evaluate(() => window.sfuTest.stats())));
    const ok = stats.every((s) => {
      const video = s.inbound.filter((r) => r.kind === 'video' && r.framesDecoded > 10);
      const audio = s.inbound.filter((r) => r.kind === 'audio' && r.packets > 20);
      return video.length === PARTICIPANTS - 1 && audio.length === PARTICIPANTS - 1;
    });
    return { ok, stats };
  });
  check(`${PARTICIPANTS} Chromium participants decode each other's video and audio via the SFU`, all.ok, all.stats);
  if (all.ok) {
    const v = all.stats[0].inbound.filter((r) => r.kind === 'video').map((r) => r.framesDecoded);
    console.log(`# page 0 decoded ${v.join(' and ')} frames from the two others`);
  }
  if (all.stats) {
    const s = all.stats[0];
    const others = new Set(s.tracks.map((t) => t.participant));
    check(
      'the tracks push names the other participants with source metadata',
      s.tracks.length === 2 * (PARTICIPANTS - 1) &&
        others.size === PARTICIPANTS - 1 &&
        !others.has(sids[0]) &&
        s.tracks.every((t) => (t.kind === 'video' ? t.source === 'camera' : t.source === 'microphone')),
      s.tracks,
    );
    // Chromium's fake microphone beeps: its audio level makes publishers speakers.
    check(
      'active_speakers pushes name other participants from their audio level',
      all.stats.every((x) => x.speakerPushes > 0 && x.everSpoke.every((sid) => sids.includes(sid)) && x.everSpoke.length > 0),
      all.stats.map((x) => ({ pushes: x.speakerPushes, spoke: x.everSpoke })),
    );
    check('no page reported errors', all.stats.every((x) => x.errors.length === 0), all.stats.map((x) => x.errors));
  }

  // Data channels through the SFU: a message on 'chat' (reliable) and 'lossy'
  // (unordered, no retransmissions) reaches every other page, not the sender.
  const channelsOpen = await until('channels open', 10000, async () => {
    const s = await Promise.all(pages.map((p) => p.evaluate(() => window.sfuTest.stats())));
    return { ok: s.every((x) => x.channelsOpen) };
  });
  check('data channels open on every page', channelsOpen.ok, channelsOpen);
  // The server sees a channel open shortly after the page does.
  await sleep(300);
  await pages[0].evaluate(() => window.sfuTest.send('chat', 'hello from 0'));
  await pages[1].evaluate(() => window.sfuTest.send('lossy', 'fast from 1'));
  const data = await until('data relayed', 10000, async () => {
    const s = await Promise.all(pages.map((p) => p.evaluate(() => window.sfuTest.stats())));
    // Each relayed message names its sender's sid (written by the server).
    const has = (x, label, text, from) => x.messages.some(([l, t, f]) => l === label && t === text && f === from);
    const ok =
      !has(s[0], 'chat', 'hello from 0', sids[0]) &&
      s.slice(1).every((x) => has(x, 'chat', 'hello from 0', sids[0])) &&
      has(s[0], 'lossy', 'fast from 1', sids[1]) &&
      has(s[2], 'lossy', 'fast from 1', sids[1]);
    return { ok, messages: s.map((x) => x.messages) };
  });
  check('room-wide data via the SFU on reliable and lossy channels, with the sender', data.ok, data.messages);

  // The last participant closes its page: the others lose its tracks.
  const gone = sids[PARTICIPANTS - 1];
  await pages[PARTICIPANTS - 1].context().close();
  const after = await until('tracks removed', 15000, async () => {
    const stats = await Promise.all(
      pages.slice(0, -1).map((p) => p.evaluate(() => window.sfuTest.stats())),
    );
    const ok = stats.every(
      (s) => s.tracks.length === 2 * (PARTICIPANTS - 2) && !s.tracks.some((t) => t.participant === gone),
    );
    return { ok, stats };
  });
  check('a closed page has its tracks removed for the others', after.ok, after.stats?.map((s) => s.tracks));

  for (const page of pages.slice(0, -1)) await page.context().close();

  // Simulcast: one publisher sends q/h/f; a receive-only subscriber starts on q and
  // switches to f and back when it asks.
  const open = async (identity, options) => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`http://${addr}/healthz`);
    await page.addScriptTag({ content: script });
    await page.evaluate(
      ([url, t, o]) => window.sfuTest.start(url, t, 'sim', o),
      [`ws://${addr}/ws`, token(identity), options],
    );
    return page;
  };
  await open('sim-pub', { publish: true, simulcast: true });
  const viewer = await open('sim-viewer', { publish: false });
  const videoWidth = (s) => s.inbound.find((r) => r.kind === 'video' && r.framesDecoded > 0)?.width ?? 0;
  const viewerStats = () => viewer.evaluate(() => window.sfuTest.stats());
  const first = await until('first video', 30000, async () => {
    const s = await viewerStats();
    return { ok: videoWidth(s) > 0 && s.tracks.some((t) => t.kind === 'video'), s };
  });
  const simTrack = first.s?.tracks.find((t) => t.kind === 'video');
  check(
    'a simulcast track lists its layers (q/h/f) and is decoded',
    first.ok && JSON.stringify(simTrack?.layers) === '["q","h","f"]',
    { width: first.s && videoWidth(first.s), track: simTrack },
  );
  // Without a request, the layer follows the subscriber's bandwidth estimate: on
  // loopback it grows, and the subscriber moves up from the q layer (320 wide).
  const t0 = Date.now();
  const auto = await until('automatic upgrade', 40000, async () => {
    const w = videoWidth(await viewerStats());
    return { ok: w >= 640, width: w };
  });
  check('the bandwidth estimate moves the subscriber up to a larger layer', auto.ok, auto);
  console.log(`# automatic layer: ${first.s && videoWidth(first.s)} wide at first, ${auto.width} after ${Date.now() - t0} ms`);
  if (simTrack) {
    const pin = async (rid, want, label) => {
      await viewer.evaluate(([id, r]) => window.sfuTest.layer(id, r), [simTrack.id, rid]);
      const r = await until(label, 30000, async () => {
        const w = videoWidth(await viewerStats());
        return { ok: w === want, width: w };
      });
      check(label, r.ok, { want, now: r.width });
      // Pinned: it stays there.
      await sleep(2500);
      const w = videoWidth(await viewerStats());
      check(`${label}, and stays there`, w === want, { want, now: w });
    };
    await pin('q', 320, 'sfu_layer q pins the small layer');
    await pin('f', 1280, 'sfu_layer f pins the full-size layer');
    const back = await viewer.evaluate(([id]) => window.sfuTest.layer(id, 'auto').then(() => 'ok', (e) => e.message), [simTrack.id]);
    check('sfu_layer auto returns to automatic choice', back === 'ok', back);
    const bad = await viewer.evaluate(([id]) => window.sfuTest.layer(id, 'x').then(() => 'ok', (e) => e.message), [simTrack.id]);
    check('an unknown layer is bad_request', bad.startsWith('bad_request'), bad);
  }

  const metrics = await (await fetch(`http://${addr}/metrics`)).text();
  const switches = Number(metrics.match(/^tandem_sfu_layer_switches_total (\d+)/m)?.[1] ?? 0);
  check('layer switches are counted', switches >= 3, { switches });
  const forwarded = Number(metrics.match(/^tandem_sfu_media_packets_forwarded_total (\d+)/m)?.[1] ?? 0);
  check('the server counted forwarded frames', forwarded > 100, { forwarded });
} catch (e) {
  crashed(e);
} finally {
  await browser.close().catch(() => {});
  server.stop();
}
finish();
