// Chromium (Debian's) completes a call through Tandem's TURN server with
// iceTransportPolicy 'relay': two RTCPeerConnections in one page, a video
// track (canvas capture, VP8) from one to the other, and a data channel.
// Passes when the receiver decodes frames, the data channel echoes, and the
// selected candidate pairs are relay on both sides.
//
// usage: node chromium_relay.js TURN_URL USERNAME CREDENTIAL
const { chromium } = require('playwright-core');

const [url, username, credential] = process.argv.slice(2);

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: [
      '--headless', '--no-sandbox',
      '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
      '--allow-loopback-in-peer-connection',
      '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run',
    ],
  });
  try {
    const page = await browser.newPage();
    const result = await page.evaluate(async ({ url, username, credential }) => {
      const config = {
        iceServers: [{ urls: [url], username, credential }],
        iceTransportPolicy: 'relay',
      };
      const pc1 = new RTCPeerConnection(config);
      const pc2 = new RTCPeerConnection(config);
      const types = { pc1: new Set(), pc2: new Set() };
      pc1.onicecandidate = (e) => { if (e.candidate) { types.pc1.add(e.candidate.type); pc2.addIceCandidate(e.candidate); } };
      pc2.onicecandidate = (e) => { if (e.candidate) { types.pc2.add(e.candidate.type); pc1.addIceCandidate(e.candidate); } };

      // A moving picture, so the encoder keeps producing frames.
      const canvas = document.createElement('canvas');
      canvas.width = 320; canvas.height = 240;
      const ctx = canvas.getContext('2d');
      let n = 0;
      const timer = setInterval(() => {
        ctx.fillStyle = `hsl(${(n * 7) % 360}, 80%, 50%)`;
        ctx.fillRect(0, 0, 320, 240);
        ctx.fillStyle = '#fff';
        ctx.fillText(String(n++), 10 + (n % 280), 120);
      }, 33);
      const stream = canvas.captureStream(30);
      stream.getTracks().forEach((t) => pc1.addTrack(t, stream));

      const video = document.createElement('video');
      video.muted = true; video.autoplay = true; video.playsInline = true;
      document.body.appendChild(video);
      pc2.ontrack = (e) => { video.srcObject = e.streams[0]; video.play().catch(() => {}); };

      const echoed = [];
      pc2.ondatachannel = (e) => { e.channel.onmessage = (m) => e.channel.send('echo:' + m.data); };
      const dc = pc1.createDataChannel('chat');
      const dcDone = new Promise((resolve) => {
        dc.onopen = () => { for (let i = 0; i < 20; i++) dc.send('m' + i); };
        dc.onmessage = (m) => { echoed.push(m.data); if (echoed.length === 20) resolve(); };
      });

      await pc1.setLocalDescription();
      await pc2.setRemoteDescription(pc1.localDescription);
      await pc2.setLocalDescription();
      await pc1.setRemoteDescription(pc2.localDescription);

      const deadline = Date.now() + 30000;
      let framesDecoded = 0;
      while (Date.now() < deadline) {
        const stats = await pc2.getStats();
        stats.forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video') framesDecoded = s.framesDecoded || 0; });
        if (framesDecoded >= 30 && echoed.length === 20) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      await Promise.race([dcDone, new Promise((r) => setTimeout(r, 1000))]);

      async function selectedPair(pc) {
        const stats = await pc.getStats();
        let pair;
        stats.forEach((s) => {
          if (s.type === 'transport' && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId);
        });
        if (!pair) return null;
        const local = stats.get(pair.localCandidateId);
        const remote = stats.get(pair.remoteCandidateId);
        return { local: local.candidateType, remote: remote.candidateType, relayProtocol: local.relayProtocol || null };
      }
      const out = {
        framesDecoded,
        videoWidth: video.videoWidth,
        echoed: echoed.length,
        inOrder: echoed.every((m, i) => m === 'echo:m' + i),
        gathered: { pc1: [...types.pc1], pc2: [...types.pc2] },
        pair1: await selectedPair(pc1),
        pair2: await selectedPair(pc2),
        state: [pc1.connectionState, pc2.connectionState],
      };
      clearInterval(timer);
      pc1.close(); pc2.close();
      return out;
    }, { url, username, credential });
    console.log(JSON.stringify(result));
    const relayOnly = (p) => p && p.local === 'relay' && p.remote === 'relay';
    const ok = result.framesDecoded >= 30 && result.videoWidth === 320 && result.echoed === 20 &&
      result.inOrder && relayOnly(result.pair1) && relayOnly(result.pair2) &&
      result.gathered.pc1.every((t) => t === 'relay') && result.gathered.pc2.every((t) => t === 'relay');
    console.log(ok ? 'PASS' : 'FAIL');
    process.exitCode = ok ? 0 : 1;
  } finally {
    await browser.close();
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
