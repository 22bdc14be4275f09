//! Tandem's SFU (selective forwarding unit), built on str0m.
//!
//! Each participant that sends `sfu_offer` gets one str0m `Rtc` in ICE-lite mode. All
//! of them share one UDP socket (`udp`); incoming datagrams are demultiplexed with
//! `Rtc::accepts`. The [`router`] decides which participant's tracks go to which
//! subscribers (today: everyone in the room receives everyone else's tracks), and the
//! `engine` forwards media frames and keyframe requests between the `Rtc`s and runs
//! renegotiation when tracks come and go.
//!
//! The server talks to the SFU through [`Sfu`], a cheap cloneable handle: it sends
//! signaling commands and receives pushes ([`Signal`]) through a per-participant
//! callback ([`Sink`]). This crate knows nothing about WebSockets or the wire format.

pub mod allocation;
pub mod config;
mod engine;
pub mod envelope;
mod error;
pub mod h264;
pub mod layer_demand;
pub mod metrics;
mod participant;
pub mod payload;
pub mod policy;
pub mod rewrite;
pub mod router;
pub mod sdp;
pub mod simulcast;
mod sockbuf;
pub mod speakers;
mod tcp;
mod udp;

pub use config::SfuConfig;
pub use error::SfuError;
pub use metrics::SfuMetrics;
pub use policy::{MediaMode, PolicyKind};
pub use router::TrackMeta;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// A track as a subscriber sees it (the `tracks` push).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackView {
    pub id: String,
    /// The publishing participant's sid.
    pub participant: String,
    /// `audio` or `video`.
    pub kind: &'static str,
    /// The mid of the subscriber's m-line that carries it.
    pub mid: String,
    pub source: Option<String>,
    pub name: Option<String>,
    /// Simulcast layers (rids) the publisher sends, in its order; empty if none.
    pub layers: Vec<String>,
    /// The publisher muted the track (nothing is forwarded).
    pub muted: bool,
}

/// What the SFU pushes to one participant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// The server needs renegotiation; answer with `Sfu::answer(…, revision, …)`.
    Offer {
        room: Arc<str>,
        revision: u64,
        sdp: String,
    },
    /// The full list of tracks this participant receives (sent before each offer).
    Tracks {
        room: Arc<str>,
        tracks: Vec<TrackView>,
    },
    /// The media session ended without the client asking (ICE never connected, the
    /// peer vanished, internal error). A new `sfu_offer` starts a new one.
    Closed {
        room: Arc<str>,
        reason: &'static str,
    },
    /// The room's active speakers changed: (participant sid, level in dBov), loudest
    /// first; empty when nobody speaks. Sent to every media participant of the room.
    ActiveSpeakers {
        room: Arc<str>,
        speakers: Vec<(String, i8)>,
    },
    /// To a publisher: send only the simulcast layers `active` (rids) of its track on
    /// `mid`; the others are received by nobody. Sent when that set changes.
    Layers {
        room: Arc<str>,
        mid: String,
        active: Vec<String>,
    },
}

/// Where the SFU delivers a participant's [`Signal`]s. Must not block.
pub type Sink = Arc<dyn Fn(Signal) + Send + Sync>;

pub(crate) enum Command {
    Offer {
        room: Arc<str>,
        sid: Arc<str>,
        sdp: String,
        meta: HashMap<String, TrackMeta>,
        sink: Sink,
        reply: oneshot::Sender<Result<String, SfuError>>,
    },
    Answer {
        room: Arc<str>,
        sid: Arc<str>,
        revision: u64,
        sdp: String,
        reply: oneshot::Sender<Result<(), SfuError>>,
    },
    Leave {
        room: Arc<str>,
        sid: Arc<str>,
    },
    Layer {
        room: Arc<str>,
        sid: Arc<str>,
        track: String,
        rid: String,
        max_width: Option<u32>,
        reply: oneshot::Sender<Result<(), SfuError>>,
    },
    Mute {
        room: Arc<str>,
        sid: Arc<str>,
        mid: String,
        muted: bool,
        reply: oneshot::Sender<Result<(), SfuError>>,
    },
    Subscribe {
        room: Arc<str>,
        sid: Arc<str>,
        track: String,
        enabled: bool,
        reply: oneshot::Sender<Result<(), SfuError>>,
    },
}

/// Handle to a running SFU. The SFU stops when the last handle is dropped.
#[derive(Clone)]
pub struct Sfu {
    commands: mpsc::Sender<Command>,
    local_addr: SocketAddr,
    candidates: Arc<[SocketAddr]>,
    tcp_candidates: Arc<[SocketAddr]>,
    metrics: Arc<SfuMetrics>,
    policy: Arc<policy::RoomPolicy>,
}

/// Signaling commands waiting for the SFU loop.
const COMMAND_QUEUE: usize = 1024;

impl Sfu {
    /// Binds the UDP socket and starts the SFU loop on the current tokio runtime.
    pub async fn start(config: SfuConfig) -> std::io::Result<Sfu> {
        config
            .validate()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let socket = tokio::net::UdpSocket::bind(config.udp_bind).await?;
        let local_addr = socket.local_addr()?;
        let (rcvbuf, sndbuf) = sockbuf::configure(&socket, config.udp_buffer_bytes);
        if rcvbuf < config.udp_buffer_bytes {
            tracing::warn!(
                "sfu: UDP receive buffer is {rcvbuf} bytes, not the {} asked for \
                 (raise net.core.rmem_max); datagrams may be dropped under load",
                config.udp_buffer_bytes
            );
        }
        tracing::debug!(rcvbuf, sndbuf, "sfu udp socket buffers");
        let candidates: Vec<SocketAddr> = config
            .candidate_ips(local_addr)
            .into_iter()
            .map(|ip| SocketAddr::new(ip, local_addr.port()))
            .collect();
        if config.advertise_ips.is_empty() && local_addr.ip().is_unspecified() {
            tracing::warn!(
                "sfu.udp_bind is {local_addr} and sfu.advertise_ips is empty: advertising \
                 127.0.0.1 only, so only clients on this machine can connect"
            );
        }
        let metrics = Arc::new(SfuMetrics::default());
        let _ = metrics.udp_local.set(local_addr);
        let policy = Arc::new(policy::RoomPolicy::new(
            config.policy,
            config.auto_sfu_above,
            config.auto_mesh_at_or_below,
        ));
        let (tcp_candidates, tcp_events) = if config.ice_tcp {
            let port = if config.udp_bind.port() == 0 {
                0
            } else {
                local_addr.port()
            };
            let listener =
                tokio::net::TcpListener::bind(SocketAddr::new(config.udp_bind.ip(), port)).await?;
            let tcp_port = listener.local_addr()?.port();
            let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
            tokio::spawn(tcp::accept_loop(listener, tx));
            let addrs: Vec<SocketAddr> = config
                .candidate_ips(local_addr)
                .into_iter()
                .map(|ip| SocketAddr::new(ip, tcp_port))
                .collect();
            (addrs, Some(rx))
        } else {
            (Vec::new(), None)
        };
        let params = participant::RtcParams {
            crypto: Arc::new(str0m::crypto::from_feature_flags()),
            candidates: candidates.clone(),
            tcp_candidates: tcp_candidates.clone(),
        };
        let engine = engine::Engine::new(config, params, metrics.clone());
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        tokio::spawn(udp::run(socket, engine, rx, tcp_events));
        Ok(Sfu {
            commands: tx,
            local_addr,
            candidates: candidates.into(),
            tcp_candidates: tcp_candidates.into(),
            metrics,
            policy,
        })
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The host candidates put in answers and offers.
    pub fn candidates(&self) -> &[SocketAddr] {
        &self.candidates
    }

    /// The passive ICE-TCP candidates (empty when `ice_tcp` is off).
    pub fn tcp_candidates(&self) -> &[SocketAddr] {
        &self.tcp_candidates
    }

    pub fn metrics(&self) -> &SfuMetrics {
        &self.metrics
    }

    /// Records that `room` now has `count` participants; returns the room's media mode
    /// and whether it changed (then every participant must be told).
    pub fn room_size(&self, room: &str, count: usize) -> (MediaMode, bool) {
        self.policy.update(room, count)
    }

    /// Applies a client offer for participant `sid` in `room` (creating its media
    /// session on first use) and returns the SDP answer. Later pushes go to `sink`.
    pub async fn offer(
        &self,
        room: &str,
        sid: &str,
        sdp: String,
        meta: HashMap<String, TrackMeta>,
        sink: Sink,
    ) -> Result<String, SfuError> {
        let (reply, answer) = oneshot::channel();
        let cmd = Command::Offer {
            room: room.into(),
            sid: sid.into(),
            sdp,
            meta,
            sink,
            reply,
        };
        self.call(cmd, answer).await
    }

    /// Applies the client's answer to the server offer `revision`.
    pub async fn answer(
        &self,
        room: &str,
        sid: &str,
        revision: u64,
        sdp: String,
    ) -> Result<(), SfuError> {
        let (reply, done) = oneshot::channel();
        let cmd = Command::Answer {
            room: room.into(),
            sid: sid.into(),
            revision,
            sdp,
            reply,
        };
        self.call(cmd, done).await
    }

    /// Selects the simulcast layer `rid` of `track` for `sid`, or with `rid` "auto"
    /// the automatic choice, bounded by the width `sid` shows the video at
    /// (`max_width`; `None`: no bound). The switch happens on the layer's next
    /// keyframe, which is requested from the publisher.
    pub async fn select_layer(
        &self,
        room: &str,
        sid: &str,
        track: &str,
        rid: &str,
        max_width: Option<u32>,
    ) -> Result<(), SfuError> {
        let (reply, done) = oneshot::channel();
        let cmd = Command::Layer {
            room: room.into(),
            sid: sid.into(),
            track: track.into(),
            rid: rid.into(),
            max_width,
            reply,
        };
        self.call(cmd, done).await
    }

    /// Mutes or unmutes the track `sid` publishes on its m-line `mid`: a muted track
    /// is not forwarded, and subscribers get a `Tracks` update.
    pub async fn set_muted(
        &self,
        room: &str,
        sid: &str,
        mid: &str,
        muted: bool,
    ) -> Result<(), SfuError> {
        let (reply, done) = oneshot::channel();
        self.call(
            Command::Mute {
                room: room.into(),
                sid: sid.into(),
                mid: mid.into(),
                muted,
                reply,
            },
            done,
        )
        .await
    }

    /// Stops (or resumes) forwarding `track` to `sid`, keeping its m-line.
    pub async fn set_subscribed(
        &self,
        room: &str,
        sid: &str,
        track: &str,
        enabled: bool,
    ) -> Result<(), SfuError> {
        let (reply, done) = oneshot::channel();
        self.call(
            Command::Subscribe {
                room: room.into(),
                sid: sid.into(),
                track: track.into(),
                enabled,
                reply,
            },
            done,
        )
        .await
    }

    async fn call<T>(
        &self,
        cmd: Command,
        done: oneshot::Receiver<Result<T, SfuError>>,
    ) -> Result<T, SfuError> {
        self.commands
            .send(cmd)
            .await
            .map_err(|_| SfuError::Unavailable)?;
        done.await.map_err(|_| SfuError::Unavailable)?
    }

    /// Ends `sid`'s media session in `room` (no-op without one); its tracks are
    /// removed for everyone. Never blocks.
    pub fn leave(&self, room: &str, sid: &str) {
        let cmd = Command::Leave {
            room: room.into(),
            sid: sid.into(),
        };
        if let Err(mpsc::error::TrySendError::Full(cmd)) = self.commands.try_send(cmd) {
            let commands = self.commands.clone();
            tokio::spawn(async move {
                let _ = commands.send(cmd).await;
            });
        }
    }
}
