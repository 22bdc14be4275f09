//! Signaling against Janus's VideoRoom plugin (Janus 1.x) over its WebSocket API:
//! one session; a handle per participant; the room is created by the bench;
//! publishers `join` then `configure` with their offer; subscribers `join` as
//! subscribers to every publisher's streams in one PeerConnection (the multistream
//! API), get Janus's offer, and `start` with their answer.
//!
//! Janus runs from a config generated into a temp dir: only the VideoRoom plugin and
//! the WebSocket transport (each folder holds just that one library), the API bound
//! to 127.0.0.1, no STUN, no session timeout. Janus never gathers ICE candidates on a
//! loopback interface (its ice.c skips IFF_LOOPBACK), so ICE is restricted to one
//! address of this host (`ice_enforce_list`), which the load client binds to as well:
//! the kernel delivers traffic between local addresses over `lo` (`ip route get`
//! says `local … dev lo`), so the media never leaves the machine either.

use super::load::{Fleet, PeerHandle, Role};
use super::Call;
use anyhow::{anyhow, bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_websockets::Message;

const ROOM: u64 = 4242;
const PLUGIN: &str = "janus.plugin.videoroom";
/// Subscribers negotiating at once while the call is set up.
const CONNECT_CONCURRENCY: usize = 32;
/// Per-request limit: Janus's VideoRoom handles messages one at a time.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

pub const INSTALL_HINT: &str =
    "Janus is not installed: `apt-get install janus` (Debian/Ubuntu), or run with --janus off";

pub struct JanusProcess {
    child: Child,
    dir: PathBuf,
    pub ws: SocketAddr,
}

impl JanusProcess {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The end of Janus's own log (it is removed with the process), for errors.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("janus.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for JanusProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The `janus` binary and the folder holding its plugins/ and transports/, if installed.
pub fn find() -> Option<(PathBuf, PathBuf)> {
    let bin = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("janus"))
            .find(|p| p.is_file())
    })?;
    let arch = std::env::consts::ARCH;
    [
        format!("/usr/lib/{arch}-linux-gnu/janus"),
        "/usr/lib/janus".into(),
        "/usr/local/lib/janus".into(),
        "/opt/janus/lib/janus".into(),
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|d| d.join("plugins/libjanus_videoroom.so").is_file())
    .map(|lib| (bin, lib))
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// An IPv4 address of this host that is not loopback, for Janus's ICE: the source
/// address the kernel would pick toward a documentation-range address (a UDP
/// `connect` only looks up the route; nothing is sent).
pub fn host_ip() -> Result<IpAddr> {
    let probe = std::net::UdpSocket::bind("0.0.0.0:0")?;
    probe
        .connect("198.51.100.1:9")
        .context("no route to pick a non-loopback address for Janus's ICE; pass --janus-ip")?;
    let ip = probe.local_addr()?.ip();
    if ip.is_loopback() || ip.is_unspecified() {
        bail!("no non-loopback IPv4 address for Janus's ICE; pass --janus-ip");
    }
    Ok(ip)
}

/// Starts Janus and waits for its WebSocket port; ICE only on `ice_ip`.
pub fn start(ice_ip: IpAddr) -> Result<JanusProcess> {
    let (bin, lib) = find().ok_or_else(|| anyhow!(INSTALL_HINT))?;
    let dir = std::env::temp_dir().join(format!(
        "tandem-bench-janus-{}-{}",
        std::process::id(),
        crate::bench::servers::fastrand_suffix()
    ));
    for sub in ["plugins", "transports", "events", "loggers"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    std::os::unix::fs::symlink(
        lib.join("plugins/libjanus_videoroom.so"),
        dir.join("plugins/libjanus_videoroom.so"),
    )?;
    std::os::unix::fs::symlink(
        lib.join("transports/libjanus_websockets.so"),
        dir.join("transports/libjanus_websockets.so"),
    )?;
    let port = free_port()?;
    let d = dir.display();
    std::fs::write(
        dir.join("janus.jcfg"),
        format!(
            "general: {{\n configs_folder = \"{d}\"\n plugins_folder = \"{d}/plugins\"\n\
             transports_folder = \"{d}/transports\"\n events_folder = \"{d}/events\"\n\
             loggers_folder = \"{d}/loggers\"\n debug_level = 3\n session_timeout = 0\n}}\n\
             certificates: {{\n}}\n\
             media: {{\n rtp_port_range = \"10000-30000\"\n}}\n\
             nat: {{\n nice_debug = false\n ice_enforce_list = \"{ice_ip}\"\n}}\n\
             plugins: {{\n}}\ntransports: {{\n}}\nloggers: {{\n}}\nevents: {{\n}}\n"
        ),
    )?;
    std::fs::write(dir.join("janus.plugin.videoroom.jcfg"), "general: {\n}\n")?;
    std::fs::write(
        dir.join("janus.transport.websockets.jcfg"),
        format!(
            "general: {{\n json = \"compact\"\n ws = true\n ws_port = {port}\n ws_ip = \"127.0.0.1\"\n\
             wss = false\n}}\nadmin: {{\n admin_ws = false\n admin_wss = false\n}}\n"
        ),
    )?;
    let child = Command::new(&bin)
        .arg("--config")
        .arg(dir.join("janus.jcfg"))
        .arg("--configs-folder")
        .arg(&dir)
        .arg("--disable-colors")
        .arg("--disable-stdout")
        .arg("--log-file")
        .arg(dir.join("janus.log"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let ws: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut janus = JanusProcess { child, dir, ws };
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(ws).is_err() {
        if let Some(status) = janus.child.try_wait()? {
            bail!(
                "janus exited ({status}) before listening; log: {}",
                janus.dir.join("janus.log").display()
            );
        }
        if Instant::now() > deadline {
            bail!("janus did not open ws port {port} within 15 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(janus)
}

/// One WebSocket to Janus, requests matched to replies by transaction.
#[derive(Clone)]
struct Api {
    out: mpsc::UnboundedSender<Message>,
    pending: Arc<Mutex<HashMap<String, oneshot::Sender<Value>>>>,
    next: Arc<AtomicU64>,
    session: u64,
}

impl Api {
    async fn connect(addr: SocketAddr) -> Result<Api> {
        let uri: http::Uri = format!("ws://{addr}/").parse()?;
        let (ws, _) = tokio_websockets::ClientBuilder::from_uri(uri)
            .add_header(
                http::header::SEC_WEBSOCKET_PROTOCOL,
                http::HeaderValue::from_static("janus-protocol"),
            )?
            .connect()
            .await
            .context("cannot open janus websocket")?;
        let (mut sink, mut stream) = ws.split();
        let (out, mut outgoing) = mpsc::unbounded_channel::<Message>();
        let pending: Arc<Mutex<HashMap<String, oneshot::Sender<Value>>>> = Arc::default();
        tokio::spawn(async move {
            while let Some(m) = outgoing.recv().await {
                if sink.send(m).await.is_err() {
                    break;
                }
            }
        });
        let waiting = pending.clone();
        tokio::spawn(async move {
            while let Some(Ok(m)) = stream.next().await {
                let Some(v) = m
                    .as_text()
                    .and_then(|t| serde_json::from_str::<Value>(t).ok())
                else {
                    continue;
                };
                // Async plugin requests are acknowledged first; the event follows.
                if v["janus"] == "ack" {
                    continue;
                }
                let Some(t) = v["transaction"].as_str() else {
                    continue;
                };
                if let Some(tx) = waiting.lock().expect("lock").remove(t) {
                    let _ = tx.send(v);
                }
            }
        });
        let mut api = Api {
            out,
            pending,
            next: Arc::new(AtomicU64::new(1)),
            session: 0,
        };
        let created = api.request(json!({"janus": "create"})).await?;
        api.session = created["data"]["id"]
            .as_u64()
            .context("janus create: no session id")?;
        Ok(api)
    }

    async fn request(&self, mut body: Value) -> Result<Value> {
        let transaction = format!("t{}", self.next.fetch_add(1, Relaxed));
        body["transaction"] = transaction.clone().into();
        if self.session != 0 {
            body["session_id"] = self.session.into();
        }
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .expect("lock")
            .insert(transaction.clone(), tx);
        self.out
            .send(Message::text(body.to_string()))
            .map_err(|_| anyhow!("janus websocket closed"))?;
        let reply = tokio::time::timeout(REQUEST_TIMEOUT, rx)
            .await
            .map_err(|_| anyhow!("janus did not answer {body} within {REQUEST_TIMEOUT:?}"))?
            .map_err(|_| anyhow!("janus websocket closed"))?;
        if reply["janus"] == "error" {
            bail!("janus refused {}: {}", body["janus"], reply["error"]);
        }
        if let Some(e) = reply["plugindata"]["data"]["error"].as_str() {
            bail!("videoroom refused {}: {e}", body["body"]["request"]);
        }
        Ok(reply)
    }

    async fn attach(&self) -> Result<u64> {
        let r = self
            .request(json!({"janus": "attach", "plugin": PLUGIN}))
            .await?;
        r["data"]["id"].as_u64().context("attach: no handle id")
    }

    async fn message(&self, handle: u64, body: Value, jsep: Option<Value>) -> Result<Value> {
        let mut m = json!({"janus": "message", "handle_id": handle, "body": body});
        if let Some(j) = jsep {
            m["jsep"] = j;
        }
        self.request(m).await
    }
}

/// Creates the room and connects `publishers` then `subscribers` participants.
pub async fn call(
    janus: &JanusProcess,
    fleet: &Fleet,
    publishers: usize,
    subscribers: usize,
) -> Result<Call> {
    let api = Api::connect(janus.ws).await?;
    let admin = api.attach().await?;
    api.message(
        admin,
        json!({"request": "create", "room": ROOM, "publishers": publishers.max(1),
               "audiocodec": "opus", "videocodec": "vp8",
               // The same cap Tandem tells publishers by default (2500 kbit/s).
               "bitrate": 2_500_000}),
        None,
    )
    .await?;
    let mut call = Call::default();
    let mut feeds = Vec::new();
    for n in 0..publishers {
        let peer = fleet.peer(Role::Publisher);
        feeds.push(publish(&api, &peer, n).await?);
        call.publishers.push(peer);
    }
    // Janus offers a feed to subscribers only once its PeerConnection is up.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !call.publishers.iter().all(|p| p.connected()) {
        if Instant::now() > deadline {
            bail!("janus: publishers did not connect within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let streams: Vec<Value> = feeds.iter().map(|f| json!({"feed": f})).collect();
    let joined: Vec<Result<PeerHandle>> = futures_util::stream::iter(0..subscribers)
        .map(|_| {
            let peer = fleet.peer(Role::Subscriber);
            let (api, streams) = (api.clone(), streams.clone());
            async move {
                subscribe(&api, &peer, streams).await?;
                Ok(peer)
            }
        })
        .buffer_unordered(CONNECT_CONCURRENCY)
        .collect()
        .await;
    for j in joined {
        call.subscribers.push(j?);
    }
    // The session lives as long as the WebSocket; keep it open for the call.
    call.signaling.push(tokio::spawn(async move {
        let _api = api;
        std::future::pending::<()>().await
    }));
    Ok(call)
}

/// Joins as a publisher and publishes the peer's tracks; returns the feed id.
async fn publish(api: &Api, peer: &PeerHandle, n: usize) -> Result<u64> {
    let handle = api.attach().await?;
    let joined = api
        .message(
            handle,
            json!({"request": "join", "ptype": "publisher", "room": ROOM,
                   "display": format!("pub{n}")}),
            None,
        )
        .await?;
    let feed = joined["plugindata"]["data"]["id"]
        .as_u64()
        .context("publisher join: no id")?;
    let offer = peer.offer().await?;
    let configured = api
        .message(
            handle,
            json!({"request": "configure", "audio": true, "video": true}),
            Some(json!({"type": "offer", "sdp": offer})),
        )
        .await?;
    let answer = configured["jsep"]["sdp"]
        .as_str()
        .context("configure: no answer from janus")?;
    peer.accept_answer(answer.to_string()).await?;
    trickle_done(api, handle)?;
    Ok(feed)
}

/// Joins as a subscriber to `streams`, answers Janus's offer and starts.
async fn subscribe(api: &Api, peer: &PeerHandle, streams: Vec<Value>) -> Result<()> {
    let handle = api.attach().await?;
    let attached = api
        .message(
            handle,
            json!({"request": "join", "ptype": "subscriber", "room": ROOM, "streams": streams}),
            None,
        )
        .await?;
    let offer = attached["jsep"]["sdp"]
        .as_str()
        .context("subscriber join: no offer from janus")?;
    let answer = peer.accept_offer(offer.to_string()).await?;
    api.message(
        handle,
        json!({"request": "start"}),
        Some(json!({"type": "answer", "sdp": answer})),
    )
    .await?;
    trickle_done(api, handle)
}

/// Our candidates are in the SDP; tell Janus there are no more (no reply awaited).
fn trickle_done(api: &Api, handle: u64) -> Result<()> {
    let t = format!("t{}", api.next.fetch_add(1, Relaxed));
    let m = json!({"janus": "trickle", "session_id": api.session, "handle_id": handle,
                   "transaction": t, "candidate": {"completed": true}});
    api.out
        .send(Message::text(m.to_string()))
        .map_err(|_| anyhow!("janus websocket closed"))
}
