//! Configuration: embedded defaults, then a TOML file, then `TANDEM_*` environment
//! variables, then command-line flags. Validated once at start with messages that name
//! the offending setting.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The dev-mode API key, used when no keys are configured (as `livekit-server --dev`).
pub const DEV_API_KEY: &str = "devkey";
/// The dev-mode API secret.
pub const DEV_API_SECRET: &str = "secret";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    /// API key → secret. Tokens name their key in `iss`.
    pub keys: BTreeMap<String, String>,
    pub limits: LimitsConfig,
    pub history: HistoryConfig,
    /// The SFU (experimental; see docs/sfu.md).
    pub sfu: tandem_sfu::SfuConfig,
    /// The built-in STUN/TURN server (see docs/turn.md).
    pub turn: tandem_turn::TurnConfig,
    /// TURN was switched on by dev mode rather than by the operator.
    #[serde(skip)]
    pub turn_auto: bool,
    /// The SFU was switched on by dev mode rather than by the operator.
    #[serde(skip)]
    pub sfu_auto: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// HTTP + WebSocket listen address.
    pub bind: SocketAddr,
    /// Where SQLite history lives.
    pub data_dir: PathBuf,
    /// Directory with `app/`, `sdk/`, `examples/` to serve instead of the copy of `web/`
    /// embedded in the binary at build time.
    pub web_dir: Option<PathBuf>,
    /// Origins allowed to open WebSockets, e.g. `https://app.example.com`; `*` allows any.
    /// Same-origin pages and clients sending no Origin (non-browsers) are always allowed.
    pub allowed_origins: Vec<String>,
    /// Dev mode: dev credentials, the demo's token endpoint. Implied when no keys are set.
    pub dev: bool,
    /// How long shutdown waits for clients to go before closing anyway.
    pub shutdown_grace_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub max_message_bytes: usize,
    pub publish_rate: u32,
    pub publish_burst: u32,
    pub max_participants_per_room: usize,
    pub max_connections_per_identity: usize,
    pub max_rooms_per_connection: usize,
    pub max_subscriptions_per_connection: usize,
    pub max_connections: usize,
    pub outbound_queue: usize,
    pub auth_timeout_ms: u64,
    pub ping_interval_ms: u64,
    pub idle_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistoryConfig {
    /// Publications kept per channel.
    pub max_count: u64,
    /// Publications older than this are trimmed.
    pub max_age_secs: u64,
    /// How often the age trim runs.
    pub trim_interval_secs: u64,
    /// Most publications one recovery returns.
    pub recovery_max: u64,
    /// `full` (fsync on every group commit: survives power loss) or `normal` (survives
    /// a process crash).
    pub sync: SyncMode,
    /// Most publications committed in one transaction.
    pub group_commit_max: usize,
    /// Writer queue length; publishers wait when it is full.
    pub writer_queue: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    Full,
    Normal,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: "127.0.0.1:7880".parse().expect("valid default address"),
            data_dir: PathBuf::from("tandem-data"),
            web_dir: None,
            allowed_origins: Vec::new(),
            dev: false,
            shutdown_grace_ms: 5000,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_message_bytes: 64 * 1024,
            publish_rate: 50,
            publish_burst: 100,
            max_participants_per_room: 100,
            max_connections_per_identity: 16,
            max_rooms_per_connection: 16,
            max_subscriptions_per_connection: 128,
            max_connections: 100_000,
            outbound_queue: 1024,
            auth_timeout_ms: 10_000,
            ping_interval_ms: 25_000,
            idle_timeout_ms: 60_000,
        }
    }
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            max_count: 1000,
            max_age_secs: 86_400,
            trim_interval_secs: 60,
            recovery_max: 1000,
            sync: SyncMode::Full,
            group_commit_max: 512,
            writer_queue: 8192,
        }
    }
}

/// A configuration problem, phrased for the operator.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(pub String);

/// Command-line overrides; `None` keeps the lower layer's value.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config_file: Option<PathBuf>,
    pub bind: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub web_dir: Option<PathBuf>,
    pub dev: bool,
    /// `key:secret` pairs.
    pub keys: Vec<String>,
}

impl Config {
    /// Builds the configuration from all layers and validates it.
    pub fn load(
        overrides: &Overrides,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table = toml::Table::new();
        let env: Vec<(String, String)> = env.into_iter().collect();
        let file = overrides.config_file.clone().or_else(|| {
            env.iter()
                .find(|(k, _)| k == "TANDEM_CONFIG")
                .map(|(_, v)| PathBuf::from(v))
        });
        if let Some(path) = file {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
            table = text
                .parse::<toml::Table>()
                .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
        }
        for (name, value) in &env {
            apply_env(&mut table, name, value)?;
        }
        let set = |table: &mut toml::Table, key: &str, v: toml::Value| {
            section(table, "server").insert(key.into(), v);
        };
        if let Some(bind) = &overrides.bind {
            set(&mut table, "bind", toml::Value::String(bind.clone()));
        }
        if let Some(dir) = &overrides.data_dir {
            set(
                &mut table,
                "data_dir",
                toml::Value::String(dir.display().to_string()),
            );
        }
        if let Some(dir) = &overrides.web_dir {
            set(
                &mut table,
                "web_dir",
                toml::Value::String(dir.display().to_string()),
            );
        }
        if overrides.dev {
            set(&mut table, "dev", toml::Value::Boolean(true));
        }
        for pair in &overrides.keys {
            let (key, secret) = pair
                .split_once(':')
                .ok_or_else(|| ConfigError(format!("--keys expects key:secret, got '{pair}'")))?;
            section(&mut table, "keys").insert(key.into(), toml::Value::String(secret.into()));
        }
        let explicitly_enabled = |section: &str| {
            table
                .get(section)
                .and_then(|t| t.as_table())
                .is_some_and(|t| t.contains_key("enabled"))
        };
        let turn_configured = explicitly_enabled("turn");
        let sfu_configured = explicitly_enabled("sfu");
        let mut config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError(e.message().to_string()))?;
        config.apply_dev_defaults();
        if config.server.dev && !turn_configured {
            config.apply_dev_turn();
        }
        if config.server.dev && !sfu_configured {
            config.apply_dev_sfu();
        }
        config.validate()?;
        Ok(config)
    }

    /// Dev mode without an explicit `turn.enabled`: run STUN/TURN on the server's own
    /// address, port 3478, with a secret made up for this process, as a best effort
    /// (`turn_auto`: a busy port is a warning, not a failure).
    fn apply_dev_turn(&mut self) {
        let ip = self.server.bind.ip();
        let turn = &mut self.turn;
        turn.enabled = true;
        self.turn_auto = true;
        let port = |bind: Option<SocketAddr>| bind.map(|b| SocketAddr::new(ip, b.port()));
        turn.udp_bind = port(turn.udp_bind);
        turn.tcp_bind = port(turn.tcp_bind);
        turn.relay_bind_ip.get_or_insert(ip);
        if turn.secret.is_none() && turn.static_users.is_empty() {
            turn.secret = Some(
                std::iter::repeat_with(fastrand::alphanumeric)
                    .take(32)
                    .collect(),
            );
        }
    }

    /// Dev mode without an explicit `sfu.enabled`: run the SFU on the server's own
    /// address (UDP and ICE-TCP port 7882 unless configured), so that the demo app's
    /// rooms move to the SFU when they grow. Best effort like dev-mode TURN
    /// (`sfu_auto`: a busy port is a warning, not a failure).
    fn apply_dev_sfu(&mut self) {
        self.sfu.enabled = true;
        self.sfu_auto = true;
        self.sfu.udp_bind = SocketAddr::new(self.server.bind.ip(), self.sfu.udp_bind.port());
    }

    /// No keys configured means dev mode with the well-known dev credentials.
    fn apply_dev_defaults(&mut self) {
        if self.keys.is_empty() {
            self.server.dev = true;
            self.keys.insert(DEV_API_KEY.into(), DEV_API_SECRET.into());
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        let positive = [
            ("limits.max_message_bytes", l.max_message_bytes as u64),
            ("limits.publish_rate", l.publish_rate as u64),
            ("limits.publish_burst", l.publish_burst as u64),
            (
                "limits.max_participants_per_room",
                l.max_participants_per_room as u64,
            ),
            (
                "limits.max_connections_per_identity",
                l.max_connections_per_identity as u64,
            ),
            (
                "limits.max_rooms_per_connection",
                l.max_rooms_per_connection as u64,
            ),
            (
                "limits.max_subscriptions_per_connection",
                l.max_subscriptions_per_connection as u64,
            ),
            ("limits.max_connections", l.max_connections as u64),
            ("limits.outbound_queue", l.outbound_queue as u64),
            ("limits.auth_timeout_ms", l.auth_timeout_ms),
            ("limits.ping_interval_ms", l.ping_interval_ms),
            ("limits.idle_timeout_ms", l.idle_timeout_ms),
            ("history.max_count", self.history.max_count),
            ("history.max_age_secs", self.history.max_age_secs),
            (
                "history.trim_interval_secs",
                self.history.trim_interval_secs,
            ),
            ("history.recovery_max", self.history.recovery_max),
            (
                "history.group_commit_max",
                self.history.group_commit_max as u64,
            ),
            ("history.writer_queue", self.history.writer_queue as u64),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(ConfigError(format!("{name} must be greater than 0")));
            }
        }
        if l.max_message_bytes > 16 * 1024 * 1024 {
            return Err(ConfigError(
                "limits.max_message_bytes must be at most 16 MiB".into(),
            ));
        }
        if l.publish_burst < l.publish_rate.min(1) {
            return Err(ConfigError(
                "limits.publish_burst must be at least 1".into(),
            ));
        }
        if l.idle_timeout_ms <= l.ping_interval_ms {
            return Err(ConfigError(format!(
                "limits.idle_timeout_ms ({}) must be greater than limits.ping_interval_ms ({}) so \
                 that a client answering pings is never timed out",
                l.idle_timeout_ms, l.ping_interval_ms
            )));
        }
        for (key, secret) in &self.keys {
            if key.is_empty() {
                return Err(ConfigError("keys: an API key must not be empty".into()));
            }
            if !self.server.dev && secret.len() < 32 {
                return Err(ConfigError(format!(
                    "keys.{key}: the secret must be at least 32 characters outside dev mode"
                )));
            }
        }
        self.sfu.validate().map_err(ConfigError)?;
        if self.turn.enabled {
            self.turn
                .validate()
                .map_err(|e| ConfigError(e.to_string()))?;
        }
        for origin in &self.server.allowed_origins {
            if origin != "*" && !(origin.starts_with("http://") || origin.starts_with("https://")) {
                return Err(ConfigError(format!(
                    "server.allowed_origins: '{origin}' must be '*' or start with http:// or https://"
                )));
            }
        }
        Ok(())
    }

    /// The secret for an API key.
    pub fn secret(&self, key: &str) -> Option<&str> {
        self.keys.get(key).map(String::as_str)
    }
}

fn section<'a>(table: &'a mut toml::Table, name: &str) -> &'a mut toml::Table {
    let entry = table
        .entry(name.to_string())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if !entry.is_table() {
        *entry = toml::Value::Table(toml::Table::new());
    }
    entry.as_table_mut().expect("just made a table")
}

/// `TANDEM_LIMITS__MAX_MESSAGE_BYTES=1024` sets `limits.max_message_bytes`. The value is
/// read as TOML (numbers, booleans, arrays) and falls back to a plain string.
/// `TANDEM_BIND`, `TANDEM_DATA_DIR` and `TANDEM_KEYS=key:secret,…` are shorthands.
fn apply_env(table: &mut toml::Table, name: &str, value: &str) -> Result<(), ConfigError> {
    let Some(rest) = name.strip_prefix("TANDEM_") else {
        return Ok(());
    };
    match rest {
        "CONFIG" => return Ok(()),
        "BIND" => {
            section(table, "server").insert("bind".into(), toml::Value::String(value.into()));
            return Ok(());
        }
        "DATA_DIR" => {
            section(table, "server").insert("data_dir".into(), toml::Value::String(value.into()));
            return Ok(());
        }
        "KEYS" => {
            for pair in value.split(',').filter(|p| !p.is_empty()) {
                let (k, s) = pair.split_once(':').ok_or_else(|| {
                    ConfigError("TANDEM_KEYS expects key:secret[,key:secret…]".into())
                })?;
                section(table, "keys").insert(k.into(), toml::Value::String(s.into()));
            }
            return Ok(());
        }
        _ => {}
    }
    let Some((sect, key)) = rest.split_once("__") else {
        return Ok(());
    };
    let parsed = format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.into()));
    section(table, &sect.to_ascii_lowercase()).insert(key.to_ascii_lowercase(), parsed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_dev_mode() {
        let c = Config::load(&Overrides::default(), env(&[])).unwrap();
        assert!(c.server.dev);
        assert_eq!(c.secret(DEV_API_KEY), Some(DEV_API_SECRET));
        assert_eq!(c.server.bind.to_string(), "127.0.0.1:7880");
        assert_eq!(c.limits.max_message_bytes, 65536);
        assert!(c.sfu.enabled && c.sfu_auto, "dev mode runs the SFU");
        assert_eq!(c.sfu.udp_bind.to_string(), "127.0.0.1:7882");
    }

    #[test]
    fn dev_mode_sfu_follows_the_bind_address_and_yields_to_explicit_config() {
        let c = Config::load(
            &Overrides::default(),
            env(&[("TANDEM_SERVER__BIND", "127.0.0.2:9000")]),
        )
        .unwrap();
        assert_eq!(c.sfu.udp_bind.to_string(), "127.0.0.2:7882");
        let off = Config::load(
            &Overrides::default(),
            env(&[("TANDEM_SFU__ENABLED", "false")]),
        )
        .unwrap();
        assert!(!off.sfu.enabled && !off.sfu_auto);
        let secret = "s".repeat(32);
        let production = Config::load(
            &Overrides::default(),
            env(&[("TANDEM_KEYS", &format!("k1:{secret}"))]),
        )
        .unwrap();
        assert!(
            !production.sfu.enabled,
            "outside dev mode the operator turns it on"
        );
    }

    #[test]
    fn env_overrides_and_keys() {
        let secret = "s".repeat(32);
        let c = Config::load(
            &Overrides::default(),
            env(&[
                ("TANDEM_LIMITS__MAX_MESSAGE_BYTES", "1024"),
                ("TANDEM_KEYS", &format!("k1:{secret}")),
                ("TANDEM_SERVER__ALLOWED_ORIGINS", "[\"https://a.example\"]"),
                ("HOME", "/root"),
            ]),
        )
        .unwrap();
        assert_eq!(c.limits.max_message_bytes, 1024);
        assert!(!c.server.dev);
        assert_eq!(c.secret("k1"), Some(secret.as_str()));
        assert_eq!(c.server.allowed_origins, vec!["https://a.example"]);
    }

    #[test]
    fn errors_name_the_setting() {
        let e = Config::load(
            &Overrides::default(),
            env(&[("TANDEM_LIMITS__MAX_MESAGE_BYTES", "1")]),
        )
        .unwrap_err();
        assert!(e.0.contains("max_mesage_bytes"), "{e}");
        let e = Config::load(
            &Overrides::default(),
            env(&[("TANDEM_LIMITS__OUTBOUND_QUEUE", "0")]),
        )
        .unwrap_err();
        assert!(e.0.contains("limits.outbound_queue"), "{e}");
        let e =
            Config::load(&Overrides::default(), env(&[("TANDEM_KEYS", "k:short")])).unwrap_err();
        assert!(e.0.contains("at least 32"), "{e}");
        let e = Config::load(
            &Overrides {
                bind: Some("nope".into()),
                ..Default::default()
            },
            env(&[]),
        )
        .unwrap_err();
        assert!(e.0.contains("address"), "{e}");
        let e = Config::load(
            &Overrides::default(),
            env(&[("TANDEM_TURN__ENABLED", "true")]),
        )
        .unwrap_err();
        assert!(e.0.starts_with("turn:"), "{e}");
    }

    #[test]
    fn turn_section_from_env() {
        let c = Config::load(
            &Overrides::default(),
            env(&[
                ("TANDEM_TURN__ENABLED", "true"),
                ("TANDEM_TURN__SECRET", "turn-secret"),
                ("TANDEM_TURN__PUBLIC_IP", "203.0.113.5"),
            ]),
        )
        .unwrap();
        assert!(c.turn.enabled);
        assert_eq!(c.turn.secret.as_deref(), Some("turn-secret"));
        assert_eq!(c.turn.udp_bind.unwrap().port(), 3478);
    }
}
