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
    messages: [], // [label, text, sender sid]
    speakers: [],
    speakerPushes: 0,
    everSpoke: [],
  };
  let ws;
  let pc;
  let nextId = 1;
  const waiting = new Map();
  let room;
  // The id of our own sfu_offer until its reply arrives: server offers received
  // before that reply were voided by our offer (the server offers again after it).
  let ownOfferId = null;

  function request(type, body) {
    const id = nextId++;
    if (type === 'sfu_offer') ownOfferId = id;
    ws.send(JSON.stringify({ id, type, ...body }));
    return new Promise((resolve, reject) => waiting.set(id, { resolve, reject }));
  }

  async function onPush(msg) {
    if (msg.type === 'ping') {
      ws.send('{"type":"pong"}');
    } else if (msg.type === 'tracks') {
      state.tracksPush = msg.tracks;
    } else if (msg.type === 'active_speakers') {
      state.speakers = msg.speakers;
      state.speakerPushes++;
      for (const s of msg.speakers) {
        if (!state.everSpoke.includes(s.participant)) state.everSpoke.push(s.participant);
      }
    } else if (msg.type === 'sfu_closed') {
      state.closed = msg.reason;
    } else if (msg.type === 'sfu_offer') {
      if (ownOfferId !== null) return; // voided by our own offer; the server re-offers
      await pc.setRemoteDescription({ type: 'offer', sdp: msg.sdp });
      const answer = await pc.createAnswer();
      await pc.setLocalDescription(answer);
      await request('sfu_answer', { room, sdp: answer.sdp, revision: msg.revision });
      state.offersAnswered++;
    }
  }

  // Pushes are handled one at a time, in order.
  let chain = Promise.resolve();

  // options: {publish: bool, simulcast: bool}
  async function start(url, token, roomName, options) {
    const { publish = true, simulcast = false } = options || {};
    room = roomName;
    ws = new WebSocket(url);
    await new Promise((ok, fail) => {
      ws.onopen = ok;
      ws.onerror = fail;
    });
    ws.onmessage = (ev) => {
      const msg = JSON.parse(ev.data);
      if (msg.type === 'reply' || (msg.type === 'error' && msg.id)) {
        if (msg.id === ownOfferId) ownOfferId = null;
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
    // Room-wide data through the SFU: a reliable and a lossy channel.
    state.channels = {
      chat: pc.createDataChannel('chat'),
      lossy: pc.createDataChannel('lossy', { ordered: false, maxRetransmits: 0 }),
    };
    for (const [label, ch] of Object.entries(state.channels)) {
      // The SFU writes the sender's sid and a newline before every relayed message.
      ch.onmessage = (ev) => {
        const raw = String(ev.data);
        const at = raw.indexOf('\n');
        state.messages.push([label, raw.slice(at + 1), at < 0 ? null : raw.slice(0, at)]);
      };
    }
    if (publish) {
      const media = await navigator.mediaDevices.getUserMedia({
        audio: true,
        video: simulcast
          ? { width: 1280, height: 720, frameRate: 15 }
          : { width: 320, height: 240, frameRate: 15 },
      });
      for (const track of media.getTracks()) {
        const init = { direction: 'sendonly', streams: [media] };
        if (simulcast && track.kind === 'video') {
          // Lowest first: the SFU starts subscribers on the first layer listed.
          init.sendEncodings = [
            // Small bitrates so the h layer fits a subscriber's initial estimate.
            { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 40000 },
            { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 100000 },
            { rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 600000 },
          ];
        }
        pc.addTransceiver(track, init);
      }
    }
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    for (const t of pc.getTransceivers()) {
      if (t.sender.track) {
        meta[t.mid] = { source: t.sender.track.kind === 'video' ? 'camera' : 'microphone' };
      }
    }
    const reply = await request('sfu_offer', { room, sdp: offer.sdp, tracks: meta });
    await pc.setRemoteDescription({ type: 'answer', sdp: reply.sdp });
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
      speakerPushes: state.speakerPushes,
      messages: state.messages,
      channelsOpen: Object.values(state.channels).every((c) => c.readyState === 'open'),
      everSpoke: state.everSpoke,
      inbound,
    };
  }

  const layer = (track, rid) => request('sfu_layer', { room, track, rid });
  const send = (label, text) => state.channels[label].send(text);

  window.sfuTest = { start, stats, layer, send, close: () => { ws.close(); pc.close(); } };
})();
