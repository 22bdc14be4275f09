// Shared helpers for the browser tests: Chromium launch, pages, waiting, server API.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const BASE = process.env.TANDEM_URL || 'http://127.0.0.1:7880';
export const ARTIFACTS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../test-artifacts');
fs.mkdirSync(ARTIFACTS, { recursive: true });

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

/** Launch Debian's Chromium with fake media devices and loopback ICE allowed. */
export async function launch() {
  const args = [
    '--use-fake-device-for-media-stream',
    '--use-fake-ui-for-media-stream',
    '--allow-loopback-in-peer-connection',
    '--auto-select-desktop-capture-source=Entire screen',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--autoplay-policy=no-user-gesture-required',
    // Pages in background tabs/contexts must keep their timers and media running.
    '--disable-background-timer-throttling',
    '--disable-renderer-backgrounding',
    '--disable-backgrounding-occluded-windows',
  ];
  // Playwright starts Chromium with a fresh temporary --user-data-dir of its own
  // (and refuses one passed in args); `--headless` comes from `headless: true`.
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args, timeout: 30000 });
}

/** A page in its own context (own storage, own fake camera). */
export async function newPage(browser, url, { viewport = { width: 1280, height: 720 }, log = false } = {}) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.on('pageerror', (err) => console.error(`[page error] ${err.message}`));
  page.on('console', (msg) => {
    // Resource errors are expected noise here (the dev-mode probe's 404, a server
    // being restarted); the tests assert on what matters.
    if (!log && msg.text().startsWith('Failed to load resource')) return;
    if (log || msg.type() === 'error' || msg.type() === 'warning') console.error(`[console.${msg.type()}] ${msg.text()}`);
  });
  if (url) await page.goto(BASE + url);
  return page;
}

/** A blank page of the server's origin with the SDK loaded as `window.T`. */
export async function sdkPage(browser, opts) {
  const page = await newPage(browser, '/examples/minimal.html?noauto=1', opts);
  await page.evaluate(async () => {
    window.T = await import('/sdk/index.js');
  });
  return page;
}

/** Poll `fn` (in Node) until it returns truthy. */
export async function until(fn, { timeout = 15000, interval = 100, what = 'condition' } = {}) {
  const end = Date.now() + timeout;
  let last;
  while (Date.now() < end) {
    try {
      last = await fn();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, interval));
  }
  throw new Error(`timed out waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
}

/** Server API call with the dev credentials. */
export async function serverApi(pathname, body) {
  const res = await fetch(BASE + pathname, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'Basic ' + Buffer.from('devkey:secret').toString('base64') },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${pathname}: HTTP ${res.status} ${text}`);
  return text ? JSON.parse(text) : {};
}

export function roomName(prefix) {
  return `${prefix}-${Date.now().toString(36)}${Math.random().toString(36).slice(2, 5)}`;
}

/**
 * Inbound media counters of the connection to `identity` in a page whose call is
 * `window.tandemApp.call` (demo app) or `window.call` (SDK pages).
 */
export function inbound(page, identity) {
  return page.evaluate(async (identity) => {
    const call = window.tandemApp?.call || window.call;
    const peer = call?.peers.get(identity);
    if (!peer) return null;
    const out = { state: peer.pc.connectionState, framesDecoded: 0, audioPackets: 0, videoTracks: 0 };
    for (const s of (await peer.pc.getStats()).values()) {
      if (s.type !== 'inbound-rtp') continue;
      if (s.kind === 'video') out.framesDecoded += s.framesDecoded || 0;
      if (s.kind === 'audio') out.audioPackets += s.packetsReceived || 0;
    }
    for (const st of peer.streams.values()) out.videoTracks += st.getVideoTracks().filter((t) => t.readyState === 'live').length;
    return out;
  }, identity);
}

/** Wait until the page decodes video and receives audio from `identity`, growing. */
export async function expectMediaFlowing(page, identity, what = identity) {
  const first = await until(async () => {
    const s = await inbound(page, identity);
    return s && s.framesDecoded > 0 && s.audioPackets > 0 && s;
  }, { timeout: 25000, what: `media from ${what}` });
  await until(async () => {
    const s = await inbound(page, identity);
    return s.framesDecoded > first.framesDecoded + 5 && s.audioPackets > first.audioPackets + 10;
  }, { timeout: 15000, what: `media from ${what} to keep flowing` });
}

/** Open the demo app as `name` in `room` (dev mode token) and wait until joined. */
export async function appPage(browser, name, room, opts = {}) {
  const identity = opts.identity || name.toLowerCase();
  const page = await newPage(browser, `/?name=${encodeURIComponent(name)}&room=${room}&identity=${identity}&autojoin=1`, opts);
  await until(() => page.evaluate(() => !!window.tandemApp?.call), { timeout: 20000, what: `${name} to join` });
  return page;
}

/**
 * An SDK page connected as `identity` and joined to `room`: `window.client`,
 * `window.room`, and `window.call` when `call` options are given.
 */
export async function sdkPeer(browser, identity, room, { call = null, backoff = { min: 100, max: 2000 }, ...opts } = {}) {
  const page = await sdkPage(browser, opts);
  await page.evaluate(
    async ({ identity, room, call, backoff }) => {
      const token = async () => (await (await fetch(`/dev/token?identity=${identity}&room=${room}`)).json()).token;
      window.client = await window.T.connect(location.origin, token, { backoff });
      window.room = await window.client.join(room);
      if (call) window.call = await window.room.call(call);
    },
    { identity, room, call, backoff },
  );
  return page;
}

/**
 * Deterministic pseudo-random bytes (xorshift32), the same in Node and in a page
 * (pass `makeBytes.toString()` and rebuild it there).
 */
export function makeBytes(n, seed) {
  const out = new Uint8Array(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}
