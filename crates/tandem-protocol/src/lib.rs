//! Tandem wire protocol, version 1 (see `docs/protocol.md`).
//!
//! Frames are JSON text. Client frames are decoded in two steps: [`decode_header`]
//! reads only `id` and `type`, then [`decode_request`] decodes the body of that type.
//! Payloads (`data`, `metadata`) stay raw JSON ([`RawValue`]) so the server stores and
//! forwards them byte-for-byte without re-encoding.

mod errors;
mod requests;
mod server;

pub use errors::{CloseCode, ErrorCode};
pub use requests::{
    decode_header, decode_request, FrameHeader, Request, SfuTrackMeta, StreamPosition,
};
pub use serde_json::value::RawValue;
pub use server::*;

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// Longest room name accepted.
pub const MAX_ROOM_NAME: usize = 128;
/// Longest channel name accepted.
pub const MAX_CHANNEL_NAME: usize = 255;

/// Room names: 1–128 characters from `A-Z a-z 0-9 _ - .`.
pub fn valid_room_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_ROOM_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Channel names: 1–255 characters from `A-Z a-z 0-9 _ - . : @ / #`.
pub fn valid_channel_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_CHANNEL_NAME
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':' | b'@' | b'/' | b'#')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_room_name("demo-1.a_b"));
        assert!(!valid_room_name(""));
        assert!(!valid_room_name("a b"));
        assert!(!valid_room_name(&"x".repeat(129)));
        assert!(valid_channel_name("room:demo:chat"));
        assert!(valid_channel_name("user:alice@example.com"));
        assert!(!valid_channel_name("room demo"));
        assert!(!valid_channel_name(&"x".repeat(256)));
    }
}
