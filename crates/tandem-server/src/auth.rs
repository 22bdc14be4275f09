//! Access tokens: HS256 JSON Web Tokens signed with an API secret.
//!
//! Only HS256 is accepted (the header's `alg` is checked, so `none` and asymmetric
//! algorithms are refused). Claims are documented in docs/auth.md. We implement the
//! HS256 subset ourselves on `hmac`/`sha2`: the `jsonwebtoken` crate's current releases
//! require a crypto backend that brings RSA/ECDSA/EdDSA code we never use.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tandem_protocol::ErrorCode;

type HmacSha256 = Hmac<Sha256>;

/// Clock skew tolerated on `nbf` and `iat`.
pub const CLOCK_LEEWAY_SECS: u64 = 10;
/// Longest identity accepted.
pub const MAX_IDENTITY_LEN: usize = 128;

/// Token claims. Unknown claims are ignored.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Claims {
    /// API key whose secret signed the token.
    pub iss: String,
    /// Identity of the participant.
    pub sub: String,
    /// Expiry, seconds since the Unix epoch. Required.
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub grants: Grants,
}

/// What the bearer may do.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Grants {
    /// Room name patterns the bearer may join (`*` matches any run of characters).
    pub join: Vec<String>,
    /// Publish media tracks.
    pub publish: bool,
    /// Subscribe to room channels and media.
    pub subscribe: bool,
    /// Publish to room channels (chat) and data.
    pub data: bool,
    /// Everything: any room, any channel, the server API.
    pub admin: bool,
    /// Channel patterns outside rooms.
    pub channels: ChannelGrants,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ChannelGrants {
    pub subscribe: Vec<String>,
    pub publish: Vec<String>,
}

impl Default for Grants {
    fn default() -> Self {
        Grants {
            join: Vec::new(),
            publish: true,
            subscribe: true,
            data: true,
            admin: false,
            channels: ChannelGrants::default(),
        }
    }
}

impl Grants {
    pub fn may_join(&self, room: &str) -> bool {
        self.admin || self.join.iter().any(|p| pattern_matches(p, room))
    }
    pub fn may_subscribe_channel(&self, channel: &str) -> bool {
        self.admin
            || self
                .channels
                .subscribe
                .iter()
                .any(|p| pattern_matches(p, channel))
    }
    pub fn may_publish_channel(&self, channel: &str) -> bool {
        self.admin
            || self
                .channels
                .publish
                .iter()
                .any(|p| pattern_matches(p, channel))
    }
}

/// Glob match where `*` matches any run of characters (including none).
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenError {
    pub code: ErrorCode,
    pub message: String,
}

fn invalid(message: impl Into<String>) -> TokenError {
    TokenError {
        code: ErrorCode::TokenInvalid,
        message: message.into(),
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    typ: Option<String>,
}

/// Signs claims with `secret` (HS256).
pub fn encode(claims: &Claims, secret: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialize"));
    let signing_input = format!("{header}.{payload}");
    let signature = URL_SAFE_NO_PAD.encode(sign(secret, signing_input.as_bytes()));
    format!("{signing_input}.{signature}")
}

fn sign(secret: &str, input: &[u8]) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(input);
    mac.finalize().into_bytes().to_vec()
}

/// Verifies a token: HS256 signature with the secret of the key named in `iss`, `exp`,
/// `nbf`, and a usable identity. `secret_for` maps an API key to its secret.
pub fn verify<'a>(
    token: &str,
    now_secs: u64,
    secret_for: impl Fn(&str) -> Option<&'a str>,
) -> Result<Claims, TokenError> {
    if token.is_empty() {
        return Err(invalid("token is empty"));
    }
    let mut parts = token.split('.');
    let (Some(h64), Some(p64), Some(s64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid(
            "token is not a JWT (expected three dot-separated parts)",
        ));
    };
    let header: Header = URL_SAFE_NO_PAD
        .decode(h64)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| invalid("token header is not base64url JSON"))?;
    if header.alg != "HS256" {
        return Err(invalid(format!(
            "token algorithm '{}' is not accepted; use HS256",
            header.alg
        )));
    }
    let payload = URL_SAFE_NO_PAD
        .decode(p64)
        .map_err(|_| invalid("token payload is not base64url"))?;
    let claims: Claims = serde_json::from_slice(&payload)
        .map_err(|e| invalid(format!("token claims are invalid: {e}")))?;
    let secret = secret_for(&claims.iss)
        .ok_or_else(|| invalid(format!("unknown API key '{}' in iss", claims.iss)))?;
    let signature = URL_SAFE_NO_PAD
        .decode(s64)
        .map_err(|_| invalid("token signature is not base64url"))?;
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(h64.as_bytes());
    mac.update(b".");
    mac.update(p64.as_bytes());
    mac.verify_slice(&signature)
        .map_err(|_| invalid("token signature does not match"))?;
    if claims.exp <= now_secs {
        return Err(TokenError {
            code: ErrorCode::TokenExpired,
            message: format!("token expired {} s ago", now_secs - claims.exp),
        });
    }
    if let Some(nbf) = claims.nbf {
        if nbf > now_secs + CLOCK_LEEWAY_SECS {
            return Err(invalid(format!(
                "token is not valid for another {} s (nbf)",
                nbf - now_secs
            )));
        }
    }
    if claims.sub.is_empty() || claims.sub.len() > MAX_IDENTITY_LEN {
        return Err(invalid(format!(
            "token sub (identity) must be 1–{MAX_IDENTITY_LEN} bytes"
        )));
    }
    if claims.sub.chars().any(char::is_control) {
        return Err(invalid(
            "token sub (identity) must not contain control characters",
        ));
    }
    Ok(claims)
}

/// Constant-time string comparison for API secrets.
pub fn secrets_equal(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> Claims {
        Claims {
            iss: "k".into(),
            sub: "alice".into(),
            exp,
            ..Default::default()
        }
    }
    fn lookup(k: &str) -> Option<&'static str> {
        (k == "k").then_some("s3cret")
    }

    #[test]
    fn round_trip() {
        let t = encode(&claims(2000), "s3cret");
        let c = verify(&t, 1000, lookup).unwrap();
        assert_eq!(c.sub, "alice");
        assert!(c.grants.subscribe && !c.grants.admin);
    }

    #[test]
    fn refusals() {
        let t = encode(&claims(2000), "other");
        assert_eq!(
            verify(&t, 1000, lookup).unwrap_err().code,
            ErrorCode::TokenInvalid
        );
        let t = encode(&claims(999), "s3cret");
        assert_eq!(
            verify(&t, 1000, lookup).unwrap_err().code,
            ErrorCode::TokenExpired
        );
        let mut c = claims(2000);
        c.nbf = Some(1500);
        assert_eq!(
            verify(&encode(&c, "s3cret"), 1000, lookup)
                .unwrap_err()
                .code,
            ErrorCode::TokenInvalid
        );
        assert!(verify("a.b", 1000, lookup).is_err());
        assert!(verify("", 1000, lookup).is_err());
        // alg=none with the same payload
        let t = encode(&claims(2000), "s3cret");
        let payload = t.split('.').nth(1).unwrap();
        let none = format!(
            "{}.{payload}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#)
        );
        assert!(verify(&none, 1000, lookup)
            .unwrap_err()
            .message
            .contains("none"));
        let mut c = claims(2000);
        c.iss = "unknown".into();
        assert!(verify(&encode(&c, "s3cret"), 1000, lookup)
            .unwrap_err()
            .message
            .contains("unknown API key"));
    }

    #[test]
    fn patterns() {
        assert!(pattern_matches("*", "anything"));
        assert!(pattern_matches("news.*", "news.sport"));
        assert!(!pattern_matches("news.*", "weather"));
        assert!(pattern_matches("a*c*e", "abcde"));
        assert!(!pattern_matches("a*c*e", "abcd"));
        assert!(pattern_matches("demo", "demo"));
        assert!(!pattern_matches("demo", "demo2"));
        assert!(pattern_matches("*-room", "x-room"));
        assert!(!pattern_matches("ab*ba", "aba"));
    }
}
