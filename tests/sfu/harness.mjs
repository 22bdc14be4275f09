// Shared by the Chromium suites of tests/sfu: TAP-like checks, polling, a `tandem serve`
// with the SFU on an ephemeral port, and Debian's Chromium with fake media devices.
import { chromium } from 'playwright-core';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** `check(name, ok, detail)` prints ok / not ok; `finish()` prints the tally and exits. */
export function checks() {
  const tally = { passed: 0, failed: 0 };
  const check = (name, ok, detail) => {
    if (ok) {
      tally.passed++;
      console.log(`ok - ${name}`);
    } else {
      tally.failed++;
      console.log(`not ok - ${name}\n  ${JSON.stringify(detail)}`);
    }
  };
  const crashed = (e) => {
    tally.failed++;
    console.log(`not ok - ${e.stack}`);
  };
  const finish = () => {
    console.log(`${tally.passed} passed, ${tally.failed} failed`);
    process.exit(tally.failed === 0 ? 0 : 1);
  };
  return { check, crashed, finish };
}

/** Polls `fn` until it returns `{ok: true, …}` or the deadline passes; returns the last result. */
export async function until(deadlineMs, fn, intervalMs = 300) {
  const end = Date.now() + deadlineMs;
  let last;
  while (Date.now() < end) {
    last = await fn();
    if (last.ok) return last;
    await sleep(intervalMs);
  }
  return last;
}

/**
 * `tandem serve` on 127.0.0.1 with the SFU on an ephemeral port, `sfuExtra` added to
 * its `[sfu]` section and `extra` (other sections) after it. Returns
 * `{addr, token(identity, ttl = '1h'), metrics(), stop()}`.
 */
export async function startServer(tandem, { key, secret, sfuExtra = '', extra = '', webDir } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'tandem-sfu-test-'));
  const configPath = join(dir, 'tandem.toml');
  writeFileSync(
    configPath,
    `[server]\nbind = "127.0.0.1:0"\ndata_dir = "${join(dir, 'data')}"\n` +
      `[keys]\n${key} = "${secret}"\n` +
      `[sfu]\nenabled = true\nudp_bind = "127.0.0.1:0"\n${sfuExtra}\n${extra}`,
  );
  const args = ['serve', '--config', configPath, ...(webDir ? ['--web-dir', webDir] : [])];
  const proc = spawn(tandem, args, {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, TANDEM_LOG: process.env.TANDEM_LOG || 'warn' },
  });
  const addr = await new Promise((ok, fail) => {
    const lines = createInterface({ input: proc.stdout });
    lines.on('line', (line) => {
      const m = line.match(/^tandem listening on (.+)$/);
      if (m) ok(m[1]);
    });
    proc.on('exit', (code) => fail(new Error(`tandem exited with ${code}`)));
  });
  const token = (identity, ttl = '1h') =>
    execFileSync(tandem, ['token', '--config', configPath, '--identity', identity, '--room', '*', '--ttl', ttl])
      .toString()
      .trim();
  const stop = () => {
    proc.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  };
  const metrics = async () => (await fetch(`http://${addr}/metrics`)).text();
  return { addr, token, metrics, stop };
}

/** Debian's Chromium (never a downloaded one), headless, with fake camera and microphone. */
export function launchChromium(extraArgs = []) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: [
      '--headless',
      '--no-sandbox',
      '--use-fake-device-for-media-stream',
      '--use-fake-ui-for-media-stream',
      '--allow-loopback-in-peer-connection',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      ...extraArgs,
    ],
  });
}
