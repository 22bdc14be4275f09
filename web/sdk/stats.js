// Per-peer connection stats an app can show: path (direct / relay), RTT, bitrate,
// packet loss, and a one-word quality. `summarizeStats` is pure (unit-tested).

/**
 * @param {Iterable<object>} report the values of an RTCStatsReport
 * @param {object|null} prev the previous summary's `_raw` (for rates), or null
 * @param {number} now timestamp in ms
 */
export function summarizeStats(report, prev = null, now = Date.now()) {
  const byId = new Map();
  for (const s of report) byId.set(s.id, s);
  let pair = null;
  for (const s of byId.values()) {
    if (s.type === 'transport' && s.selectedCandidatePairId) pair = byId.get(s.selectedCandidatePairId) || pair;
  }
  if (!pair) {
    for (const s of byId.values()) {
      if (s.type === 'candidate-pair' && (s.selected || (s.nominated && s.state === 'succeeded'))) pair = s;
    }
  }
  const local = pair ? byId.get(pair.localCandidateId) : null;
  const remote = pair ? byId.get(pair.remoteCandidateId) : null;
  let path = 'unknown';
  if (local && remote) path = local.candidateType === 'relay' || remote.candidateType === 'relay' ? 'relay' : 'direct';

  const raw = { ts: now, bytesIn: 0, bytesOut: 0, packetsIn: 0, packetsLost: 0, framesDecoded: 0, audioPacketsIn: 0 };
  let fps = null;
  let remoteLoss = null;
  let jitter = null;
  for (const s of byId.values()) {
    if (s.type === 'inbound-rtp') {
      raw.bytesIn += s.bytesReceived || 0;
      raw.packetsIn += s.packetsReceived || 0;
      raw.packetsLost += Math.max(0, s.packetsLost || 0);
      if (s.kind === 'video') {
        raw.framesDecoded += s.framesDecoded || 0;
        if (s.framesPerSecond !== undefined) fps = Math.max(fps ?? 0, s.framesPerSecond);
      } else if (s.kind === 'audio') {
        raw.audioPacketsIn += s.packetsReceived || 0;
        if (s.jitter !== undefined) jitter = Math.max(jitter ?? 0, s.jitter * 1000);
      }
    } else if (s.type === 'outbound-rtp') {
      raw.bytesOut += s.bytesSent || 0;
    } else if (s.type === 'remote-inbound-rtp' && s.fractionLost !== undefined) {
      remoteLoss = Math.max(remoteLoss ?? 0, s.fractionLost);
    }
  }
  if (pair) {
    // Data channels count here too: a data-only peer still shows throughput.
    raw.pairBytesIn = pair.bytesReceived || 0;
    raw.pairBytesOut = pair.bytesSent || 0;
  }
  const rtt = pair && pair.currentRoundTripTime !== undefined ? Math.round(pair.currentRoundTripTime * 1000) : null;
  let bitrateIn = null;
  let bitrateOut = null;
  let packetLoss = null;
  if (prev && now > prev.ts) {
    const secs = (now - prev.ts) / 1000;
    const inBytes = (raw.pairBytesIn ?? raw.bytesIn) - (prev.pairBytesIn ?? prev.bytesIn);
    const outBytes = (raw.pairBytesOut ?? raw.bytesOut) - (prev.pairBytesOut ?? prev.bytesOut);
    bitrateIn = Math.max(0, Math.round((inBytes * 8) / secs));
    bitrateOut = Math.max(0, Math.round((outBytes * 8) / secs));
    const got = raw.packetsIn - prev.packetsIn;
    const lost = raw.packetsLost - prev.packetsLost;
    packetLoss = got + lost > 0 ? Math.max(0, lost) / (got + lost) : 0;
  } else if (raw.packetsIn + raw.packetsLost > 0) {
    packetLoss = raw.packetsLost / (raw.packetsIn + raw.packetsLost);
  }
  const loss = Math.max(packetLoss ?? 0, remoteLoss ?? 0);
  let quality = 'unknown';
  if (pair) {
    if ((rtt ?? 0) > 400 || loss > 0.1) quality = 'poor';
    else if ((rtt ?? 0) > 150 || loss > 0.02) quality = 'fair';
    else quality = 'good';
  }
  return {
    path,
    localCandidateType: local?.candidateType ?? null,
    remoteCandidateType: remote?.candidateType ?? null,
    protocol: local?.protocol ?? null,
    rtt,
    bitrateIn,
    bitrateOut,
    packetLoss,
    remotePacketLoss: remoteLoss,
    jitter: jitter === null ? null : Math.round(jitter),
    framesDecoded: raw.framesDecoded,
    framesPerSecond: fps,
    audioPacketsReceived: raw.audioPacketsIn,
    quality,
    _raw: raw,
  };
}

/** Collect and summarize one RTCPeerConnection's stats. */
export async function peerStats(pc, prev = null) {
  const report = await pc.getStats();
  return summarizeStats(report.values(), prev?._raw ?? null, Date.now());
}
