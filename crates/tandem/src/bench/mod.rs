//! `tandem bench …`: side-by-side measurements. Each bench runs Tandem and a peer
//! server (Node `ws`) in the same invocation with the same load and prints the ratio.

mod baseline;
mod fanout;
mod procstat;
mod rawframes;
mod servers;

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
    }
}
