//! What the SFU needs to know about one RTP payload before forwarding it, sans-IO:
//! whether it starts a keyframe (a simulcast layer switch, or a subscriber's resync
//! after dropped packets, may only happen there) and, for VP8, the picture ids that
//! must stay continuous for the subscriber when the source layer changes.
//!
//! Only the first packet of a keyframe is marked: the selector switches on it and
//! forwards the rest of the frame because it is then on the new layer.

use str0m::format::Codec;
use str0m::rtp::Vp8Descriptor;

/// The codec families the SFU forwards, by what their payload looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadKind {
    Vp8,
    H264,
    /// Audio and anything else: every packet stands alone, no keyframes.
    Plain,
}

impl PayloadKind {
    pub fn of(codec: Codec) -> Self {
        match codec {
            Codec::Vp8 => PayloadKind::Vp8,
            Codec::H264 => PayloadKind::H264,
            _ => PayloadKind::Plain,
        }
    }
}

/// One inspected payload.
#[derive(Debug, Clone, Copy)]
pub struct Inspected {
    /// The first packet of a keyframe (decodable without earlier frames).
    pub keyframe_start: bool,
    /// VP8's payload descriptor, when it parsed: carries the picture id and
    /// TL0PICIDX a layer switch rewrites.
    pub vp8: Option<Vp8Descriptor>,
}

pub fn inspect(kind: PayloadKind, payload: &[u8]) -> Inspected {
    match kind {
        PayloadKind::Vp8 => {
            let vp8 = Vp8Descriptor::parse(payload).ok();
            Inspected {
                keyframe_start: vp8.is_some_and(|d| d.starts_keyframe(payload)),
                vp8,
            }
        }
        PayloadKind::H264 => Inspected {
            keyframe_start: h264_starts_keyframe(payload),
            vp8: None,
        },
        PayloadKind::Plain => Inspected {
            keyframe_start: false,
            vp8: None,
        },
    }
}

/// The VP8 frame inside a payload that starts a frame: the bytes after the payload
/// descriptor (RFC 7741 4.2), where the keyframe header with the width is.
pub fn vp8_frame(payload: &[u8]) -> Option<&[u8]> {
    let first = *payload.first()?;
    let mut offset = 1;
    if first & 0x80 != 0 {
        let ext = *payload.get(1)?;
        offset = 2;
        if ext & 0x80 != 0 {
            // PictureID: one byte, or two when its M bit is set.
            offset += if payload.get(offset)? & 0x80 != 0 {
                2
            } else {
                1
            };
        }
        if ext & 0x40 != 0 {
            offset += 1; // TL0PICIDX
        }
        if ext & 0x30 != 0 {
            offset += 1; // TID / Y / KEYIDX
        }
    }
    payload.get(offset..).filter(|f| !f.is_empty())
}

/// The picture width a payload that starts a keyframe announces: VP8's keyframe
/// header, or an H.264 SPS (alone or in a STAP-A).
pub fn keyframe_width(kind: PayloadKind, payload: &[u8]) -> Option<u32> {
    match kind {
        PayloadKind::Vp8 => vp8_keyframe_width(vp8_frame(payload)?),
        PayloadKind::H264 => h264_nals(payload).find_map(crate::h264::sps_width),
        PayloadKind::Plain => None,
    }
}

/// The width in a VP8 keyframe header (RFC 6386 9.1: a 3-byte frame tag whose low
/// bit is 0 for keyframes, the start code 9d 01 2a, then 14 bits of width).
pub fn vp8_keyframe_width(frame: &[u8]) -> Option<u32> {
    if frame.len() < 10 || frame[0] & 1 != 0 || frame[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    Some(u32::from(u16::from_le_bytes([frame[6], frame[7]]) & 0x3fff))
}

/// The NAL units of a single-NAL or STAP-A payload (an FU-A fragment is none).
fn h264_nals(payload: &[u8]) -> impl Iterator<Item = &[u8]> {
    let first = payload.first().map(|b| b & 0x1f);
    let (single, mut rest) = match first {
        Some(NAL_STAP_A) => (None, &payload[1..]),
        Some(1..=23) => (Some(payload), &[][..]),
        _ => (None, &[][..]),
    };
    let aggregated = std::iter::from_fn(move || {
        let size = usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?]));
        let nal = rest.get(2..2 + size)?;
        rest = &rest[2 + size..];
        Some(nal)
    });
    single.into_iter().chain(aggregated)
}

/// NAL unit types (RFC 6184): IDR slice, sequence parameter set, STAP-A, FU-A.
const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_STAP_A: u8 = 24;
const NAL_FU_A: u8 = 28;

/// Whether an H.264 payload begins a keyframe: an SPS or the start of an IDR slice,
/// alone, inside a STAP-A aggregate, or as the first fragment of an FU-A. Browsers
/// send SPS and PPS in a STAP-A ahead of the IDR, so switching there keeps them.
fn h264_starts_keyframe(payload: &[u8]) -> bool {
    let starts = |nal: &[u8]| {
        nal.first()
            .is_some_and(|h| matches!(h & 0x1f, NAL_IDR | NAL_SPS))
    };
    match payload.first().map(|b| b & 0x1f) {
        Some(NAL_FU_A) => payload
            .get(1)
            .is_some_and(|fu| fu & 0x80 != 0 && fu & 0x1f == NAL_IDR),
        _ => h264_nals(payload).any(starts),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A VP8 payload: X=1, S=1, PID=0; I=1, L=1, T=1; 15-bit picture id; TL0PICIDX;
    /// TID byte; then the frame.
    fn vp8(picture_id: u16, tl0: u8, start: bool, frame: &[u8]) -> Vec<u8> {
        let mut p = vec![
            0x80 | if start { 0x10 } else { 0 },
            0xe0,
            0x80 | (picture_id >> 8) as u8,
            picture_id as u8,
            tl0,
            0x20,
        ];
        p.extend_from_slice(frame);
        p
    }

    const KEY: [u8; 10] = [0x50, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01];
    const DELTA: [u8; 4] = [0x51, 0x00, 0x00, 0x00];

    #[test]
    fn vp8_keyframe_start_and_ids() {
        let p = vp8(300, 7, true, &KEY);
        let i = inspect(PayloadKind::Vp8, &p);
        assert!(i.keyframe_start);
        let d = i.vp8.expect("descriptor");
        assert_eq!(d.picture_id(), Some(300));
        assert_eq!(d.tl0_pic_idx(), Some(7));
        assert_eq!(vp8_frame(&p), Some(&KEY[..]));
        assert_eq!(keyframe_width(PayloadKind::Vp8, &p), Some(640));
        assert_eq!(
            keyframe_width(PayloadKind::Vp8, &vp8(300, 7, true, &DELTA)),
            None
        );
    }

    #[test]
    fn vp8_interframe_and_continuation_are_not_keyframe_starts() {
        assert!(!inspect(PayloadKind::Vp8, &vp8(1, 0, true, &DELTA)).keyframe_start);
        assert!(!inspect(PayloadKind::Vp8, &vp8(1, 0, false, &KEY)).keyframe_start);
        // Truncated descriptors parse to nothing instead of panicking.
        for n in 0..6 {
            let p = vp8(1, 0, true, &KEY);
            let i = inspect(PayloadKind::Vp8, &p[..n]);
            assert!(!i.keyframe_start && i.vp8.is_none(), "prefix {n}");
            assert!(vp8_frame(&p[..n]).is_none(), "prefix {n}");
        }
    }

    #[test]
    fn vp8_keyframes_tell_the_width() {
        // Frame tag (keyframe), start code, width 640 (0x0280), height 360.
        let key = [
            0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01, 0,
        ];
        assert_eq!(vp8_keyframe_width(&key), Some(640));
        let mut delta = key;
        delta[0] |= 1;
        assert_eq!(vp8_keyframe_width(&delta), None);
        assert_eq!(vp8_keyframe_width(&key[..6]), None);
    }

    #[test]
    fn vp8_frame_without_extensions() {
        let mut p = vec![0x10];
        p.extend_from_slice(&KEY);
        assert_eq!(vp8_frame(&p), Some(&KEY[..]));
        assert!(inspect(PayloadKind::Vp8, &p).keyframe_start);
    }

    #[test]
    fn h264_keyframe_forms() {
        let h = |p: &[u8]| inspect(PayloadKind::H264, p).keyframe_start;
        assert!(h(&[0x65, 0x88]), "IDR slice");
        assert!(h(&[0x67, 0x42]), "SPS");
        assert!(!h(&[0x41, 0x9a]), "non-IDR slice");
        // STAP-A with SPS (2 bytes) and PPS (1 byte).
        assert!(h(&[0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x01, 0x68]));
        assert!(!h(&[0x78, 0x00, 0x01, 0x68]), "STAP-A with only a PPS");
        assert!(!h(&[0x78, 0x00, 0x09, 0x67]), "STAP-A size past the end");
        // FU-A: start of an IDR, continuation of one, start of a non-IDR.
        assert!(h(&[0x7c, 0x85, 0x00]));
        assert!(!h(&[0x7c, 0x05, 0x00]));
        assert!(!h(&[0x7c, 0x81, 0x00]));
        assert!(!h(&[]));
    }

    #[test]
    fn h264_width_from_the_sps_of_a_keyframe() {
        // x264 SPS, 1280x720 (see `h264`), alone and in a STAP-A with a PPS.
        let sps = [
            0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00,
            0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x83, 0x19, 0x60,
        ];
        assert_eq!(keyframe_width(PayloadKind::H264, &sps), Some(1280));
        let mut stap = vec![0x78, 0x00, sps.len() as u8];
        stap.extend_from_slice(&sps);
        stap.extend_from_slice(&[0x00, 0x04, 0x68, 0xeb, 0xe3, 0xcb]);
        assert!(inspect(PayloadKind::H264, &stap).keyframe_start);
        assert_eq!(keyframe_width(PayloadKind::H264, &stap), Some(1280));
        assert_eq!(keyframe_width(PayloadKind::H264, &[0x65, 0x88]), None);
        assert_eq!(keyframe_width(PayloadKind::H264, &[0x7c, 0x85, 0x00]), None);
    }

    #[test]
    fn plain_payloads_have_no_keyframes() {
        let i = inspect(PayloadKind::Plain, &[0x10, 0x00]);
        assert!(!i.keyframe_start && i.vp8.is_none());
    }
}
