// Preferred video codec: puts the browser's codecs of one kind first in a
// transceiver's offer/answer (RTCRtpTransceiver.setCodecPreferences), keeping the
// others as fallbacks, so a peer or the SFU that lacks the preferred codec still
// negotiates something.

/**
 * The browser's receive codecs with `mimeType` (`video/H264`, or just `h264`) first.
 * Returns null when the browser cannot reorder codecs or does not have that codec.
 */
export function preferredCodecs(mimeType) {
  if (!mimeType || typeof RTCRtpReceiver === 'undefined' || !RTCRtpReceiver.getCapabilities) return null;
  const want = (mimeType.includes('/') ? mimeType : `video/${mimeType}`).toLowerCase();
  const codecs = RTCRtpReceiver.getCapabilities('video')?.codecs || [];
  const first = codecs.filter((c) => c.mimeType.toLowerCase() === want);
  if (!first.length) return null;
  return [...first, ...codecs.filter((c) => c.mimeType.toLowerCase() !== want)];
}

/** Applies `preferredCodecs(mimeType)` to a video transceiver; false when it cannot. */
export function preferCodec(transceiver, mimeType) {
  const codecs = preferredCodecs(mimeType);
  if (!codecs || !transceiver?.setCodecPreferences) return false;
  try {
    transceiver.setCodecPreferences(codecs);
    return true;
  } catch {
    return false;
  }
}
