// Join → first remote video frame in mesh, median of 10 runs. The joining page has
// its camera already open (as after a lobby preview) and its socket connected; the
// clock runs from `client.join()` to the first remote frame painted in a <video>
// (requestVideoFrameCallback). Results go to test-artifacts/first-frame.json.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { launch, sdkPeer, sdkPage, until, roomName, ARTIFACTS } from './lib.js';

const RUNS = Number(process.env.FIRST_FRAME_RUNS || 10);
const video = { width: 640, height: 360, frameRate: 30 };
let browser;
before(async () => (browser = await launch()));
after(async () => browser?.close());

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

test(`join → first remote video frame, median of ${RUNS}`, async () => {
  const runs = [];
  for (let i = 0; i < RUNS; i++) {
    const room = roomName('ff');
    const alice = await sdkPeer(browser, 'alice', room, { call: { audio: true, video } });
    const bob = await sdkPage(browser);
    const r = await bob.evaluate(
      async ({ room, video }) => {
        const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video });
        const token = async () => (await (await fetch(`/dev/token?identity=bob&room=${room}`)).json()).token;
        const t0 = performance.now();
        const client = await window.T.connect(location.origin, token);
        const t1 = performance.now();
        const v = document.createElement('video');
        v.muted = true;
        v.autoplay = true;
        document.body.append(v);
        const frame = new Promise((resolve) => v.requestVideoFrameCallback(() => resolve(performance.now())));
        const room_ = await client.join(room);
        const t2 = performance.now();
        const call = await room_.call({ localStream: stream });
        call.on('track', ({ track, stream }) => {
          if (track.kind === 'video') v.srcObject = stream;
        });
        const t3 = await frame;
        window.client = client;
        window.call = call;
        return { connect: t1 - t0, joinReply: t2 - t1, joinToFrame: t3 - t1, connectToFrame: t3 - t0 };
      },
      { room, video },
    );
    runs.push(r);
    await bob.evaluate(() => (window.call.close(), window.client.close()));
    await bob.context().close();
    await alice.context().close();
  }
  const joinToFrame = runs.map((r) => Math.round(r.joinToFrame));
  const result = {
    runs: RUNS,
    join_to_first_frame_ms: { median: median(joinToFrame), min: Math.min(...joinToFrame), max: Math.max(...joinToFrame), all: joinToFrame },
    connect_to_first_frame_ms_median: Math.round(median(runs.map((r) => r.connectToFrame))),
    connect_ms_median: Math.round(median(runs.map((r) => r.connect))),
    join_reply_ms_median: Math.round(median(runs.map((r) => r.joinReply))),
    chromium: browser.version(),
    when: new Date().toISOString(),
  };
  fs.writeFileSync(`${ARTIFACTS}/first-frame.json`, JSON.stringify(result, null, 2));
  console.log(`join → first remote frame: median ${result.join_to_first_frame_ms.median} ms (min ${result.join_to_first_frame_ms.min}, max ${result.join_to_first_frame_ms.max}) over ${RUNS} runs; connect+join → frame median ${result.connect_to_first_frame_ms_median} ms`);
  assert.ok(result.join_to_first_frame_ms.median < 500, `median ${result.join_to_first_frame_ms.median} ms ≥ 500 ms target`);
});
