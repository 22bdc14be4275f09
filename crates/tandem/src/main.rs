//! `tandem`: serve, mint tokens, run benchmarks.

mod bench;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;
use tandem_server::auth::{self, ChannelGrants, Claims, Grants};
use tandem_server::config::{Config, Overrides};
use tandem_server::gateway;
use tandem_server::ServerState;

#[derive(Parser)]
#[command(
    name = "tandem",
    version,
    about = "Real-time messaging, WebRTC signaling, SFU and TURN in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (HTTP + WebSocket on 127.0.0.1:7880 by default).
    Serve(ServeArgs),
    /// Mint an access token (HS256 JWT) for a client.
    Token(TokenArgs),
    /// Run a benchmark (see docs/benchmarks.md).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

#[derive(Args, Clone, Default)]
struct ConfigArgs {
    /// TOML configuration file (also TANDEM_CONFIG).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// `key:secret` API credentials (repeatable; also TANDEM_KEYS).
    #[arg(long = "keys")]
    keys: Vec<String>,
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Listen address, e.g. 0.0.0.0:7880 (also TANDEM_BIND).
    #[arg(long)]
    bind: Option<String>,
    /// Directory for the SQLite history (also TANDEM_DATA_DIR).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Serve app/, sdk/ and examples/ from this directory instead of the copy embedded
    /// in the binary (for editing the demo without rebuilding).
    #[arg(long)]
    web_dir: Option<PathBuf>,
    /// Dev mode: dev credentials, the demo's token endpoint, any bind address.
    #[arg(long)]
    dev: bool,
}

#[derive(Args)]
struct TokenArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// The participant's identity (JWT `sub`).
    #[arg(long)]
    identity: String,
    /// Room (pattern) the token may join; repeatable. `*` matches any run of characters.
    #[arg(long = "room")]
    rooms: Vec<String>,
    /// Display name.
    #[arg(long)]
    name: Option<String>,
    /// Comma-separated grants to set: publish, subscribe, data, admin. When given, the
    /// ones not listed are off.
    #[arg(long)]
    grants: Option<String>,
    /// Channel patterns the token may subscribe to (repeatable).
    #[arg(long = "subscribe")]
    subscribe: Vec<String>,
    /// Channel patterns the token may publish to (repeatable).
    #[arg(long = "publish")]
    publish: Vec<String>,
    /// Lifetime, e.g. 30s, 15m, 1h, 7d.
    #[arg(long, default_value = "1h")]
    ttl: String,
    /// API key to sign with (defaults to the first configured key).
    #[arg(long)]
    key: Option<String>,
}

fn load_config(args: &ConfigArgs, extra: Overrides) -> Result<Config> {
    let overrides = Overrides {
        config_file: args.config.clone(),
        keys: args.keys.clone(),
        ..extra
    };
    Ok(Config::load(&overrides, std::env::vars())?)
}

/// Parses `30s`, `15m`, `1h`, `7d` (or plain seconds).
fn parse_duration_secs(text: &str) -> Result<u64> {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = number
        .parse()
        .with_context(|| format!("'{text}' is not a duration like 30s, 15m, 1h or 7d"))?;
    let factor = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => bail!("unknown duration unit '{other}' (use s, m, h or d)"),
    };
    Ok(n * factor)
}

fn token(args: TokenArgs) -> Result<()> {
    let config = load_config(&args.config, Overrides::default())?;
    let (key, secret) = match &args.key {
        Some(k) => (
            k.clone(),
            config
                .secret(k)
                .with_context(|| format!("no API key '{k}' configured"))?
                .to_string(),
        ),
        None => {
            let (k, s) = config.keys.iter().next().expect("config always has a key");
            (k.clone(), s.clone())
        }
    };
    let mut grants = Grants {
        join: args.rooms,
        ..Grants::default()
    };
    if let Some(list) = &args.grants {
        grants.publish = false;
        grants.subscribe = false;
        grants.data = false;
        for g in list.split(',').map(str::trim).filter(|g| !g.is_empty()) {
            match g {
                "publish" => grants.publish = true,
                "subscribe" => grants.subscribe = true,
                "data" => grants.data = true,
                "admin" => grants.admin = true,
                other => bail!("unknown grant '{other}' (publish, subscribe, data, admin)"),
            }
        }
    }
    grants.channels = ChannelGrants {
        subscribe: args.subscribe,
        publish: args.publish,
    };
    let now = auth::now_secs();
    let claims = Claims {
        iss: key,
        sub: args.identity,
        exp: now + parse_duration_secs(&args.ttl)?,
        nbf: Some(now),
        iat: Some(now),
        name: args.name,
        grants,
    };
    println!("{}", auth::encode(&claims, &secret));
    Ok(())
}

async fn serve(args: ServeArgs) -> Result<()> {
    let extra = Overrides {
        bind: args.bind,
        data_dir: args.data_dir,
        web_dir: args.web_dir,
        dev: args.dev,
        ..Default::default()
    };
    let config = load_config(&args.config, extra)?;
    if config.server.dev && !args.dev && !config.server.bind.ip().is_loopback() {
        bail!(
            "no API keys are configured, so the server would run in dev mode with well-known \
             credentials on {}. Configure keys (TANDEM_KEYS=key:secret or [keys] in the config \
             file) or pass --dev to accept that.",
            config.server.bind
        );
    }
    let listener = tokio::net::TcpListener::bind(config.server.bind)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.bind))?;
    let local = listener.local_addr()?;
    if config.server.dev {
        let (key, secret) = config.keys.iter().next().expect("dev mode has a key");
        eprintln!("tandem: dev mode. API key: {key}  API secret: {secret}");
        eprintln!("tandem: demo app at http://{local}/  (tokens from /dev/token)");
    }
    // The SFU starts first: TURN relays may reach its addresses (see `start_turn`).
    let sfu = start_sfu(&config).await?;
    let (turn, ice_servers) = start_turn(&config, sfu.as_ref()).await?;
    let state = ServerState::new(config, ice_servers).context("cannot open the history store")?;
    if let Some(sfu) = sfu {
        let _ = state.sfu.set(sfu);
    }
    tracing::info!(%local, "listening");
    println!("tandem listening on {local}");
    gateway::serve(Arc::clone(&state), listener, shutdown_signal()).await?;
    if let Some(turn) = turn {
        turn.shutdown();
    }
    Ok(())
}

/// Starts the SFU when `[sfu] enabled` (in dev mode a busy port only leaves rooms in
/// mesh mode).
async fn start_sfu(config: &Config) -> Result<Option<tandem_sfu::Sfu>> {
    let sfu_config = &config.sfu;
    if !sfu_config.enabled {
        return Ok(None);
    }
    match tandem_sfu::Sfu::start(sfu_config.clone()).await {
        Ok(sfu) => {
            println!("tandem sfu on udp {}", sfu.local_addr());
            Ok(Some(sfu))
        }
        Err(e) if config.sfu_auto => {
            eprintln!(
                "tandem: dev-mode SFU not started on udp {} ({e}); rooms stay in mesh mode. Set [sfu] to configure it",
                sfu_config.udp_bind
            );
            Ok(None)
        }
        Err(e) => Err(anyhow::Error::new(e).context(format!(
            "cannot start the SFU on udp {}",
            sfu_config.udp_bind
        ))),
    }
}

/// Starts the built-in STUN/TURN server when `[turn] enabled`, and returns what the
/// connect reply uses to hand each client fresh credentials for it. Its relays may
/// reach the SFU's own UDP candidates even on a private or loopback address, so a
/// client that can only use the relay still gets to the SFU.
async fn start_turn(
    config: &Config,
    sfu: Option<&tandem_sfu::Sfu>,
) -> Result<(
    Option<tandem_turn::TurnHandle>,
    Option<tandem_server::state::IceServerProvider>,
)> {
    if !config.turn.enabled {
        return Ok((None, None));
    }
    let mut turn_config = config.turn.clone();
    turn_config.own_media_addrs = sfu.map(|s| s.candidates().to_vec()).unwrap_or_default();
    let handle = match tandem_turn::TurnServer::start(turn_config).await {
        Ok(handle) => handle,
        Err(e) if config.turn_auto => {
            eprintln!("tandem: dev-mode STUN/TURN not started ({e}); set [turn] to configure it");
            return Ok((None, None));
        }
        Err(e) => return Err(anyhow::Error::new(e).context("cannot start the STUN/TURN server")),
    };
    // URLs carry the ports actually bound (a configured port 0 means "any").
    let mut advertised = config.turn.clone();
    advertised.udp_bind = handle.udp_addr();
    advertised.tcp_bind = handle.tcp_addr();
    advertised.tls_bind = handle.tls_addr();
    println!(
        "tandem TURN on udp {} tcp {} tls {}",
        show(handle.udp_addr()),
        show(handle.tcp_addr()),
        show(handle.tls_addr())
    );
    let provider: tandem_server::state::IceServerProvider = Arc::new(move |identity: &str| {
        tandem_turn::ice_servers(&advertised, identity, std::time::SystemTime::now())
            .into_iter()
            .map(|e| tandem_protocol::IceServer {
                urls: e.urls,
                username: e.username,
                credential: e.credential,
            })
            .collect()
    });
    Ok((Some(handle), Some(provider)))
}

fn show(addr: Option<std::net::SocketAddr>) -> String {
    addr.map_or_else(|| "off".to_string(), |a| a.to_string())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TANDEM_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Token(args) => token(args),
        Command::Serve(args) => runtime()?.block_on(serve(args)),
        Command::Bench(cmd) => runtime()?.block_on(bench::run(cmd)),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_secs("90").unwrap(), 90);
        assert_eq!(parse_duration_secs("15m").unwrap(), 900);
        assert_eq!(parse_duration_secs("1h").unwrap(), 3600);
        assert!(parse_duration_secs("1y").is_err());
        assert!(parse_duration_secs("h").is_err());
    }
}
