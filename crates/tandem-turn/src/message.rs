//! STUN message codec (RFC 8489) with the TURN attributes of RFC 8656 and
//! ChannelData framing.
//!
//! Parsing borrows from the input and never allocates on the hot path; it
//! bounds the number of attributes and validates every length. Encoding
//! writes into a caller-provided `Vec<u8>`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hmac::{Hmac, Mac};
use sha1::Sha1;

/// The fixed magic cookie of RFC 5389/8489.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// Size of the STUN header.
pub const HEADER_LEN: usize = 20;
/// At most this many attributes are kept from one message; more is malformed.
pub const MAX_ATTRS: usize = 32;
const FINGERPRINT_XOR: u32 = 0x5354_554e;

// Methods.
pub const BINDING: u16 = 0x001;
pub const ALLOCATE: u16 = 0x003;
pub const REFRESH: u16 = 0x004;
pub const SEND: u16 = 0x006;
pub const DATA: u16 = 0x007;
pub const CREATE_PERMISSION: u16 = 0x008;
pub const CHANNEL_BIND: u16 = 0x009;
// RFC 6062 (TCP allocations).
pub const CONNECT: u16 = 0x00A;
pub const CONNECTION_BIND: u16 = 0x00B;
pub const CONNECTION_ATTEMPT: u16 = 0x00C;

/// Attribute type numbers.
pub mod attr {
    pub const MAPPED_ADDRESS: u16 = 0x0001;
    pub const USERNAME: u16 = 0x0006;
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    pub const ERROR_CODE: u16 = 0x0009;
    pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
    pub const CHANNEL_NUMBER: u16 = 0x000C;
    pub const LIFETIME: u16 = 0x000D;
    pub const XOR_PEER_ADDRESS: u16 = 0x0012;
    pub const DATA: u16 = 0x0013;
    pub const REALM: u16 = 0x0014;
    pub const NONCE: u16 = 0x0015;
    pub const XOR_RELAYED_ADDRESS: u16 = 0x0016;
    pub const REQUESTED_ADDRESS_FAMILY: u16 = 0x0017;
    pub const EVEN_PORT: u16 = 0x0018;
    pub const REQUESTED_TRANSPORT: u16 = 0x0019;
    pub const DONT_FRAGMENT: u16 = 0x001A;
    pub const MESSAGE_INTEGRITY_SHA256: u16 = 0x001C;
    pub const PASSWORD_ALGORITHM: u16 = 0x001D;
    pub const USERHASH: u16 = 0x001E;
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    pub const RESERVATION_TOKEN: u16 = 0x0022;
    pub const PRIORITY: u16 = 0x0024;
    pub const USE_CANDIDATE: u16 = 0x0025;
    pub const PADDING: u16 = 0x0026;
    pub const RESPONSE_PORT: u16 = 0x0027;
    pub const CONNECTION_ID: u16 = 0x002A;
    pub const ADDITIONAL_ADDRESS_FAMILY: u16 = 0x8000;
    pub const PASSWORD_ALGORITHMS: u16 = 0x8002;
    pub const ALTERNATE_DOMAIN: u16 = 0x8003;
    pub const SOFTWARE: u16 = 0x8022;
    pub const ALTERNATE_SERVER: u16 = 0x8023;
    pub const FINGERPRINT: u16 = 0x8028;
    pub const ICE_CONTROLLED: u16 = 0x8029;
    pub const ICE_CONTROLLING: u16 = 0x802A;
    pub const RESPONSE_ORIGIN: u16 = 0x802B;
    pub const OTHER_ADDRESS: u16 = 0x802C;
}

/// Comprehension-required attributes (0x0000–0x7FFF) this server understands.
/// Any other one in a request yields 420 (Unknown Attribute).
pub fn is_known_required(t: u16) -> bool {
    use attr::*;
    matches!(
        t,
        MAPPED_ADDRESS
            | USERNAME
            | MESSAGE_INTEGRITY
            | ERROR_CODE
            | UNKNOWN_ATTRIBUTES
            | CHANNEL_NUMBER
            | LIFETIME
            | XOR_PEER_ADDRESS
            | DATA
            | REALM
            | NONCE
            | XOR_RELAYED_ADDRESS
            | REQUESTED_ADDRESS_FAMILY
            | EVEN_PORT
            | REQUESTED_TRANSPORT
            | DONT_FRAGMENT
            | XOR_MAPPED_ADDRESS
            | RESERVATION_TOKEN
            | PRIORITY
            | USE_CANDIDATE
            | PADDING
            | RESPONSE_PORT
            | CONNECTION_ID
    )
}

/// STUN message class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Request,
    Indication,
    Success,
    Error,
}

impl Class {
    fn bits(self) -> u16 {
        match self {
            Class::Request => 0x000,
            Class::Indication => 0x010,
            Class::Success => 0x100,
            Class::Error => 0x110,
        }
    }
}

fn split_type(t: u16) -> (u16, Class) {
    let class = match t & 0x0110 {
        0x000 => Class::Request,
        0x010 => Class::Indication,
        0x100 => Class::Success,
        _ => Class::Error,
    };
    let method = (t & 0x000F) | ((t & 0x00E0) >> 1) | ((t & 0x3E00) >> 2);
    (method, class)
}

fn join_type(method: u16, class: Class) -> u16 {
    (method & 0x000F) | ((method & 0x0070) << 1) | ((method & 0x0F80) << 2) | class.bits()
}

/// Why a buffer is not a STUN message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("too short")]
    TooShort,
    #[error("not a STUN message")]
    NotStun,
    #[error("length mismatch")]
    BadLength,
    #[error("attribute overruns the message")]
    BadAttribute,
    #[error("too many attributes")]
    TooManyAttributes,
    #[error("FINGERPRINT mismatch")]
    BadFingerprint,
}

/// One raw attribute: type and value (without padding).
#[derive(Debug, Clone, Copy)]
pub struct RawAttr<'a> {
    pub typ: u16,
    pub value: &'a [u8],
}

/// A parsed STUN message borrowing its input.
#[derive(Debug)]
pub struct Message<'a> {
    pub method: u16,
    pub class: Class,
    pub tid: [u8; 12],
    raw: &'a [u8],
    attrs: [RawAttr<'a>; MAX_ATTRS],
    n_attrs: usize,
    /// Offset of the MESSAGE-INTEGRITY attribute header, if present.
    integrity_at: Option<usize>,
    pub has_fingerprint: bool,
}

/// Returns true when `buf` starts like a STUN message (first two bits zero and
/// the magic cookie in place).
pub fn looks_like_stun(buf: &[u8]) -> bool {
    buf.len() >= HEADER_LEN
        && buf[0] & 0xC0 == 0
        && u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) == MAGIC_COOKIE
}

impl<'a> Message<'a> {
    /// Parses and validates a complete STUN message (header, attribute
    /// framing, FINGERPRINT when present). Attributes after
    /// MESSAGE-INTEGRITY other than FINGERPRINT are ignored as RFC 8489 says.
    pub fn parse(buf: &'a [u8]) -> Result<Message<'a>, ParseError> {
        if buf.len() < HEADER_LEN {
            return Err(ParseError::TooShort);
        }
        if !looks_like_stun(buf) {
            return Err(ParseError::NotStun);
        }
        let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
        if len % 4 != 0 || HEADER_LEN + len != buf.len() {
            return Err(ParseError::BadLength);
        }
        let (method, class) = split_type(u16::from_be_bytes([buf[0], buf[1]]));
        let mut tid = [0u8; 12];
        tid.copy_from_slice(&buf[8..20]);
        let empty = RawAttr { typ: 0, value: &[] };
        let mut msg = Message {
            method,
            class,
            tid,
            raw: buf,
            attrs: [empty; MAX_ATTRS],
            n_attrs: 0,
            integrity_at: None,
            has_fingerprint: false,
        };
        let mut pos = HEADER_LEN;
        while pos < buf.len() {
            if pos + 4 > buf.len() {
                return Err(ParseError::BadAttribute);
            }
            let typ = u16::from_be_bytes([buf[pos], buf[pos + 1]]);
            let alen = u16::from_be_bytes([buf[pos + 2], buf[pos + 3]]) as usize;
            let start = pos + 4;
            let end = start + alen;
            let padded = start + ((alen + 3) & !3);
            if padded > buf.len() {
                return Err(ParseError::BadAttribute);
            }
            let value = &buf[start..end];
            if msg.has_fingerprint {
                // Nothing may follow FINGERPRINT.
                return Err(ParseError::BadAttribute);
            }
            if typ == attr::FINGERPRINT {
                if alen != 4 {
                    return Err(ParseError::BadAttribute);
                }
                let want = u32::from_be_bytes([value[0], value[1], value[2], value[3]]);
                if crc32(&buf[..pos]) ^ FINGERPRINT_XOR != want {
                    return Err(ParseError::BadFingerprint);
                }
                msg.has_fingerprint = true;
            } else if msg.integrity_at.is_none() {
                if typ == attr::MESSAGE_INTEGRITY {
                    if alen != 20 {
                        return Err(ParseError::BadAttribute);
                    }
                    msg.integrity_at = Some(pos);
                }
                if msg.n_attrs == MAX_ATTRS {
                    return Err(ParseError::TooManyAttributes);
                }
                msg.attrs[msg.n_attrs] = RawAttr { typ, value };
                msg.n_attrs += 1;
            }
            pos = padded;
        }
        Ok(msg)
    }

    /// Attributes in order (up to MESSAGE-INTEGRITY inclusive; no FINGERPRINT).
    pub fn attrs(&self) -> &[RawAttr<'a>] {
        &self.attrs[..self.n_attrs]
    }

    /// First attribute of a type.
    pub fn get(&self, typ: u16) -> Option<&'a [u8]> {
        self.attrs().iter().find(|a| a.typ == typ).map(|a| a.value)
    }

    /// Unknown comprehension-required attributes, in order, at most 16.
    pub fn unknown_required(&self) -> Vec<u16> {
        let mut v: Vec<u16> = self
            .attrs()
            .iter()
            .map(|a| a.typ)
            .filter(|t| *t < 0x8000 && !is_known_required(*t))
            .collect();
        v.dedup();
        v.truncate(16);
        v
    }

    pub fn has_integrity(&self) -> bool {
        self.integrity_at.is_some()
    }

    /// Checks MESSAGE-INTEGRITY (HMAC-SHA1) against `key`.
    pub fn verify_integrity(&self, key: &[u8]) -> bool {
        let Some(at) = self.integrity_at else {
            return false;
        };
        let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(key).expect("any key length");
        // Header with the length adjusted to end just after MESSAGE-INTEGRITY.
        let adj_len = (at + 24 - HEADER_LEN) as u16;
        mac.update(&self.raw[0..2]);
        mac.update(&adj_len.to_be_bytes());
        mac.update(&self.raw[4..at]);
        mac.verify_slice(&self.raw[at + 4..at + 24]).is_ok()
    }

    pub fn username(&self) -> Option<&'a str> {
        self.get(attr::USERNAME)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    pub fn realm(&self) -> Option<&'a [u8]> {
        self.get(attr::REALM)
    }

    pub fn nonce(&self) -> Option<&'a [u8]> {
        self.get(attr::NONCE)
    }

    /// LIFETIME in seconds, `Err` when malformed.
    pub fn lifetime(&self) -> Result<Option<u32>, ParseError> {
        match self.get(attr::LIFETIME) {
            None => Ok(None),
            Some(v) if v.len() == 4 => Ok(Some(u32::from_be_bytes([v[0], v[1], v[2], v[3]]))),
            Some(_) => Err(ParseError::BadAttribute),
        }
    }

    /// Decodes an XOR-*-ADDRESS attribute value.
    pub fn xor_address(&self, value: &[u8]) -> Option<SocketAddr> {
        decode_xor_address(value, &self.tid)
    }
}

/// Decodes an XOR-mapped style address.
pub fn decode_xor_address(v: &[u8], tid: &[u8; 12]) -> Option<SocketAddr> {
    if v.len() < 4 {
        return None;
    }
    let port = u16::from_be_bytes([v[2], v[3]]) ^ (MAGIC_COOKIE >> 16) as u16;
    match v[1] {
        0x01 if v.len() == 8 => {
            let x = u32::from_be_bytes([v[4], v[5], v[6], v[7]]) ^ MAGIC_COOKIE;
            Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(x)), port))
        }
        0x02 if v.len() == 20 => {
            let mut key = [0u8; 16];
            key[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
            key[4..].copy_from_slice(tid);
            let mut b = [0u8; 16];
            for i in 0..16 {
                b[i] = v[4 + i] ^ key[i];
            }
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(b)), port))
        }
        _ => None,
    }
}

/// Builds one STUN message into a `Vec<u8>`.
pub struct Builder<'b> {
    buf: &'b mut Vec<u8>,
    start: usize,
    tid: [u8; 12],
}

impl<'b> Builder<'b> {
    /// Starts a message at the end of `buf`.
    pub fn new(buf: &'b mut Vec<u8>, method: u16, class: Class, tid: [u8; 12]) -> Self {
        let start = buf.len();
        buf.extend_from_slice(&join_type(method, class).to_be_bytes());
        buf.extend_from_slice(&[0, 0]);
        buf.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        buf.extend_from_slice(&tid);
        Builder { buf, start, tid }
    }

    fn set_len(&mut self) {
        let len = (self.buf.len() - self.start - HEADER_LEN) as u16;
        self.buf[self.start + 2..self.start + 4].copy_from_slice(&len.to_be_bytes());
    }

    /// Appends an attribute with padding.
    pub fn attr(&mut self, typ: u16, value: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(&typ.to_be_bytes());
        self.buf
            .extend_from_slice(&(value.len() as u16).to_be_bytes());
        self.buf.extend_from_slice(value);
        let pad = (4 - value.len() % 4) % 4;
        self.buf.extend_from_slice(&[0u8; 3][..pad]);
        self
    }

    pub fn u32_attr(&mut self, typ: u16, v: u32) -> &mut Self {
        self.attr(typ, &v.to_be_bytes())
    }

    /// Appends an XOR-*-ADDRESS attribute.
    pub fn xor_address(&mut self, typ: u16, addr: SocketAddr) -> &mut Self {
        let port = addr.port() ^ (MAGIC_COOKIE >> 16) as u16;
        match addr.ip() {
            IpAddr::V4(ip) => {
                let x = u32::from(ip) ^ MAGIC_COOKIE;
                let mut v = [0u8; 8];
                v[1] = 0x01;
                v[2..4].copy_from_slice(&port.to_be_bytes());
                v[4..8].copy_from_slice(&x.to_be_bytes());
                self.attr(typ, &v)
            }
            IpAddr::V6(ip) => {
                let mut key = [0u8; 16];
                key[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
                key[4..].copy_from_slice(&self.tid);
                let o = ip.octets();
                let mut v = [0u8; 20];
                v[1] = 0x02;
                v[2..4].copy_from_slice(&port.to_be_bytes());
                for i in 0..16 {
                    v[4 + i] = o[i] ^ key[i];
                }
                self.attr(typ, &v)
            }
        }
    }

    /// Appends a plain (non-XOR) MAPPED-ADDRESS.
    pub fn mapped_address(&mut self, addr: SocketAddr) -> &mut Self {
        let mut v = Vec::with_capacity(20);
        v.push(0);
        v.push(if addr.is_ipv4() { 1 } else { 2 });
        v.extend_from_slice(&addr.port().to_be_bytes());
        match addr.ip() {
            IpAddr::V4(ip) => v.extend_from_slice(&ip.octets()),
            IpAddr::V6(ip) => v.extend_from_slice(&ip.octets()),
        }
        self.attr(attr::MAPPED_ADDRESS, &v)
    }

    /// Appends ERROR-CODE with its reason phrase.
    pub fn error_code(&mut self, code: u16, reason: &str) -> &mut Self {
        let mut v = Vec::with_capacity(4 + reason.len());
        v.extend_from_slice(&[0, 0, (code / 100) as u8, (code % 100) as u8]);
        v.extend_from_slice(reason.as_bytes());
        self.attr(attr::ERROR_CODE, &v)
    }

    /// Appends MESSAGE-INTEGRITY computed with `key`.
    pub fn integrity(&mut self, key: &[u8]) -> &mut Self {
        let len = (self.buf.len() - self.start - HEADER_LEN + 24) as u16;
        self.buf[self.start + 2..self.start + 4].copy_from_slice(&len.to_be_bytes());
        let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(key).expect("any key length");
        mac.update(&self.buf[self.start..]);
        let tag = mac.finalize().into_bytes();
        self.attr(attr::MESSAGE_INTEGRITY, &tag)
    }

    /// Appends FINGERPRINT.
    pub fn fingerprint(&mut self) -> &mut Self {
        let len = (self.buf.len() - self.start - HEADER_LEN + 8) as u16;
        self.buf[self.start + 2..self.start + 4].copy_from_slice(&len.to_be_bytes());
        let crc = crc32(&self.buf[self.start..]) ^ FINGERPRINT_XOR;
        self.attr(attr::FINGERPRINT, &crc.to_be_bytes())
    }

    /// Writes the final length.
    pub fn finish(mut self) {
        self.set_len();
    }
}

/// A ChannelData message (RFC 8656 §12.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelData<'a> {
    pub channel: u16,
    pub data: &'a [u8],
}

/// Valid channel numbers. RFC 8656 narrowed the range to 0x4000–0x4FFF;
/// RFC 5766 clients (coturn's among them) use up to 0x7FFF, which stays
/// unambiguous (first two bits 01), so the older range is accepted.
pub fn is_valid_channel(n: u16) -> bool {
    (0x4000..=0x7FFF).contains(&n)
}

impl<'a> ChannelData<'a> {
    /// Parses a ChannelData message; trailing padding (up to 3 bytes, as sent
    /// over TCP or by some UDP clients) is accepted.
    pub fn parse(buf: &'a [u8]) -> Option<ChannelData<'a>> {
        if buf.len() < 4 {
            return None;
        }
        let channel = u16::from_be_bytes([buf[0], buf[1]]);
        if !is_valid_channel(channel) {
            return None;
        }
        let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
        if buf.len() < 4 + len || buf.len() > 4 + ((len + 3) & !3) {
            return None;
        }
        Some(ChannelData {
            channel,
            data: &buf[4..4 + len],
        })
    }

    /// Encodes into `out`, padding to 4 bytes when `pad` (stream transports).
    pub fn encode(channel: u16, data: &[u8], pad: bool, out: &mut Vec<u8>) {
        out.extend_from_slice(&channel.to_be_bytes());
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(data);
        if pad {
            let p = (4 - data.len() % 4) % 4;
            out.extend_from_slice(&[0u8; 3][..p]);
        }
    }
}

/// Length of the next frame on a stream transport (RFC 8656 §12.5 framing:
/// STUN messages carry their length; ChannelData is padded to 4 bytes).
/// `Ok(None)` means more bytes are needed; `Err` means the stream cannot be
/// resynchronised and must be closed.
pub fn stream_frame_len(buf: &[u8]) -> Result<Option<usize>, ParseError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
    match buf[0] >> 6 {
        0 => {
            if len % 4 != 0 {
                return Err(ParseError::BadLength);
            }
            Ok(Some(HEADER_LEN + len))
        }
        1 => Ok(Some(4 + ((len + 3) & !3))),
        _ => Err(ParseError::NotStun),
    }
}

static CRC_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// CRC-32 (ISO-HDLC), as FINGERPRINT uses.
pub fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in data {
        c = CRC_TABLE[((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8);
    }
    c ^ 0xFFFF_FFFF
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_known_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn type_roundtrip() {
        for m in [
            BINDING,
            ALLOCATE,
            REFRESH,
            SEND,
            DATA,
            CREATE_PERMISSION,
            CHANNEL_BIND,
        ] {
            for c in [
                Class::Request,
                Class::Indication,
                Class::Success,
                Class::Error,
            ] {
                assert_eq!(split_type(join_type(m, c)), (m, c));
            }
        }
        assert_eq!(join_type(BINDING, Class::Request), 0x0001);
        assert_eq!(join_type(BINDING, Class::Success), 0x0101);
        assert_eq!(join_type(ALLOCATE, Class::Error), 0x0113);
        assert_eq!(join_type(SEND, Class::Indication), 0x0016);
    }

    /// RFC 5769 §2.1 sample request (long-term credentials not used; short-term
    /// password "VOkJxbRl1RmTxUk/WvJxBt").
    #[test]
    fn rfc5769_sample_request() {
        let hex = "000100582112a442b7e7a701bc34d686fa87dfae802200105354554e207465737420636c69656e74002400046e0001ff80290008932ff9b151263b36000600096576746a3a68367659202020000800149aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a280280004e57a3bcf";
        let raw: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let m = Message::parse(&raw).unwrap();
        assert_eq!(m.method, BINDING);
        assert_eq!(m.class, Class::Request);
        assert!(m.has_fingerprint);
        assert_eq!(m.username(), Some("evtj:h6vY"));
        assert!(m.verify_integrity(b"VOkJxbRl1RmTxUk/WvJxBt"));
        assert!(!m.verify_integrity(b"wrong"));
        let mut bad = raw.clone();
        bad[30] ^= 1;
        assert_eq!(
            Message::parse(&bad).unwrap_err(),
            ParseError::BadFingerprint
        );
    }

    #[test]
    fn build_and_parse() {
        let tid = [7u8; 12];
        let mut buf = Vec::new();
        let mut b = Builder::new(&mut buf, ALLOCATE, Class::Success, tid);
        b.xor_address(attr::XOR_RELAYED_ADDRESS, "192.0.2.1:5000".parse().unwrap());
        b.xor_address(
            attr::XOR_MAPPED_ADDRESS,
            "[2001:db8::1]:40000".parse().unwrap(),
        );
        b.u32_attr(attr::LIFETIME, 600);
        b.attr(attr::SOFTWARE, b"abc");
        b.integrity(b"key");
        b.fingerprint();
        b.finish();
        let m = Message::parse(&buf).unwrap();
        assert_eq!(m.class, Class::Success);
        assert_eq!(m.method, ALLOCATE);
        assert_eq!(
            m.xor_address(m.get(attr::XOR_RELAYED_ADDRESS).unwrap()),
            Some("192.0.2.1:5000".parse().unwrap())
        );
        assert_eq!(
            m.xor_address(m.get(attr::XOR_MAPPED_ADDRESS).unwrap()),
            Some("[2001:db8::1]:40000".parse().unwrap())
        );
        assert_eq!(m.lifetime(), Ok(Some(600)));
        assert!(m.verify_integrity(b"key"));
        assert!(m.has_fingerprint);
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(Message::parse(&[0; 10]).unwrap_err(), ParseError::TooShort);
        let mut buf = Vec::new();
        Builder::new(&mut buf, BINDING, Class::Request, [1; 12]).finish();
        assert!(Message::parse(&buf).is_ok());
        let mut b2 = buf.clone();
        b2[4] = 0;
        assert_eq!(Message::parse(&b2).unwrap_err(), ParseError::NotStun);
        let mut b3 = buf.clone();
        b3[3] = 4;
        assert_eq!(Message::parse(&b3).unwrap_err(), ParseError::BadLength);
        // Attribute claiming more bytes than present.
        let mut b4 = buf.clone();
        b4.extend_from_slice(&[0x80, 0x22, 0x00, 0x08, 1, 2, 3, 4]);
        b4[3] = 8;
        assert_eq!(Message::parse(&b4).unwrap_err(), ParseError::BadAttribute);
    }

    #[test]
    fn channel_data() {
        let mut out = Vec::new();
        ChannelData::encode(0x4001, b"hello", true, &mut out);
        assert_eq!(out.len(), 12);
        assert_eq!(stream_frame_len(&out), Ok(Some(12)));
        let cd = ChannelData::parse(&out).unwrap();
        assert_eq!(cd.channel, 0x4001);
        assert_eq!(cd.data, b"hello");
        assert!(ChannelData::parse(&out[..8]).is_none());
        let mut bad = out.clone();
        bad[0] = 0x80;
        assert!(ChannelData::parse(&bad).is_none());
        assert!(stream_frame_len(&[0xC0, 0, 0, 0]).is_err());
    }
}
