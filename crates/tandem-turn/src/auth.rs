//! Long-term credentials (RFC 8489 §9.2): static users, coturn-compatible
//! "TURN REST API" ephemeral credentials, and stateless nonces.
//!
//! REST credentials: the username is `expiry:identity` (expiry in Unix
//! seconds) and the password is `base64(HMAC-SHA1(secret, username))`. They
//! are valid until `expiry`. The MESSAGE-INTEGRITY key is, as for any
//! long-term credential, `MD5(username ":" realm ":" password)`.

use std::collections::HashMap;
use std::net::SocketAddr;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha1::Sha1;

/// Key used for MESSAGE-INTEGRITY.
pub type Key = [u8; 16];

/// `MD5(username:realm:password)`.
pub fn long_term_key(username: &str, realm: &str, password: &str) -> Key {
    let mut h = Md5::new();
    h.update(username.as_bytes());
    h.update(b":");
    h.update(realm.as_bytes());
    h.update(b":");
    h.update(password.as_bytes());
    h.finalize().into()
}

/// The REST password for `username` under `secret`.
pub fn rest_password(secret: &str, username: &str) -> String {
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(secret.as_bytes()).expect("any key");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Mints a REST username/password pair valid until `expiry_unix`.
pub fn mint_rest_credentials(secret: &str, identity: &str, expiry_unix: u64) -> (String, String) {
    let username = if identity.is_empty() {
        expiry_unix.to_string()
    } else {
        format!("{expiry_unix}:{identity}")
    };
    let password = rest_password(secret, &username);
    (username, password)
}

/// Why a username was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    UnknownUser,
    Expired,
}

/// Resolves usernames to keys.
#[derive(Debug, Clone)]
pub struct Authenticator {
    realm: String,
    secret: Option<String>,
    static_keys: HashMap<String, Key>,
}

impl Authenticator {
    pub fn new(realm: &str, secret: Option<&str>, static_users: &HashMap<String, String>) -> Self {
        let static_keys = static_users
            .iter()
            .map(|(u, p)| (u.clone(), long_term_key(u, realm, p)))
            .collect();
        Authenticator {
            realm: realm.to_string(),
            secret: secret.filter(|s| !s.is_empty()).map(str::to_string),
            static_keys,
        }
    }

    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// The key for `username` at `unix_now`. Static users take precedence;
    /// otherwise a REST username (`expiry[:identity]`) is checked.
    pub fn key_for(&self, username: &str, unix_now: u64) -> Result<Key, AuthError> {
        if let Some(k) = self.static_keys.get(username) {
            return Ok(*k);
        }
        let Some(secret) = &self.secret else {
            return Err(AuthError::UnknownUser);
        };
        let ts = username.split(':').next().unwrap_or("");
        let expiry: u64 = ts.parse().map_err(|_| AuthError::UnknownUser)?;
        if expiry < unix_now {
            return Err(AuthError::Expired);
        }
        let password = rest_password(secret, username);
        Ok(long_term_key(username, &self.realm, &password))
    }
}

/// Stateless nonces: `hex(expiry_be64) || hex(HMAC-SHA1(key, expiry || client)[..8])`.
/// A nonce is bound to the client's IP address and expires.
#[derive(Clone)]
pub struct NonceIssuer {
    key: [u8; 32],
}

/// Result of checking a nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    Valid,
    /// Ours but expired, or not ours at all: 438 (Stale Nonce).
    Stale,
}

impl NonceIssuer {
    pub fn new(key: [u8; 32]) -> Self {
        NonceIssuer { key }
    }

    fn tag(&self, expiry: u64, client: SocketAddr) -> [u8; 8] {
        let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(&self.key).expect("any key");
        mac.update(&expiry.to_be_bytes());
        // Bound to the client's IP, not its port: RFC 6062 data connections
        // come from new ports and reuse the control connection's nonce.
        mac.update(client.ip().to_string().as_bytes());
        let out = mac.finalize().into_bytes();
        let mut t = [0u8; 8];
        t.copy_from_slice(&out[..8]);
        t
    }

    /// A fresh nonce for `client` valid until `expiry_unix`.
    pub fn issue(&self, client: SocketAddr, expiry_unix: u64) -> String {
        let mut s = String::with_capacity(32);
        for b in expiry_unix
            .to_be_bytes()
            .iter()
            .chain(self.tag(expiry_unix, client).iter())
        {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }

    pub fn check(&self, nonce: &[u8], client: SocketAddr, unix_now: u64) -> NonceCheck {
        if nonce.len() != 32 {
            return NonceCheck::Stale;
        }
        let mut raw = [0u8; 16];
        for (i, chunk) in nonce.chunks(2).enumerate() {
            let Ok(s) = std::str::from_utf8(chunk) else {
                return NonceCheck::Stale;
            };
            let Ok(b) = u8::from_str_radix(s, 16) else {
                return NonceCheck::Stale;
            };
            raw[i] = b;
        }
        let mut e = [0u8; 8];
        e.copy_from_slice(&raw[..8]);
        let expiry = u64::from_be_bytes(e);
        if self.tag(expiry, client) != raw[8..] || expiry < unix_now {
            return NonceCheck::Stale;
        }
        NonceCheck::Valid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_credentials_match_coturn_formula() {
        // base64(HMAC-SHA1("secret", "1700000000:alice")) computed independently
        // with `printf %s 1700000000:alice | openssl dgst -sha1 -hmac secret -binary | base64`.
        let (u, p) = mint_rest_credentials("secret", "alice", 1_700_000_000);
        assert_eq!(u, "1700000000:alice");
        assert_eq!(p, "d8soP47RbdIKLDUOpnJPVQyq5Ts=");
        let a = Authenticator::new("tandem", Some("secret"), &HashMap::new());
        assert_eq!(
            a.key_for(&u, 1_699_999_999).unwrap(),
            long_term_key(&u, "tandem", &p)
        );
        assert_eq!(a.key_for(&u, 1_700_000_001), Err(AuthError::Expired));
        assert_eq!(a.key_for("bob", 0), Err(AuthError::UnknownUser));
        assert_eq!(a.key_for("x:bob", 0), Err(AuthError::UnknownUser));
    }

    #[test]
    fn static_users_and_no_secret() {
        let mut users = HashMap::new();
        users.insert("u".to_string(), "p".to_string());
        let a = Authenticator::new("r", None, &users);
        // MD5("u:r:p") computed independently with Python's hashlib.
        let want = [
            68, 173, 210, 43, 111, 49, 121, 183, 81, 234, 253, 104, 238, 55, 15, 125,
        ];
        assert_eq!(a.key_for("u", 0).unwrap(), want);
        assert_eq!(a.key_for("9999999999:x", 0), Err(AuthError::UnknownUser));
    }

    #[test]
    fn nonces() {
        let n = NonceIssuer::new([3; 32]);
        let c: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let nonce = n.issue(c, 1000);
        assert_eq!(n.check(nonce.as_bytes(), c, 999), NonceCheck::Valid);
        assert_eq!(n.check(nonce.as_bytes(), c, 1001), NonceCheck::Stale);
        let same_ip: SocketAddr = "127.0.0.1:5001".parse().unwrap();
        assert_eq!(n.check(nonce.as_bytes(), same_ip, 999), NonceCheck::Valid);
        let other: SocketAddr = "127.0.0.2:5000".parse().unwrap();
        assert_eq!(n.check(nonce.as_bytes(), other, 999), NonceCheck::Stale);
        assert_eq!(n.check(b"garbage", c, 0), NonceCheck::Stale);
        assert_eq!(n.check(&[0xff; 32], c, 0), NonceCheck::Stale);
    }
}
