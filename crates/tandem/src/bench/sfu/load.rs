//! The load client's media side, independent of the server under test: many str0m
//! `Rtc`s acting like browsers (full ICE agents, DTLS, SRTP, RTCP with NACKs), each
//! on its own loopback UDP socket — an SFU tells participants apart by address, so
//! they cannot share one.
//!
//! Cheap by construction, since it shares the machine with the server: a few worker
//! threads (`--client-threads`), each a single-threaded tokio runtime running one task
//! per `Rtc` (no cross-thread wake-ups; tokio's timer wheel is the shared timer), reads
//! drained in batches, and subscribers in str0m's RTP mode, so received media is only
//! decrypted and counted, never reassembled into frames.
//!
//! Signaling adapters (`tandem`, `janus`) talk to each `Rtc` through a `PeerHandle`:
//! make an offer, apply an answer, answer an offer. The bench then resets and reads
//! the counters around its measurement window.

use super::loss::SeqCounter;
use super::synth::{Frame, Synth};
use anyhow::{anyhow, Context, Result};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

/// Datagrams read in one go before output is polled and timers are looked at.
const READ_BATCH: usize = 32;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sends one VP8 and one Opus track.
    Publisher,
    /// Receives whatever the server offers.
    Subscriber,
}

#[derive(Clone, Copy)]
pub struct MediaParams {
    /// The address every peer's socket binds to (and announces as its candidate).
    pub bind_ip: std::net::IpAddr,
    pub video_kbps: u64,
    pub keyframe_every: Duration,
}

/// Counters of one peer over the measurement window.
#[derive(Default, Clone, Copy, Debug)]
pub struct PeerReport {
    /// RTP packets received (subscriber).
    pub received: u64,
    /// RTP packets the sequence numbers say should have arrived (subscriber).
    pub expected: u64,
    /// Copies of packets already received (subscriber): retransmissions that were
    /// not needed, and RTX bandwidth probes. Not counted as forwarded.
    pub duplicates: u64,
    /// RTP payload bytes of the distinct packets received (subscriber).
    pub received_bytes: u64,
    /// RTP datagrams sent, retransmissions included (publisher).
    pub sent: u64,
    /// Bytes of those datagrams.
    pub sent_bytes: u64,
    /// Media bytes (frames) written (publisher).
    pub media_bytes: u64,
}

enum Cmd {
    Offer(oneshot::Sender<Result<String>>),
    AcceptAnswer(String, oneshot::Sender<Result<()>>),
    AcceptOffer(String, oneshot::Sender<Result<String>>),
    Reset,
    Report(oneshot::Sender<PeerReport>),
}

/// What a peer's task shares with the bench without a round trip.
#[derive(Default)]
struct Shared {
    connected: AtomicBool,
    /// RTP packets received since the start (not reset): "is media flowing".
    packets: AtomicU64,
    failed: std::sync::Mutex<Option<String>>,
}

#[derive(Clone)]
pub struct PeerHandle {
    cmd: mpsc::UnboundedSender<Cmd>,
    shared: Arc<Shared>,
}

impl PeerHandle {
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Cmd) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.cmd.send(make(tx)).map_err(|_| self.gone())?;
        rx.await.map_err(|_| self.gone())
    }

    fn gone(&self) -> anyhow::Error {
        let why = self.shared.failed.lock().expect("lock").clone();
        anyhow!("peer stopped: {}", why.unwrap_or_else(|| "unknown".into()))
    }

    /// A new offer: a publisher's audio and video tracks, or for a subscriber only a
    /// data channel (a receive-only client needs some m-line to start with).
    pub async fn offer(&self) -> Result<String> {
        self.ask(Cmd::Offer).await?
    }

    pub async fn accept_answer(&self, sdp: String) -> Result<()> {
        self.ask(|tx| Cmd::AcceptAnswer(sdp, tx)).await?
    }

    /// Applies a server offer and returns the answer.
    pub async fn accept_offer(&self, sdp: String) -> Result<String> {
        self.ask(|tx| Cmd::AcceptOffer(sdp, tx)).await?
    }

    /// ICE and DTLS are up.
    pub fn connected(&self) -> bool {
        self.shared.connected.load(Relaxed)
    }

    pub fn packets(&self) -> u64 {
        self.shared.packets.load(Relaxed)
    }

    /// Starts the measurement window.
    pub fn reset(&self) {
        let _ = self.cmd.send(Cmd::Reset);
    }

    pub async fn report(&self) -> Result<PeerReport> {
        self.ask(Cmd::Report).await
    }
}

struct Worker {
    runtime: tokio::runtime::Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The worker threads and the peers running on them.
pub struct Fleet {
    workers: Vec<Worker>,
    next: AtomicUsize,
    media: MediaParams,
}

impl Fleet {
    pub fn new(threads: usize, media: MediaParams) -> Result<Fleet> {
        let mut workers = Vec::new();
        for n in 0..threads.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let handle = runtime.handle().clone();
            let (stop, stopped) = oneshot::channel::<()>();
            let thread = std::thread::Builder::new()
                .name(format!("bench-peers-{n}"))
                .spawn(move || {
                    let _ = runtime.block_on(stopped);
                })?;
            workers.push(Worker {
                runtime: handle,
                stop: Some(stop),
                thread: Some(thread),
            });
        }
        Ok(Fleet {
            workers,
            next: AtomicUsize::new(0),
            media,
        })
    }

    /// Starts a peer on the next worker (round robin).
    pub fn peer(&self, role: Role) -> PeerHandle {
        let (cmd, commands) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared::default());
        let n = self.next.fetch_add(1, Relaxed) % self.workers.len();
        let media = self.media;
        let task_shared = shared.clone();
        self.workers[n].runtime.spawn(async move {
            if let Err(e) = run_peer(role, media, commands, task_shared.clone()).await {
                *task_shared.failed.lock().expect("lock") = Some(format!("{e:#}"));
            }
        });
        PeerHandle { cmd, shared }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for w in &mut self.workers {
            if let Some(stop) = w.stop.take() {
                let _ = stop.send(());
            }
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// Whether an outgoing datagram is (S)RTP rather than RTCP, STUN or DTLS: version 2,
/// and not an RTCP packet type (200–207, which read as 192–223 with the marker bit;
/// RFC 5761 keeps RTP payload types out of that range).
fn is_rtp(b: &[u8]) -> bool {
    b.len() >= 12 && b[0] >> 6 == 2 && !(192..=223).contains(&b[1])
}

/// One `Rtc` and what it needs between wake-ups.
struct Peer {
    rtc: Rtc,
    role: Role,
    local: SocketAddr,
    pending: Option<SdpPendingOffer>,
    video: Option<Mid>,
    audio: Option<Mid>,
    synth: Option<Synth>,
    frames: Vec<Frame>,
    seq: SeqCounter,
    /// Counters since the last reset (`received`, `expected` come from `seq`).
    window: PeerReport,
    shared: Arc<Shared>,
}

enum Wake {
    Cmd(Option<Cmd>),
    Datagram(std::io::Result<(usize, SocketAddr)>),
    Timer,
}

async fn run_peer(
    role: Role,
    media: MediaParams,
    mut commands: mpsc::UnboundedReceiver<Cmd>,
    shared: Arc<Shared>,
) -> Result<()> {
    let socket = UdpSocket::bind((media.bind_ip, 0)).await?;
    let local = socket.local_addr()?;
    let now = Instant::now();
    let mut rtc = Rtc::builder()
        .set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()))
        // Subscribers count packets; reassembling frames would only add client CPU.
        .set_rtp_mode(role == Role::Subscriber)
        .build(now);
    rtc.add_local_candidate(Candidate::host(local, "udp")?);
    let mut peer = Peer {
        rtc,
        role,
        local,
        pending: None,
        video: None,
        audio: None,
        synth: (role == Role::Publisher)
            .then(|| Synth::new(media.video_kbps, media.keyframe_every, now)),
        frames: Vec::new(),
        seq: SeqCounter::default(),
        window: PeerReport::default(),
        shared,
    };
    let mut buf = vec![0u8; 2048];
    loop {
        let timeout = peer.drain(&socket)?;
        let deadline = match (&peer.synth, peer.shared.connected.load(Relaxed)) {
            (Some(s), true) => timeout.min(s.next_due()),
            _ => timeout,
        };
        let wake = tokio::select! {
            cmd = commands.recv() => Wake::Cmd(cmd),
            r = socket.recv_from(&mut buf) => Wake::Datagram(r),
            _ = tokio::time::sleep_until(deadline.into()) => Wake::Timer,
        };
        match wake {
            Wake::Cmd(None) => return Ok(()),
            Wake::Cmd(Some(cmd)) => peer.command(cmd),
            Wake::Datagram(Ok((n, source))) => {
                peer.receive(source, &buf[..n])?;
                for _ in 1..READ_BATCH {
                    let Ok((n, source)) = socket.try_recv_from(&mut buf) else {
                        break;
                    };
                    peer.drain(&socket)?;
                    peer.receive(source, &buf[..n])?;
                }
            }
            // ICMP port unreachable and the like: the socket stays usable.
            Wake::Datagram(Err(_)) => {}
            Wake::Timer => {
                let now = Instant::now();
                if peer.shared.connected.load(Relaxed) {
                    peer.send_media(now)?;
                }
                peer.rtc.handle_input(Input::Timeout(now))?;
            }
        }
    }
}

impl Peer {
    fn command(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Offer(reply) => {
                let _ = reply.send(self.offer());
            }
            Cmd::AcceptAnswer(sdp, reply) => {
                let _ = reply.send(self.accept_answer(&sdp));
            }
            Cmd::AcceptOffer(sdp, reply) => {
                let answer = SdpOffer::from_sdp_string(&sdp)
                    .context("server offer does not parse")
                    .and_then(|o| Ok(self.rtc.sdp_api().accept_offer(o)?));
                let _ = reply.send(answer.map(|a| a.to_sdp_string()));
            }
            Cmd::Reset => {
                self.seq.reset();
                self.window = PeerReport::default();
            }
            Cmd::Report(reply) => {
                let (received, expected) = self.seq.totals();
                let _ = reply.send(PeerReport {
                    received,
                    expected,
                    duplicates: self.seq.duplicates(),
                    ..self.window
                });
            }
        }
    }

    fn offer(&mut self) -> Result<String> {
        let mut api = self.rtc.sdp_api();
        if self.role == Role::Publisher {
            self.audio =
                Some(api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None));
            self.video =
                Some(api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None));
        } else {
            api.add_channel("chat".into());
        }
        let (offer, pending) = api.apply().context("nothing to offer")?;
        self.pending = Some(pending);
        Ok(offer.to_sdp_string())
    }

    fn accept_answer(&mut self, sdp: &str) -> Result<()> {
        let answer = SdpAnswer::from_sdp_string(sdp).context("server answer does not parse")?;
        let pending = self.pending.take().context("no offer outstanding")?;
        self.rtc.sdp_api().accept_answer(pending, answer)?;
        Ok(())
    }

    fn receive(&mut self, source: SocketAddr, data: &[u8]) -> Result<()> {
        let Ok(contents) = data.try_into() else {
            return Ok(());
        };
        let input = Input::Receive(
            Instant::now(),
            Receive {
                proto: Protocol::Udp,
                source,
                destination: self.local,
                contents,
            },
        );
        self.rtc.handle_input(input)?;
        Ok(())
    }

    /// Polls the `Rtc` until it only has a timeout left: sends what it transmits,
    /// handles its events. Returns when it wants to be woken.
    fn drain(&mut self, socket: &UdpSocket) -> Result<Instant> {
        loop {
            match self.rtc.poll_output()? {
                Output::Timeout(t) => return Ok(t),
                // A full socket buffer drops the datagram, as the network would.
                Output::Transmit(t) => {
                    if self.role == Role::Publisher && is_rtp(&t.contents) {
                        self.window.sent += 1;
                        self.window.sent_bytes += t.contents.len() as u64;
                    }
                    let _ = socket.try_send_to(&t.contents, t.destination);
                }
                Output::Event(e) => self.event(e)?,
            }
        }
    }

    fn event(&mut self, e: Event) -> Result<()> {
        match e {
            Event::Connected => self.shared.connected.store(true, Relaxed),
            Event::RtpPacket(p) => {
                if self.seq.on_packet(*p.header.ssrc, *p.seq_no) {
                    self.window.received_bytes += p.payload.len() as u64;
                }
                self.shared.packets.fetch_add(1, Relaxed);
            }
            Event::KeyframeRequest(r) if Some(r.mid) == self.video => {
                if let Some(s) = &mut self.synth {
                    s.ask_keyframe();
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Writes every frame that is due on the published tracks.
    fn send_media(&mut self, now: Instant) -> Result<()> {
        let Some(synth) = &mut self.synth else {
            return Ok(());
        };
        if now < synth.next_due() {
            return Ok(());
        }
        synth.due(now, &mut self.frames);
        for frame in self.frames.drain(..) {
            let (mid, codec, data, time) = match frame {
                Frame::Audio { data, time_48k } => (
                    self.audio,
                    Codec::Opus,
                    data,
                    MediaTime::new(time_48k, Frequency::FORTY_EIGHT_KHZ),
                ),
                Frame::Video { data, time_90k } => (
                    self.video,
                    Codec::Vp8,
                    data,
                    MediaTime::from_90khz(time_90k),
                ),
            };
            let Some(writer) = mid.and_then(|m| self.rtc.writer(m)) else {
                continue;
            };
            let Some(pt) = writer
                .payload_params()
                .find(|p| p.spec().codec == codec)
                .map(|p| p.pt())
            else {
                continue;
            };
            self.window.media_bytes += data.len() as u64;
            writer.write(pt, now, time, data)?;
        }
        Ok(())
    }
}
