//! Exhaustive tests of the sans-IO core with injected time.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::auth::{long_term_key, mint_rest_credentials, Authenticator, Key};
use crate::config::TurnConfig;
use crate::core::{Core, CoreConfig, FiveTuple, Output, Proto, RelayRequest};
use crate::message::{self as m, attr, Builder, ChannelData, Class, Message};
use crate::metrics::Metrics;

const UNIX0: u64 = 1_800_000_000;
const REALM: &str = "tandem";
const PEER: &str = "198.51.100.7:9000";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn five(port: u16) -> FiveTuple {
    FiveTuple {
        client: SocketAddr::from(([203, 0, 113, 1], port)),
        server: addr("192.0.2.10:3478"),
        proto: Proto::Udp,
    }
}

struct H {
    core: Core,
    now: Instant,
    next_relay_port: u16,
    /// Relay ports of allocations by id.
    relays: HashMap<u32, SocketAddr>,
}

/// A client request under construction.
struct Req {
    method: u16,
    class: Class,
    tid: [u8; 12],
    attrs: Vec<(u16, Vec<u8>)>,
    peers: Vec<(u16, SocketAddr)>,
    fingerprint: bool,
}

impl Req {
    fn new(method: u16) -> Req {
        let mut tid = [0u8; 12];
        fastrand::fill(&mut tid);
        Req {
            method,
            class: Class::Request,
            tid,
            attrs: Vec::new(),
            peers: Vec::new(),
            fingerprint: false,
        }
    }
    fn attr(mut self, t: u16, v: &[u8]) -> Req {
        self.attrs.push((t, v.to_vec()));
        self
    }
    fn udp(self) -> Req {
        self.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0])
    }
    fn peer(mut self, p: SocketAddr) -> Req {
        self.peers.push((attr::XOR_PEER_ADDRESS, p));
        self
    }
    fn lifetime(self, s: u32) -> Req {
        self.attr(attr::LIFETIME, &s.to_be_bytes())
    }
    fn channel(self, n: u16) -> Req {
        let v = [(n >> 8) as u8, n as u8, 0, 0];
        self.attr(attr::CHANNEL_NUMBER, &v)
    }
    /// Encodes, signing with long-term credentials when given.
    fn encode(&self, auth: Option<(&str, &str, &str)>) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut b = Builder::new(&mut buf, self.method, self.class, self.tid);
        for (t, a) in &self.peers {
            b.xor_address(*t, *a);
        }
        for (t, v) in &self.attrs {
            b.attr(*t, v);
        }
        if let Some((user, pass, nonce)) = auth {
            b.attr(attr::USERNAME, user.as_bytes());
            b.attr(attr::REALM, REALM.as_bytes());
            b.attr(attr::NONCE, nonce.as_bytes());
            b.integrity(&long_term_key(user, REALM, pass));
        }
        if self.fingerprint {
            b.fingerprint();
        }
        b.finish();
        buf
    }
}

/// A decoded response.
struct Resp {
    raw: Vec<u8>,
}

impl Resp {
    fn msg(&self) -> Message<'_> {
        Message::parse(&self.raw).expect("server sent a valid STUN message")
    }
    fn code(&self) -> Option<u16> {
        let msg = self.msg();
        msg.get(attr::ERROR_CODE)
            .map(|v| v[2] as u16 * 100 + v[3] as u16)
    }
    fn is_success(&self) -> bool {
        self.msg().class == Class::Success
    }
    fn nonce(&self) -> String {
        String::from_utf8(self.msg().nonce().expect("NONCE").to_vec()).unwrap()
    }
}

fn cfg() -> TurnConfig {
    let mut users = HashMap::new();
    users.insert("alice".to_string(), "alicepw".to_string());
    users.insert("bob".to_string(), "bobpw".to_string());
    TurnConfig {
        enabled: true,
        public_ip: Some("192.0.2.10".parse().unwrap()),
        secret: Some("restsecret".into()),
        static_users: users,
        max_allocations_per_user: 3,
        max_allocations: 5,
        max_bandwidth_per_allocation: 0,
        ..TurnConfig::default()
    }
}

impl H {
    fn new() -> H {
        H::with(cfg())
    }

    fn with(c: TurnConfig) -> H {
        let policy = c.validate().unwrap();
        let now = Instant::now();
        let core = Core::new(
            CoreConfig::from_turn(&c, policy),
            Authenticator::new(&c.realm, c.secret.as_deref(), &c.static_users),
            [9; 32],
            now,
            UNIX0,
            Arc::new(Metrics::default()),
        );
        H {
            core,
            now,
            next_relay_port: 50_000,
            relays: HashMap::new(),
        }
    }

    fn advance(&mut self, secs: u64) -> Vec<Output> {
        self.now += Duration::from_secs(secs);
        let mut out = Vec::new();
        self.core.handle_timeout(self.now, &mut out);
        out
    }

    /// Feeds bytes; completes relay binds (successfully unless `fail_bind`).
    fn feed_with(&mut self, f: FiveTuple, bytes: &[u8], fail_bind: bool) -> Vec<Output> {
        let mut out = Vec::new();
        self.core.handle_client(self.now, f, bytes, &mut out);
        let mut done = Vec::new();
        while let Some(o) = out.pop() {
            match o {
                Output::BindRelay(req) => self.bind(req, fail_bind, &mut out),
                o => done.push(o),
            }
        }
        done.reverse();
        done
    }

    fn bind(&mut self, req: RelayRequest, fail: bool, out: &mut Vec<Output>) {
        if fail {
            self.core.relay_bound(self.now, req, None, out);
            return;
        }
        let relay = SocketAddr::from(([192, 0, 2, 10], self.next_relay_port));
        self.next_relay_port += 2;
        self.relays.insert(req.id, relay);
        self.core.relay_bound(self.now, req, Some(relay), out);
    }

    fn feed(&mut self, f: FiveTuple, bytes: &[u8]) -> Vec<Output> {
        self.feed_with(f, bytes, false)
    }

    /// Sends and expects exactly one response to the client.
    fn ask(&mut self, f: FiveTuple, bytes: &[u8]) -> Resp {
        let out = self.feed(f, bytes);
        assert_eq!(out.len(), 1, "expected one output, got {out:?}");
        match out.into_iter().next().unwrap() {
            Output::ToClient { five, data } => {
                assert_eq!(five, f);
                Resp { raw: data }
            }
            o => panic!("unexpected {o:?}"),
        }
    }

    fn nonce(&mut self, f: FiveTuple) -> String {
        let r = self.ask(f, &Req::new(m::ALLOCATE).udp().encode(None));
        assert_eq!(r.code(), Some(401));
        r.nonce()
    }

    /// Authenticated request with a fresh nonce.
    fn ask_auth(&mut self, f: FiveTuple, req: &Req, user: &str, pass: &str) -> Resp {
        let nonce = self.nonce(f);
        self.ask(f, &req.encode(Some((user, pass, &nonce))))
    }

    /// Creates an allocation for `user` on `f`; returns the alloc id.
    fn allocate(&mut self, f: FiveTuple, user: &str, pass: &str) -> u32 {
        let r = self.ask_auth(f, &Req::new(m::ALLOCATE).udp(), user, pass);
        assert!(r.is_success(), "allocate failed: {:?}", r.code());
        let msg = r.msg();
        let relay = msg
            .xor_address(msg.get(attr::XOR_RELAYED_ADDRESS).unwrap())
            .unwrap();
        assert!(msg.verify_integrity(&long_term_key(user, REALM, pass)));
        *self.relays.iter().find(|(_, a)| **a == relay).unwrap().0
    }

    fn peer_data(&mut self, id: u32, peer: SocketAddr, data: &[u8]) -> Vec<Output> {
        let mut out = Vec::new();
        self.core.handle_peer(self.now, id, peer, data, &mut out);
        out
    }

    fn metrics(&self) -> &Metrics {
        self.core.metrics()
    }
}

fn key(user: &str, pass: &str) -> Key {
    long_term_key(user, REALM, pass)
}

// ---- STUN Binding -----------------------------------------------------------

#[test]
fn binding_returns_reflexive_address_and_echoes_fingerprint() {
    let mut h = H::new();
    let mut req = Req::new(m::BINDING);
    req.fingerprint = true;
    let r = h.ask(five(4000), &req.encode(None));
    let msg = r.msg();
    assert_eq!(msg.class, Class::Success);
    assert_eq!(msg.tid, req.tid);
    assert!(msg.has_fingerprint);
    assert_eq!(
        msg.xor_address(msg.get(attr::XOR_MAPPED_ADDRESS).unwrap()),
        Some(five(4000).client)
    );
    assert!(msg.get(attr::MAPPED_ADDRESS).is_some());
}

#[test]
fn unknown_comprehension_required_attribute_gets_420() {
    let mut h = H::new();
    let r = h.ask(
        five(1),
        &Req::new(m::BINDING).attr(0x7777, b"x").encode(None),
    );
    assert_eq!(r.code(), Some(420));
    assert_eq!(
        r.msg().get(attr::UNKNOWN_ATTRIBUTES),
        Some(&[0x77, 0x77][..])
    );
    // Comprehension-optional unknowns are ignored.
    let r = h.ask(
        five(1),
        &Req::new(m::BINDING).attr(0x8777, b"x").encode(None),
    );
    assert!(r.is_success());
    // On an authenticated request, 420 comes after authentication, signed.
    let req = Req::new(m::ALLOCATE).udp().attr(0x0042, &[1, 2, 3, 4]);
    let r = h.ask_auth(five(1), &req, "alice", "alicepw");
    assert_eq!(r.code(), Some(420));
    assert!(r.msg().verify_integrity(&key("alice", "alicepw")));
    assert_eq!(h.core.allocation_count(), 0);
}

#[test]
fn unknown_method_gets_400_and_responses_are_ignored() {
    let mut h = H::new();
    let r = h.ask(five(1), &Req::new(0x0555).encode(None));
    assert_eq!(r.code(), Some(400));
    let mut resp = Req::new(m::BINDING);
    resp.class = Class::Success;
    assert!(h.feed(five(1), &resp.encode(None)).is_empty());
    let mut ind = Req::new(m::BINDING);
    ind.class = Class::Indication;
    assert!(h.feed(five(1), &ind.encode(None)).is_empty());
}

// ---- authentication ---------------------------------------------------------

#[test]
fn unauthenticated_request_is_challenged_with_realm_and_nonce() {
    let mut h = H::new();
    let r = h.ask(five(1), &Req::new(m::ALLOCATE).udp().encode(None));
    assert_eq!(r.code(), Some(401));
    let msg = r.msg();
    assert_eq!(msg.realm(), Some(REALM.as_bytes()));
    assert!(msg.nonce().is_some());
    assert!(!msg.has_integrity());
    assert_eq!(h.metrics().auth_failures.load(Relaxed), 0);
}

#[test]
fn wrong_password_unknown_user_and_wrong_realm_get_401() {
    let mut h = H::new();
    let req = Req::new(m::ALLOCATE).udp();
    assert_eq!(h.ask_auth(five(1), &req, "alice", "nope").code(), Some(401));
    assert_eq!(h.ask_auth(five(1), &req, "mallory", "x").code(), Some(401));
    let nonce = h.nonce(five(1));
    let mut buf = Vec::new();
    let mut b = Builder::new(&mut buf, m::ALLOCATE, Class::Request, req.tid);
    b.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
    b.attr(attr::USERNAME, b"alice");
    b.attr(attr::REALM, b"elsewhere");
    b.attr(attr::NONCE, nonce.as_bytes());
    b.integrity(&long_term_key("alice", "elsewhere", "alicepw"));
    b.finish();
    assert_eq!(h.ask(five(1), &buf).code(), Some(401));
    assert_eq!(h.metrics().auth_failures.load(Relaxed), 3);
    assert_eq!(h.core.allocation_count(), 0);
}

#[test]
fn integrity_without_username_is_400() {
    let mut h = H::new();
    let mut buf = Vec::new();
    let mut b = Builder::new(&mut buf, m::ALLOCATE, Class::Request, [1; 12]);
    b.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
    b.integrity(b"k");
    b.finish();
    assert_eq!(h.ask(five(1), &buf).code(), Some(400));
}

#[test]
fn stale_nonce_gets_438_with_a_fresh_nonce() {
    let mut h = H::new();
    let f = five(1);
    let nonce = h.nonce(f);
    h.advance(601); // nonce_ttl_secs = 600
    let req = Req::new(m::ALLOCATE).udp();
    let r = h.ask(f, &req.encode(Some(("alice", "alicepw", &nonce))));
    assert_eq!(r.code(), Some(438));
    let fresh = r.nonce();
    assert_ne!(fresh, nonce);
    assert!(r.msg().realm().is_some());
    let r = h.ask(f, &req.encode(Some(("alice", "alicepw", &fresh))));
    assert!(r.is_success());
}

#[test]
fn nonce_is_bound_to_the_client_address_and_forged_nonces_are_stale() {
    let mut h = H::new();
    let nonce = h.nonce(five(1));
    let req = Req::new(m::ALLOCATE).udp();
    let other_ip = FiveTuple {
        client: addr("203.0.113.2:1"),
        ..five(1)
    };
    assert_eq!(
        h.ask(other_ip, &req.encode(Some(("alice", "alicepw", &nonce))))
            .code(),
        Some(438)
    );
    assert_eq!(
        h.ask(
            five(2),
            &req.encode(Some((
                "alice",
                "alicepw",
                "0123456789abcdef0123456789abcdef"
            )))
        )
        .code(),
        Some(438)
    );
}

#[test]
fn rest_credentials_work_until_they_expire() {
    let mut h = H::new();
    let (user, pass) = mint_rest_credentials("restsecret", "carol", UNIX0 + 100);
    h.allocate(five(1), &user, &pass);
    let (bad_user, bad_pass) = mint_rest_credentials("othersecret", "carol", UNIX0 + 100);
    let req = Req::new(m::ALLOCATE).udp();
    assert_eq!(
        h.ask_auth(five(2), &req, &bad_user, &bad_pass).code(),
        Some(401)
    );
    h.advance(101);
    assert_eq!(h.ask_auth(five(3), &req, &user, &pass).code(), Some(401));
    assert!(h.metrics().auth_failures.load(Relaxed) >= 2);
}

// ---- Allocate ---------------------------------------------------------------

#[test]
fn allocate_validates_transport_family_and_lifetime() {
    let mut h = H::new();
    let f = five(1);
    let a = |r: Req| r;
    assert_eq!(
        h.ask_auth(f, &a(Req::new(m::ALLOCATE)), "alice", "alicepw")
            .code(),
        Some(400)
    );
    let sctp = Req::new(m::ALLOCATE).attr(attr::REQUESTED_TRANSPORT, &[132, 0, 0, 0]);
    assert_eq!(h.ask_auth(f, &sctp, "alice", "alicepw").code(), Some(442));
    let v6 = Req::new(m::ALLOCATE)
        .udp()
        .attr(attr::REQUESTED_ADDRESS_FAMILY, &[2, 0, 0, 0]);
    assert_eq!(h.ask_auth(f, &v6, "alice", "alicepw").code(), Some(440));
    let bad_lifetime = Req::new(m::ALLOCATE).udp().attr(attr::LIFETIME, &[1, 2]);
    assert_eq!(
        h.ask_auth(f, &bad_lifetime, "alice", "alicepw").code(),
        Some(400)
    );
    let both = Req::new(m::ALLOCATE)
        .udp()
        .attr(attr::EVEN_PORT, &[0])
        .attr(attr::RESERVATION_TOKEN, &[0; 8]);
    assert_eq!(h.ask_auth(f, &both, "alice", "alicepw").code(), Some(400));
    assert_eq!(h.core.allocation_count(), 0);
    // Lifetime is clamped to [default, max].
    let long = Req::new(m::ALLOCATE).udp().lifetime(100_000);
    let r = h.ask_auth(f, &long, "alice", "alicepw");
    assert_eq!(r.msg().lifetime(), Ok(Some(3600)));
    let short = Req::new(m::ALLOCATE).udp().lifetime(5);
    let r = h.ask_auth(five(2), &short, "alice", "alicepw");
    assert_eq!(r.msg().lifetime(), Ok(Some(600)));
}

#[test]
fn allocate_retransmission_is_answered_and_a_second_allocate_is_437() {
    let mut h = H::new();
    let f = five(1);
    let nonce = h.nonce(f);
    let req = Req::new(m::ALLOCATE).udp();
    let bytes = req.encode(Some(("alice", "alicepw", &nonce)));
    let first = h.ask(f, &bytes);
    assert!(first.is_success());
    let again = h.ask(f, &bytes);
    assert_eq!(first.raw, again.raw);
    let other = Req::new(m::ALLOCATE).udp();
    assert_eq!(h.ask_auth(f, &other, "alice", "alicepw").code(), Some(437));
    assert_eq!(h.core.allocation_count(), 1);
}

#[test]
fn per_user_quota_gives_486_and_total_quota_gives_508() {
    let mut h = H::new(); // 3 per user, 5 total
    for p in 1..=3 {
        h.allocate(five(p), "alice", "alicepw");
    }
    let req = Req::new(m::ALLOCATE).udp();
    let r = h.ask_auth(five(4), &req, "alice", "alicepw");
    assert_eq!(r.code(), Some(486));
    assert!(r.msg().verify_integrity(&key("alice", "alicepw")));
    h.allocate(five(5), "bob", "bobpw");
    h.allocate(five(6), "bob", "bobpw");
    assert_eq!(h.ask_auth(five(7), &req, "bob", "bobpw").code(), Some(508));
    assert_eq!(h.metrics().quota_rejections.load(Relaxed), 2);
    // Freeing one (Refresh lifetime 0) makes room again.
    let nonce = h.nonce(five(1));
    let out = h.feed(
        five(1),
        &Req::new(m::REFRESH)
            .lifetime(0)
            .encode(Some(("alice", "alicepw", &nonce))),
    );
    assert!(matches!(out[0], Output::ReleaseRelay(_)));
    h.allocate(five(4), "alice", "alicepw");
}

#[test]
fn rest_quota_counts_per_identity_not_per_credential() {
    let mut h = H::new(); // 3 per user
    for (p, expiry) in [(1, 100), (2, 200), (3, 300)] {
        let (u, pw) = mint_rest_credentials("restsecret", "dave", UNIX0 + expiry);
        h.allocate(five(p), &u, &pw);
    }
    let (u, pw) = mint_rest_credentials("restsecret", "dave", UNIX0 + 400);
    let r = h.ask_auth(five(4), &Req::new(m::ALLOCATE).udp(), &u, &pw);
    assert_eq!(r.code(), Some(486));
    let (u, pw) = mint_rest_credentials("restsecret", "erin", UNIX0 + 400);
    h.allocate(five(5), &u, &pw);
}

#[test]
fn failed_relay_bind_gives_508_and_releases_the_quota() {
    let mut c = cfg();
    c.max_allocations_per_user = 1;
    let mut h = H::with(c);
    let nonce = h.nonce(five(1));
    let out = h.feed_with(
        five(1),
        &Req::new(m::ALLOCATE)
            .udp()
            .encode(Some(("alice", "alicepw", &nonce))),
        true,
    );
    let Output::ToClient { data, .. } = &out[0] else {
        panic!("{out:?}")
    };
    assert_eq!(Resp { raw: data.clone() }.code(), Some(508));
    h.allocate(five(1), "alice", "alicepw");
}

#[test]
fn even_port_reservation_token_flow() {
    let mut h = H::new();
    let req = Req::new(m::ALLOCATE).udp().attr(attr::EVEN_PORT, &[0x80]);
    let r = h.ask_auth(five(1), &req, "alice", "alicepw");
    assert!(r.is_success());
    let token = r.msg().get(attr::RESERVATION_TOKEN).unwrap().to_vec();
    assert_eq!(token.len(), 8);
    let use_it = Req::new(m::ALLOCATE)
        .udp()
        .attr(attr::RESERVATION_TOKEN, &token);
    // The I/O layer sees the token in the relay request.
    let nonce = h.nonce(five(2));
    let mut out = Vec::new();
    h.core.handle_client(
        h.now,
        five(2),
        &use_it.encode(Some(("alice", "alicepw", &nonce))),
        &mut out,
    );
    match &out[..] {
        [Output::BindRelay(rr)] => {
            assert_eq!(rr.use_token.map(|t| t.to_vec()), Some(token.clone()))
        }
        o => panic!("{o:?}"),
    }
    // A token can be used once; an unknown one is 508.
    let again = Req::new(m::ALLOCATE)
        .udp()
        .attr(attr::RESERVATION_TOKEN, &token);
    assert_eq!(
        h.ask_auth(five(3), &again, "alice", "alicepw").code(),
        Some(508)
    );
    // Unclaimed reservations are released after 30 s.
    let r = h.ask_auth(five(4), &req, "alice", "alicepw");
    let t2: [u8; 8] = r
        .msg()
        .get(attr::RESERVATION_TOKEN)
        .unwrap()
        .try_into()
        .unwrap();
    let out = h.advance(31);
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::ReleaseReservation(t) if *t == t2)));
}

// ---- Refresh and lifetimes --------------------------------------------------

#[test]
fn refresh_rules() {
    let mut h = H::new();
    let f = five(1);
    assert_eq!(
        h.ask_auth(f, &Req::new(m::REFRESH), "alice", "alicepw")
            .code(),
        Some(437)
    );
    let id = h.allocate(f, "alice", "alicepw");
    assert_eq!(
        h.ask_auth(f, &Req::new(m::REFRESH), "bob", "bobpw").code(),
        Some(441)
    );
    let v6 = Req::new(m::REFRESH).attr(attr::REQUESTED_ADDRESS_FAMILY, &[2, 0, 0, 0]);
    assert_eq!(h.ask_auth(f, &v6, "alice", "alicepw").code(), Some(443));
    let r = h.ask_auth(f, &Req::new(m::REFRESH).lifetime(1200), "alice", "alicepw");
    assert!(r.is_success());
    assert_eq!(r.msg().lifetime(), Ok(Some(1200)));
    assert!(r.msg().verify_integrity(&key("alice", "alicepw")));
    // Still alive after the original 600 s thanks to the refresh.
    assert!(h.advance(900).is_empty());
    let out = h.advance(301);
    assert!(matches!(out[..], [Output::ReleaseRelay(x)] if x == id));
    assert_eq!(h.core.allocation_count(), 0);
    assert_eq!(h.metrics().allocations_active.load(Relaxed), 0);
}

#[test]
fn refresh_zero_deletes_and_tcp_close_deletes() {
    let mut h = H::new();
    let id = h.allocate(five(1), "alice", "alicepw");
    let nonce = h.nonce(five(1));
    let out = h.feed(
        five(1),
        &Req::new(m::REFRESH)
            .lifetime(0)
            .encode(Some(("alice", "alicepw", &nonce))),
    );
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::ReleaseRelay(x) if *x == id)));
    let resp = out
        .iter()
        .find_map(|o| match o {
            Output::ToClient { data, .. } => Some(Resp { raw: data.clone() }),
            _ => None,
        })
        .unwrap();
    assert_eq!(resp.msg().lifetime(), Ok(Some(0)));
    let mut tcp = five(2);
    tcp.proto = Proto::Tcp;
    let id2 = h.allocate(tcp, "alice", "alicepw");
    let mut out = Vec::new();
    h.core.client_closed(tcp, &mut out);
    assert!(matches!(out[..], [Output::ReleaseRelay(x)] if x == id2));
}

#[test]
fn allocation_expires_and_stops_relaying() {
    let mut h = H::new();
    let f = five(1);
    let id = h.allocate(f, "alice", "alicepw");
    let r = h.ask_auth(
        f,
        &Req::new(m::CHANNEL_BIND).channel(0x4000).peer(addr(PEER)),
        "alice",
        "alicepw",
    );
    assert!(r.is_success());
    let out = h.advance(600);
    assert!(matches!(out[..], [Output::ReleaseRelay(x)] if x == id));
    let mut cd = Vec::new();
    ChannelData::encode(0x4000, b"late", false, &mut cd);
    assert!(h.feed(f, &cd).is_empty());
    assert!(h.peer_data(id, addr(PEER), b"late").is_empty());
}

// ---- permissions and peer policy ------------------------------------------

#[test]
fn create_permission_rules_and_deny_list() {
    let mut h = H::new();
    let f = five(1);
    let no_alloc = Req::new(m::CREATE_PERMISSION).peer(addr(PEER));
    assert_eq!(
        h.ask_auth(f, &no_alloc, "alice", "alicepw").code(),
        Some(437)
    );
    h.allocate(f, "alice", "alicepw");
    assert_eq!(h.ask_auth(f, &no_alloc, "bob", "bobpw").code(), Some(441));
    let none = Req::new(m::CREATE_PERMISSION);
    assert_eq!(h.ask_auth(f, &none, "alice", "alicepw").code(), Some(400));
    for denied in [
        "127.0.0.1:80",
        "10.0.0.1:80",
        "192.168.1.1:80",
        "169.254.169.254:80",
        "224.0.0.1:80",
        "0.0.0.0:80",
    ] {
        let r = Req::new(m::CREATE_PERMISSION).peer(addr(denied));
        let resp = h.ask_auth(f, &r, "alice", "alicepw");
        assert_eq!(resp.code(), Some(403), "{denied}");
        assert!(resp.msg().verify_integrity(&key("alice", "alicepw")));
    }
    // All-or-nothing: one denied peer refuses the whole request.
    let mixed = Req::new(m::CREATE_PERMISSION)
        .peer(addr(PEER))
        .peer(addr("127.0.0.1:1"));
    assert_eq!(h.ask_auth(f, &mixed, "alice", "alicepw").code(), Some(403));
    let v6 = Req::new(m::CREATE_PERMISSION).peer(addr("[2001:db8::1]:80"));
    assert_eq!(h.ask_auth(f, &v6, "alice", "alicepw").code(), Some(443));
    let bad = Req::new(m::CREATE_PERMISSION).attr(attr::XOR_PEER_ADDRESS, &[0, 9, 0, 0]);
    assert_eq!(h.ask_auth(f, &bad, "alice", "alicepw").code(), Some(400));
    assert_eq!(h.metrics().denied_peers.load(Relaxed), 7);
    assert!(h.ask_auth(f, &no_alloc, "alice", "alicepw").is_success());
}

#[test]
fn allow_list_overrides_the_default_deny() {
    let mut c = cfg();
    c.allowed_peer_ips = vec!["127.0.0.1/32".into()];
    let mut h = H::with(c);
    h.allocate(five(1), "alice", "alicepw");
    let ok = Req::new(m::CREATE_PERMISSION).peer(addr("127.0.0.1:5000"));
    assert!(h.ask_auth(five(1), &ok, "alice", "alicepw").is_success());
    let still_denied = Req::new(m::CREATE_PERMISSION).peer(addr("127.0.0.2:5000"));
    assert_eq!(
        h.ask_auth(five(1), &still_denied, "alice", "alicepw")
            .code(),
        Some(403)
    );
}

#[test]
fn send_indication_and_data_indication_need_a_live_permission() {
    let mut h = H::new();
    let f = five(1);
    let id = h.allocate(f, "alice", "alicepw");
    let peer = addr(PEER);
    let mut send = Req::new(m::SEND).peer(peer).attr(attr::DATA, b"hello");
    send.class = Class::Indication;
    // No permission yet: dropped both ways.
    assert!(h.feed(f, &send.encode(None)).is_empty());
    assert!(h.peer_data(id, peer, b"hi").is_empty());
    let r = h.ask_auth(
        f,
        &Req::new(m::CREATE_PERMISSION).peer(peer),
        "alice",
        "alicepw",
    );
    assert!(r.is_success());
    match &h.feed(f, &send.encode(None))[..] {
        [Output::ToPeer {
            alloc,
            peer: p,
            data,
        }] => {
            assert_eq!((*alloc, *p, &data[..]), (id, peer, &b"hello"[..]));
        }
        o => panic!("{o:?}"),
    }
    // Permissions are per IP: another port of the same peer IP passes.
    let other_port = addr("198.51.100.7:1234");
    match &h.peer_data(id, other_port, b"back")[..] {
        [Output::ToClient { five: to, data }] => {
            assert_eq!(*to, f);
            let msg = Message::parse(data).unwrap();
            assert_eq!((msg.method, msg.class), (m::DATA, Class::Indication));
            assert_eq!(msg.get(attr::DATA), Some(&b"back"[..]));
            assert_eq!(
                msg.xor_address(msg.get(attr::XOR_PEER_ADDRESS).unwrap()),
                Some(other_port)
            );
        }
        o => panic!("{o:?}"),
    }
    assert!(h.peer_data(id, addr("198.51.100.8:1"), b"x").is_empty());
    // Send indications with unknown comprehension-required attributes are dropped.
    let mut weird = Req::new(m::SEND)
        .peer(peer)
        .attr(attr::DATA, b"x")
        .attr(0x0777, b"y");
    weird.class = Class::Indication;
    assert!(h.feed(f, &weird.encode(None)).is_empty());
    // Permission lifetime is 300 s.
    h.advance(301);
    assert!(h.feed(f, &send.encode(None)).is_empty());
    assert!(h.peer_data(id, peer, b"x").is_empty());
    assert_eq!(h.metrics().packets_to_peer.load(Relaxed), 1);
    assert_eq!(h.metrics().bytes_to_client.load(Relaxed), 4);
}

/// `tandem serve` lets relays reach its SFU (`own_media_addrs`): that exact IP and
/// port, for permissions, channels and data both ways; never another port on the
/// same IP, although permissions are otherwise per IP.
#[test]
fn own_media_exception_reaches_only_the_exact_address() {
    let sfu = addr("127.0.0.1:7882");
    let mut c = cfg();
    c.own_media_addrs = vec![sfu, addr("10.1.2.3:7882")];
    c.denied_peer_ips = vec!["10.0.0.0/8".into()];
    let mut h = H::with(c);
    let f = five(1);
    let id = h.allocate(f, "alice", "alicepw");
    let permit = |p: &str| Req::new(m::CREATE_PERMISSION).peer(addr(p));
    for denied in [
        "127.0.0.1:7883",
        "127.0.0.2:7882",
        "10.1.2.4:7882",
        "10.1.2.3:22",
    ] {
        let code = h.ask_auth(f, &permit(denied), "alice", "alicepw").code();
        assert_eq!(code, Some(403), "{denied}");
    }
    for allowed in ["127.0.0.1:7882", "10.1.2.3:7882"] {
        let resp = h.ask_auth(f, &permit(allowed), "alice", "alicepw");
        assert!(resp.is_success(), "{allowed}: {:?}", resp.code());
    }
    let send = |to: SocketAddr| {
        let mut r = Req::new(m::SEND).peer(to).attr(attr::DATA, b"media");
        r.class = Class::Indication;
        r.encode(None)
    };
    // The permission for 127.0.0.1 carries data to and from the SFU port only.
    assert!(matches!(
        &h.feed(f, &send(sfu))[..],
        [Output::ToPeer { peer, .. }] if *peer == sfu
    ));
    for other in ["127.0.0.1:22", "127.0.0.1:7883", "10.1.2.3:53"] {
        assert!(h.feed(f, &send(addr(other))).is_empty(), "send to {other}");
        assert!(
            h.peer_data(id, addr(other), b"x").is_empty(),
            "from {other}"
        );
    }
    assert_eq!(h.peer_data(id, sfu, b"back").len(), 1);
    // Channels: only to the exact address, and binding one opens nothing more.
    let bind = |n: u16, p: &str| Req::new(m::CHANNEL_BIND).channel(n).peer(addr(p));
    let code = h
        .ask_auth(f, &bind(0x4000, "127.0.0.1:7883"), "alice", "alicepw")
        .code();
    assert_eq!(code, Some(403));
    assert!(h
        .ask_auth(f, &bind(0x4001, "127.0.0.1:7882"), "alice", "alicepw")
        .is_success());
    assert!(h.feed(f, &send(addr("127.0.0.1:7883"))).is_empty());
    assert!(h.peer_data(id, addr("127.0.0.1:7883"), b"x").is_empty());
    assert_eq!(h.metrics().packets_to_peer.load(Relaxed), 1);
    assert_eq!(h.metrics().packets_to_client.load(Relaxed), 1);
    // The exception is for UDP relays (what browsers allocate), not RFC 6062 ones.
    let control = tcp_five(9);
    tcp_allocate(&mut h, control);
    let connect = Req::new(m::CONNECT).peer(sfu);
    let code = h.ask_auth(control, &connect, "alice", "alicepw").code();
    assert_eq!(code, Some(403));
}

// ---- channels ---------------------------------------------------------------

#[test]
fn channel_bind_rules() {
    let mut h = H::new();
    let f = five(1);
    let peer = addr(PEER);
    let peer2 = addr("198.51.100.8:9000");
    let bind = |n: u16, p: SocketAddr| Req::new(m::CHANNEL_BIND).channel(n).peer(p);
    assert_eq!(
        h.ask_auth(f, &bind(0x4000, peer), "alice", "alicepw")
            .code(),
        Some(437)
    );
    let id = h.allocate(f, "alice", "alicepw");
    for bad in [0x3FFF, 0x8000, 0x0001] {
        assert_eq!(
            h.ask_auth(f, &bind(bad, peer), "alice", "alicepw").code(),
            Some(400)
        );
    }
    let no_peer = Req::new(m::CHANNEL_BIND).channel(0x4000);
    assert_eq!(
        h.ask_auth(f, &no_peer, "alice", "alicepw").code(),
        Some(400)
    );
    let no_num = Req::new(m::CHANNEL_BIND).peer(peer);
    assert_eq!(h.ask_auth(f, &no_num, "alice", "alicepw").code(), Some(400));
    assert_eq!(
        h.ask_auth(f, &bind(0x4000, addr("10.0.0.1:1")), "alice", "alicepw")
            .code(),
        Some(403)
    );
    assert!(h
        .ask_auth(f, &bind(0x4000, peer), "alice", "alicepw")
        .is_success());
    // Same channel to another peer, or same peer to another channel: 400.
    assert_eq!(
        h.ask_auth(f, &bind(0x4000, peer2), "alice", "alicepw")
            .code(),
        Some(400)
    );
    assert_eq!(
        h.ask_auth(f, &bind(0x4001, peer), "alice", "alicepw")
            .code(),
        Some(400)
    );
    // Rebinding the same pair refreshes.
    assert!(h
        .ask_auth(f, &bind(0x4000, peer), "alice", "alicepw")
        .is_success());
    // ChannelData both ways.
    let mut cd = Vec::new();
    ChannelData::encode(0x4000, b"media", false, &mut cd);
    match &h.feed(f, &cd)[..] {
        [Output::ToPeer {
            alloc,
            peer: p,
            data,
        }] => assert_eq!((*alloc, *p, &data[..]), (id, peer, &b"media"[..])),
        o => panic!("{o:?}"),
    }
    let mut unbound = Vec::new();
    ChannelData::encode(0x4005, b"x", false, &mut unbound);
    assert!(h.feed(f, &unbound).is_empty());
    match &h.peer_data(id, peer, b"reply")[..] {
        [Output::ToClient { data, .. }] => {
            assert_eq!(
                ChannelData::parse(data),
                Some(ChannelData {
                    channel: 0x4000,
                    data: b"reply"
                })
            );
        }
        o => panic!("{o:?}"),
    }
    // Channel binding installed a permission for the peer's IP.
    let mut send = Req::new(m::SEND)
        .peer(addr("198.51.100.7:1"))
        .attr(attr::DATA, b"s");
    send.class = Class::Indication;
    assert_eq!(h.feed(f, &send.encode(None)).len(), 1);
}

#[test]
fn channel_data_over_tcp_is_padded_and_channels_expire() {
    let mut h = H::new();
    let mut f = five(1);
    f.proto = Proto::Tcp;
    let peer = addr(PEER);
    let id = h.allocate(f, "alice", "alicepw");
    let r = h.ask_auth(
        f,
        &Req::new(m::CHANNEL_BIND).channel(0x4001).peer(peer),
        "alice",
        "alicepw",
    );
    assert!(r.is_success());
    match &h.peer_data(id, peer, b"abcde")[..] {
        [Output::ToClient { data, .. }] => assert_eq!(data.len(), 12),
        o => panic!("{o:?}"),
    }
    // Keep the allocation and permission alive, let the channel (600 s) lapse.
    for _ in 0..2 {
        h.advance(290);
        assert!(h
            .ask_auth(
                f,
                &Req::new(m::CREATE_PERMISSION).peer(peer),
                "alice",
                "alicepw"
            )
            .is_success());
        assert!(h
            .ask_auth(f, &Req::new(m::REFRESH), "alice", "alicepw")
            .is_success());
    }
    h.advance(30);
    let mut cd = Vec::new();
    ChannelData::encode(0x4001, b"x", true, &mut cd);
    assert!(h.feed(f, &cd).is_empty());
    // Peer data now arrives as a Data indication.
    match &h.peer_data(id, peer, b"y")[..] {
        [Output::ToClient { data, .. }] => {
            assert_eq!(Message::parse(data).unwrap().method, m::DATA)
        }
        o => panic!("{o:?}"),
    }
    // And the channel number may be bound to a new peer.
    let peer2 = addr("198.51.100.9:1");
    assert!(h
        .ask_auth(
            f,
            &Req::new(m::CHANNEL_BIND).channel(0x4001).peer(peer2),
            "alice",
            "alicepw"
        )
        .is_success());
}

// ---- bandwidth --------------------------------------------------------------

#[test]
fn bandwidth_quota_drops_excess_per_allocation() {
    let mut c = cfg();
    c.max_bandwidth_per_allocation = 1000;
    let mut h = H::with(c);
    let f = five(1);
    let peer = addr(PEER);
    let id = h.allocate(f, "alice", "alicepw");
    assert!(h
        .ask_auth(
            f,
            &Req::new(m::CHANNEL_BIND).channel(0x4000).peer(peer),
            "alice",
            "alicepw"
        )
        .is_success());
    let mut cd = Vec::new();
    ChannelData::encode(0x4000, &[0u8; 600], false, &mut cd);
    assert_eq!(h.feed(f, &cd).len(), 1);
    assert!(h.feed(f, &cd).is_empty());
    assert_eq!(h.metrics().bandwidth_drops.load(Relaxed), 1);
    // The other direction has its own budget.
    assert_eq!(h.peer_data(id, peer, &[0u8; 900]).len(), 1);
    assert!(h.peer_data(id, peer, &[0u8; 900]).is_empty());
    h.now += Duration::from_secs(1);
    assert_eq!(h.feed(f, &cd).len(), 1);
}

// ---- malformed input --------------------------------------------------------

#[test]
fn garbage_truncated_and_bad_fingerprint_are_dropped() {
    let mut h = H::new();
    let f = five(1);
    h.allocate(f, "alice", "alicepw");
    let valid = Req::new(m::BINDING).encode(None);
    let mut fp = Req::new(m::BINDING);
    fp.fingerprint = true;
    let mut bad_fp = fp.encode(None);
    let last = bad_fp.len() - 1;
    bad_fp[last] ^= 0xFF;
    let inputs: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        vec![0xFF; 100],
        valid[..19].to_vec(),
        valid[..valid.len() - 1].to_vec(),
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        vec![0x40, 0x00, 0x00, 0x10, 1, 2],
        bad_fp,
    ];
    for i in &inputs {
        assert!(h.feed(f, i).is_empty(), "{i:?}");
    }
    assert!(h.metrics().malformed_drops.load(Relaxed) >= 7);
    // Still serving.
    assert!(h.ask(f, &valid).is_success());
}

/// Bounded property test: random and mutated messages never panic the core,
/// and every response it sends parses.
#[test]
fn random_and_mutated_input_never_panics() {
    let mut c = cfg();
    c.max_bandwidth_per_allocation = 0;
    let mut h = H::with(c);
    let f = five(1);
    let id = h.allocate(f, "alice", "alicepw");
    let nonce = h.nonce(f);
    let auth = Some(("alice", "alicepw", nonce.as_str()));
    let mut ind = Req::new(m::SEND)
        .peer(addr(PEER))
        .attr(attr::DATA, b"payload");
    ind.class = Class::Indication;
    let mut cd = Vec::new();
    ChannelData::encode(0x4000, b"chan", false, &mut cd);
    let seeds: Vec<Vec<u8>> = vec![
        Req::new(m::BINDING).encode(None),
        Req::new(m::ALLOCATE).udp().encode(auth),
        Req::new(m::REFRESH).lifetime(700).encode(auth),
        Req::new(m::CREATE_PERMISSION).peer(addr(PEER)).encode(auth),
        Req::new(m::CHANNEL_BIND)
            .channel(0x4000)
            .peer(addr(PEER))
            .encode(auth),
        ind.encode(None),
        cd,
    ];
    let mut rng = fastrand::Rng::with_seed(0x7a4d);
    let started = std::time::Instant::now();
    for i in 0..30_000 {
        let mut input = if i % 4 == 0 {
            let len = rng.usize(0..200);
            (0..len).map(|_| rng.u8(..)).collect::<Vec<u8>>()
        } else {
            seeds[rng.usize(..seeds.len())].clone()
        };
        for _ in 0..rng.usize(0..4) {
            if input.is_empty() {
                break;
            }
            match rng.u8(0..4) {
                0 => {
                    let p = rng.usize(..input.len());
                    input[p] = rng.u8(..);
                }
                1 => input.truncate(rng.usize(..input.len())),
                2 => input.extend((0..rng.usize(1..8)).map(|_| rng.u8(..))),
                _ => {
                    // Keep the STUN length field consistent so mutations reach attribute parsing.
                    if input.len() >= 20 && input.len() % 4 == 0 {
                        let l = (input.len() - 20) as u16;
                        input[2..4].copy_from_slice(&l.to_be_bytes());
                    }
                }
            }
        }
        let mut out = Vec::new();
        h.core.handle_client(h.now, f, &input, &mut out);
        h.core.handle_peer(h.now, id, addr(PEER), &input, &mut out);
        let _ = crate::message::stream_frame_len(&input);
        for o in out {
            match o {
                Output::ToClient { data, .. } if data[0] >> 6 == 0 => {
                    Message::parse(&data).expect("server output parses");
                }
                Output::BindRelay(req) => {
                    let mut more = Vec::new();
                    h.core
                        .relay_bound(h.now, req, Some(addr("192.0.2.10:60000")), &mut more);
                }
                _ => {}
            }
        }
    }
    assert!(started.elapsed() < Duration::from_secs(20));
}

// ---- RFC 6062 TCP allocations -------------------------------------------------

fn tcp_five(port: u16) -> FiveTuple {
    FiveTuple {
        proto: Proto::Tcp,
        ..five(port)
    }
}

fn tcp_alloc() -> Req {
    Req::new(m::ALLOCATE).attr(attr::REQUESTED_TRANSPORT, &[6, 0, 0, 0])
}

fn conn_id(r: &Resp) -> u32 {
    let v = r.msg().get(attr::CONNECTION_ID).unwrap().to_vec();
    u32::from_be_bytes([v[0], v[1], v[2], v[3]])
}

#[test]
fn tcp_allocation_rules() {
    let mut h = H::new();
    // Over UDP, or with EVEN-PORT / DONT-FRAGMENT: 400.
    assert_eq!(
        h.ask_auth(five(1), &tcp_alloc(), "alice", "alicepw").code(),
        Some(400)
    );
    let df = tcp_alloc().attr(attr::DONT_FRAGMENT, &[]);
    assert_eq!(
        h.ask_auth(tcp_five(1), &df, "alice", "alicepw").code(),
        Some(400)
    );
    let even = tcp_alloc().attr(attr::EVEN_PORT, &[0]);
    assert_eq!(
        h.ask_auth(tcp_five(1), &even, "alice", "alicepw").code(),
        Some(400)
    );
    let nonce = h.nonce(tcp_five(1));
    let mut out = Vec::new();
    h.core.handle_client(
        h.now,
        tcp_five(1),
        &tcp_alloc().encode(Some(("alice", "alicepw", &nonce))),
        &mut out,
    );
    let Some(Output::BindRelay(req)) = out.pop() else {
        panic!("{out:?}")
    };
    assert!(req.tcp);
    h.bind(req, false, &mut out);
    // Channels are UDP-only; Connect on a UDP allocation is 400.
    let cb = Req::new(m::CHANNEL_BIND).channel(0x4000).peer(addr(PEER));
    assert_eq!(
        h.ask_auth(tcp_five(1), &cb, "alice", "alicepw").code(),
        Some(400)
    );
    h.allocate(five(2), "alice", "alicepw");
    let connect = Req::new(m::CONNECT).peer(addr(PEER));
    assert_eq!(
        h.ask_auth(five(2), &connect, "alice", "alicepw").code(),
        Some(400)
    );
}

/// Allocates a TCP relay on `f` and returns its id.
fn tcp_allocate(h: &mut H, f: FiveTuple) -> u32 {
    let nonce = h.nonce(f);
    let out = h.feed(f, &tcp_alloc().encode(Some(("alice", "alicepw", &nonce))));
    let Output::ToClient { data, .. } = &out[0] else {
        panic!("{out:?}")
    };
    let r = Resp { raw: data.clone() };
    assert!(r.is_success());
    let msg = r.msg();
    let relay = msg
        .xor_address(msg.get(attr::XOR_RELAYED_ADDRESS).unwrap())
        .unwrap();
    *h.relays.iter().find(|(_, a)| **a == relay).unwrap().0
}

#[test]
fn tcp_connect_and_connection_bind() {
    let mut h = H::new();
    let control = tcp_five(1);
    let id = tcp_allocate(&mut h, control);
    // Connect to a denied peer: 403.
    let denied = Req::new(m::CONNECT).peer(addr("10.0.0.1:80"));
    assert_eq!(
        h.ask_auth(control, &denied, "alice", "alicepw").code(),
        Some(403)
    );
    // Connect: the I/O layer is asked to open the connection.
    let nonce = h.nonce(control);
    let auth = Some(("alice", "alicepw", nonce.as_str()));
    let connect = Req::new(m::CONNECT).peer(addr(PEER));
    let out = h.feed(control, &connect.encode(auth));
    let conn = match &out[..] {
        [Output::ConnectPeer { alloc, conn, peer }] => {
            assert_eq!((*alloc, *peer), (id, addr(PEER)));
            *conn
        }
        o => panic!("{o:?}"),
    };
    let mut out = Vec::new();
    h.core.peer_connected(h.now, conn, true, &mut out);
    let [Output::ToClient { data, .. }] = &out[..] else {
        panic!("{out:?}")
    };
    let r = Resp { raw: data.clone() };
    assert!(r.is_success());
    assert_eq!(conn_id(&r), conn);
    assert_eq!(r.msg().tid, connect.tid);
    // A second Connect to the same peer: 446.
    let again = Req::new(m::CONNECT).peer(addr(PEER));
    assert_eq!(h.ask(control, &again.encode(auth)).code(), Some(446));
    // ConnectionBind on a new data connection.
    let data_conn = tcp_five(2);
    let bad = Req::new(m::CONNECTION_BIND).attr(attr::CONNECTION_ID, &[0, 0, 0, 1]);
    assert_eq!(h.ask(data_conn, &bad.encode(auth)).code(), Some(400));
    let bind = Req::new(m::CONNECTION_BIND).attr(attr::CONNECTION_ID, &conn.to_be_bytes());
    assert_eq!(
        h.ask_auth(data_conn, &bind, "bob", "bobpw").code(),
        Some(441),
        "another user's connection"
    );
    // On the control connection itself: 400.
    assert_eq!(h.ask(control, &bind.encode(auth)).code(), Some(400));
    let out = h.feed(data_conn, &bind.encode(auth));
    match &out[..] {
        [Output::ToClient { five, data }, Output::Splice { five: f2, conn: c }] => {
            assert_eq!((*five, *f2, *c), (data_conn, data_conn, conn));
            assert!(Resp { raw: data.clone() }.is_success());
        }
        o => panic!("{o:?}"),
    }
    // Bound once only.
    assert_eq!(h.ask(tcp_five(3), &bind.encode(auth)).code(), Some(400));
    // Ending the allocation closes its peer connections.
    let mut out = Vec::new();
    h.core.client_closed(control, &mut out);
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::ClosePeerConn(c) if *c == conn)));
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::ReleaseRelay(x) if *x == id)));
}

#[test]
fn tcp_connect_failure_is_447() {
    let mut h = H::new();
    let control = tcp_five(1);
    tcp_allocate(&mut h, control);
    let nonce = h.nonce(control);
    let out = h.feed(
        control,
        &Req::new(m::CONNECT)
            .peer(addr(PEER))
            .encode(Some(("alice", "alicepw", &nonce))),
    );
    let [Output::ConnectPeer { conn, .. }] = &out[..] else {
        panic!("{out:?}")
    };
    let mut out = Vec::new();
    h.core.peer_connected(h.now, *conn, false, &mut out);
    let [Output::ToClient { data, .. }] = &out[..] else {
        panic!("{out:?}")
    };
    assert_eq!(Resp { raw: data.clone() }.code(), Some(447));
}

#[test]
fn incoming_peer_connections_need_permission_and_a_timely_bind() {
    let mut h = H::new();
    let control = tcp_five(1);
    let id = tcp_allocate(&mut h, control);
    let mut out = Vec::new();
    assert_eq!(h.core.peer_incoming(h.now, id, addr(PEER), &mut out), None);
    assert!(out.is_empty());
    let perm = Req::new(m::CREATE_PERMISSION).peer(addr(PEER));
    assert!(h.ask_auth(control, &perm, "alice", "alicepw").is_success());
    let conn = h
        .core
        .peer_incoming(h.now, id, addr(PEER), &mut out)
        .unwrap();
    let [Output::ToClient { five, data }] = &out[..] else {
        panic!("{out:?}")
    };
    assert_eq!(*five, control);
    let msg = Message::parse(data).unwrap();
    assert_eq!(
        (msg.method, msg.class),
        (m::CONNECTION_ATTEMPT, Class::Indication)
    );
    assert_eq!(
        msg.xor_address(msg.get(attr::XOR_PEER_ADDRESS).unwrap()),
        Some(addr(PEER))
    );
    assert_eq!(msg.get(attr::CONNECTION_ID), Some(&conn.to_be_bytes()[..]));
    // Not bound within 30 s: closed.
    let out = h.advance(31);
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::ClosePeerConn(c) if *c == conn)));
}

fn mutate(rng: &mut fastrand::Rng, seeds: &[Vec<u8>], random: bool) -> Vec<u8> {
    let mut input = if random {
        let len = rng.usize(0..120);
        (0..len).map(|_| rng.u8(..)).collect::<Vec<u8>>()
    } else {
        seeds[rng.usize(..seeds.len())].clone()
    };
    for _ in 0..rng.usize(0..4) {
        if input.is_empty() {
            break;
        }
        match rng.u8(0..3) {
            0 => {
                let p = rng.usize(..input.len());
                input[p] = rng.u8(..);
            }
            1 => input.truncate(rng.usize(..input.len())),
            _ => input.extend((0..rng.usize(1..8)).map(|_| rng.u8(..))),
        }
    }
    input
}

/// Bounded property test for RFC 6062: random and mutated Connect /
/// ConnectionBind / permission traffic on control and data connections, with
/// connection results and incoming peers interleaved, never panics, and every
/// STUN message the server sends parses.
#[test]
fn random_input_on_tcp_allocations_never_panics() {
    let mut h = H::new();
    let control = tcp_five(1);
    let id = tcp_allocate(&mut h, control);
    let nonce = h.nonce(control);
    let auth = Some(("alice", "alicepw", nonce.as_str()));
    let seeds: Vec<Vec<u8>> = vec![
        Req::new(m::CONNECT).peer(addr(PEER)).encode(auth),
        Req::new(m::CONNECTION_BIND)
            .attr(attr::CONNECTION_ID, &[0, 0, 0, 1])
            .encode(auth),
        Req::new(m::CREATE_PERMISSION).peer(addr(PEER)).encode(auth),
        Req::new(m::REFRESH).lifetime(900).encode(auth),
        tcp_alloc().encode(auth),
    ];
    let mut rng = fastrand::Rng::with_seed(0x6062);
    let mut conns: Vec<u32> = Vec::new();
    for i in 0..20_000 {
        let input = mutate(&mut rng, &seeds, i % 5 == 0);
        let f = if rng.bool() {
            control
        } else {
            tcp_five(2 + rng.u16(0..4))
        };
        let mut out = Vec::new();
        h.core.handle_client(h.now, f, &input, &mut out);
        if rng.u8(0..10) == 0 {
            if let Some(c) = h.core.peer_incoming(h.now, id, addr(PEER), &mut out) {
                conns.push(c);
            }
        }
        // Bind a real connection id now and then.
        if let (Some(&c), 0) = (conns.last(), rng.u8(0..8)) {
            let bind = Req::new(m::CONNECTION_BIND)
                .attr(attr::CONNECTION_ID, &c.to_be_bytes())
                .encode(auth);
            h.core.handle_client(h.now, tcp_five(9), &bind, &mut out);
        }
        while let Some(o) = out.pop() {
            match o {
                Output::ToClient { data, .. } => {
                    Message::parse(&data).expect("server output parses");
                }
                Output::ConnectPeer { conn, .. } => {
                    conns.push(conn);
                    let ok = rng.bool();
                    h.core.peer_connected(h.now, conn, ok, &mut out);
                }
                Output::BindRelay(req) => {
                    h.core
                        .relay_bound(h.now, req, Some(addr("192.0.2.10:61000")), &mut out);
                }
                _ => {}
            }
        }
        if i % 1000 == 999 {
            let _ = h.advance(7);
        }
    }
}
