//! Sender identity on data relayed by the SFU.
//!
//! Every data channel message the SFU relays starts with the sender's sid and a
//! newline (`sid\npayload`), written by the server, so receivers know who sent it
//! and nobody can pose as someone else: whatever a client puts in its own payload
//! comes after the real sid. The message keeps its type (text stays text, binary stays
//! binary); sids are ASCII letters and digits and never contain a newline, so the
//! receiver splits at the first newline. A prefix costs a dozen bytes and no parsing
//! on the server, unlike a JSON envelope, and keeps binary payloads binary.

/// The message `payload` from `sender` as relayed: `sender`, `\n`, `payload`.
pub fn wrap(sender: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(sender.len() + 1 + payload.len());
    out.extend_from_slice(sender.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(payload);
    out
}

/// Splits a relayed message into (sender sid, payload); `None` without a newline.
pub fn unwrap(relayed: &[u8]) -> Option<(&str, &[u8])> {
    let at = relayed.iter().position(|b| *b == b'\n')?;
    let sender = std::str::from_utf8(&relayed[..at]).ok()?;
    Some((sender, &relayed[at + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sender_comes_first_and_cannot_be_forged() {
        let relayed = wrap("C9f2k1x7q0aZ", b"hello");
        assert_eq!(relayed, b"C9f2k1x7q0aZ\nhello");
        assert_eq!(unwrap(&relayed), Some(("C9f2k1x7q0aZ", &b"hello"[..])));
        // A payload that looks like an envelope is only payload.
        let forged = wrap("Creal", b"Cboss\nsend money");
        assert_eq!(unwrap(&forged), Some(("Creal", &b"Cboss\nsend money"[..])));
        // Empty and binary payloads survive.
        assert_eq!(unwrap(&wrap("C1", b"")), Some(("C1", &b""[..])));
        assert_eq!(
            unwrap(&wrap("C1", &[0, 10, 255])),
            Some(("C1", &[0u8, 10, 255][..]))
        );
        assert_eq!(unwrap(b"no newline"), None);
    }
}
