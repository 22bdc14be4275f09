//! Runs Tandem's STUN/TURN server alone from a TOML file holding a
//! `TurnConfig` (the `[turn]` section without its header), for tests and
//! benchmarks: `cargo run --example turnd -- turn.toml`.

use anyhow::Context as _;
use tandem_turn::{TurnConfig, TurnServer};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let path = std::env::args()
        .nth(1)
        .context("usage: turnd CONFIG.toml")?;
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let mut config: TurnConfig =
        toml::from_str(&text).with_context(|| format!("parsing {path}"))?;
    config.enabled = true;
    let handle = TurnServer::start(config).await?;
    println!(
        "turnd ready udp={:?} tcp={:?} tls={:?}",
        handle.udp_addr(),
        handle.tcp_addr(),
        handle.tls_addr()
    );
    tokio::signal::ctrl_c().await?;
    let mut m = String::new();
    handle.metrics().render(&mut m);
    eprint!("{m}");
    handle.shutdown();
    Ok(())
}
