//! Starting the servers under test as child processes on free loopback ports.

use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use tandem_server::auth::{self, Claims, Grants};

pub const BENCH_KEY: &str = "bench";
pub const BENCH_SECRET: &str = "bench-secret-0123456789-0123456789-0123";

pub struct ServerProcess {
    child: Child,
    pub addr: SocketAddr,
    pub name: &'static str,
    dir: Option<PathBuf>,
}

impl ServerProcess {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Reads the child's stdout until a line starting with `prefix`, then parses the address.
pub fn wait_for_address(child: &mut Child, prefix: &str) -> Result<SocketAddr> {
    let stdout = child.stdout.take().context("child stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line?;
        if let Some(addr) = line.strip_prefix(prefix) {
            let addr = addr
                .trim()
                .parse()
                .with_context(|| format!("bad address line '{line}'"))?;
            std::thread::spawn(move || for _ in lines {});
            return Ok(addr);
        }
    }
    bail!("server exited before printing '{prefix}…'")
}

/// Tandem with limits opened up for a load test (history stays durable: sync = full),
/// plus `extra` TOML (sections that the base config does not have, e.g. `[sfu]`).
pub fn start_tandem(bin: &Path, extra: &str) -> Result<ServerProcess> {
    let dir = std::env::temp_dir().join(format!(
        "tandem-bench-{}-{}",
        std::process::id(),
        fastrand_suffix()
    ));
    std::fs::create_dir_all(&dir)?;
    let config = format!(
        "[server]\nbind = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n[keys]\n{BENCH_KEY} = \"{BENCH_SECRET}\"\n\
         [limits]\npublish_rate = 1000000\npublish_burst = 1000000\nmax_connections_per_identity = 1000000\n\
         max_participants_per_room = 1000000\n{extra}",
        dir.join("data").display()
    );
    let config_path = dir.join("tandem.toml");
    std::fs::write(&config_path, config)?;
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "--config"])
        .arg(&config_path)
        // Quiet unless the bench's caller asks for the server's logs.
        .env(
            "TANDEM_LOG",
            std::env::var("TANDEM_LOG").unwrap_or_else(|_| "warn".into()),
        );
    spawn_listening(cmd, "tandem listening on ", "tandem", Some(dir))
}

/// Starts `cmd` with its stdout read until it prints `prefix` and its address.
fn spawn_listening(
    mut cmd: Command,
    prefix: &str,
    name: &'static str,
    dir: Option<PathBuf>,
) -> Result<ServerProcess> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot start {}", cmd.get_program().to_string_lossy()))?;
    let addr = wait_for_address(&mut child, prefix)?;
    Ok(ServerProcess {
        child,
        addr,
        name,
        dir,
    })
}

/// The bare Rust broadcast server (`tandem bench broadcast-server`).
pub fn start_baseline(bin: &Path) -> Result<ServerProcess> {
    let mut cmd = Command::new(bin);
    cmd.args(["bench", "broadcast-server"]);
    spawn_listening(cmd, "baseline listening on ", "baseline", None)
}

/// The minimal Node `ws` broadcast server.
pub fn start_node(script: &Path) -> Result<ServerProcess> {
    let mut cmd = Command::new("node");
    cmd.arg(script);
    spawn_listening(cmd, "node listening on ", "node-ws", None)
}

/// A token for the bench's own key, with `grants`, valid for an hour.
pub fn token(identity: &str, grants: Grants) -> String {
    let claims = Claims {
        iss: BENCH_KEY.into(),
        sub: identity.into(),
        exp: auth::now_secs() + 3600,
        grants,
        ..Claims::default()
    };
    auth::encode(&claims, BENCH_SECRET)
}

pub fn fastrand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
