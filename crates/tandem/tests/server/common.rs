//! Test harness: runs the real `tandem` binary on a free loopback port with its own
//! data directory, and talks to it over real sockets.

#![allow(dead_code)]

use base64::Engine;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tandem_client::{Client, Event};
use tandem_server::auth::{self, Claims, Grants};
use tokio::sync::mpsc;

pub const KEY: &str = "testkey";
pub const SECRET: &str = "test-secret-that-is-long-enough-0123456789";

static NEXT_DIR: AtomicU32 = AtomicU32::new(0);

pub fn temp_dir() -> PathBuf {
    let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("tandem-test-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    extra: String,
}

impl Server {
    /// Starts a server; `extra` is TOML appended to the test config (sections allowed).
    pub fn start(extra: &str) -> Server {
        Self::start_in(temp_dir(), extra)
    }

    pub fn start_in(dir: PathBuf, extra: &str) -> Server {
        let (child, addr) = spawn(&dir, extra);
        Server {
            child,
            addr,
            dir,
            extra: extra.to_string(),
        }
    }

    /// Starts a fresh process on the same data directory (after a kill or stop).
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (child, addr) = spawn(&self.dir, &self.extra);
        self.child = child;
        self.addr = addr;
    }

    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub fn kill9(&mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }

    pub fn sigterm(&mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("tandem did not exit within 10 s of SIGTERM");
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A plain HTTP/1.1 request; returns status and body.
    pub fn http(
        &self,
        method: &str,
        path: &str,
        auth: Option<&str>,
        body: Option<&str>,
    ) -> (u16, String) {
        http(self.addr, method, path, auth, body)
    }

    pub fn api(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let (status, text) = self.http(method, path, Some(&basic(KEY, SECRET)), body);
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub fn metric(&self, name: &str) -> f64 {
        let (_, text) = self.http("GET", "/metrics", None, None);
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("metric {name} missing"))
            .parse()
            .unwrap()
    }

    pub async fn client(&self, identity: &str) -> (Client, mpsc::Receiver<Event>) {
        let (c, e, _) = Client::connect(&self.url(), &token(identity, room_grants()))
            .await
            .unwrap();
        (c, e)
    }
}

fn spawn(dir: &std::path::Path, extra: &str) -> (Child, SocketAddr) {
    // `#dev` in the extra config: no API keys, so the server runs in dev mode.
    let keys = if extra.contains("#dev") {
        String::new()
    } else {
        format!("[keys]\n{KEY} = \"{SECRET}\"\n")
    };
    let config = format!(
        "[server]\nbind = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nshutdown_grace_ms = 3000\n{keys}{extra}\n",
        dir.join("data").display()
    );
    let path = dir.join("tandem.toml");
    std::fs::write(&path, merge_sections(&config)).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["serve", "--config"])
        .arg(&path)
        .env("TANDEM_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start tandem");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("tandem exited before listening")
            .unwrap();
        if let Some(addr) = line.strip_prefix("tandem listening on ") {
            break addr.parse().unwrap();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Joins repeated `[section]` headers so appended TOML can extend the base config.
fn merge_sections(text: &str) -> String {
    let mut order: Vec<String> = Vec::new();
    let mut sections: std::collections::HashMap<String, Vec<String>> = Default::default();
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') && t.ends_with(']') {
            current = t.to_string();
            if !sections.contains_key(&current) {
                order.push(current.clone());
            }
            sections.entry(current.clone()).or_default();
        } else if !t.is_empty() {
            sections
                .entry(current.clone())
                .or_default()
                .push(line.to_string());
        }
    }
    let mut out = String::new();
    for name in order {
        out.push_str(&name);
        out.push('\n');
        for l in &sections[&name] {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

pub fn basic(key: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{key}:{secret}"))
    )
}

pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let body = body.unwrap_or("");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\nContent-Type: application/json\r\n", body.len());
    if let Some(a) = auth {
        req.push_str(&format!("Authorization: {a}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let resp = String::from_utf8_lossy(&resp).to_string();
    let status = resp.split(' ').nth(1).unwrap().parse().unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

pub fn room_grants() -> Grants {
    Grants {
        join: vec!["*".into()],
        ..Grants::default()
    }
}

pub fn token(identity: &str, grants: Grants) -> String {
    token_with(identity, grants, 3600)
}

pub fn token_with(identity: &str, grants: Grants, ttl_secs: i64) -> String {
    let now = auth::now_secs();
    let claims = Claims {
        iss: KEY.into(),
        sub: identity.into(),
        exp: (now as i64 + ttl_secs) as u64,
        nbf: None,
        iat: Some(now),
        name: Some(format!("{identity} name")),
        grants,
    };
    auth::encode(&claims, SECRET)
}

/// Waits for the next event matching `pred`, skipping others; panics after 10 s.
pub async fn expect_event(
    events: &mut mpsc::Receiver<Event>,
    what: &str,
    pred: impl Fn(&Event) -> bool,
) -> Event {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ev = tokio::time::timeout_at(deadline, events.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
            .unwrap_or_else(|| panic!("event stream ended waiting for {what}"));
        if pred(&ev) {
            return ev;
        }
    }
}

pub async fn expect_push(events: &mut mpsc::Receiver<Event>, kind: &str) -> Value {
    match expect_event(events, kind, |e| e.kind() == Some(kind)).await {
        Event::Push(v) => v,
        other => panic!("{other:?}"),
    }
}

pub async fn expect_closed(events: &mut mpsc::Receiver<Event>) -> Option<u16> {
    match expect_event(events, "close", |e| matches!(e, Event::Closed { .. })).await {
        Event::Closed { code, .. } => code,
        _ => unreachable!(),
    }
}

/// Collects `n` publications (skipping other events).
pub async fn publications(
    events: &mut mpsc::Receiver<Event>,
    n: usize,
) -> Vec<tandem_client::PublicationEvent> {
    let mut out = Vec::new();
    while out.len() < n {
        if let Event::Publication(p) = expect_event(events, "publication", |e| {
            matches!(e, Event::Publication(_))
        })
        .await
        {
            out.push(p);
        }
    }
    out
}

/// No publication arrives within `ms`.
pub async fn assert_no_publication(events: &mut mpsc::Receiver<Event>, ms: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
    while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, events.recv()).await {
        if let Event::Publication(p) = ev {
            panic!("unexpected publication {p:?}");
        }
    }
}

/// The connection still answers requests.
pub async fn assert_alive(client: &Client) {
    client
        .request("ping", Value::Null)
        .await
        .expect("connection should still work");
}
