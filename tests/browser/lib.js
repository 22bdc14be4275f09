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
