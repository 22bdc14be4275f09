//! Thin tokio I/O around [`Core`]: UDP, TCP and TLS listeners, one UDP relay
//! socket per allocation, and a housekeeping timer.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio_rustls::rustls;

use crate::auth::Authenticator;
use crate::config::TurnConfig;
use crate::core::{
    AllocId, ConnId, Core, CoreConfig, FiveTuple, Output, Proto, RelayRequest, TCP_BIND_TIMEOUT,
};
use crate::message::stream_frame_len;
use crate::metrics::{self, Metrics};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("turn: cannot bind {what} {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: io::Error,
    },
    #[error("turn: TLS: {0}")]
    Tls(String),
    #[error("turn: cannot start the server thread: {0}")]
    Runtime(io::Error),
}

const STREAM_QUEUE: usize = 512;
const STREAM_IDLE: Duration = Duration::from_secs(600);
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const RECV_BUF: usize = 65_536;
/// Kernel buffer sizes: a burst (or a moment without CPU) is absorbed rather
/// than dropped. The kernel caps them at net.core.{r,w}mem_max.
const LISTENER_SOCKET_BUFFER: usize = 4 << 20;
const RELAY_SOCKET_BUFFER: usize = 512 << 10;

fn set_buffers(s: &std::net::UdpSocket, size: usize) {
    let r = socket2::SockRef::from(s);
    let _ = r.set_recv_buffer_size(size);
    let _ = r.set_send_buffer_size(size);
}

struct Relay {
    /// UDP relay socket; `None` for an RFC 6062 TCP relay.
    sock: Option<Arc<UdpSocket>>,
    /// Local address of the relay (TCP: where outgoing connections bind).
    local: SocketAddr,
    task: AbortHandle,
}

struct State {
    core: Core,
    relays: HashMap<AllocId, Relay>,
    streams: HashMap<FiveTuple, (mpsc::Sender<Vec<u8>>, AbortHandle)>,
    reserved: HashMap<[u8; 8], std::net::UdpSocket>,
    /// RFC 6062 peer connections waiting for the client's ConnectionBind.
    peer_streams: HashMap<ConnId, TcpStream>,
    /// Bound by ConnectionBind: the data connection picks its peer up here.
    splices: HashMap<FiveTuple, (ConnId, TcpStream)>,
    /// Ends an active splice (its allocation went away).
    splice_kill: HashMap<ConnId, tokio::sync::oneshot::Sender<()>>,
}

struct Shared {
    state: Mutex<State>,
    udp: Option<Arc<UdpSocket>>,
    relay_bind_ip: IpAddr,
    relay_adv_ip: IpAddr,
    port_min: u16,
    port_max: u16,
    max_streams: u32,
    metrics: Arc<Metrics>,
    shutdown: tokio::sync::watch::Sender<bool>,
}

/// Sends gathered while the state lock was held, done after releasing it.
enum Pending {
    Udp(Arc<UdpSocket>, SocketAddr, Vec<u8>),
    Stream(mpsc::Sender<Vec<u8>>, Vec<u8>),
}

/// Per-task scratch space, so the hot path allocates little.
#[derive(Default)]
struct Scratch {
    out: Vec<Output>,
    batch: Vec<Output>,
    sends: Vec<Pending>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the core, then carries out its outputs.
    fn drive<R>(
        self: &Arc<Self>,
        sc: &mut Scratch,
        f: impl FnOnce(&mut Core, &mut Vec<Output>) -> R,
    ) -> R {
        self.drive_state(sc, |st, out| f(&mut st.core, out))
    }

    /// Like [`Shared::drive`], with the whole I/O state at hand.
    fn drive_state<R>(
        self: &Arc<Self>,
        sc: &mut Scratch,
        f: impl FnOnce(&mut State, &mut Vec<Output>) -> R,
    ) -> R {
        let r;
        {
            let mut st = self.lock();
            r = f(&mut st, &mut sc.out);
            // In order; binding a relay produces more outputs, handled next round.
            while !sc.out.is_empty() {
                std::mem::swap(&mut sc.out, &mut sc.batch);
                for o in sc.batch.drain(..) {
                    match o {
                        Output::ToClient { five, data } => match five.proto {
                            Proto::Udp => {
                                if let Some(u) = &self.udp {
                                    sc.sends.push(Pending::Udp(u.clone(), five.client, data));
                                }
                            }
                            Proto::Tcp | Proto::Tls => {
                                if let Some((tx, _)) = st.streams.get(&five) {
                                    sc.sends.push(Pending::Stream(tx.clone(), data));
                                }
                            }
                        },
                        Output::ToPeer { alloc, peer, data } => {
                            if let Some(sock) = st.relays.get(&alloc).and_then(|r| r.sock.as_ref())
                            {
                                sc.sends.push(Pending::Udp(sock.clone(), peer, data));
                            }
                        }
                        Output::ConnectPeer { alloc, conn, peer } => {
                            match st.relays.get(&alloc).map(|r| r.local) {
                                Some(local) => {
                                    tokio::spawn(connect_peer(self.clone(), local, conn, peer));
                                }
                                None => {
                                    st.core
                                        .peer_connected(Instant::now(), conn, false, &mut sc.out)
                                }
                            }
                        }
                        Output::Splice { five, conn } => {
                            if let Some(stream) = st.peer_streams.remove(&conn) {
                                st.splices.insert(five, (conn, stream));
                            }
                        }
                        Output::ClosePeerConn(conn) => {
                            st.peer_streams.remove(&conn);
                            if let Some(kill) = st.splice_kill.remove(&conn) {
                                let _ = kill.send(());
                            }
                        }
                        Output::BindRelay(req) => {
                            let relay = self.bind_relay(&mut st, &req);
                            st.core.relay_bound(Instant::now(), req, relay, &mut sc.out);
                        }
                        Output::ReleaseReservation(token) => {
                            st.reserved.remove(&token);
                        }
                        Output::ReleaseRelay(id) => {
                            if let Some(r) = st.relays.remove(&id) {
                                r.task.abort();
                            }
                        }
                    }
                }
            }
        }
        for s in sc.sends.drain(..) {
            match s {
                Pending::Udp(sock, to, data) => send_datagram(&sock, &data, to),
                Pending::Stream(tx, data) => {
                    // A full queue drops this frame whole; framing stays intact.
                    let _ = tx.try_send(data);
                }
            }
        }
        r
    }

    /// Binds a relay port: a reserved one, an even one (optionally reserving
    /// the next), or any in the range.
    fn pick_port(&self, st: &mut State, req: &RelayRequest) -> Option<std::net::UdpSocket> {
        if let Some(token) = req.use_token {
            return st.reserved.remove(&token);
        }
        let span = (self.port_max - self.port_min) as u32 + 1;
        for _ in 0..64 {
            let mut port = self.port_min as u32 + fastrand::u32(0..span);
            if req.even_port && port % 2 == 1 {
                port = if port > self.port_min as u32 {
                    port - 1
                } else {
                    port + 1
                };
                if port > self.port_max as u32 {
                    continue;
                }
            }
            let addr = SocketAddr::new(self.relay_bind_ip, port as u16);
            let Ok(sock) = std::net::UdpSocket::bind(addr) else {
                continue;
            };
            if let Some(token) = req.reserve {
                if port + 1 > self.port_max as u32 {
                    continue;
                }
                let next = SocketAddr::new(self.relay_bind_ip, port as u16 + 1);
                let Ok(sock2) = std::net::UdpSocket::bind(next) else {
                    continue;
                };
                st.reserved.insert(token, sock2);
            }
            return Some(sock);
        }
        None
    }

    fn bind_relay(self: &Arc<Self>, st: &mut State, req: &RelayRequest) -> Option<SocketAddr> {
        if req.tcp {
            return self.bind_tcp_relay(st, req);
        }
        {
            let Some(std_sock) = self.pick_port(st, req) else {
                tracing::warn!(
                    "turn: no free relay port in {}-{}",
                    self.port_min,
                    self.port_max
                );
                return None;
            };
            let port = std_sock.local_addr().ok()?.port();
            set_buffers(&std_sock, RELAY_SOCKET_BUFFER);
            if std_sock.set_nonblocking(true).is_err() {
                return None;
            }
            let Ok(sock) = UdpSocket::from_std(std_sock) else {
                return None;
            };
            let sock = Arc::new(sock);
            let local = sock.local_addr().ok()?;
            let task = tokio::spawn(relay_loop(self.clone(), req.id, sock.clone()));
            st.relays.insert(
                req.id,
                Relay {
                    sock: Some(sock),
                    local,
                    task: task.abort_handle(),
                },
            );
            Some(SocketAddr::new(self.relay_adv_ip, port))
        }
    }

    /// RFC 6062: a TCP listener on the relay port, exclusively ours (see
    /// [`listen_tcp_relay`]).
    fn bind_tcp_relay(self: &Arc<Self>, st: &mut State, req: &RelayRequest) -> Option<SocketAddr> {
        let span = (self.port_max - self.port_min) as u32 + 1;
        for _ in 0..64 {
            let port = (self.port_min as u32 + fastrand::u32(0..span)) as u16;
            let addr = SocketAddr::new(self.relay_bind_ip, port);
            let Ok((listener, claim)) = listen_tcp_relay(addr) else {
                continue;
            };
            let task = tokio::spawn(tcp_relay_accept(self.clone(), req.id, listener, claim));
            st.relays.insert(
                req.id,
                Relay {
                    sock: None,
                    local: addr,
                    task: task.abort_handle(),
                },
            );
            return Some(SocketAddr::new(self.relay_adv_ip, port));
        }
        tracing::warn!(
            "turn: no free TCP relay port in {}-{}",
            self.port_min,
            self.port_max
        );
        None
    }
}

/// TCP relay addresses listened on by any server of this process.
static TCP_RELAYS: Mutex<Option<std::collections::HashSet<SocketAddr>>> = Mutex::new(None);

/// Holds a TCP relay address in [`TCP_RELAYS`]; dropped with the listener.
struct TcpRelayClaim(SocketAddr);

impl Drop for TcpRelayClaim {
    fn drop(&mut self) {
        let mut set = TCP_RELAYS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = set.as_mut() {
            s.remove(&self.0);
        }
    }
}

/// The listener of an RFC 6062 TCP relay.
///
/// Outgoing connections to peers must bind the relay address while the
/// listener is up, which Linux only allows with SO_REUSEPORT on every socket
/// of the port. SO_REUSEPORT alone would also let a second listener (another
/// allocation, another server) bind the same port, and the kernel would then
/// split incoming peer connections between them. So the port is taken only
/// if it is free: not claimed by any server of this process (exact), and a
/// probe without SO_REUSEPORT can bind it, i.e. no listener or other
/// non-reusable socket of any process holds it (SO_REUSEADDR on the probe
/// lets TIME_WAIT leftovers pass). Trade-off: another process that also
/// uses SO_REUSEPORT, runs as the same user and binds this very port
/// between the probe and our bind could still share it.
fn listen_tcp_relay(addr: SocketAddr) -> io::Result<(TcpListener, TcpRelayClaim)> {
    let mut set = TCP_RELAYS.lock().unwrap_or_else(|e| e.into_inner());
    let set = set.get_or_insert_with(Default::default);
    if set.contains(&addr) {
        return Err(io::ErrorKind::AddrInUse.into());
    }
    {
        let probe = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        probe.set_reuse_address(true)?;
        probe.bind(&addr.into())?;
    }
    let listener = relay_tcp_socket(addr)?.listen(128)?;
    set.insert(addr);
    Ok((listener, TcpRelayClaim(addr)))
}

/// Sends one datagram now, without waiting.
///
/// Not `UdpSocket::try_send_to`: tokio answers that from its cached
/// readiness, which for a freshly bound relay socket stays empty until the
/// runtime next polls its I/O driver. A server busy reading its listener
/// (Allocate, ChannelBind and the first ChannelData back to back) never gets
/// there, so the first datagrams to the peer were dropped without a syscall.
/// The socket is non-blocking: the kernel itself says whether there is room.
/// UDP semantics: a full socket buffer drops the datagram.
fn send_datagram(sock: &UdpSocket, data: &[u8], to: SocketAddr) {
    let _ = socket2::SockRef::from(sock).send_to(data, &to.into());
}

/// A TCP socket bound to a relay address: the listener, or an outgoing
/// connection to a peer (SO_REUSEPORT, so both can hold the address).
fn relay_tcp_socket(addr: SocketAddr) -> io::Result<tokio::net::TcpSocket> {
    let sock = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    sock.set_reuseport(true)?;
    sock.bind(addr)?;
    Ok(sock)
}

/// RFC 6062: peers connecting to a TCP relay.
async fn tcp_relay_accept(
    shared: Arc<Shared>,
    id: AllocId,
    listener: TcpListener,
    claim: TcpRelayClaim,
) {
    // Released when this task ends, together with the listener.
    let _claim = claim;
    let mut sc = Scratch::default();
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        shared.drive_state(&mut sc, |st, out| {
            if let Some(conn) = st.core.peer_incoming(Instant::now(), id, peer, out) {
                st.peer_streams.insert(conn, stream);
            }
        });
    }
}

/// RFC 6062 Connect: a TCP connection from the relay address to the peer.
async fn connect_peer(shared: Arc<Shared>, local: SocketAddr, conn: ConnId, peer: SocketAddr) {
    let attempt = async {
        let sock = relay_tcp_socket(local)?;
        sock.connect(peer).await
    };
    let result = tokio::time::timeout(TCP_BIND_TIMEOUT, attempt).await;
    let mut sc = Scratch::default();
    shared.drive_state(&mut sc, |st, out| match result {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            st.peer_streams.insert(conn, stream);
            st.core.peer_connected(Instant::now(), conn, true, out);
        }
        _ => st.core.peer_connected(Instant::now(), conn, false, out),
    });
}

async fn relay_loop(shared: Arc<Shared>, id: AllocId, sock: Arc<UdpSocket>) {
    let mut buf = vec![0u8; RECV_BUF];
    let mut sc = Scratch::default();
    loop {
        match sock.recv_from(&mut buf).await {
            Ok((n, from)) => shared.drive(&mut sc, |core, out| {
                core.handle_peer(Instant::now(), id, from, &buf[..n], out)
            }),
            // ICMP errors surface as ECONNREFUSED etc.: keep serving.
            Err(_) => tokio::task::yield_now().await,
        }
    }
}

async fn udp_loop(shared: Arc<Shared>, sock: Arc<UdpSocket>, local: SocketAddr) {
    let mut buf = vec![0u8; RECV_BUF];
    let mut sc = Scratch::default();
    loop {
        match sock.recv_from(&mut buf).await {
            Ok((n, from)) => {
                let five = FiveTuple {
                    client: from,
                    server: local,
                    proto: Proto::Udp,
                };
                shared.drive(&mut sc, |core, out| {
                    core.handle_client(Instant::now(), five, &buf[..n], out)
                });
            }
            Err(_) => tokio::task::yield_now().await,
        }
    }
}

async fn timer_loop(shared: Arc<Shared>) {
    let mut sc = Scratch::default();
    loop {
        let next = shared.lock().core.poll_timeout();
        tokio::time::sleep_until(next.into()).await;
        shared.drive(&mut sc, |core, out| {
            core.handle_timeout(Instant::now(), out)
        });
    }
}

async fn tcp_accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let local = listener.local_addr().expect("bound");
    loop {
        let Ok((stream, from)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let active = shared
            .metrics
            .tcp_connections_active
            .load(std::sync::atomic::Ordering::Relaxed);
        if active >= shared.max_streams as u64 {
            continue;
        }
        let _ = stream.set_nodelay(true);
        let five = FiveTuple {
            client: from,
            server: local,
            proto: if tls.is_some() {
                Proto::Tls
            } else {
                Proto::Tcp
            },
        };
        let shared2 = shared.clone();
        let tls = tls.clone();
        Metrics::inc(&shared.metrics.tcp_connections_active);
        let task = tokio::spawn(async move {
            match tls {
                None => serve_stream(shared2.clone(), stream, five).await,
                Some(acc) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acc.accept(stream)).await {
                        Ok(Ok(s)) => serve_stream(shared2.clone(), s, five).await,
                        _ => tracing::debug!("turn: TLS handshake with {from} failed"),
                    }
                }
            }
            shared2
                .metrics
                .tcp_connections_active
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        });
        drop(task);
    }
}

async fn serve_stream<S>(shared: Arc<Shared>, stream: S, five: FiveTuple)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(STREAM_QUEUE);
    let writer = tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            if wr.write_all(&frame).await.is_err() {
                return;
            }
            while let Ok(more) = rx.try_recv() {
                if wr.write_all(&more).await.is_err() {
                    return;
                }
            }
            if wr.flush().await.is_err() {
                return;
            }
        }
    });
    shared
        .lock()
        .streams
        .insert(five, (tx.clone(), writer.abort_handle()));
    let mut sc = Scratch::default();
    let mut splice: Option<(ConnId, TcpStream, Vec<u8>)> = None;
    let mut buf: Vec<u8> = Vec::with_capacity(RECV_BUF);
    let mut chunk = vec![0u8; RECV_BUF];
    let mut stop = shared.shutdown.subscribe();
    'conn: loop {
        let read = tokio::time::timeout(STREAM_IDLE, rd.read(&mut chunk));
        let n = tokio::select! {
            r = read => match r {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                Ok(Ok(n)) => n,
            },
            _ = stop.changed() => break,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut pos = 0;
        loop {
            match stream_frame_len(&buf[pos..]) {
                Ok(Some(len)) if buf.len() - pos >= len => {
                    let frame = &buf[pos..pos + len];
                    shared.drive(&mut sc, |core, out| {
                        core.handle_client(Instant::now(), five, frame, out)
                    });
                    pos += len;
                    // A successful ConnectionBind turns this into a data connection.
                    if frame[..2] == [0x00, 0x0B] {
                        if let Some((conn, peer)) = shared.lock().splices.remove(&five) {
                            splice = Some((conn, peer, buf[pos..].to_vec()));
                            break 'conn;
                        }
                    }
                }
                Ok(_) => break,
                Err(_) => {
                    Metrics::inc(&shared.metrics.malformed_drops);
                    break 'conn;
                }
            }
        }
        buf.drain(..pos);
    }
    if let Some((conn, peer, leftover)) = splice {
        pipe(&shared, conn, peer, leftover, &mut rd, &tx, &mut stop).await;
        shared.lock().core.peer_conn_closed(conn);
    }
    drop(tx);
    let removed = shared.lock().streams.remove(&five);
    shared.drive(&mut sc, |core, out| core.client_closed(five, out));
    if let Some((_, w)) = removed {
        // Let queued frames go out, then stop the writer.
        drop(w);
    }
}

/// RFC 6062 data connection: bytes both ways between the client's data
/// connection and the peer, until either side closes or the allocation ends.
async fn pipe<R: AsyncRead + Unpin>(
    shared: &Arc<Shared>,
    conn: ConnId,
    peer: TcpStream,
    leftover: Vec<u8>,
    client_rd: &mut R,
    client_tx: &mpsc::Sender<Vec<u8>>,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) {
    let (kill_tx, kill_rx) = tokio::sync::oneshot::channel();
    shared.lock().splice_kill.insert(conn, kill_tx);
    let (mut prd, mut pwr) = peer.into_split();
    let metrics = &shared.metrics;
    let up = async {
        if !leftover.is_empty() {
            pwr.write_all(&leftover).await?;
            Metrics::add(&metrics.bytes_to_peer, leftover.len() as u64);
        }
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            let n = client_rd.read(&mut chunk).await?;
            if n == 0 {
                return io::Result::Ok(());
            }
            pwr.write_all(&chunk[..n]).await?;
            Metrics::add(&metrics.bytes_to_peer, n as u64);
        }
    };
    let down = async {
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            let n = prd.read(&mut chunk).await?;
            if n == 0 {
                return io::Result::Ok(());
            }
            Metrics::add(&metrics.bytes_to_client, n as u64);
            // Backpressure, not drops: this is a byte stream.
            if client_tx.send(chunk[..n].to_vec()).await.is_err() {
                return Ok(());
            }
        }
    };
    tokio::select! {
        _ = up => {}
        _ = down => {}
        _ = kill_rx => {}
        _ = stop.changed() => {}
    }
    shared.lock().splice_kill.remove(&conn);
}

/// Entry point: binds the listeners and spawns the server's tasks.
pub struct TurnServer;

/// A running server.
pub struct TurnHandle {
    shared: Arc<Shared>,
    udp_addr: Option<SocketAddr>,
    tcp_addr: Option<SocketAddr>,
    tls_addr: Option<SocketAddr>,
}

fn load_tls(config: &TurnConfig) -> Result<tokio_rustls::TlsAcceptor, StartError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let cert_path = config.tls_cert.as_ref().expect("validated");
    let key_path = config.tls_key.as_ref().expect("validated");
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| StartError::Tls(format!("{}: {e}", cert_path.display())))?;
    if certs.is_empty() {
        return Err(StartError::Tls(format!(
            "{}: no certificate",
            cert_path.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|e| StartError::Tls(format!("{}: {e}", key_path.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StartError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| StartError::Tls(e.to_string()))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

/// A TCP listener with SO_REUSEADDR, so a restart is not blocked by the
/// previous run's TIME_WAIT connections.
fn listen_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let sock = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(1024)
}

fn random_key() -> [u8; 32] {
    let mut k = [0u8; 32];
    let provider = rustls::crypto::ring::default_provider();
    if provider.secure_random.fill(&mut k).is_err() {
        // Extremely unlikely; fall back to a seeded PRNG rather than failing.
        fastrand::fill(&mut k);
    }
    k
}

impl TurnServer {
    /// Validates `config`, binds every listener and starts the server on a
    /// dedicated thread with its own single-threaded tokio runtime (so the
    /// relay path never waits behind other work, and never pays for
    /// cross-thread wake-ups). Returns once the listeners are bound.
    pub async fn start(config: TurnConfig) -> Result<TurnHandle, StartError> {
        let policy = config.validate()?;
        let tls = match config.tls_bind {
            Some(_) => Some(load_tls(&config)?),
            None => None,
        };
        let metrics = Arc::new(Metrics::default());
        let auth = Authenticator::new(
            &config.realm,
            config.secret.as_deref(),
            &config.static_users,
        );
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let core = Core::new(
            CoreConfig::from_turn(&config, policy),
            auth,
            random_key(),
            Instant::now(),
            unix,
            metrics.clone(),
        );
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("tandem-turn".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(StartError::Runtime(e)));
                        return;
                    }
                };
                rt.block_on(async move {
                    match bind_and_spawn(config, core, tls, metrics) {
                        Ok(handle) => {
                            let mut stop = handle.shared.shutdown.subscribe();
                            if ready_tx.send(Ok(handle)).is_ok() {
                                let _ = stop.wait_for(|s| *s).await;
                            }
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                        }
                    }
                });
                // Dropping the runtime ends every task and closes every socket.
            })
            .map_err(StartError::Runtime)?;
        let handle = ready_rx
            .await
            .map_err(|_| StartError::Runtime(io::Error::other("TURN thread exited")))??;
        metrics::set_current(handle.shared.metrics.clone());
        tracing::info!(
            udp = ?handle.udp_addr,
            tcp = ?handle.tcp_addr,
            tls = ?handle.tls_addr,
            relay_ip = %handle.shared.relay_adv_ip,
            "turn: STUN/TURN server listening"
        );
        Ok(handle)
    }
}

/// Binds the listeners and spawns the tasks on the current (TURN) runtime.
fn bind_and_spawn(
    config: TurnConfig,
    core: Core,
    tls: Option<tokio_rustls::TlsAcceptor>,
    metrics: Arc<Metrics>,
) -> Result<TurnHandle, StartError> {
    let bind_err = |what, addr| move |source| StartError::Bind { what, addr, source };
    let udp = match config.udp_bind {
        Some(addr) => {
            let s = std::net::UdpSocket::bind(addr).map_err(bind_err("UDP", addr))?;
            s.set_nonblocking(true).map_err(bind_err("UDP", addr))?;
            set_buffers(&s, LISTENER_SOCKET_BUFFER);
            Some(Arc::new(
                UdpSocket::from_std(s).map_err(bind_err("UDP", addr))?,
            ))
        }
        None => None,
    };
    let tcp = match config.tcp_bind {
        Some(addr) => Some(listen_tcp(addr).map_err(bind_err("TCP", addr))?),
        None => None,
    };
    let tls_listener = match config.tls_bind {
        Some(addr) => Some(listen_tcp(addr).map_err(bind_err("TLS", addr))?),
        None => None,
    };
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            core,
            relays: HashMap::new(),
            streams: HashMap::new(),
            reserved: HashMap::new(),
            peer_streams: HashMap::new(),
            splices: HashMap::new(),
            splice_kill: HashMap::new(),
        }),
        udp: udp.clone(),
        relay_bind_ip: config.relay_bind_ip.unwrap_or(IpAddr::from([0, 0, 0, 0])),
        relay_adv_ip: config.relay_ip().expect("validated"),
        port_min: config.relay_port_min,
        port_max: config.relay_port_max,
        max_streams: config.max_tcp_connections,
        metrics,
        shutdown: tokio::sync::watch::channel(false).0,
    });
    let local = |r: io::Result<SocketAddr>| r.ok();
    let udp_addr = udp.as_ref().and_then(|u| local(u.local_addr()));
    if let (Some(u), Some(addr)) = (udp, udp_addr) {
        tokio::spawn(udp_loop(shared.clone(), u, addr));
    }
    let tcp_addr = tcp.as_ref().and_then(|l| local(l.local_addr()));
    if let Some(l) = tcp {
        tokio::spawn(tcp_accept_loop(shared.clone(), l, None));
    }
    let tls_addr = tls_listener.as_ref().and_then(|l| local(l.local_addr()));
    if let Some(l) = tls_listener {
        tokio::spawn(tcp_accept_loop(shared.clone(), l, tls));
    }
    tokio::spawn(timer_loop(shared.clone()));
    Ok(TurnHandle {
        shared,
        udp_addr,
        tcp_addr,
        tls_addr,
    })
}

impl TurnHandle {
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp_addr
    }

    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// The counters of this server.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.shared.metrics.clone()
    }

    /// Number of live allocations.
    pub fn allocation_count(&self) -> usize {
        self.shared.lock().core.allocation_count()
    }

    /// Stops the server: its thread's runtime ends, which ends every task
    /// and closes every socket. Dropping the handle without calling this
    /// leaves the server running.
    pub fn shutdown(self) {
        self.shared.shutdown.send_replace(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A relay socket registered a moment ago has not been seen writable by
    /// tokio's I/O driver yet; the datagram must go out all the same.
    #[tokio::test]
    async fn fresh_socket_sends_before_the_driver_runs() {
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let std_sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        std_sock.set_nonblocking(true).unwrap();
        let sock = UdpSocket::from_std(std_sock).unwrap();
        // No await in between: the driver has not run since registration.
        send_datagram(&sock, b"first", peer.local_addr().unwrap());
        let mut buf = [0u8; 16];
        let (n, _) = peer.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"first");
    }

    /// A TCP relay port is never shared by two listeners, yet outgoing
    /// connections can still bind it.
    #[tokio::test]
    async fn tcp_relay_listener_is_exclusive() {
        let (l1, claim) = listen_tcp_relay("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = l1.local_addr().unwrap();
        // Neither this process (claimed) ...
        assert!(listen_tcp_relay(addr).is_err());
        // ... nor a reuseport listener that skipped the claim check.
        {
            let _set = TCP_RELAYS.lock().unwrap().as_mut().unwrap().remove(&addr);
        }
        assert!(listen_tcp_relay(addr).is_err());
        let peer = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let out = relay_tcp_socket(addr).unwrap();
        let _c = out.connect(peer.local_addr().unwrap()).await.unwrap();
        let (_s, from) = peer.accept().await.unwrap();
        assert_eq!(from, addr);
        drop(claim);
    }
}
