//! The server over real UDP, TCP and TLS sockets on loopback: relaying, and
//! every kind of bad input getting its RFC error (or being dropped) while the
//! server keeps serving.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tandem_turn::auth::{long_term_key, mint_rest_credentials};
use tandem_turn::message::{self as m, attr, Builder, ChannelData, Class, Message};
use tandem_turn::{TurnConfig, TurnHandle, TurnServer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;

const T: Duration = Duration::from_secs(3);

fn config() -> TurnConfig {
    let mut users = HashMap::new();
    users.insert("alice".to_string(), "alicepw".to_string());
    TurnConfig {
        enabled: true,
        udp_bind: Some("127.0.0.1:0".parse().unwrap()),
        tcp_bind: Some("127.0.0.1:0".parse().unwrap()),
        public_ip: Some("127.0.0.1".parse().unwrap()),
        relay_bind_ip: Some("127.0.0.1".parse().unwrap()),
        relay_port_min: 30_000,
        relay_port_max: 32_000,
        secret: Some("restsecret".into()),
        static_users: users,
        allowed_peer_ips: vec!["127.0.0.1/32".into()],
        max_allocations_per_user: 1,
        ..TurnConfig::default()
    }
}

fn tid() -> [u8; 12] {
    let mut t = [0u8; 12];
    fastrand::fill(&mut t);
    t
}

/// A minimal TURN client speaking over UDP or a byte stream.
enum Conn {
    Udp(UdpSocket, SocketAddr),
    Stream(Box<dyn Stream>),
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<S: AsyncRead + AsyncWrite + Unpin + Send> Stream for S {}

struct Client {
    conn: Conn,
    user: String,
    pass: String,
    nonce: Option<String>,
}

impl Client {
    async fn udp(server: SocketAddr, user: &str, pass: &str) -> Client {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        Client::new(Conn::Udp(s, server), user, pass)
    }

    async fn tcp(server: SocketAddr, user: &str, pass: &str) -> Client {
        let s = TcpStream::connect(server).await.unwrap();
        Client::new(Conn::Stream(Box::new(s)), user, pass)
    }

    fn new(conn: Conn, user: &str, pass: &str) -> Client {
        Client {
            conn,
            user: user.into(),
            pass: pass.into(),
            nonce: None,
        }
    }

    async fn send_raw(&mut self, data: &[u8]) {
        match &mut self.conn {
            Conn::Udp(s, to) => {
                s.send_to(data, *to).await.unwrap();
            }
            Conn::Stream(s) => s.write_all(data).await.unwrap(),
        }
    }

    /// Next message (STUN or ChannelData) within the timeout.
    async fn recv(&mut self) -> Option<Vec<u8>> {
        match &mut self.conn {
            Conn::Udp(s, _) => {
                let mut buf = vec![0u8; 2048];
                let n = timeout(T, s.recv(&mut buf)).await.ok()?.ok()?;
                buf.truncate(n);
                Some(buf)
            }
            Conn::Stream(s) => {
                let mut head = [0u8; 4];
                timeout(T, s.read_exact(&mut head)).await.ok()?.ok()?;
                let len = m::stream_frame_len(&head).ok()??;
                let mut buf = head.to_vec();
                buf.resize(len, 0);
                timeout(T, s.read_exact(&mut buf[4..])).await.ok()?.ok()?;
                Some(buf)
            }
        }
    }

    fn build(&self, method: u16, t: [u8; 12], fill: &dyn Fn(&mut Builder), auth: bool) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut b = Builder::new(&mut buf, method, Class::Request, t);
        fill(&mut b);
        if auth {
            if let Some(n) = &self.nonce {
                b.attr(attr::USERNAME, self.user.as_bytes());
                b.attr(attr::REALM, b"tandem");
                b.attr(attr::NONCE, n.as_bytes());
                b.integrity(&long_term_key(&self.user, "tandem", &self.pass));
            }
        }
        b.finish();
        buf
    }

    /// Sends a request (authenticating after a 401/438 challenge) and
    /// returns the final response.
    async fn request(&mut self, method: u16, fill: &dyn Fn(&mut Builder)) -> Vec<u8> {
        for _ in 0..3 {
            let t = tid();
            let req = self.build(method, t, fill, true);
            self.send_raw(&req).await;
            let resp = loop {
                let r = self.recv().await.expect("response");
                if Message::parse(&r).is_ok_and(|m| m.tid == t) {
                    break r;
                }
            };
            let code = error_code(&resp);
            if (code == Some(401) && self.nonce.is_none()) || code == Some(438) {
                let msg = Message::parse(&resp).unwrap();
                self.nonce = Some(String::from_utf8(msg.nonce().unwrap().to_vec()).unwrap());
                continue;
            }
            return resp;
        }
        panic!("no final response");
    }

    async fn allocate(&mut self) -> Result<SocketAddr, u16> {
        let r = self
            .request(m::ALLOCATE, &|b| {
                b.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
            })
            .await;
        match error_code(&r) {
            Some(c) => Err(c),
            None => {
                let msg = Message::parse(&r).unwrap();
                Ok(msg
                    .xor_address(msg.get(attr::XOR_RELAYED_ADDRESS).unwrap())
                    .unwrap())
            }
        }
    }

    async fn channel_bind(&mut self, ch: u16, peer: SocketAddr) -> Option<u16> {
        let r = self
            .request(m::CHANNEL_BIND, &|b| {
                b.attr(attr::CHANNEL_NUMBER, &[(ch >> 8) as u8, ch as u8, 0, 0]);
                b.xor_address(attr::XOR_PEER_ADDRESS, peer);
            })
            .await;
        error_code(&r)
    }
}

fn error_code(resp: &[u8]) -> Option<u16> {
    let msg = Message::parse(resp).ok()?;
    msg.get(attr::ERROR_CODE)
        .map(|v| v[2] as u16 * 100 + v[3] as u16)
}

async fn start(c: TurnConfig) -> TurnHandle {
    TurnServer::start(c).await.expect("server starts")
}

/// Relays client → peer → client through a channel and checks the metrics.
async fn relay_roundtrip(client: &mut Client, pad: bool) {
    let relay = client.allocate().await.expect("allocation");
    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let peer_addr = peer.local_addr().unwrap();
    assert_eq!(client.channel_bind(0x4000, peer_addr).await, None);
    let mut cd = Vec::new();
    ChannelData::encode(0x4000, b"ping over turn", pad, &mut cd);
    client.send_raw(&cd).await;
    let mut buf = [0u8; 100];
    let (n, from) = timeout(T, peer.recv_from(&mut buf)).await.unwrap().unwrap();
    assert_eq!(&buf[..n], b"ping over turn");
    assert_eq!(from, relay);
    peer.send_to(b"pong", relay).await.unwrap();
    let back = client.recv().await.expect("relayed back");
    let cd = ChannelData::parse(&back).expect("channel data");
    assert_eq!((cd.channel, cd.data), (0x4000, &b"pong"[..]));
}

#[tokio::test]
async fn udp_relay_and_garbage_does_not_hurt() {
    let h = start(config()).await;
    let server = h.udp_addr().unwrap();
    // Garbage from a stranger first.
    let junk = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for len in [0usize, 1, 3, 19, 20, 21, 100, 1500] {
        let bytes: Vec<u8> = (0..len).map(|_| fastrand::u8(..)).collect();
        junk.send_to(&bytes, server).await.unwrap();
    }
    junk.send_to(&[0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xA4, 0x42], server)
        .await
        .unwrap();
    let mut c = Client::udp(server, "alice", "alicepw").await;
    relay_roundtrip(&mut c, false).await;
    let metrics = h.metrics();
    let mut text = String::new();
    metrics.render(&mut text);
    assert!(text.contains("tandem_turn_allocations 1\n"), "{text}");
    assert!(text.contains("tandem_turn_relayed_packets_total{direction=\"to_peer\"} 1\n"));
    assert!(text.contains("tandem_turn_relayed_packets_total{direction=\"to_client\"} 1\n"));
    assert!(text.contains("reason=\"malformed\"}"));
    h.shutdown();
}

#[tokio::test]
async fn tcp_relay_and_a_broken_stream_only_closes_itself() {
    let h = start(config()).await;
    let tcp = h.tcp_addr().unwrap();
    let mut bad = TcpStream::connect(tcp).await.unwrap();
    bad.write_all(&[0xFF; 64]).await.unwrap();
    let mut buf = [0u8; 8];
    let closed = timeout(T, bad.read(&mut buf)).await.unwrap();
    assert!(
        matches!(closed, Ok(0) | Err(_)),
        "server closes a desynchronised stream"
    );
    let mut c = Client::tcp(tcp, "alice", "alicepw").await;
    relay_roundtrip(&mut c, true).await;
    assert_eq!(h.allocation_count(), 1);
    drop(c);
    // Closing the connection ends the allocation.
    for _ in 0..50 {
        if h.allocation_count() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(h.allocation_count(), 0);
    h.shutdown();
}

#[tokio::test]
async fn tls_relay() {
    let dir = std::env::temp_dir().join(format!("tandem-turn-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let h = start(TurnConfig {
        tls_bind: Some("127.0.0.1:0".parse().unwrap()),
        tls_cert: Some(cert_path),
        tls_key: Some(key_path),
        ..config()
    })
    .await;
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(h.tls_addr().unwrap()).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let mut c = Client::new(Conn::Stream(Box::new(tls)), "alice", "alicepw");
    relay_roundtrip(&mut c, true).await;
    h.shutdown();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn error_responses_over_udp() {
    let h = start(TurnConfig {
        nonce_ttl_secs: 1,
        allowed_peer_ips: vec![],
        ..config()
    })
    .await;
    let server = h.udp_addr().unwrap();

    // Wrong MESSAGE-INTEGRITY: 401.
    let mut wrong = Client::udp(server, "alice", "not-the-password").await;
    assert_eq!(wrong.allocate().await, Err(401));

    // Unknown comprehension-required attribute: 420 with UNKNOWN-ATTRIBUTES.
    let mut c = Client::udp(server, "alice", "alicepw").await;
    let r = c
        .request(m::BINDING, &|b| {
            b.attr(0x0033, b"????");
        })
        .await;
    assert_eq!(error_code(&r), Some(420));
    assert_eq!(
        Message::parse(&r).unwrap().get(attr::UNKNOWN_ATTRIBUTES),
        Some(&[0x00, 0x33][..])
    );

    // Allocation, then over quota (1 per user): 486.
    let relay = c.allocate().await.expect("first allocation");
    assert_eq!(relay.ip().to_string(), "127.0.0.1");
    let mut c2 = Client::udp(server, "alice", "alicepw").await;
    assert_eq!(c2.allocate().await, Err(486));

    // REST credentials from another identity still work; expired ones don't.
    let (u, p) = mint_rest_credentials("restsecret", "carol", 4_000_000_000);
    let mut rest = Client::udp(server, &u, &p).await;
    assert!(rest.allocate().await.is_ok());
    let (u, p) = mint_rest_credentials("restsecret", "dave", 1_000);
    let mut expired = Client::udp(server, &u, &p).await;
    assert_eq!(expired.allocate().await, Err(401));

    // Denied peer (loopback, no allow-list here): 403.
    assert_eq!(
        c.channel_bind(0x4000, "127.0.0.1:9".parse().unwrap()).await,
        Some(403)
    );

    // Stale nonce: 438 carrying a fresh nonce, after which the request passes.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let stale = c.nonce.clone().unwrap();
    let t = tid();
    let req = c.build(
        m::REFRESH,
        t,
        &|b| {
            b.u32_attr(attr::LIFETIME, 600);
        },
        true,
    );
    c.send_raw(&req).await;
    let r = c.recv().await.unwrap();
    assert_eq!(error_code(&r), Some(438));
    let fresh = Message::parse(&r).unwrap().nonce().unwrap().to_vec();
    assert_ne!(fresh, stale.as_bytes());
    let r = c
        .request(m::REFRESH, &|b| {
            b.u32_attr(attr::LIFETIME, 600);
        })
        .await;
    assert_eq!(error_code(&r), None);

    let metrics = h.metrics();
    assert!(
        metrics
            .auth_failures
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2
    );
    assert_eq!(
        metrics
            .denied_peers
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(
        metrics
            .quota_rejections
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    h.shutdown();
}

#[tokio::test]
async fn start_reports_bad_config_clearly() {
    let e = TurnServer::start(TurnConfig {
        public_ip: None,
        relay_bind_ip: None,
        ..config()
    })
    .await
    .err()
    .expect("must fail");
    assert!(e.to_string().contains("public_ip"), "{e}");
    let e = TurnServer::start(TurnConfig {
        tls_bind: Some("127.0.0.1:0".parse().unwrap()),
        tls_cert: Some("/nonexistent/cert.pem".into()),
        tls_key: Some("/nonexistent/key.pem".into()),
        ..config()
    })
    .await
    .err()
    .expect("must fail");
    assert!(e.to_string().contains("/nonexistent/cert.pem"), "{e}");
}
