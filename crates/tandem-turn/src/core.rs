//! The sans-IO STUN/TURN state machine.
//!
//! Bytes and time go in ([`Core::handle_client`], [`Core::handle_peer`],
//! [`Core::handle_timeout`]); what to send and which relay sockets to open or
//! close come out as [`Output`]s. No sockets, no clocks: the I/O layer (and
//! the tests) drive it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::auth::{AuthError, Authenticator, Key, NonceCheck, NonceIssuer};
use crate::config::TurnConfig;
use crate::message::{self as m, attr, Builder, ChannelData, Class, Message};
use crate::metrics::Metrics;
use crate::policy::{PeerPolicy, PeerScope};

/// RFC 8656 permission lifetime.
pub const PERMISSION_LIFETIME: Duration = Duration::from_secs(300);
/// RFC 8656 channel binding lifetime.
pub const CHANNEL_LIFETIME: Duration = Duration::from_secs(600);
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// How long a port reserved by EVEN-PORT (R) stays reserved (RFC 8656: ~30 s).
pub const RESERVATION_LIFETIME: Duration = Duration::from_secs(30);
const SOFTWARE: &[u8] = b"tandem-turn";

/// Transport between client and server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    Udp,
    Tcp,
    Tls,
}

impl Proto {
    fn is_stream(self) -> bool {
        !matches!(self, Proto::Udp)
    }
}

/// Identifies a client connection: the RFC's 5-tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FiveTuple {
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub proto: Proto,
}

/// Allocation handle shared with the I/O layer (names its relay socket).
pub type AllocId = u32;
/// RFC 6062 CONNECTION-ID: names one TCP connection between a relay and a peer.
pub type ConnId = u32;
/// RFC 6062: peer connections one TCP allocation may hold (bound or not).
pub const MAX_PEER_CONNS_PER_ALLOCATION: usize = 64;
/// RFC 6062: a peer connection must be bound by the client within 30 s.
pub const TCP_BIND_TIMEOUT: Duration = Duration::from_secs(30);

/// A relay socket the I/O layer must bind, then report with
/// [`Core::relay_bound`].
#[derive(Debug, Clone)]
pub struct RelayRequest {
    pub id: AllocId,
    pub five: FiveTuple,
    /// Bind an even port (EVEN-PORT).
    pub even_port: bool,
    /// EVEN-PORT with R bit: also reserve the next port under this token.
    pub reserve: Option<[u8; 8]>,
    /// RESERVATION-TOKEN: use the port reserved under this token.
    pub use_token: Option<[u8; 8]>,
    /// RFC 6062 TCP allocation: the relay is a TCP listener.
    pub tcp: bool,
    username: String,
    key: Key,
    tid: [u8; 12],
    lifetime: Duration,
    fingerprint: bool,
}

/// What the core asks the I/O layer to do.
#[derive(Debug)]
pub enum Output {
    /// Send `data` to the client of `five`.
    ToClient { five: FiveTuple, data: Vec<u8> },
    /// Send `data` from the relay socket of `alloc` to `peer`.
    ToPeer {
        alloc: AllocId,
        peer: SocketAddr,
        data: Vec<u8>,
    },
    /// Bind a relay socket.
    BindRelay(RelayRequest),
    /// Close the relay socket of an allocation that ended.
    ReleaseRelay(AllocId),
    /// Close a reserved port nobody claimed in time.
    ReleaseReservation([u8; 8]),
    /// RFC 6062: open a TCP connection from the relay of `alloc` to `peer`,
    /// then report with [`Core::peer_connected`].
    ConnectPeer {
        alloc: AllocId,
        conn: ConnId,
        peer: SocketAddr,
    },
    /// RFC 6062: from now on the client's data connection `five` carries the
    /// bytes of peer connection `conn`, both ways, unframed.
    Splice { five: FiveTuple, conn: ConnId },
    /// RFC 6062: close peer connection `conn`.
    ClosePeerConn(ConnId),
}

enum ConnState {
    /// Connect request in progress: answer it when the connection is up.
    Connecting {
        five: FiveTuple,
        tid: [u8; 12],
        key: Key,
        fingerprint: bool,
    },
    /// Waiting for the client's ConnectionBind.
    Waiting {
        expires: Instant,
    },
    Bound,
}

struct PeerConn {
    alloc: AllocId,
    peer: SocketAddr,
    state: ConnState,
}

struct Channel {
    peer: SocketAddr,
    expires: Instant,
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn take(&mut self, now: Instant, n: usize, rate: u64) -> bool {
        if rate == 0 {
            return true;
        }
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * rate as f64).min(rate as f64);
        if self.tokens >= n as f64 {
            self.tokens -= n as f64;
            true
        } else {
            false
        }
    }
}

/// A permission for one peer IP (RFC 8656 §9).
struct Permission {
    expires: Instant,
    scope: PeerScope,
}

struct Allocation {
    five: FiveTuple,
    username: String,
    relay: SocketAddr,
    expires: Instant,
    perms: HashMap<IpAddr, Permission>,
    channels: HashMap<u16, Channel>,
    peer_channel: HashMap<SocketAddr, u16>,
    alloc_tid: [u8; 12],
    alloc_response: Vec<u8>,
    up: Bucket,
    down: Bucket,
    tcp: bool,
}

impl Allocation {
    /// Does a live permission cover `peer`? Permissions are per IP, except one
    /// granted through the own-media exception: it covers those exact addresses.
    fn permitted(&self, peer: SocketAddr, policy: &PeerPolicy, now: Instant) -> bool {
        self.perms.get(&peer.ip()).is_some_and(|p| {
            p.expires > now && (p.scope == PeerScope::AnyPort || policy.is_own_media(peer))
        })
    }

    /// Installs or refreshes the permission for `peer`'s IP. The scope of an IP is
    /// the same whichever of its ports was asked for (the policy is per IP, the
    /// exception only ever narrows an IP the policy refuses).
    fn permit(&mut self, peer: SocketAddr, scope: PeerScope, now: Instant) {
        let expires = now + PERMISSION_LIFETIME;
        self.perms.insert(peer.ip(), Permission { expires, scope });
    }
}

/// The settings the core uses, derived from [`TurnConfig`].
#[derive(Debug, Clone)]
pub struct CoreConfig {
    pub realm: String,
    pub nonce_ttl: u64,
    pub default_lifetime: u32,
    pub max_lifetime: u32,
    pub max_per_user: u32,
    pub max_total: u32,
    pub bandwidth: u64,
    pub policy: PeerPolicy,
}

impl CoreConfig {
    pub fn from_turn(c: &TurnConfig, policy: PeerPolicy) -> Self {
        CoreConfig {
            realm: c.realm.clone(),
            nonce_ttl: c.nonce_ttl_secs,
            default_lifetime: c.default_lifetime_secs,
            max_lifetime: c.max_lifetime_secs,
            max_per_user: c.max_allocations_per_user,
            max_total: c.max_allocations,
            bandwidth: c.max_bandwidth_per_allocation,
            policy,
        }
    }
}

/// The STUN/TURN server state.
pub struct Core {
    cfg: CoreConfig,
    auth: Authenticator,
    nonces: NonceIssuer,
    base_instant: Instant,
    base_unix: u64,
    allocs: HashMap<AllocId, Allocation>,
    by_five: HashMap<FiveTuple, AllocId>,
    pending: HashMap<FiveTuple, AllocId>,
    per_user: HashMap<String, u32>,
    reservations: HashMap<[u8; 8], Instant>,
    peer_conns: HashMap<ConnId, PeerConn>,
    next_id: AllocId,
    next_sweep: Instant,
    metrics: Arc<Metrics>,
}

struct Authed {
    username: String,
    key: Key,
}

impl Core {
    /// A core whose wall clock reads `unix_now` at `now`. `nonce_key` must be
    /// secret and random.
    pub fn new(
        cfg: CoreConfig,
        auth: Authenticator,
        nonce_key: [u8; 32],
        now: Instant,
        unix_now: u64,
        metrics: Arc<Metrics>,
    ) -> Self {
        Core {
            cfg,
            auth,
            nonces: NonceIssuer::new(nonce_key),
            base_instant: now,
            base_unix: unix_now,
            allocs: HashMap::new(),
            by_five: HashMap::new(),
            pending: HashMap::new(),
            per_user: HashMap::new(),
            reservations: HashMap::new(),
            peer_conns: HashMap::new(),
            next_id: 1,
            next_sweep: now + SWEEP_INTERVAL,
            metrics,
        }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Number of live allocations.
    pub fn allocation_count(&self) -> usize {
        self.allocs.len()
    }

    fn unix(&self, now: Instant) -> u64 {
        self.base_unix + now.saturating_duration_since(self.base_instant).as_secs()
    }

    /// Handles bytes a client sent (one datagram, or one frame of a stream).
    pub fn handle_client(
        &mut self,
        now: Instant,
        five: FiveTuple,
        data: &[u8],
        out: &mut Vec<Output>,
    ) {
        match data.first().map(|b| b >> 6) {
            Some(0) => match Message::parse(data) {
                Ok(msg) => match msg.class {
                    Class::Request => self.handle_request(now, five, &msg, out),
                    Class::Indication if msg.method == m::SEND => {
                        self.handle_send(now, five, &msg, out)
                    }
                    // Binding indications (keepalives) and responses: nothing to do.
                    _ => {}
                },
                Err(_) => Metrics::inc(&self.metrics.malformed_drops),
            },
            Some(1) => match ChannelData::parse(data) {
                Some(cd) => self.handle_channel_data(now, five, cd, out),
                None => Metrics::inc(&self.metrics.malformed_drops),
            },
            _ => Metrics::inc(&self.metrics.malformed_drops),
        }
    }

    /// Handles a datagram received by the relay socket of `alloc` from `peer`.
    pub fn handle_peer(
        &mut self,
        now: Instant,
        alloc: AllocId,
        peer: SocketAddr,
        data: &[u8],
        out: &mut Vec<Output>,
    ) {
        let Some(a) = self.allocs.get_mut(&alloc) else {
            return;
        };
        if a.expires <= now || !a.permitted(peer, &self.cfg.policy, now) {
            return;
        }
        if !a.down.take(now, data.len(), self.cfg.bandwidth) {
            Metrics::inc(&self.metrics.bandwidth_drops);
            return;
        }
        let mut buf = Vec::with_capacity(data.len() + 40);
        match a.peer_channel.get(&peer) {
            Some(ch) if a.channels.get(ch).is_some_and(|c| c.expires > now) => {
                ChannelData::encode(*ch, data, a.five.proto.is_stream(), &mut buf);
            }
            _ => {
                if data.len() > 65_000 {
                    return;
                }
                let mut b = Builder::new(&mut buf, m::DATA, Class::Indication, random_tid());
                b.xor_address(attr::XOR_PEER_ADDRESS, peer);
                b.attr(attr::DATA, data);
                b.finish();
            }
        }
        Metrics::inc(&self.metrics.packets_to_client);
        Metrics::add(&self.metrics.bytes_to_client, data.len() as u64);
        out.push(Output::ToClient {
            five: a.five,
            data: buf,
        });
    }

    /// A stream connection closed: its allocation ends (RFC 8656 §3.1).
    pub fn client_closed(&mut self, five: FiveTuple, out: &mut Vec<Output>) {
        if let Some(id) = self.by_five.get(&five).copied() {
            self.remove_allocation(id, out);
        }
    }

    /// When [`Core::handle_timeout`] wants to run next.
    pub fn poll_timeout(&self) -> Instant {
        self.next_sweep
    }

    /// Expires allocations, permissions and channels.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut Vec<Output>) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + SWEEP_INTERVAL;
        let expired: Vec<AllocId> = self
            .allocs
            .iter()
            .filter(|(_, a)| a.expires <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.remove_allocation(id, out);
        }
        self.peer_conns.retain(|n, c| {
            let expired = matches!(c.state, ConnState::Waiting { expires } if expires <= now);
            if expired {
                out.push(Output::ClosePeerConn(*n));
            }
            !expired
        });
        self.reservations.retain(|token, exp| {
            let keep = *exp > now;
            if !keep {
                out.push(Output::ReleaseReservation(*token));
            }
            keep
        });
        for a in self.allocs.values_mut() {
            a.perms.retain(|_, p| p.expires > now);
            let mut gone = Vec::new();
            a.channels.retain(|n, c| {
                let keep = c.expires > now;
                if !keep {
                    gone.push((*n, c.peer));
                }
                keep
            });
            for (n, peer) in gone {
                if a.peer_channel.get(&peer) == Some(&n) {
                    a.peer_channel.remove(&peer);
                }
            }
        }
    }

    fn remove_allocation(&mut self, id: AllocId, out: &mut Vec<Output>) {
        if let Some(a) = self.allocs.remove(&id) {
            self.by_five.remove(&a.five);
            let key = quota_key(&a.username);
            if let Some(n) = self.per_user.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    self.per_user.remove(key);
                }
            }
            self.metrics.allocations_active.store(
                self.allocs.len() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
            if a.tcp {
                let conns: Vec<ConnId> = self
                    .peer_conns
                    .iter()
                    .filter(|(_, c)| c.alloc == id)
                    .map(|(n, _)| *n)
                    .collect();
                for n in conns {
                    self.peer_conns.remove(&n);
                    out.push(Output::ClosePeerConn(n));
                }
            }
            out.push(Output::ReleaseRelay(id));
        }
    }

    // ---- responses -------------------------------------------------------

    fn reply(
        &self,
        five: FiveTuple,
        req: &Message,
        class: Class,
        key: Option<&Key>,
        fill: impl FnOnce(&mut Builder),
        out: &mut Vec<Output>,
    ) {
        let mut buf = Vec::with_capacity(128);
        let mut b = Builder::new(&mut buf, req.method, class, req.tid);
        fill(&mut b);
        b.attr(attr::SOFTWARE, SOFTWARE);
        if let Some(k) = key {
            b.integrity(k);
        }
        if req.has_fingerprint {
            b.fingerprint();
        }
        b.finish();
        out.push(Output::ToClient { five, data: buf });
    }

    fn error(
        &self,
        five: FiveTuple,
        req: &Message,
        code: u16,
        key: Option<&Key>,
        out: &mut Vec<Output>,
    ) {
        Metrics::inc(&self.metrics.error_responses);
        tracing::debug!(client = %five.client, method = req.method, code, "turn: error response");
        self.reply(
            five,
            req,
            Class::Error,
            key,
            |b| {
                b.error_code(code, reason(code));
            },
            out,
        );
    }

    /// 401/438 challenge: REALM and a fresh NONCE, no integrity.
    fn challenge(
        &self,
        now: Instant,
        five: FiveTuple,
        req: &Message,
        code: u16,
        out: &mut Vec<Output>,
    ) {
        Metrics::inc(&self.metrics.error_responses);
        let nonce = self
            .nonces
            .issue(five.client, self.unix(now) + self.cfg.nonce_ttl);
        self.reply(
            five,
            req,
            Class::Error,
            None,
            |b| {
                b.error_code(code, reason(code));
                b.attr(attr::REALM, self.auth.realm().as_bytes());
                b.attr(attr::NONCE, nonce.as_bytes());
            },
            out,
        );
    }

    // ---- requests --------------------------------------------------------

    fn handle_request(
        &mut self,
        now: Instant,
        five: FiveTuple,
        msg: &Message,
        out: &mut Vec<Output>,
    ) {
        match msg.method {
            m::BINDING => {
                if !msg.unknown_required().is_empty() {
                    return self.unknown_attributes(five, msg, None, out);
                }
                Metrics::inc(&self.metrics.binding_requests);
                self.reply(
                    five,
                    msg,
                    Class::Success,
                    None,
                    |b| {
                        b.xor_address(attr::XOR_MAPPED_ADDRESS, five.client);
                        b.mapped_address(five.client);
                    },
                    out,
                );
            }
            m::ALLOCATE
            | m::REFRESH
            | m::CREATE_PERMISSION
            | m::CHANNEL_BIND
            | m::CONNECT
            | m::CONNECTION_BIND => {
                let Some(authed) = self.authenticate(now, five, msg, out) else {
                    return;
                };
                if !msg.unknown_required().is_empty() {
                    return self.unknown_attributes(five, msg, Some(&authed.key), out);
                }
                if msg.method == m::ALLOCATE {
                    return self.allocate(five, msg, authed, out);
                }
                if msg.method == m::CONNECTION_BIND {
                    return self.connection_bind(five, msg, authed, out);
                }
                let Some(&id) = self.by_five.get(&five) else {
                    return self.error(five, msg, 437, Some(&authed.key), out);
                };
                if self.allocs[&id].username != authed.username {
                    return self.error(five, msg, 441, Some(&authed.key), out);
                }
                match msg.method {
                    m::REFRESH => self.refresh(now, five, id, msg, &authed.key, out),
                    m::CREATE_PERMISSION => {
                        self.create_permission(now, five, id, msg, &authed.key, out)
                    }
                    m::CONNECT => self.connect(now, five, id, msg, &authed.key, out),
                    _ => self.channel_bind(now, five, id, msg, &authed.key, out),
                }
            }
            _ => self.error(five, msg, 400, None, out),
        }
    }

    fn unknown_attributes(
        &self,
        five: FiveTuple,
        msg: &Message,
        key: Option<&Key>,
        out: &mut Vec<Output>,
    ) {
        Metrics::inc(&self.metrics.error_responses);
        let unknown = msg.unknown_required();
        let mut v = Vec::with_capacity(unknown.len() * 2);
        for t in unknown {
            v.extend_from_slice(&t.to_be_bytes());
        }
        self.reply(
            five,
            msg,
            Class::Error,
            key,
            |b| {
                b.error_code(420, reason(420));
                b.attr(attr::UNKNOWN_ATTRIBUTES, &v);
            },
            out,
        );
    }

    /// Long-term credential check (RFC 8489 §9.2.4). Sends the error itself.
    fn authenticate(
        &mut self,
        now: Instant,
        five: FiveTuple,
        msg: &Message,
        out: &mut Vec<Output>,
    ) -> Option<Authed> {
        if !msg.has_integrity() {
            self.challenge(now, five, msg, 401, out);
            return None;
        }
        let (Some(username), Some(realm), Some(nonce)) = (msg.username(), msg.realm(), msg.nonce())
        else {
            Metrics::inc(&self.metrics.auth_failures);
            self.error(five, msg, 400, None, out);
            return None;
        };
        let unix = self.unix(now);
        if self.nonces.check(nonce, five.client, unix) != NonceCheck::Valid {
            self.challenge(now, five, msg, 438, out);
            return None;
        }
        if realm != self.auth.realm().as_bytes() {
            Metrics::inc(&self.metrics.auth_failures);
            self.challenge(now, five, msg, 401, out);
            return None;
        }
        let key = match self.auth.key_for(username, unix) {
            Ok(k) => k,
            Err(AuthError::UnknownUser | AuthError::Expired) => {
                Metrics::inc(&self.metrics.auth_failures);
                self.challenge(now, five, msg, 401, out);
                return None;
            }
        };
        if !msg.verify_integrity(&key) {
            Metrics::inc(&self.metrics.auth_failures);
            self.challenge(now, five, msg, 401, out);
            return None;
        }
        Some(Authed {
            username: username.to_string(),
            key,
        })
    }

    fn lifetime(&self, msg: &Message) -> Result<Duration, m::ParseError> {
        let secs = match msg.lifetime()? {
            None => self.cfg.default_lifetime,
            Some(0) => 0,
            Some(l) => l.clamp(self.cfg.default_lifetime, self.cfg.max_lifetime),
        };
        Ok(Duration::from_secs(secs as u64))
    }

    fn allocate(&mut self, five: FiveTuple, msg: &Message, authed: Authed, out: &mut Vec<Output>) {
        let key = authed.key;
        if let Some(id) = self.by_five.get(&five) {
            let a = &self.allocs[id];
            if a.alloc_tid == msg.tid {
                // Retransmission of the request that created it.
                out.push(Output::ToClient {
                    five,
                    data: a.alloc_response.clone(),
                });
            } else {
                self.error(five, msg, 437, Some(&key), out);
            }
            return;
        }
        if self.pending.contains_key(&five) {
            return;
        }
        let tcp = match msg.get(attr::REQUESTED_TRANSPORT) {
            None => return self.error(five, msg, 400, Some(&key), out),
            Some(v) if v.len() != 4 => return self.error(five, msg, 400, Some(&key), out),
            Some(v) if v[0] == 17 => false,
            Some(v) if v[0] == 6 => true,
            Some(_) => return self.error(five, msg, 442, Some(&key), out),
        };
        // RFC 6062 §5.1: TCP relays need a TCP/TLS control connection and
        // exclude DONT-FRAGMENT, EVEN-PORT and RESERVATION-TOKEN.
        if tcp
            && (!five.proto.is_stream()
                || msg.get(attr::DONT_FRAGMENT).is_some()
                || msg.get(attr::EVEN_PORT).is_some()
                || msg.get(attr::RESERVATION_TOKEN).is_some())
        {
            return self.error(five, msg, 400, Some(&key), out);
        }
        let even = msg.get(attr::EVEN_PORT);
        let token = msg.get(attr::RESERVATION_TOKEN);
        let family = msg.get(attr::REQUESTED_ADDRESS_FAMILY);
        if (even.is_some() && token.is_some()) || (family.is_some() && token.is_some()) {
            return self.error(five, msg, 400, Some(&key), out);
        }
        if even.is_some_and(|v| v.len() != 1) {
            return self.error(five, msg, 400, Some(&key), out);
        }
        let use_token = match token {
            None => None,
            Some(v) => {
                let t: Option<[u8; 8]> = v.try_into().ok();
                match t.filter(|t| self.reservations.remove(t).is_some()) {
                    Some(t) => Some(t),
                    // Unknown or expired token (RFC 8656 §7.2).
                    None => return self.error(five, msg, 508, Some(&key), out),
                }
            }
        };
        let reserve = match even {
            Some(v) if v[0] & 0x80 != 0 => {
                let mut t = [0u8; 8];
                fastrand::fill(&mut t);
                Some(t)
            }
            _ => None,
        };
        match family {
            None => {}
            Some(v) if v.len() != 4 => return self.error(five, msg, 400, Some(&key), out),
            Some(v) if v[0] == 0x01 => {}
            // Relays are IPv4 only.
            Some(_) => return self.error(five, msg, 440, Some(&key), out),
        }
        let Ok(lifetime) = self.lifetime(msg) else {
            return self.error(five, msg, 400, Some(&key), out);
        };
        if lifetime.is_zero() {
            return self.error(five, msg, 400, Some(&key), out);
        }
        let user_count = self
            .per_user
            .get(quota_key(&authed.username))
            .copied()
            .unwrap_or(0);
        if user_count >= self.cfg.max_per_user {
            Metrics::inc(&self.metrics.quota_rejections);
            return self.error(five, msg, 486, Some(&key), out);
        }
        if self.allocs.len() + self.pending.len() >= self.cfg.max_total as usize {
            Metrics::inc(&self.metrics.quota_rejections);
            return self.error(five, msg, 508, Some(&key), out);
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.pending.insert(five, id);
        *self
            .per_user
            .entry(quota_key(&authed.username).to_string())
            .or_insert(0) += 1;
        out.push(Output::BindRelay(RelayRequest {
            id,
            five,
            even_port: even.is_some(),
            reserve,
            use_token,
            tcp,
            username: authed.username,
            key,
            tid: msg.tid,
            lifetime,
            fingerprint: msg.has_fingerprint,
        }));
    }

    /// The I/O layer bound (or failed to bind) the relay of `req`; `relay` is
    /// the address to advertise.
    pub fn relay_bound(
        &mut self,
        now: Instant,
        req: RelayRequest,
        relay: Option<SocketAddr>,
        out: &mut Vec<Output>,
    ) {
        self.pending.remove(&req.five);
        let mut buf = Vec::with_capacity(128);
        let mut b = Builder::new(
            &mut buf,
            m::ALLOCATE,
            if relay.is_some() {
                Class::Success
            } else {
                Class::Error
            },
            req.tid,
        );
        match relay {
            Some(relay) => {
                b.xor_address(attr::XOR_RELAYED_ADDRESS, relay);
                b.u32_attr(attr::LIFETIME, req.lifetime.as_secs() as u32);
                if let Some(t) = req.reserve {
                    b.attr(attr::RESERVATION_TOKEN, &t);
                    self.reservations.insert(t, now + RESERVATION_LIFETIME);
                }
                b.xor_address(attr::XOR_MAPPED_ADDRESS, req.five.client);
            }
            None => {
                Metrics::inc(&self.metrics.error_responses);
                b.error_code(508, reason(508));
            }
        }
        b.attr(attr::SOFTWARE, SOFTWARE);
        b.integrity(&req.key);
        if req.fingerprint {
            b.fingerprint();
        }
        b.finish();
        let Some(relay) = relay else {
            let key = quota_key(&req.username);
            if let Some(n) = self.per_user.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    self.per_user.remove(key);
                }
            }
            out.push(Output::ToClient {
                five: req.five,
                data: buf,
            });
            return;
        };
        let bucket = || Bucket {
            tokens: self.cfg.bandwidth as f64,
            last: now,
        };
        let a = Allocation {
            five: req.five,
            username: req.username,
            relay,
            expires: now + req.lifetime,
            perms: HashMap::new(),
            channels: HashMap::new(),
            peer_channel: HashMap::new(),
            alloc_tid: req.tid,
            alloc_response: buf.clone(),
            up: bucket(),
            down: bucket(),
            tcp: req.tcp,
        };
        self.allocs.insert(req.id, a);
        self.by_five.insert(req.five, req.id);
        Metrics::inc(&self.metrics.allocations_total);
        self.metrics.allocations_active.store(
            self.allocs.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        out.push(Output::ToClient {
            five: req.five,
            data: buf,
        });
    }

    fn refresh(
        &mut self,
        now: Instant,
        five: FiveTuple,
        id: AllocId,
        msg: &Message,
        key: &Key,
        out: &mut Vec<Output>,
    ) {
        let relay_v4 = self.allocs[&id].relay.is_ipv4();
        if let Some(v) = msg.get(attr::REQUESTED_ADDRESS_FAMILY) {
            if v.len() != 4 {
                return self.error(five, msg, 400, Some(key), out);
            }
            if (v[0] == 0x01) != relay_v4 {
                return self.error(five, msg, 443, Some(key), out);
            }
        }
        let Ok(lifetime) = self.lifetime(msg) else {
            return self.error(five, msg, 400, Some(key), out);
        };
        if lifetime.is_zero() {
            self.remove_allocation(id, out);
        } else if let Some(a) = self.allocs.get_mut(&id) {
            a.expires = now + lifetime;
        }
        let secs = lifetime.as_secs() as u32;
        self.reply(
            five,
            msg,
            Class::Success,
            Some(key),
            |b| {
                b.u32_attr(attr::LIFETIME, secs);
            },
            out,
        );
    }

    /// Decodes and vets one XOR-PEER-ADDRESS for allocation `id`: the peer and how
    /// far a permission for it reaches, or `Err(code)`.
    fn peer_address(
        &self,
        msg: &Message,
        value: &[u8],
        id: AllocId,
    ) -> Result<(SocketAddr, PeerScope), u16> {
        let a = &self.allocs[&id];
        let peer = msg.xor_address(value).ok_or(400u16)?;
        if peer.is_ipv4() != a.relay.is_ipv4() {
            return Err(443);
        }
        match self.cfg.policy.scope(peer) {
            Some(PeerScope::AnyPort) => Ok((peer, PeerScope::AnyPort)),
            // The SFU exception is for UDP relays, which is what browsers allocate;
            // an RFC 6062 TCP relay has no use for it.
            Some(PeerScope::OwnMediaOnly) if !a.tcp => Ok((peer, PeerScope::OwnMediaOnly)),
            _ => {
                Metrics::inc(&self.metrics.denied_peers);
                Err(403)
            }
        }
    }

    fn create_permission(
        &mut self,
        now: Instant,
        five: FiveTuple,
        id: AllocId,
        msg: &Message,
        key: &Key,
        out: &mut Vec<Output>,
    ) {
        let mut peers = Vec::new();
        for a in msg
            .attrs()
            .iter()
            .filter(|a| a.typ == attr::XOR_PEER_ADDRESS)
        {
            match self.peer_address(msg, a.value, id) {
                Ok(p) => peers.push(p),
                Err(code) => return self.error(five, msg, code, Some(key), out),
            }
        }
        if peers.is_empty() {
            return self.error(five, msg, 400, Some(key), out);
        }
        let a = self.allocs.get_mut(&id).expect("checked");
        for (peer, scope) in peers {
            a.permit(peer, scope, now);
            Metrics::inc(&self.metrics.permissions_created);
        }
        self.reply(five, msg, Class::Success, Some(key), |_| {}, out);
    }

    fn channel_bind(
        &mut self,
        now: Instant,
        five: FiveTuple,
        id: AllocId,
        msg: &Message,
        key: &Key,
        out: &mut Vec<Output>,
    ) {
        if self.allocs[&id].tcp {
            // Channels are for UDP relays only (RFC 6062 §5.3).
            return self.error(five, msg, 400, Some(key), out);
        }
        let channel = match msg.get(attr::CHANNEL_NUMBER) {
            Some(v) if v.len() == 4 => u16::from_be_bytes([v[0], v[1]]),
            _ => return self.error(five, msg, 400, Some(key), out),
        };
        if !m::is_valid_channel(channel) {
            return self.error(five, msg, 400, Some(key), out);
        }
        let Some(pv) = msg.get(attr::XOR_PEER_ADDRESS) else {
            return self.error(five, msg, 400, Some(key), out);
        };
        let (peer, scope) = match self.peer_address(msg, pv, id) {
            Ok(p) => p,
            Err(code) => return self.error(five, msg, code, Some(key), out),
        };
        let a = self.allocs.get_mut(&id).expect("checked");
        if let Some(c) = a.channels.get(&channel) {
            if c.peer != peer {
                return self.error(five, msg, 400, Some(key), out);
            }
        }
        if let Some(n) = a.peer_channel.get(&peer) {
            if *n != channel {
                return self.error(five, msg, 400, Some(key), out);
            }
        }
        a.channels.insert(
            channel,
            Channel {
                peer,
                expires: now + CHANNEL_LIFETIME,
            },
        );
        a.peer_channel.insert(peer, channel);
        a.permit(peer, scope, now);
        Metrics::inc(&self.metrics.channels_bound);
        self.reply(five, msg, Class::Success, Some(key), |_| {}, out);
    }

    // ---- RFC 6062 TCP allocations --------------------------------------------

    fn connect(
        &mut self,
        now: Instant,
        five: FiveTuple,
        id: AllocId,
        msg: &Message,
        key: &Key,
        out: &mut Vec<Output>,
    ) {
        let a = &self.allocs[&id];
        if !a.tcp {
            return self.error(five, msg, 400, Some(key), out);
        }
        let Some(pv) = msg.get(attr::XOR_PEER_ADDRESS) else {
            return self.error(five, msg, 400, Some(key), out);
        };
        let (peer, scope) = match self.peer_address(msg, pv, id) {
            Ok(p) => p,
            Err(code) => return self.error(five, msg, code, Some(key), out),
        };
        if self
            .peer_conns
            .values()
            .any(|c| c.alloc == id && c.peer == peer)
        {
            return self.error(five, msg, 446, Some(key), out);
        }
        let conn = self.new_conn_id();
        self.peer_conns.insert(
            conn,
            PeerConn {
                alloc: id,
                peer,
                state: ConnState::Connecting {
                    five,
                    tid: msg.tid,
                    key: *key,
                    fingerprint: msg.has_fingerprint,
                },
            },
        );
        let a = self.allocs.get_mut(&id).expect("checked");
        a.permit(peer, scope, now);
        out.push(Output::ConnectPeer {
            alloc: id,
            conn,
            peer,
        });
    }

    fn new_conn_id(&mut self) -> ConnId {
        loop {
            let n = fastrand::u32(1..);
            if !self.peer_conns.contains_key(&n) {
                return n;
            }
        }
    }

    /// The outgoing connection of a Connect request succeeded or failed.
    pub fn peer_connected(&mut self, now: Instant, conn: ConnId, ok: bool, out: &mut Vec<Output>) {
        let Some(c) = self.peer_conns.get_mut(&conn) else {
            out.push(Output::ClosePeerConn(conn));
            return;
        };
        let ConnState::Connecting {
            five,
            tid,
            key,
            fingerprint,
        } = c.state
        else {
            return;
        };
        let mut buf = Vec::with_capacity(64);
        let class = if ok { Class::Success } else { Class::Error };
        let mut b = Builder::new(&mut buf, m::CONNECT, class, tid);
        if ok {
            b.u32_attr(attr::CONNECTION_ID, conn);
            c.state = ConnState::Waiting {
                expires: now + TCP_BIND_TIMEOUT,
            };
        } else {
            Metrics::inc(&self.metrics.error_responses);
            b.error_code(447, reason(447));
            self.peer_conns.remove(&conn);
        }
        b.attr(attr::SOFTWARE, SOFTWARE);
        b.integrity(&key);
        if fingerprint {
            b.fingerprint();
        }
        b.finish();
        out.push(Output::ToClient { five, data: buf });
    }

    /// A peer connected to the TCP relay of `alloc`. Returns the CONNECTION-ID
    /// to keep the connection under, or `None` to refuse it (no permission).
    pub fn peer_incoming(
        &mut self,
        now: Instant,
        alloc: AllocId,
        peer: SocketAddr,
        out: &mut Vec<Output>,
    ) -> Option<ConnId> {
        let a = self.allocs.get(&alloc)?;
        if !a.tcp || a.expires <= now || !a.permitted(peer, &self.cfg.policy, now) {
            return None;
        }
        let open = self
            .peer_conns
            .values()
            .filter(|c| c.alloc == alloc)
            .count();
        if open >= MAX_PEER_CONNS_PER_ALLOCATION {
            return None;
        }
        let five = a.five;
        let conn = self.new_conn_id();
        self.peer_conns.insert(
            conn,
            PeerConn {
                alloc,
                peer,
                state: ConnState::Waiting {
                    expires: now + TCP_BIND_TIMEOUT,
                },
            },
        );
        let mut buf = Vec::with_capacity(64);
        let mut b = Builder::new(
            &mut buf,
            m::CONNECTION_ATTEMPT,
            Class::Indication,
            random_tid(),
        );
        b.xor_address(attr::XOR_PEER_ADDRESS, peer);
        b.u32_attr(attr::CONNECTION_ID, conn);
        b.finish();
        out.push(Output::ToClient { five, data: buf });
        Some(conn)
    }

    /// A bound peer connection ended.
    pub fn peer_conn_closed(&mut self, conn: ConnId) {
        self.peer_conns.remove(&conn);
    }

    fn connection_bind(
        &mut self,
        five: FiveTuple,
        msg: &Message,
        authed: Authed,
        out: &mut Vec<Output>,
    ) {
        let key = authed.key;
        let conn = match msg.get(attr::CONNECTION_ID) {
            Some(v) if v.len() == 4 => u32::from_be_bytes([v[0], v[1], v[2], v[3]]),
            _ => return self.error(five, msg, 400, Some(&key), out),
        };
        // A data connection is a fresh TCP/TLS connection without an allocation.
        if !five.proto.is_stream() || self.by_five.contains_key(&five) {
            return self.error(five, msg, 400, Some(&key), out);
        }
        let Some(c) = self.peer_conns.get(&conn) else {
            return self.error(five, msg, 400, Some(&key), out);
        };
        if !matches!(c.state, ConnState::Waiting { .. }) {
            return self.error(five, msg, 400, Some(&key), out);
        }
        if self
            .allocs
            .get(&c.alloc)
            .is_none_or(|a| a.username != authed.username)
        {
            return self.error(five, msg, 441, Some(&key), out);
        }
        if let Some(c) = self.peer_conns.get_mut(&conn) {
            c.state = ConnState::Bound;
        }
        self.reply(five, msg, Class::Success, Some(&key), |_| {}, out);
        out.push(Output::Splice { five, conn });
    }

    // ---- data ------------------------------------------------------------

    fn handle_send(&mut self, now: Instant, five: FiveTuple, msg: &Message, out: &mut Vec<Output>) {
        let Some(&id) = self.by_five.get(&five) else {
            return;
        };
        if !msg.unknown_required().is_empty() {
            return;
        }
        let (Some(pv), Some(data)) = (msg.get(attr::XOR_PEER_ADDRESS), msg.get(attr::DATA)) else {
            return;
        };
        let Some(peer) = msg.xor_address(pv) else {
            return;
        };
        let a = self.allocs.get_mut(&id).expect("indexed");
        if a.expires <= now || !a.permitted(peer, &self.cfg.policy, now) {
            return;
        }
        if !a.up.take(now, data.len(), self.cfg.bandwidth) {
            Metrics::inc(&self.metrics.bandwidth_drops);
            return;
        }
        Metrics::inc(&self.metrics.packets_to_peer);
        Metrics::add(&self.metrics.bytes_to_peer, data.len() as u64);
        out.push(Output::ToPeer {
            alloc: id,
            peer,
            data: data.to_vec(),
        });
    }

    fn handle_channel_data(
        &mut self,
        now: Instant,
        five: FiveTuple,
        cd: ChannelData,
        out: &mut Vec<Output>,
    ) {
        let Some(&id) = self.by_five.get(&five) else {
            return;
        };
        let a = self.allocs.get_mut(&id).expect("indexed");
        if a.expires <= now {
            return;
        }
        let Some(ch) = a.channels.get(&cd.channel).filter(|c| c.expires > now) else {
            return;
        };
        let peer = ch.peer;
        if !a.up.take(now, cd.data.len(), self.cfg.bandwidth) {
            Metrics::inc(&self.metrics.bandwidth_drops);
            return;
        }
        Metrics::inc(&self.metrics.packets_to_peer);
        Metrics::add(&self.metrics.bytes_to_peer, cd.data.len() as u64);
        out.push(Output::ToPeer {
            alloc: id,
            peer,
            data: cd.data.to_vec(),
        });
    }
}

/// Whose quota an allocation counts against: the identity of a REST username
/// (`expiry:identity`, so fresh credentials do not grant a fresh quota), else
/// the username itself.
fn quota_key(username: &str) -> &str {
    match username.split_once(':') {
        Some((ts, id)) if !id.is_empty() && ts.bytes().all(|b| b.is_ascii_digit()) => id,
        _ => username,
    }
}

fn reason(code: u16) -> &'static str {
    match code {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        420 => "Unknown Attribute",
        437 => "Allocation Mismatch",
        438 => "Stale Nonce",
        440 => "Address Family not Supported",
        441 => "Wrong Credentials",
        442 => "Unsupported Transport Protocol",
        443 => "Peer Address Family Mismatch",
        446 => "Connection Already Exists",
        447 => "Connection Timeout or Failure",
        486 => "Allocation Quota Reached",
        508 => "Insufficient Capacity",
        _ => "Server Error",
    }
}

fn random_tid() -> [u8; 12] {
    let mut t = [0u8; 12];
    fastrand::fill(&mut t);
    t
}
