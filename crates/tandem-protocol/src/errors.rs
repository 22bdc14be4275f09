use serde::{Deserialize, Serialize};
use std::fmt;

/// Typed error codes carried by `error` frames. The string form is the wire form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    Malformed,
    UnknownType,
    BadRequest,
    UnsupportedFrame,
    MessageTooLarge,
    UnsupportedProtocol,
    NotAuthenticated,
    AlreadyAuthenticated,
    TokenInvalid,
    TokenExpired,
    TooManyConnections,
    Forbidden,
    AlreadyJoined,
    NotJoined,
    RoomFull,
    TooManyRooms,
    ParticipantNotFound,
    AlreadySubscribed,
    NotSubscribed,
    TooManySubscriptions,
    RateLimited,
    Unavailable,
    Internal,
    /// Server API only: the room does not exist.
    RoomNotFound,
    /// SFU: the offer's audio/video has no codec the SFU forwards.
    MediaUnsupported,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 25] = [
        ErrorCode::Malformed,
        ErrorCode::UnknownType,
        ErrorCode::BadRequest,
        ErrorCode::UnsupportedFrame,
        ErrorCode::MessageTooLarge,
        ErrorCode::UnsupportedProtocol,
        ErrorCode::NotAuthenticated,
        ErrorCode::AlreadyAuthenticated,
        ErrorCode::TokenInvalid,
        ErrorCode::TokenExpired,
        ErrorCode::TooManyConnections,
        ErrorCode::Forbidden,
        ErrorCode::AlreadyJoined,
        ErrorCode::NotJoined,
        ErrorCode::RoomFull,
        ErrorCode::TooManyRooms,
        ErrorCode::ParticipantNotFound,
        ErrorCode::AlreadySubscribed,
        ErrorCode::NotSubscribed,
        ErrorCode::TooManySubscriptions,
        ErrorCode::RateLimited,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
        ErrorCode::RoomNotFound,
        ErrorCode::MediaUnsupported,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Malformed => "malformed",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnsupportedFrame => "unsupported_frame",
            ErrorCode::MessageTooLarge => "message_too_large",
            ErrorCode::UnsupportedProtocol => "unsupported_protocol",
            ErrorCode::NotAuthenticated => "not_authenticated",
            ErrorCode::AlreadyAuthenticated => "already_authenticated",
            ErrorCode::TokenInvalid => "token_invalid",
            ErrorCode::TokenExpired => "token_expired",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::AlreadyJoined => "already_joined",
            ErrorCode::NotJoined => "not_joined",
            ErrorCode::RoomFull => "room_full",
            ErrorCode::TooManyRooms => "too_many_rooms",
            ErrorCode::ParticipantNotFound => "participant_not_found",
            ErrorCode::AlreadySubscribed => "already_subscribed",
            ErrorCode::NotSubscribed => "not_subscribed",
            ErrorCode::TooManySubscriptions => "too_many_subscriptions",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
            ErrorCode::RoomNotFound => "room_not_found",
            ErrorCode::MediaUnsupported => "media_unsupported",
        }
    }

    /// The close code that follows this error, if the error ends the session.
    pub fn closes_with(self) -> Option<CloseCode> {
        match self {
            ErrorCode::UnsupportedProtocol | ErrorCode::TokenInvalid | ErrorCode::TokenExpired => {
                Some(CloseCode::Unauthorized)
            }
            ErrorCode::TooManyConnections => Some(CloseCode::TooManyConnections),
            _ => None,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// WebSocket close codes the server uses on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCode {
    Normal,
    MessageTooBig,
    ServerShutdown,
    Unauthorized,
    TokenExpired,
    Disconnected,
    SlowConsumer,
    IdleTimeout,
    TooManyConnections,
    Reconnect,
}

impl CloseCode {
    pub fn code(self) -> u16 {
        match self {
            CloseCode::Normal => 1000,
            CloseCode::MessageTooBig => 1009,
            CloseCode::ServerShutdown => 1012,
            CloseCode::Unauthorized => 4001,
            CloseCode::TokenExpired => 4002,
            CloseCode::Disconnected => 4003,
            CloseCode::SlowConsumer => 4004,
            CloseCode::IdleTimeout => 4005,
            CloseCode::TooManyConnections => 4006,
            CloseCode::Reconnect => 4010,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            CloseCode::Normal => "normal",
            CloseCode::MessageTooBig => "message_too_big",
            CloseCode::ServerShutdown => "server_shutdown",
            CloseCode::Unauthorized => "unauthorized",
            CloseCode::TokenExpired => "token_expired",
            CloseCode::Disconnected => "disconnected",
            CloseCode::SlowConsumer => "slow_consumer",
            CloseCode::IdleTimeout => "idle_timeout",
            CloseCode::TooManyConnections => "too_many_connections",
            CloseCode::Reconnect => "reconnect",
        }
    }

    /// Whether a client should reconnect after this close.
    pub fn reconnect(self) -> bool {
        !matches!(
            self,
            CloseCode::Normal
                | CloseCode::Unauthorized
                | CloseCode::Disconnected
                | CloseCode::TooManyConnections
        )
    }

    pub fn from_code(code: u16) -> Option<CloseCode> {
        [
            CloseCode::Normal,
            CloseCode::MessageTooBig,
            CloseCode::ServerShutdown,
            CloseCode::Unauthorized,
            CloseCode::TokenExpired,
            CloseCode::Disconnected,
            CloseCode::SlowConsumer,
            CloseCode::IdleTimeout,
            CloseCode::TooManyConnections,
            CloseCode::Reconnect,
        ]
        .into_iter()
        .find(|c| c.code() == code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_match_serde() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }

    #[test]
    fn close_codes_round_trip() {
        for c in [
            CloseCode::SlowConsumer,
            CloseCode::Reconnect,
            CloseCode::Unauthorized,
            CloseCode::TokenExpired,
        ] {
            assert_eq!(CloseCode::from_code(c.code()), Some(c));
        }
        assert!(CloseCode::SlowConsumer.reconnect());
        assert!(!CloseCode::Unauthorized.reconnect());
        // With a fresh token: the SDK asks its token provider again.
        assert!(CloseCode::TokenExpired.reconnect());
    }
}
