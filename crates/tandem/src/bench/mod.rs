//! `tandem bench …`: side-by-side measurements. Each bench runs Tandem and a peer
//! server (Node `ws`, Janus) in the same invocation with the same load and prints the
//! ratio.

mod baseline;
mod fanout;
mod procstat;
mod rawframes;
mod servers;
mod sfu;

use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// N subscribers on one channel, one publisher: delivered messages/s, publish→deliver
    /// latency, server CPU and RSS; then the same against a minimal Node `ws` broadcast
    /// server; then N idle connections and the RSS each one costs.
    Fanout(FanoutArgs),
    /// The bare baseline server that `fanout` starts beside Tandem (prints its address).
    #[command(hide = true)]
    BroadcastServer,
    /// P publishers (synthetic VP8 + Opus) and S subscribers in one SFU call, through
    /// Tandem's SFU and then Janus's VideoRoom: forwarded packets/s, loss, server CPU
    /// and RSS, forwarded packets per server CPU-second.
    Sfu(SfuArgs),
}

#[derive(Args, Clone)]
pub struct SfuArgs {
    /// Participants publishing one VP8 and one Opus track each.
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// Receive-only participants, each subscribed to every publisher.
    #[arg(long, default_value_t = 50)]
    pub subscribers: usize,
    /// Average video bitrate per publisher (keyframes included); audio is 32 kbit/s.
    #[arg(long, default_value_t = 1000)]
    pub bitrate_kbps: u64,
    /// Seconds between periodic keyframes (more come when a subscriber asks).
    #[arg(long, default_value_t = 2)]
    pub keyframe_secs: u64,
    /// Seconds measured, after set-up and warm-up.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Seconds of media before the measurement starts.
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    /// Most seconds to wait for media to reach every subscriber.
    #[arg(long, default_value_t = 120)]
    pub setup_timeout: u64,
    /// Threads driving the load client's peers.
    #[arg(long, default_value_t = 1)]
    pub client_threads: usize,
    /// Also run the same load against Janus's VideoRoom (needs `janus` installed).
    #[arg(long, value_enum, default_value = "on")]
    pub janus: sfu::JanusMode,
    /// The local address Janus's ICE uses (Janus never uses loopback interfaces);
    /// default: this host's address toward its default route.
    #[arg(long)]
    pub janus_ip: Option<std::net::IpAddr>,
    /// Also print the results as one JSON line (`sfu-results {…}`), for scripts and tests.
    #[arg(long)]
    pub json: bool,
    /// The tandem binary to benchmark (defaults to this one).
    #[arg(long)]
    pub tandem_bin: Option<PathBuf>,
}

#[derive(Args, Clone)]
pub struct FanoutArgs {
    /// Subscribers connected to the channel.
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    /// Publications sent at a steady rate to measure latency.
    #[arg(long, default_value_t = 50)]
    pub latency_messages: usize,
    /// Publications per second in the latency phase.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Publications sent in the capacity phase.
    #[arg(long, default_value_t = 200)]
    pub messages: usize,
    /// Payload bytes per publication.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Publications in flight: the publisher sends message k once every subscriber has
    /// received message k - window (closed loop: measures capacity, not queue overflow).
    #[arg(long, default_value_t = 4)]
    pub window: usize,
    /// Idle connections for the memory measurement (0 skips it).
    #[arg(long, default_value_t = 0)]
    pub idle: usize,
    /// The Node `ws` broadcast server script; skipped when absent.
    #[arg(long, default_value = "bench/fanout/node-server.mjs")]
    pub node_server: PathBuf,
    /// Skip the bare baseline (a minimal Rust broadcast server, `baseline.rs`).
    #[arg(long)]
    pub no_baseline: bool,
    /// The tandem binary to benchmark (defaults to this one).
    #[arg(long)]
    pub tandem_bin: Option<PathBuf>,
}

pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Fanout(args) => fanout::run(args).await,
        BenchCommand::BroadcastServer => baseline::run().await,
        BenchCommand::Sfu(args) => sfu::run(args).await,
    }
}
