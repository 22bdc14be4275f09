//! Configuration of the STUN/TURN server (`[turn]` in Tandem's config file).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use crate::auth::mint_rest_credentials;
use crate::policy::{Cidr, PeerPolicy};

/// `[turn]` section.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TurnConfig {
    /// Start the STUN/TURN server with `tandem serve`.
    pub enabled: bool,
    /// UDP listener (STUN + TURN over UDP). `None` disables it.
    pub udp_bind: Option<SocketAddr>,
    /// TCP listener (TURN over TCP). `None` disables it.
    pub tcp_bind: Option<SocketAddr>,
    /// TLS listener (TURN over TLS, `turns:`), e.g. `0.0.0.0:5349` or `:443`.
    pub tls_bind: Option<SocketAddr>,
    /// PEM certificate chain for the TLS listener.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for the TLS listener.
    pub tls_key: Option<PathBuf>,
    /// The address clients reach relays at (XOR-RELAYED-ADDRESS). Required
    /// when the relays bind a wildcard address.
    pub public_ip: Option<IpAddr>,
    /// Host name put in the `stun:`/`turn:`/`turns:` URLs handed to clients
    /// (default: `public_ip`). Use the TLS certificate's name here.
    pub public_host: Option<String>,
    /// Address relay sockets bind to (default: `0.0.0.0`).
    pub relay_bind_ip: Option<IpAddr>,
    /// First port of the relay range.
    pub relay_port_min: u16,
    /// Last port of the relay range.
    pub relay_port_max: u16,
    /// Authentication realm.
    pub realm: String,
    /// Shared secret for REST credentials (coturn `use-auth-secret`).
    pub secret: Option<String>,
    /// Static users: name → password.
    pub static_users: HashMap<String, String>,
    /// Lifetime of credentials minted by [`ice_servers`], seconds.
    pub credential_ttl_secs: u64,
    /// How long a NONCE stays valid before 438 (Stale Nonce), seconds.
    pub nonce_ttl_secs: u64,
    /// Default allocation lifetime, seconds (RFC: 600).
    pub default_lifetime_secs: u32,
    /// Maximum allocation lifetime a client may ask for, seconds (RFC: 3600).
    pub max_lifetime_secs: u32,
    /// Allocations one username may hold (486 beyond).
    pub max_allocations_per_user: u32,
    /// Allocations the server holds in total (508 beyond).
    pub max_allocations: u32,
    /// Relayed bytes per second per allocation, each direction (excess is
    /// dropped). 0 = unlimited.
    pub max_bandwidth_per_allocation: u64,
    /// Open TCP/TLS client connections at most.
    pub max_tcp_connections: u32,
    /// Peer addresses (CIDRs) allowed even though denied by default, e.g.
    /// `["127.0.0.1/32"]` for tests.
    pub allowed_peer_ips: Vec<String>,
    /// Extra peer addresses (CIDRs) to refuse.
    pub denied_peer_ips: Vec<String>,
    /// Not read from the file: `tandem serve` sets the SFU's UDP candidate
    /// addresses here. UDP relays may always reach these exact IP:port pairs, and
    /// nothing else at their IPs that the lists and defaults refuse
    /// (see [`crate::policy::PeerScope`]).
    #[serde(skip)]
    pub own_media_addrs: Vec<SocketAddr>,
}

impl Default for TurnConfig {
    fn default() -> Self {
        TurnConfig {
            enabled: false,
            udp_bind: Some(SocketAddr::from(([0, 0, 0, 0], 3478))),
            tcp_bind: Some(SocketAddr::from(([0, 0, 0, 0], 3478))),
            tls_bind: None,
            tls_cert: None,
            tls_key: None,
            public_ip: None,
            public_host: None,
            relay_bind_ip: None,
            relay_port_min: 49152,
            relay_port_max: 65535,
            realm: "tandem".to_string(),
            secret: None,
            static_users: HashMap::new(),
            credential_ttl_secs: 86_400,
            nonce_ttl_secs: 600,
            default_lifetime_secs: 600,
            max_lifetime_secs: 3600,
            max_allocations_per_user: 16,
            max_allocations: 10_000,
            max_bandwidth_per_allocation: 10_000_000,
            max_tcp_connections: 4096,
            allowed_peer_ips: Vec::new(),
            denied_peer_ips: Vec::new(),
            own_media_addrs: Vec::new(),
        }
    }
}

/// A configuration problem found at start.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("turn: {0}")]
    Invalid(String),
}

impl TurnConfig {
    /// Checks the configuration and builds the peer policy.
    pub fn validate(&self) -> Result<PeerPolicy, ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.relay_port_min == 0 || self.relay_port_min > self.relay_port_max {
            return bad(format!(
                "relay_port_min ({}) must be > 0 and <= relay_port_max ({})",
                self.relay_port_min, self.relay_port_max
            ));
        }
        if self.realm.is_empty() || self.realm.len() > 127 {
            return bad("realm must be 1..=127 bytes".into());
        }
        if self.secret.as_deref().unwrap_or("").is_empty() && self.static_users.is_empty() {
            return bad(
                "set `secret` (REST credentials) or `static_users`, or nobody can allocate".into(),
            );
        }
        if self.tls_bind.is_some() && (self.tls_cert.is_none() || self.tls_key.is_none()) {
            return bad("tls_bind needs tls_cert and tls_key".into());
        }
        if self.default_lifetime_secs == 0 || self.max_lifetime_secs < self.default_lifetime_secs {
            return bad("need 0 < default_lifetime_secs <= max_lifetime_secs".into());
        }
        if self.nonce_ttl_secs == 0 {
            return bad("nonce_ttl_secs must be > 0".into());
        }
        if self.udp_bind.is_none() && self.tcp_bind.is_none() && self.tls_bind.is_none() {
            return bad("no listener: set udp_bind, tcp_bind or tls_bind".into());
        }
        if self.relay_ip().is_none() {
            return bad(
                "public_ip is required when relays bind a wildcard address (set public_ip or relay_bind_ip)"
                    .into(),
            );
        }
        let parse = |v: &[String]| -> Result<Vec<Cidr>, ConfigError> {
            v.iter()
                .map(|s| s.parse::<Cidr>().map_err(ConfigError::Invalid))
                .collect()
        };
        Ok(PeerPolicy {
            allow: parse(&self.allowed_peer_ips)?,
            deny: parse(&self.denied_peer_ips)?,
            own_media: self.own_media_addrs.clone(),
        })
    }

    /// The IP advertised in XOR-RELAYED-ADDRESS.
    pub fn relay_ip(&self) -> Option<IpAddr> {
        if let Some(ip) = self.public_ip {
            return Some(ip);
        }
        match self.relay_bind_ip {
            Some(ip) if !ip.is_unspecified() => Some(ip),
            _ => None,
        }
    }

    /// The host name used in URLs.
    pub fn url_host(&self) -> String {
        let host = match &self.public_host {
            Some(h) => h.clone(),
            None => self
                .relay_ip()
                .map(|ip| ip.to_string())
                .unwrap_or_else(|| "localhost".into()),
        };
        if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host
        }
    }
}

/// One `RTCIceServer` entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IceServerEntry {
    pub urls: Vec<String>,
    pub username: Option<String>,
    pub credential: Option<String>,
}

/// The ICE servers a client of this server should use: a STUN URL and TURN
/// UDP/TCP/TLS URLs with fresh credentials for `identity`. With a `secret`,
/// REST credentials valid for `credential_ttl_secs` are minted; without one,
/// only the STUN entry is returned (static users are never handed out).
pub fn ice_servers(config: &TurnConfig, identity: &str, now: SystemTime) -> Vec<IceServerEntry> {
    if !config.enabled {
        return Vec::new();
    }
    let host = config.url_host();
    let mut out = Vec::new();
    if let Some(udp) = config.udp_bind {
        out.push(IceServerEntry {
            urls: vec![format!("stun:{host}:{}", udp.port())],
            username: None,
            credential: None,
        });
    }
    let Some(secret) = config.secret.as_deref().filter(|s| !s.is_empty()) else {
        return out;
    };
    let mut urls = Vec::new();
    if let Some(udp) = config.udp_bind {
        urls.push(format!("turn:{host}:{}?transport=udp", udp.port()));
    }
    if let Some(tcp) = config.tcp_bind {
        urls.push(format!("turn:{host}:{}?transport=tcp", tcp.port()));
    }
    if let Some(tls) = config.tls_bind {
        urls.push(format!("turns:{host}:{}?transport=tcp", tls.port()));
    }
    if urls.is_empty() {
        return out;
    }
    let unix = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    // Identities must not contain ':' (the REST separator); replace it.
    let identity = identity.replace(':', "_");
    let (username, credential) =
        mint_rest_credentials(secret, &identity, unix + config.credential_ttl_secs);
    out.push(IceServerEntry {
        urls,
        username: Some(username),
        credential: Some(credential),
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_toml_and_rejects_unknown_fields() {
        let c: TurnConfig = toml::from_str(
            r#"
            enabled = true
            public_ip = "203.0.113.5"
            secret = "s3cret"
            tls_bind = "0.0.0.0:443"
            tls_cert = "/etc/cert.pem"
            tls_key = "/etc/key.pem"
            allowed_peer_ips = ["127.0.0.1/32"]
            [static_users]
            alice = "pw"
            "#,
        )
        .unwrap();
        assert!(c.enabled);
        assert_eq!(c.static_users["alice"], "pw");
        assert_eq!(c.relay_port_min, 49152);
        let p = c.validate().unwrap();
        assert!(p.permits("127.0.0.1".parse().unwrap()));
        assert!(toml::from_str::<TurnConfig>("bogus = 1").is_err());
    }

    #[test]
    fn validation_errors_are_clear() {
        let c = TurnConfig {
            secret: Some("x".into()),
            ..TurnConfig::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("public_ip"), "{e}");
        let c = TurnConfig {
            public_ip: Some("1.2.3.4".parse().unwrap()),
            ..TurnConfig::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("secret"));
        let c = TurnConfig {
            public_ip: Some("1.2.3.4".parse().unwrap()),
            secret: Some("x".into()),
            allowed_peer_ips: vec!["1.2.3.4/99".into()],
            ..TurnConfig::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("prefix"));
    }

    #[test]
    fn ice_servers_have_fresh_rest_credentials() {
        let c = TurnConfig {
            enabled: true,
            public_ip: Some("203.0.113.5".parse().unwrap()),
            public_host: Some("turn.example.com".into()),
            tls_bind: Some("0.0.0.0:443".parse().unwrap()),
            secret: Some("s".into()),
            credential_ttl_secs: 100,
            ..TurnConfig::default()
        };
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let v = ice_servers(&c, "bob:x", now);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].urls, vec!["stun:turn.example.com:3478"]);
        assert_eq!(
            v[1].urls,
            vec![
                "turn:turn.example.com:3478?transport=udp",
                "turn:turn.example.com:3478?transport=tcp",
                "turns:turn.example.com:443?transport=tcp"
            ]
        );
        assert_eq!(v[1].username.as_deref(), Some("1100:bob_x"));
        assert_eq!(
            v[1].credential.as_deref(),
            Some(crate::auth::rest_password("s", "1100:bob_x").as_str())
        );
        let disabled = TurnConfig {
            enabled: false,
            ..c.clone()
        };
        assert!(ice_servers(&disabled, "bob", now).is_empty());
        let v6 = TurnConfig {
            public_host: None,
            public_ip: Some("2001:db8::1".parse().unwrap()),
            ..c
        };
        assert_eq!(
            ice_servers(&v6, "b", now)[0].urls,
            vec!["stun:[2001:db8::1]:3478"]
        );
    }
}
