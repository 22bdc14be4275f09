//! Client → server frames.

use crate::ErrorCode;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::BTreeMap;

/// The part of every client frame read first: request id and type.
#[derive(Debug, Deserialize)]
pub struct FrameHeader<'a> {
    #[serde(default)]
    pub id: Option<u64>,
    #[serde(rename = "type", borrow)]
    pub kind: &'a str,
}

/// Where a subscriber stopped: the last offset it saw in a given epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamPosition {
    pub offset: u64,
    pub epoch: String,
}

/// A decoded client request.
#[derive(Debug)]
pub enum Request {
    Connect {
        token: String,
        protocol: Option<u32>,
        client: Option<String>,
    },
    /// A fresh token for the same identity, sent before the current one expires.
    Refresh {
        token: String,
    },
    Join {
        room: String,
        metadata: Option<Box<RawValue>>,
    },
    Leave {
        room: String,
    },
    Update {
        room: String,
        metadata: Box<RawValue>,
    },
    Publish {
        channel: String,
        data: Box<RawValue>,
    },
    Subscribe {
        channel: String,
        since: Option<StreamPosition>,
    },
    Unsubscribe {
        channel: String,
    },
    History {
        channel: String,
        before: Option<u64>,
        since: Option<u64>,
        limit: Option<u32>,
    },
    Signal {
        room: String,
        to: String,
        data: Box<RawValue>,
    },
    /// SFU (experimental): the client's offer for its media session in `room`.
    SfuOffer {
        room: String,
        sdp: String,
        /// Metadata of the tracks the client publishes, by the mid of their m-line.
        tracks: BTreeMap<String, SfuTrackMeta>,
    },
    /// SFU: the client's answer to the server's `sfu_offer` push `revision`.
    SfuAnswer {
        room: String,
        sdp: String,
        revision: u64,
    },
    /// SFU: end the media session in `room` without leaving the room.
    SfuLeave {
        room: String,
    },
    /// SFU: the publisher mutes or unmutes the track on its m-line `mid`.
    SfuMute {
        room: String,
        mid: String,
        muted: bool,
    },
    /// SFU: start or stop receiving `track` (keeps its m-line).
    SfuSubscribe {
        room: String,
        track: String,
        enabled: bool,
    },
    /// SFU: receive simulcast layer `rid` of `track`, or (`rid` "auto") let the
    /// server choose from the bandwidth estimate, up to the layer that covers
    /// `max_width` pixels (the size the client shows the video at).
    SfuLayer {
        room: String,
        track: String,
        rid: String,
        max_width: Option<u32>,
    },
    Ping,
    Pong,
}

/// What a publisher says about one of its tracks in `sfu_offer`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SfuTrackMeta {
    /// `camera`, `microphone`, `screen`, `screen_audio`, or an app-defined word.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Reads `id` and `type`. Fails with [`ErrorCode::Malformed`] when the frame is not a
/// JSON object with a string `type`.
pub fn decode_header(text: &str) -> Result<FrameHeader<'_>, (ErrorCode, String)> {
    serde_json::from_str::<FrameHeader>(text).map_err(|e| {
        (
            ErrorCode::Malformed,
            format!("frame must be a JSON object with a string \"type\": {e}"),
        )
    })
}

#[derive(Deserialize)]
struct ConnectBody {
    token: String,
    #[serde(default)]
    protocol: Option<u32>,
    #[serde(default)]
    client: Option<String>,
}
#[derive(Deserialize)]
struct RefreshBody {
    token: String,
}
#[derive(Deserialize)]
struct RoomBody {
    room: String,
}
#[derive(Deserialize)]
struct JoinBody {
    room: String,
    #[serde(default)]
    metadata: Option<Box<RawValue>>,
}
#[derive(Deserialize)]
struct UpdateBody {
    room: String,
    metadata: Box<RawValue>,
}
#[derive(Deserialize)]
struct PublishBody {
    channel: String,
    data: Box<RawValue>,
}
#[derive(Deserialize)]
struct ChannelBody {
    channel: String,
}
#[derive(Deserialize)]
struct SubscribeBody {
    channel: String,
    #[serde(default)]
    since: Option<StreamPosition>,
}
#[derive(Deserialize)]
struct HistoryBody {
    channel: String,
    #[serde(default)]
    before: Option<u64>,
    #[serde(default)]
    since: Option<u64>,
    #[serde(default)]
    limit: Option<u32>,
}
#[derive(Deserialize)]
struct SignalBody {
    room: String,
    to: String,
    data: Box<RawValue>,
}

#[derive(Deserialize)]
struct SfuOfferBody {
    room: String,
    sdp: String,
    #[serde(default)]
    tracks: BTreeMap<String, SfuTrackMeta>,
}
#[derive(Deserialize)]
struct SfuAnswerBody {
    room: String,
    sdp: String,
    revision: u64,
}

#[derive(Deserialize)]
struct SfuMuteBody {
    room: String,
    mid: String,
    muted: bool,
}
#[derive(Deserialize)]
struct SfuSubscribeBody {
    room: String,
    track: String,
    enabled: bool,
}
#[derive(Deserialize)]
struct SfuLayerBody {
    room: String,
    track: String,
    #[serde(default = "auto_rid")]
    rid: String,
    #[serde(default)]
    max_width: Option<u32>,
}
fn auto_rid() -> String {
    "auto".into()
}

fn body<'a, T: Deserialize<'a>>(kind: &str, text: &'a str) -> Result<T, (ErrorCode, String)> {
    serde_json::from_str(text)
        .map_err(|e| (ErrorCode::BadRequest, format!("invalid '{kind}': {e}")))
}

/// Decodes the body of a frame whose header was already read.
pub fn decode_request(kind: &str, text: &str) -> Result<Request, (ErrorCode, String)> {
    Ok(match kind {
        "connect" => {
            let b: ConnectBody = body(kind, text)?;
            Request::Connect {
                token: b.token,
                protocol: b.protocol,
                client: b.client,
            }
        }
        "refresh" => Request::Refresh {
            token: body::<RefreshBody>(kind, text)?.token,
        },
        "join" => {
            let b: JoinBody = body(kind, text)?;
            Request::Join {
                room: b.room,
                metadata: b.metadata,
            }
        }
        "leave" => Request::Leave {
            room: body::<RoomBody>(kind, text)?.room,
        },
        "update" => {
            let b: UpdateBody = body(kind, text)?;
            Request::Update {
                room: b.room,
                metadata: b.metadata,
            }
        }
        "publish" => {
            let b: PublishBody = body(kind, text)?;
            Request::Publish {
                channel: b.channel,
                data: b.data,
            }
        }
        "subscribe" => {
            let b: SubscribeBody = body(kind, text)?;
            Request::Subscribe {
                channel: b.channel,
                since: b.since,
            }
        }
        "unsubscribe" => Request::Unsubscribe {
            channel: body::<ChannelBody>(kind, text)?.channel,
        },
        "history" => {
            let b: HistoryBody = body(kind, text)?;
            Request::History {
                channel: b.channel,
                before: b.before,
                since: b.since,
                limit: b.limit,
            }
        }
        "signal" => {
            let b: SignalBody = body(kind, text)?;
            Request::Signal {
                room: b.room,
                to: b.to,
                data: b.data,
            }
        }
        "sfu_offer" => {
            let b: SfuOfferBody = body(kind, text)?;
            Request::SfuOffer {
                room: b.room,
                sdp: b.sdp,
                tracks: b.tracks,
            }
        }
        "sfu_answer" => {
            let b: SfuAnswerBody = body(kind, text)?;
            Request::SfuAnswer {
                room: b.room,
                sdp: b.sdp,
                revision: b.revision,
            }
        }
        "sfu_mute" => {
            let b: SfuMuteBody = body(kind, text)?;
            Request::SfuMute {
                room: b.room,
                mid: b.mid,
                muted: b.muted,
            }
        }
        "sfu_subscribe" => {
            let b: SfuSubscribeBody = body(kind, text)?;
            Request::SfuSubscribe {
                room: b.room,
                track: b.track,
                enabled: b.enabled,
            }
        }
        "sfu_layer" => {
            let b: SfuLayerBody = body(kind, text)?;
            if b.max_width == Some(0) {
                return Err((ErrorCode::BadRequest, "max_width must be at least 1".into()));
            }
            if b.max_width.is_some() && b.rid != "auto" {
                return Err((
                    ErrorCode::BadRequest,
                    "max_width bounds the automatic choice: send it with rid \"auto\" (or no rid)"
                        .into(),
                ));
            }
            Request::SfuLayer {
                room: b.room,
                track: b.track,
                rid: b.rid,
                max_width: b.max_width,
            }
        }
        "sfu_leave" => Request::SfuLeave {
            room: body::<RoomBody>(kind, text)?.room,
        },
        "ping" => Request::Ping,
        "pong" => Request::Pong,
        other => {
            let shown: String = other.chars().take(64).collect();
            return Err((
                ErrorCode::UnknownType,
                format!("unknown message type '{shown}'"),
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(text: &str) -> Result<(Option<u64>, Request), (ErrorCode, String)> {
        let h = decode_header(text)?;
        Ok((h.id, decode_request(h.kind, text)?))
    }

    #[test]
    fn publish_keeps_raw_data() {
        let (id, req) =
            decode(r#"{"id":3,"type":"publish","channel":"c","data":{"a": [1, 2]}}"#).unwrap();
        assert_eq!(id, Some(3));
        match req {
            Request::Publish { channel, data } => {
                assert_eq!(channel, "c");
                assert_eq!(data.get(), r#"{"a": [1, 2]}"#);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn errors_are_typed() {
        assert_eq!(decode("not json").unwrap_err().0, ErrorCode::Malformed);
        assert_eq!(decode("[1,2]").unwrap_err().0, ErrorCode::Malformed);
        assert_eq!(decode(r#"{"type":5}"#).unwrap_err().0, ErrorCode::Malformed);
        assert_eq!(
            decode(r#"{"type":"nope"}"#).unwrap_err().0,
            ErrorCode::UnknownType
        );
        assert_eq!(
            decode(r#"{"type":"publish","channel":"c"}"#).unwrap_err().0,
            ErrorCode::BadRequest
        );
        assert_eq!(
            decode(r#"{"type":"join","room":7}"#).unwrap_err().0,
            ErrorCode::BadRequest
        );
    }

    #[test]
    fn sfu_requests() {
        let (_, req) = decode(
            r#"{"id":1,"type":"sfu_offer","room":"r","sdp":"v=0","tracks":{"1":{"source":"camera"}}}"#,
        )
        .unwrap();
        match req {
            Request::SfuOffer { room, sdp, tracks } => {
                assert_eq!((room.as_str(), sdp.as_str()), ("r", "v=0"));
                assert_eq!(tracks["1"].source.as_deref(), Some("camera"));
            }
            other => panic!("{other:?}"),
        }
        let (_, req) = decode(r#"{"type":"sfu_offer","room":"r","sdp":"v=0"}"#).unwrap();
        assert!(matches!(req, Request::SfuOffer { tracks, .. } if tracks.is_empty()));
        let (_, req) =
            decode(r#"{"type":"sfu_answer","room":"r","sdp":"v=0","revision":3}"#).unwrap();
        assert!(matches!(req, Request::SfuAnswer { revision: 3, .. }));
        assert_eq!(
            decode(r#"{"type":"sfu_answer","room":"r","sdp":"v=0"}"#)
                .unwrap_err()
                .0,
            ErrorCode::BadRequest,
            "revision is required"
        );
        let (_, req) =
            decode(r#"{"type":"sfu_layer","room":"r","track":"TR1","rid":"f"}"#).unwrap();
        assert!(
            matches!(req, Request::SfuLayer { track, rid, max_width: None, .. } if track == "TR1" && rid == "f")
        );
        let (_, req) =
            decode(r#"{"type":"sfu_layer","room":"r","track":"TR1","max_width":320}"#).unwrap();
        assert!(
            matches!(req, Request::SfuLayer { rid, max_width: Some(320), .. } if rid == "auto")
        );
        for bad in [
            r#"{"id":1,"type":"sfu_layer","room":"r","track":"TR1","max_width":0}"#,
            r#"{"id":1,"type":"sfu_layer","room":"r","track":"TR1","rid":"f","max_width":320}"#,
            r#"{"id":1,"type":"sfu_layer","room":"r","track":"TR1","max_width":-5}"#,
            r#"{"id":1,"type":"sfu_layer","room":"r","track":"TR1","max_width":"big"}"#,
        ] {
            let e = decode(bad)
                .err()
                .unwrap_or_else(|| panic!("accepted {bad}"));
            assert_eq!(e.0, ErrorCode::BadRequest, "{bad}");
        }
        let (_, req) = decode(r#"{"type":"sfu_mute","room":"r","mid":"0","muted":true}"#).unwrap();
        assert!(matches!(req, Request::SfuMute { muted: true, .. }));
        let (_, req) =
            decode(r#"{"type":"sfu_subscribe","room":"r","track":"TR2","enabled":false}"#).unwrap();
        assert!(matches!(req, Request::SfuSubscribe { enabled: false, .. }));
        let (_, req) = decode(r#"{"type":"sfu_leave","room":"r"}"#).unwrap();
        assert!(matches!(req, Request::SfuLeave { room } if room == "r"));
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let (_, req) = decode(r#"{"type":"leave","room":"r","future":true}"#).unwrap();
        assert!(matches!(req, Request::Leave { room } if room == "r"));
    }
}
