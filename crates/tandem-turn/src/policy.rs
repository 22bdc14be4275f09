//! Which peer addresses a TURN allocation may relay to.
//!
//! By default the server refuses loopback, private (RFC 1918 / ULA), shared
//! (CGNAT), link-local, multicast, broadcast, unspecified and reserved
//! addresses, so a TURN client cannot use the relay to reach the server's own
//! network (the coturn CVE-2020-26262 class). IPv4-mapped and IPv4-compatible
//! IPv6 addresses are checked as the IPv4 address they carry. An explicit
//! allow-list of CIDRs overrides the default; an explicit deny-list adds to it.
//! The exact addresses of the server's own SFU are always allowed (the SFU is
//! reachable through the relay even when it listens on a private address), and
//! only those: a permission granted through that exception covers the SFU's port,
//! not every port of its IP as TURN permissions otherwise do ([`PeerScope`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// An IP network in CIDR notation (`10.0.0.0/8`, `::1/128`, or a bare address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("invalid IP address in CIDR {s:?}"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("invalid prefix length in CIDR {s:?}"))?,
        };
        Ok(Cidr { addr, prefix })
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - self.prefix)
                };
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - self.prefix)
                };
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// IPv4-mapped / IPv4-compatible IPv6 addresses become the IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

fn v4_denied_by_default(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_unspecified()
        || o[0] == 0 // 0.0.0.0/8 "this network"
        || (o[0] == 100 && (o[1] & 0xC0) == 64) // 100.64.0.0/10 shared (CGNAT)
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0.0/24 IETF protocol assignments
        || o[0] >= 240 // 240.0.0.0/4 reserved
}

fn v6_denied_by_default(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xFE00) == 0xFC00 // fc00::/7 unique local
        || (s[0] & 0xFFC0) == 0xFE80 // fe80::/10 link-local
        || (s[0] & 0xFFC0) == 0xFEC0 // fec0::/10 site-local (deprecated)
        || (s[0] == 0x64 && s[1] == 0xff9b) // 64:ff9b::/96 NAT64 (embeds IPv4)
        || s[0] == 0x2002 // 6to4 (embeds IPv4)
}

/// True when `ip` is in one of the ranges refused by default.
pub fn denied_by_default(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => v4_denied_by_default(v4),
        IpAddr::V6(v6) => v6_denied_by_default(v6),
    }
}

/// The peer-address policy of a server.
#[derive(Debug, Clone, Default)]
pub struct PeerPolicy {
    pub allow: Vec<Cidr>,
    pub deny: Vec<Cidr>,
    /// Exact addresses (IP and port) of this server's own media service — the SFU's
    /// UDP candidates — always permitted, so a client that can only reach the relay
    /// still reaches the SFU. Nothing else at those IPs is opened.
    pub own_media: Vec<SocketAddr>,
}

/// How much of a peer's IP an allowed peer address opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerScope {
    /// The policy permits the IP: a permission covers all its ports (RFC 8656 §9).
    AnyPort,
    /// Only the server's own media addresses at this IP: every packet's port must
    /// be one of them, or the exception would open the whole (private) host.
    OwnMediaOnly,
}

impl PeerPolicy {
    /// May the server relay to `peer`, and how far does a permission for it reach?
    /// `None` refuses it. An IP the policy permits gets [`PeerScope::AnyPort`];
    /// otherwise one of the server's own media addresses gets
    /// [`PeerScope::OwnMediaOnly`], even on a denied IP (that port is the SFU,
    /// which every client may send to anyway).
    pub fn scope(&self, peer: SocketAddr) -> Option<PeerScope> {
        if self.permits(peer.ip()) {
            Some(PeerScope::AnyPort)
        } else if self.is_own_media(peer) {
            Some(PeerScope::OwnMediaOnly)
        } else {
            None
        }
    }

    /// Is `peer` exactly one of the server's own media addresses?
    pub fn is_own_media(&self, peer: SocketAddr) -> bool {
        let ip = canonical(peer.ip());
        self.own_media
            .iter()
            .any(|m| m.port() == peer.port() && canonical(m.ip()) == ip)
    }

    /// May the server relay to `ip`? The allow-list wins over everything.
    pub fn permits(&self, ip: IpAddr) -> bool {
        if self.allow.iter().any(|c| c.contains(ip)) {
            return true;
        }
        if self.deny.iter().any(|c| c.contains(ip)) {
            return false;
        }
        !denied_by_default(ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn default_denies_internal_ranges() {
        let p = PeerPolicy::default();
        for bad in [
            "127.0.0.1",
            "127.8.9.10",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "0.0.0.0",
            "0.1.2.3",
            "100.64.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2002:a00:1::1",
        ] {
            assert!(!p.permits(ip(bad)), "{bad} should be denied");
        }
        for good in [
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2001:4860::8888",
            "::ffff:8.8.8.8",
        ] {
            assert!(p.permits(ip(good)), "{good} should be allowed");
        }
    }

    #[test]
    fn own_media_addresses_are_exact_exceptions() {
        use PeerScope::{AnyPort, OwnMediaOnly};
        let p = PeerPolicy {
            deny: vec!["10.0.0.0/8".parse().unwrap()],
            own_media: vec![
                "127.0.0.1:7882".parse().unwrap(),
                "10.1.2.3:7882".parse().unwrap(),
            ],
            ..Default::default()
        };
        let scope = |s: &str| p.scope(s.parse().unwrap());
        assert_eq!(scope("127.0.0.1:7882"), Some(OwnMediaOnly));
        assert_eq!(
            scope("[::ffff:127.0.0.1]:7882"),
            Some(OwnMediaOnly),
            "mapped"
        );
        // An explicit deny range covering the SFU does not cut it off: that one
        // port is the SFU, which clients reach directly anyway.
        assert_eq!(scope("10.1.2.3:7882"), Some(OwnMediaOnly), "deny list");
        for refused in [
            "127.0.0.1:7883",
            "127.0.0.1:7881",
            "127.0.0.1:22",
            "127.0.0.2:7882",
            "10.1.2.3:80",
            "10.1.2.4:7882",
            "192.168.1.1:7882",
        ] {
            assert_eq!(scope(refused), None, "{refused}");
        }
        assert_eq!(
            scope("9.9.9.9:7883"),
            Some(AnyPort),
            "public peers as before"
        );
        // The exception never narrows what the lists open: an allowed IP stays
        // open on every port, SFU port included.
        let open = PeerPolicy {
            allow: vec!["127.0.0.1/32".parse().unwrap()],
            ..p.clone()
        };
        let scope = |s: &str| open.scope(s.parse().unwrap());
        assert_eq!(scope("127.0.0.1:7882"), Some(AnyPort));
        assert_eq!(scope("127.0.0.1:22"), Some(AnyPort));
        assert_eq!(scope("127.0.0.2:7882"), None);
    }

    #[test]
    fn allow_and_deny_lists() {
        let p = PeerPolicy {
            allow: vec![
                "127.0.0.1/32".parse().unwrap(),
                "10.0.0.0/8".parse().unwrap(),
            ],
            deny: vec!["8.8.0.0/16".parse().unwrap()],
            ..Default::default()
        };
        assert!(p.permits(ip("127.0.0.1")));
        assert!(p.permits(ip("::ffff:127.0.0.1")));
        assert!(!p.permits(ip("127.0.0.2")));
        assert!(p.permits(ip("10.9.9.9")));
        assert!(!p.permits(ip("8.8.8.8")));
        assert!(p.permits(ip("9.9.9.9")));
    }

    #[test]
    fn cidr_parsing() {
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nope/8".parse::<Cidr>().is_err());
        assert!("::/0".parse::<Cidr>().unwrap().contains(ip("2001::1")));
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().contains(ip("1.2.3.4")));
        assert!(!"0.0.0.0/0".parse::<Cidr>().unwrap().contains(ip("2001::1")));
    }
}
