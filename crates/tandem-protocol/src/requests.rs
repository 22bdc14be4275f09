//! Client → server frames.

use crate::ErrorCode;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

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
    Ping,
    Pong,
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
    fn unknown_fields_are_ignored() {
        let (_, req) = decode(r#"{"type":"leave","room":"r","future":true}"#).unwrap();
        assert!(matches!(req, Request::Leave { room } if room == "r"));
    }
}
