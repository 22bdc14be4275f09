// A minimal SFU participant for the browser test: WebSocket signaling as in
// docs/protocol.md ("SFU media"), one RTCPeerConnection to the server, fake camera and
// microphone. Deliberately independent of web/sdk so it checks the protocol itself.
(() => {
  const state = {
    log: [],
    tracksPush: [],
    remote: new Map(), // mid -> MediaStreamTrack
    offersAnswered: 0,
    closed: null,
    errors: [],
  };
  let ws;
  let pc;
  let nextId = 1;
  const waiting = new Map();
  let room;
  let ownOfferInFlight = false;

  function request(type, body) {
    const id = nextId++;
    ws.send(JSON.stringify({ id, type, ...body }));
    return new Promise((resolve, reject) => waiting.set(id, { resolve, reject }));
  }

  async function onPush(msg) {
    if (msg.type === 'ping') {
      ws.send('{"type":"pong"}');
    } else if (msg.type === 'tracks') {
      state.tracksPush = msg.tracks;
    } else if (msg.type === 'sfu_closed') {
      state.closed = msg.reason;
    } else if (msg.type === 'sfu_offer') {
      if (ownOfferInFlight) return; // voided by our own offer; the server re-offers
      await pc.setRemoteDescription({ type: 'offer', sdp: msg.sdp });
      const answer = await pc.createAnswer();
      await pc.setLocalDescription(answer);
      await request('sfu_answer', { room, sdp: answer.sdp, revision: msg.revision });
      state.offersAnswered++;
    }
  }

  // Pushes are handled one at a time, in order.
  let chain = Promise.resolve();

  async function start(url, token, roomName, publish) {
    room = roomName;
    ws = new WebSocket(url);
    await new Promise((ok, fail) => {
      ws.onopen = ok;
      ws.onerror = fail;
    });
    ws.onmessage = (ev) => {
      const msg = JSON.parse(ev.data);
      if (msg.type === 'reply' || (msg.type === 'error' && msg.id)) {
        const w = waiting.get(msg.id);
        waiting.delete(msg.id);
        if (!w) return;
        if (msg.type === 'reply') w.resolve(msg.result);
        else w.reject(new Error(`${msg.code}: ${msg.message}`));
        return;
      }
      chain = chain.then(() => onPush(msg)).catch((e) => state.errors.push(String(e)));
    };
    const connected = await request('connect', { token, protocol: 1 });
    await request('join', { room });
    pc = new RTCPeerConnection();
    pc.ontrack = (ev) => state.remote.set(ev.transceiver.mid, ev.track);
    const meta = {};
    if (publish) {
      const media = await navigator.mediaDevices.getUserMedia({
        audio: true,
        video: { width: 320, height: 240, frameRate: 15 },
      });
      for (const track of media.getTracks()) {
        pc.addTransceiver(track, { direction: 'sendonly', streams: [media] });
      }
    } else {
      pc.createDataChannel('probe');
    }
    ownOfferInFlight = true;
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    for (const t of pc.getTransceivers()) {
      if (t.sender.track) {
        meta[t.mid] = { source: t.sender.track.kind === 'video' ? 'camera' : 'microphone' };
      }
    }
    const reply = await request('sfu_offer', { room, sdp: offer.sdp, tracks: meta });
    await pc.setRemoteDescription({ type: 'answer', sdp: reply.sdp });
    ownOfferInFlight = false;
    return connected.client_id;
  }

  async function stats() {
    const report = await pc.getStats();
    const inbound = [];
    report.forEach((s) => {
      if (s.type === 'inbound-rtp') {
        inbound.push({
          kind: s.kind,
          mid: s.mid,
          packets: s.packetsReceived || 0,
          bytes: s.bytesReceived || 0,
          framesDecoded: s.framesDecoded || 0,
          width: s.frameWidth || 0,
        });
      }
    });
    return {
      ice: pc.iceConnectionState,
      conn: pc.connectionState,
      tracks: state.tracksPush,
      remoteMids: [...state.remote.keys()],
      offersAnswered: state.offersAnswered,
      closed: state.closed,
      errors: state.errors,
      inbound,
    };
  }

  window.sfuTest = { start, stats, close: () => { ws.close(); pc.close(); } };
})();
