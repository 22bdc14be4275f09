//! Fan-out benchmark: one publisher, N subscribers on one channel, closed loop.

use super::procstat::{cpu_seconds, rss_kib};
use super::servers::{start_node, start_tandem, ServerProcess, BENCH_KEY, BENCH_SECRET};
use super::FanoutArgs;
use anyhow::{bail, Context, Result};
use futures_util::{stream, SinkExt, StreamExt};
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tandem_server::auth::{self, ChannelGrants, Claims, Grants};
use tokio::net::TcpStream;
use tokio_websockets::{Message, WebSocketStream};

type Ws = WebSocketStream<TcpStream>;

const CHANNEL: &str = "bench";
const CONNECT_CONCURRENCY: usize = 200;

#[derive(Clone, Copy, PartialEq)]
enum Flavor {
    Tandem,
    Node,
}

struct Outcome {
    delivered: u64,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
    cpu: f64,
    rss_kib: u64,
}

fn token(identity: &str, publish: bool) -> String {
    let now = auth::now_secs();
    let channels = if publish {
        ChannelGrants {
            subscribe: vec![],
            publish: vec![CHANNEL.into()],
        }
    } else {
        ChannelGrants {
            subscribe: vec![CHANNEL.into()],
            publish: vec![],
        }
    };
    let claims = Claims {
        iss: BENCH_KEY.into(),
        sub: identity.into(),
        exp: now + 3600,
        grants: Grants {
            channels,
            ..Grants::default()
        },
        ..Claims::default()
    };
    auth::encode(&claims, BENCH_SECRET)
}

async fn open(server: &ServerProcess, path: &str) -> Result<Ws> {
    let url = format!("ws://{}{path}", server.addr);
    Ok(tandem_client::connect_socket(&url, None).await?)
}

/// Reads frames until one contains `"id":<id>` (the reply to a request).
async fn await_reply(ws: &mut Ws, id: u64) -> Result<()> {
    let needle = format!("\"id\":{id}");
    while let Some(msg) = ws.next().await {
        let msg = msg?;
        if let Some(text) = msg.as_text() {
            if text.contains(&needle) {
                if text.contains("\"type\":\"error\"") {
                    bail!("server refused: {text}");
                }
                return Ok(());
            }
        }
    }
    bail!("connection closed before reply {id}")
}

/// Opens a connection ready to receive: authenticated and subscribed for Tandem.
async fn subscriber(
    server: &ServerProcess,
    flavor: Flavor,
    n: usize,
    subscribe: bool,
) -> Result<Ws> {
    let mut ws = open(server, if flavor == Flavor::Tandem { "/ws" } else { "/" }).await?;
    if flavor == Flavor::Tandem {
        let connect =
            json!({"id": 1, "type": "connect", "token": token(&format!("sub{n}"), false)});
        ws.send(Message::text(connect.to_string())).await?;
        await_reply(&mut ws, 1).await?;
        if subscribe {
            let sub = json!({"id": 2, "type": "subscribe", "channel": CHANNEL});
            ws.send(Message::text(sub.to_string())).await?;
            await_reply(&mut ws, 2).await?;
        }
    }
    Ok(ws)
}

async fn connect_many(
    server: &ServerProcess,
    flavor: Flavor,
    count: usize,
    subscribe: bool,
) -> Result<Vec<Ws>> {
    let results: Vec<Result<Ws>> = stream::iter(0..count)
        .map(|n| subscriber(server, flavor, n, subscribe))
        .buffer_unordered(CONNECT_CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect()
}

/// Microseconds since `epoch`, embedded in each payload as `"t":…`.
fn parse_t(text: &str) -> Option<u64> {
    let start = text.find("\"t\":")? + 4;
    let digits: &str = &text[start..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

async fn fanout(args: &FanoutArgs, server: &ServerProcess, flavor: Flavor) -> Result<Outcome> {
    let subs = connect_many(server, flavor, args.subscribers, true).await?;
    let epoch = Instant::now();
    let delivered = Arc::new(AtomicU64::new(0));
    let total = (args.subscribers * args.messages) as u64;
    let mut readers = Vec::with_capacity(subs.len());
    for mut ws in subs {
        let delivered = delivered.clone();
        let messages = args.messages;
        readers.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(messages);
            while latencies.len() < messages {
                let Some(Ok(msg)) = ws.next().await else {
                    break;
                };
                let Some(text) = msg.as_text() else { continue };
                if let Some(t) = parse_t(text) {
                    let now = epoch.elapsed().as_micros() as u64;
                    latencies.push(now.saturating_sub(t) as u32);
                    delivered.fetch_add(1, Relaxed);
                }
            }
            latencies
        }));
    }
    let mut publisher = open(server, if flavor == Flavor::Tandem { "/ws" } else { "/" }).await?;
    if flavor == Flavor::Tandem {
        let connect = json!({"id": 1, "type": "connect", "token": token("publisher", true)});
        publisher.send(Message::text(connect.to_string())).await?;
        await_reply(&mut publisher, 1).await?;
    }
    // Drain the publisher's acks in the background.
    let (mut pub_tx, mut pub_rx) = publisher.split();
    let drain = tokio::spawn(async move { while let Some(Ok(_)) = pub_rx.next().await {} });

    let pad = "x".repeat(args.size.saturating_sub(24));
    let cpu_before = cpu_seconds(server.pid());
    let started = Instant::now();
    let n = args.subscribers as u64;
    let deadline = started + Duration::from_secs(300);
    for k in 0..args.messages as u64 {
        // Closed loop: message k goes once message k - window reached everyone.
        let needed = k.saturating_sub(args.window as u64) * n;
        while delivered.load(Relaxed) < needed {
            if Instant::now() > deadline {
                bail!(
                    "{}: deliveries stalled at {} of {total}",
                    server.name,
                    delivered.load(Relaxed)
                );
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        let t = epoch.elapsed().as_micros() as u64;
        let frame = match flavor {
            Flavor::Tandem => format!(
                "{{\"id\":{},\"type\":\"publish\",\"channel\":\"{CHANNEL}\",\"data\":{{\"t\":{t},\"p\":\"{pad}\"}}}}",
                k + 2
            ),
            Flavor::Node => format!("{{\"t\":{t},\"p\":\"{pad}\"}}"),
        };
        pub_tx.send(Message::text(frame)).await?;
    }
    while delivered.load(Relaxed) < total {
        if Instant::now() > deadline {
            bail!(
                "{}: deliveries stalled at {} of {total}",
                server.name,
                delivered.load(Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(server.pid()) - cpu_before;
    let rss = rss_kib(server.pid());
    let mut all: Vec<u32> = Vec::with_capacity(total as usize);
    for r in readers {
        all.extend(r.await.context("reader task")?);
    }
    drain.abort();
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    Ok(Outcome {
        delivered: total,
        seconds,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        cpu,
        rss_kib: rss,
    })
}

/// RSS growth per idle (authenticated, for Tandem) connection, in KiB.
async fn idle_cost(server: &ServerProcess, flavor: Flavor, count: usize) -> Result<f64> {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_kib(server.pid());
    let conns = connect_many(server, flavor, count, false).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_kib(server.pid());
    drop(conns);
    Ok(after.saturating_sub(before) as f64 / count as f64)
}

pub async fn run(args: FanoutArgs) -> Result<()> {
    let bin = match &args.tandem_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()?,
    };
    let node_available = args.node_server.exists();
    if !node_available {
        eprintln!(
            "note: {} not found; running Tandem only",
            args.node_server.display()
        );
    }
    println!(
        "fanout: {} subscribers, {} messages of {} bytes, window {}",
        args.subscribers, args.messages, args.size, args.window
    );
    let tandem = {
        let server = start_tandem(&bin)?;
        fanout(&args, &server, Flavor::Tandem).await?
    };
    let node = if node_available {
        let server = start_node(&args.node_server)?;
        Some(fanout(&args, &server, Flavor::Node).await?)
    } else {
        None
    };
    println!("| server | delivered msg/s | p50 ms | p99 ms | server CPU s | server RSS MiB |");
    println!("|---|---|---|---|---|---|");
    for (name, o) in [("tandem", Some(&tandem)), ("node ws", node.as_ref())] {
        if let Some(o) = o {
            println!(
                "| {name} | {:.0} | {:.1} | {:.1} | {:.2} | {:.1} |",
                o.delivered as f64 / o.seconds,
                o.p50_ms,
                o.p99_ms,
                o.cpu,
                o.rss_kib as f64 / 1024.0
            );
        }
    }
    if let Some(node) = &node {
        let ratio =
            (tandem.delivered as f64 / tandem.seconds) / (node.delivered as f64 / node.seconds);
        println!("ratio tandem/node delivered msg/s: {ratio:.2}x");
    }
    if args.idle > 0 {
        let server = start_tandem(&bin)?;
        let per = idle_cost(&server, Flavor::Tandem, args.idle).await?;
        println!(
            "idle: {} authenticated connections, tandem RSS per connection: {per:.1} KiB",
            args.idle
        );
        if node_available {
            let server = start_node(&args.node_server)?;
            let per_node = idle_cost(&server, Flavor::Node, args.idle).await?;
            println!(
                "idle: {} connections, node ws RSS per connection: {per_node:.1} KiB",
                args.idle
            );
        }
    }
    Ok(())
}
