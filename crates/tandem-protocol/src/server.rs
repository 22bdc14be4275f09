//! Server → client frames: replies, errors and pushes. Each type serializes to the
//! exact JSON documented in docs/protocol.md and deserializes back (for clients).

use crate::{CloseCode, ErrorCode};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// `{"type":"reply","id":N,"result":{…}}`
#[derive(Debug, Serialize, Deserialize)]
pub struct Reply<T> {
    #[serde(rename = "type")]
    pub kind: ReplyTag,
    pub id: Option<u64>,
    pub result: T,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyTag {
    Reply,
}

/// Encodes a reply frame.
pub fn reply_frame<T: Serialize>(id: Option<u64>, result: &T) -> String {
    serde_json::to_string(&Reply {
        kind: ReplyTag::Reply,
        id,
        result,
    })
    .expect("reply types always serialize")
}

/// `{"type":"error","id":N,"code":"…","message":"…"}`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorFrame {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// Encodes an error frame.
pub fn error_frame(
    id: Option<u64>,
    code: ErrorCode,
    message: &str,
    retry_after_ms: Option<u64>,
) -> String {
    serde_json::to_string(&ErrorFrame {
        kind: "error".into(),
        id,
        code,
        message: message.into(),
        retry_after_ms,
    })
    .expect("error frames always serialize")
}

/// The empty result `{}`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Empty {}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Limits {
    pub max_message_bytes: usize,
    pub publish_rate: u32,
    pub publish_burst: u32,
    pub max_subscriptions: usize,
    pub max_rooms: usize,
}

/// One entry of `RTCConfiguration.iceServers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectResult {
    pub client_id: String,
    pub identity: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub protocol: u32,
    pub server: String,
    pub ping_interval_ms: u64,
    pub idle_timeout_ms: u64,
    /// When the token expires (Unix seconds): send `refresh` with a new one before
    /// then, or the server closes the connection with 4002 `token_expired`.
    pub expires_at: u64,
    pub limits: Limits,
    pub ice_servers: Vec<IceServer>,
}

/// The reply to `refresh`: the new expiry, and ICE servers with fresh credentials.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefreshResult {
    pub expires_at: u64,
    pub ice_servers: Vec<IceServer>,
}

/// A participant as others see it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ParticipantInfo {
    pub sid: String,
    pub identity: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub metadata: Box<RawValue>,
    pub joined_at: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct JoinResult {
    pub room: String,
    pub participant: ParticipantInfo,
    pub participants: Vec<ParticipantInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishResult {
    pub offset: u64,
    pub epoch: String,
}

/// A stored publication as it appears in history and recovery results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Publication {
    pub offset: u64,
    pub data: Box<RawValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    pub ts: u64,
}

/// Why a recovery could not cover the gap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecoveryFailure {
    EpochChanged,
    HistoryExpired,
    TooMany,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SubscribeResult {
    pub channel: String,
    pub epoch: String,
    pub offset: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<RecoveryFailure>,
    pub publications: Vec<Publication>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct HistoryResult {
    pub channel: String,
    pub epoch: String,
    pub offset: u64,
    pub earliest: u64,
    pub publications: Vec<Publication>,
}

/// `publication` push. Serialized once per publication and shared by all subscribers.
#[derive(Debug, Serialize, Deserialize)]
pub struct PublicationPush<'a> {
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub channel: &'a str,
    pub offset: u64,
    #[serde(borrow)]
    pub data: &'a RawValue,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<&'a str>,
    pub ts: u64,
}

/// Encodes a `publication` push.
pub fn publication_frame(channel: &str, p: &Publication) -> String {
    serde_json::to_string(&PublicationPush {
        kind: "publication",
        channel,
        offset: p.offset,
        data: &p.data,
        from: p.from.as_deref(),
        ts: p.ts,
    })
    .expect("publications always serialize")
}

/// Presence and room pushes.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RoomEvent {
    ParticipantJoined {
        room: String,
        participant: ParticipantInfo,
    },
    ParticipantUpdated {
        room: String,
        participant: ParticipantInfo,
    },
    ParticipantLeft {
        room: String,
        sid: String,
        identity: String,
        reason: LeaveReason,
    },
    Removed {
        room: String,
        reason: LeaveReason,
    },
}

impl RoomEvent {
    pub fn to_frame(&self) -> String {
        serde_json::to_string(self).expect("room events always serialize")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    Left,
    Disconnected,
    Removed,
    DuplicateIdentity,
}

/// `signal` push.
#[derive(Debug, Serialize, Deserialize)]
pub struct SignalPush<'a> {
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub room: &'a str,
    pub from: &'a str,
    pub from_identity: &'a str,
    #[serde(borrow)]
    pub data: &'a RawValue,
}

pub fn signal_frame(room: &str, from: &str, from_identity: &str, data: &RawValue) -> String {
    serde_json::to_string(&SignalPush {
        kind: "signal",
        room,
        from,
        from_identity,
        data,
    })
    .expect("signals always serialize")
}

/// Reply to `sfu_offer`: the server's SDP answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SfuAnswerResult {
    pub sdp: String,
}

/// A track the SFU sends to this client (entry of the `tracks` push).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SfuTrack {
    pub id: String,
    /// The publishing participant's `sid`.
    pub participant: String,
    /// `audio` or `video`.
    pub kind: String,
    /// The mid of the m-line in this client's session that carries the track.
    pub mid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Simulcast layers (rids) the publisher sends; absent when not simulcast.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<String>,
    /// The publisher muted the track; absent when not muted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub muted: bool,
}

/// SFU pushes (experimental).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SfuEvent {
    /// The server renegotiates; answer with `sfu_answer` carrying `revision`.
    SfuOffer {
        room: String,
        revision: u64,
        sdp: String,
    },
    /// Every track this client receives in `room`, sent before each `sfu_offer`.
    Tracks { room: String, tracks: Vec<SfuTrack> },
    /// The media session ended without the client asking.
    SfuClosed { room: String, reason: String },
    /// The room's media mode: `mesh` (peer to peer) or `sfu` (through the server).
    /// Sent on join and to everyone when it changes.
    MediaMode { room: String, mode: String },
    /// The room's active speakers changed (loudest first; empty: nobody speaks).
    ActiveSpeakers {
        room: String,
        speakers: Vec<ActiveSpeaker>,
    },
    /// To a publisher: the simulcast layers (rids) of its track on `mid` that some
    /// subscriber receives; the client stops encoding the others until they are
    /// listed again.
    SfuLayers {
        room: String,
        mid: String,
        active: Vec<String>,
    },
}

/// An entry of the `active_speakers` push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveSpeaker {
    /// The speaker's `sid`.
    pub participant: String,
    /// Smoothed audio level in dBov (0 loudest, -127 silence) when the list changed.
    pub level: i8,
}

impl SfuEvent {
    pub fn to_frame(&self) -> String {
        serde_json::to_string(self).expect("sfu events always serialize")
    }
}

/// `disconnect` push, sent right before a deliberate close.
#[derive(Debug, Serialize, Deserialize)]
pub struct DisconnectPush {
    #[serde(rename = "type")]
    pub kind: String,
    pub code: u16,
    pub reason: String,
    pub reconnect: bool,
}

pub fn disconnect_frame(close: CloseCode) -> String {
    serde_json::to_string(&DisconnectPush {
        kind: "disconnect".into(),
        code: close.code(),
        reason: close.reason().into(),
        reconnect: close.reconnect(),
    })
    .expect("disconnect frames always serialize")
}

pub const PING_FRAME: &str = r#"{"type":"ping"}"#;
pub const PONG_FRAME: &str = r#"{"type":"pong"}"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_match_docs() {
        assert_eq!(
            error_frame(Some(8), ErrorCode::Forbidden, "no", None),
            r#"{"type":"error","id":8,"code":"forbidden","message":"no"}"#
        );
        let p = Publication {
            offset: 43,
            data: RawValue::from_string(r#"{"text":"hello"}"#.into()).unwrap(),
            from: Some("alice".into()),
            ts: 5,
        };
        assert_eq!(
            publication_frame("room:demo:chat", &p),
            r#"{"type":"publication","channel":"room:demo:chat","offset":43,"data":{"text":"hello"},"from":"alice","ts":5}"#
        );
        let ev = RoomEvent::ParticipantLeft {
            room: "demo".into(),
            sid: "C1".into(),
            identity: "alice".into(),
            reason: LeaveReason::Left,
        };
        assert_eq!(
            ev.to_frame(),
            r#"{"type":"participant_left","room":"demo","sid":"C1","identity":"alice","reason":"left"}"#
        );
        let tracks = SfuEvent::Tracks {
            room: "demo".into(),
            tracks: vec![SfuTrack {
                id: "TR1".into(),
                participant: "C1".into(),
                kind: "video".into(),
                mid: "2".into(),
                source: Some("camera".into()),
                name: None,
                layers: vec![],
                muted: false,
            }],
        };
        assert_eq!(
            tracks.to_frame(),
            r#"{"type":"tracks","room":"demo","tracks":[{"id":"TR1","participant":"C1","kind":"video","mid":"2","source":"camera"}]}"#
        );
        let offer = SfuEvent::SfuOffer {
            room: "demo".into(),
            revision: 2,
            sdp: "v=0".into(),
        };
        assert_eq!(
            offer.to_frame(),
            r#"{"type":"sfu_offer","room":"demo","revision":2,"sdp":"v=0"}"#
        );
        let mode = SfuEvent::MediaMode {
            room: "demo".into(),
            mode: "sfu".into(),
        };
        assert_eq!(
            mode.to_frame(),
            r#"{"type":"media_mode","room":"demo","mode":"sfu"}"#
        );
        let speakers = SfuEvent::ActiveSpeakers {
            room: "demo".into(),
            speakers: vec![ActiveSpeaker {
                participant: "C1".into(),
                level: -31,
            }],
        };
        assert_eq!(
            speakers.to_frame(),
            r#"{"type":"active_speakers","room":"demo","speakers":[{"participant":"C1","level":-31}]}"#
        );
        let layers = SfuEvent::SfuLayers {
            room: "demo".into(),
            mid: "1".into(),
            active: vec!["q".into(), "h".into()],
        };
        assert_eq!(
            layers.to_frame(),
            r#"{"type":"sfu_layers","room":"demo","mid":"1","active":["q","h"]}"#
        );
        assert_eq!(
            disconnect_frame(CloseCode::SlowConsumer),
            r#"{"type":"disconnect","code":4004,"reason":"slow_consumer","reconnect":true}"#
        );
    }
}
