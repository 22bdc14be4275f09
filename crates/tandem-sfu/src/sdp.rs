//! Checks on client SDP before it reaches str0m: size, syntax, and whether any
//! audio/video section offers a codec the SFU forwards.

use crate::SfuError;
use str0m::change::{SdpAnswer, SdpOffer};

/// Codecs the SFU negotiates (rtpmap encoding names, compared without case).
pub const CODECS: [&str; 3] = ["opus", "VP8", "H264"];

fn parse_err(what: &str, e: impl std::fmt::Display) -> SfuError {
    SfuError::BadSdp(format!("the {what} is not valid SDP: {e}"))
}

fn check_size(sdp: &str, max: usize) -> Result<(), SfuError> {
    if sdp.len() > max {
        return Err(SfuError::BadSdp(format!(
            "SDP of {} bytes exceeds the limit of {max} bytes",
            sdp.len()
        )));
    }
    if sdp.trim().is_empty() {
        return Err(SfuError::BadSdp("the SDP is empty".into()));
    }
    Ok(())
}

/// Parses an offer and rejects one whose audio/video sections have no usable codec.
pub fn parse_offer(sdp: &str, max: usize) -> Result<SdpOffer, SfuError> {
    check_size(sdp, max)?;
    let offer = SdpOffer::from_sdp_string(sdp).map_err(|e| parse_err("offer", e))?;
    let sections = media_sections(sdp);
    if sections.is_empty() {
        return Err(SfuError::BadSdp("the offer has no m= sections".into()));
    }
    let media: Vec<&Section> = sections
        .iter()
        .filter(|s| s.port != 0 && (s.kind == "audio" || s.kind == "video"))
        .collect();
    if !media.is_empty() && !media.iter().any(|s| s.usable()) {
        let offered: Vec<&str> = media
            .iter()
            .flat_map(|s| s.codecs.iter().map(|(_, name)| name.as_str()))
            .collect();
        return Err(SfuError::MediaUnsupported(format!(
            "no offered codec is supported (offered: {}; supported: {})",
            if offered.is_empty() {
                "none".to_string()
            } else {
                offered.join(", ")
            },
            CODECS.join(", ")
        )));
    }
    Ok(offer)
}

pub fn parse_answer(sdp: &str, max: usize) -> Result<SdpAnswer, SfuError> {
    check_size(sdp, max)?;
    SdpAnswer::from_sdp_string(sdp).map_err(|e| parse_err("answer", e))
}

#[derive(Debug)]
struct Section {
    kind: String,
    port: u32,
    /// The payload types of the `m=` line, in the offerer's order of preference.
    formats: Vec<String>,
    /// `a=rtpmap` payload types and encoding names, as they appear.
    codecs: Vec<(String, String)>,
    /// `a=sendrecv` (the default), `a=sendonly`, `a=recvonly` or `a=inactive`.
    direction: &'static str,
}

/// Whether an offer sends audio or video (so publishing rights are needed).
pub fn sends_media(sdp: &str) -> bool {
    media_sections(sdp).iter().any(|s| {
        s.port != 0
            && (s.kind == "audio" || s.kind == "video")
            && matches!(s.direction, "sendrecv" | "sendonly")
    })
}

/// The video codec an offer prefers: the first payload type of its first video
/// m-line that the SFU forwards (`VP8` or `H264`, from its `a=rtpmap`). The SFU's
/// answer lists codecs in its own order, and browsers send the answer's first
/// codec, so the participant's `Rtc` is built with this one first.
pub fn preferred_video_codec(sdp: &str) -> Option<String> {
    let video = media_sections(sdp)
        .into_iter()
        .find(|s| s.port != 0 && s.kind == "video")?;
    video.formats.iter().find_map(|pt| {
        video
            .codecs
            .iter()
            .find(|(p, _)| p == pt)
            .map(|(_, name)| name.to_ascii_uppercase())
            .filter(|name| matches!(name.as_str(), "VP8" | "H264"))
    })
}

impl Section {
    fn usable(&self) -> bool {
        self.codecs
            .iter()
            .any(|(_, c)| CODECS.iter().any(|s| s.eq_ignore_ascii_case(c)))
    }
}

/// `m=` sections with their port, payload types and rtpmap encoding names.
fn media_sections(sdp: &str) -> Vec<Section> {
    let mut out: Vec<Section> = Vec::new();
    for line in sdp.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("m=") {
            let mut parts = rest.split_whitespace();
            let kind = parts.next().unwrap_or_default().to_string();
            let port = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
            // After the port: the protocol, then the payload types.
            let formats = parts.skip(1).map(str::to_string).collect();
            out.push(Section {
                kind,
                port,
                formats,
                codecs: Vec::new(),
                direction: "sendrecv",
            });
        } else if let Some(dir) = ["sendrecv", "sendonly", "recvonly", "inactive"]
            .into_iter()
            .find(|d| line.strip_prefix("a=") == Some(*d))
        {
            if let Some(s) = out.last_mut() {
                s.direction = dir;
            }
        } else if let Some(rest) = line.strip_prefix("a=rtpmap:") {
            let mut parts = rest.split_whitespace();
            let pt = parts.next().unwrap_or_default();
            let name = parts
                .next()
                .and_then(|enc| enc.split('/').next())
                .unwrap_or_default();
            if let Some(s) = out.last_mut() {
                s.codecs.push((pt.to_string(), name.to_string()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(media: &str) -> String {
        format!(
            "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
             a=fingerprint:sha-256 {fp}\r\n{media}",
            fp = ["AB"; 32].join(":")
        )
    }

    fn section(kind: &str, pt: u8, codec: &str) -> String {
        format!(
            "m={kind} 9 UDP/TLS/RTP/SAVPF {pt}\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n\
             a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=setup:actpass\r\n\
             a=sendonly\r\na=rtcp-mux\r\na=rtpmap:{pt} {codec}\r\n"
        )
    }

    #[test]
    fn the_preferred_video_codec_is_the_first_forwardable_one() {
        let video = "m=video 9 UDP/TLS/RTP/SAVPF 45 102 96\r\na=mid:1\r\n\
                     a=rtpmap:96 VP8/90000\r\na=rtpmap:45 AV1/90000\r\n\
                     a=rtpmap:102 H264/90000\r\n";
        let audio = "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n";
        let sdp = offer(&format!("{audio}{video}"));
        assert_eq!(preferred_video_codec(&sdp).as_deref(), Some("H264"));
        let vp8_first = sdp.replace("45 102 96", "96 102");
        assert_eq!(preferred_video_codec(&vp8_first).as_deref(), Some("VP8"));
        assert_eq!(preferred_video_codec(&offer(audio)), None);
        let rejected = sdp.replace("m=video 9", "m=video 0");
        assert_eq!(preferred_video_codec(&rejected), None);
    }

    #[test]
    fn garbage_is_bad_sdp() {
        assert!(matches!(
            parse_offer("hello", 1000),
            Err(SfuError::BadSdp(_))
        ));
        assert!(matches!(parse_offer("", 1000), Err(SfuError::BadSdp(_))));
        let big = "v=0\r\n".repeat(1000);
        assert!(matches!(parse_offer(&big, 100), Err(SfuError::BadSdp(m)) if m.contains("limit")));
        assert!(matches!(
            parse_answer("x=1", 1000),
            Err(SfuError::BadSdp(_))
        ));
    }

    #[test]
    fn codecs_decide() {
        let ok = offer(&section("video", 96, "VP8/90000"));
        assert!(
            parse_offer(&ok, 10_000).is_ok(),
            "{:?}",
            parse_offer(&ok, 10_000)
        );
        let ok = offer(&section("audio", 111, "OPUS/48000/2"));
        assert!(parse_offer(&ok, 10_000).is_ok());
        assert!(sends_media(&ok));
        assert!(!sends_media(&ok.replace("a=sendonly", "a=recvonly")));
        assert!(
            sends_media(&ok.replace("a=sendonly\r\n", "")),
            "sendrecv by default"
        );
        assert!(!sends_media(&ok.replace("m=audio 9", "m=audio 0")));
        let bad = offer(&section("video", 98, "AV1X/90000"));
        match parse_offer(&bad, 10_000) {
            Err(SfuError::MediaUnsupported(m)) => assert!(m.contains("AV1X"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
