//! Fan-out benchmark: one publisher, N subscribers on one channel, closed loop.

use super::procstat::{cpu_seconds, rss_kib};
use super::rawframes::RawFrames;
use super::servers::{self, start_baseline, start_node, start_tandem, ServerProcess};
use super::FanoutArgs;
use anyhow::{bail, Context, Result};
use futures_util::{stream, SinkExt, StreamExt};
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tandem_server::auth::{ChannelGrants, Grants};
use tokio::net::TcpStream;
use tokio_websockets::{Message, WebSocketStream};

type Ws = WebSocketStream<TcpStream>;

const CHANNEL: &str = "bench";
const CONNECT_CONCURRENCY: usize = 200;

#[derive(Clone, Copy, PartialEq)]
enum Flavor {
    /// Tandem's protocol: connect with a token, subscribe, publish.
    Tandem,
    /// A plain broadcast server (Node `ws`, the bare baseline): raw payloads, no protocol.
    Broadcast,
}

struct Outcome {
    delivered: u64,
    seconds: f64,
    steady_p50_ms: f64,
    steady_p99_ms: f64,
    p50_ms: f64,
    p99_ms: f64,
    cpu: f64,
    client_cpu: f64,
    rss_kib: u64,
}

fn token(identity: &str, publish: bool) -> String {
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
    servers::token(
        identity,
        Grants {
            channels,
            ..Grants::default()
        },
    )
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
fn parse_t(payload: &[u8]) -> Option<u64> {
    let start = payload.windows(4).position(|w| w == b"\"t\":")? + 4;
    let digits = payload[start..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .take(19);
    let mut t = None;
    for d in digits {
        t = Some(t.unwrap_or(0u64) * 10 + u64::from(d - b'0'));
    }
    t
}

/// Waits until `delivered` reaches `target`, failing after the deadline.
async fn wait_delivered(
    delivered: &AtomicU64,
    target: u64,
    deadline: Instant,
    name: &str,
) -> Result<()> {
    while delivered.load(Relaxed) < target {
        if Instant::now() > deadline {
            bail!(
                "{name}: deliveries stalled at {} of {target}",
                delivered.load(Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    Ok(())
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1));
    sorted.get(i).copied().unwrap_or(0) as f64 / 1000.0
}

/// Two phases on the same connections: (1) latency at a steady publish rate (open
/// loop), (2) capacity with a window of publications in flight (closed loop).
async fn fanout(args: &FanoutArgs, server: &ServerProcess, flavor: Flavor) -> Result<Outcome> {
    let subs = connect_many(server, flavor, args.subscribers, true).await?;
    let epoch = Instant::now();
    let delivered = Arc::new(AtomicU64::new(0));
    let n = args.subscribers as u64;
    let steady = args.latency_messages;
    let per_subscriber = steady + args.messages;
    let mut readers = Vec::with_capacity(subs.len());
    for ws in subs {
        let delivered = delivered.clone();
        // Nothing is buffered in `ws` here: the server sends nothing after the
        // subscribe reply until the first publication.
        let mut frames = RawFrames::new(ws.into_inner());
        readers.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_subscriber);
            frames
                .for_each_text(|payload| {
                    if let Some(t) = parse_t(payload) {
                        let now = epoch.elapsed().as_micros() as u64;
                        latencies.push(now.saturating_sub(t) as u32);
                        delivered.fetch_add(1, Relaxed);
                    }
                    latencies.len() < per_subscriber
                })
                .await;
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
    let mut next_id = 2u64;
    let mut frame = |t: u64| {
        next_id += 1;
        match flavor {
            Flavor::Tandem => format!(
                "{{\"id\":{next_id},\"type\":\"publish\",\"channel\":\"{CHANNEL}\",\"data\":{{\"t\":{t},\"p\":\"{pad}\"}}}}"
            ),
            Flavor::Broadcast => format!("{{\"t\":{t},\"p\":\"{pad}\"}}"),
        }
    };
    let deadline = Instant::now() + Duration::from_secs(600);

    // Phase 1: steady rate.
    let steady_cpu_before = cpu_seconds(server.pid());
    let steady_client_cpu_before = cpu_seconds(std::process::id());
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate.max(0.1)));
    for _ in 0..steady {
        tick.tick().await;
        pub_tx
            .send(Message::text(frame(epoch.elapsed().as_micros() as u64)))
            .await?;
    }
    wait_delivered(&delivered, steady as u64 * n, deadline, server.name).await?;
    let steady_cpu = cpu_seconds(server.pid()) - steady_cpu_before;
    let steady_client_cpu = cpu_seconds(std::process::id()) - steady_client_cpu_before;
    eprintln!(
        "{}: steady phase: server {:.2} µs CPU per delivery, bench client {:.2} µs",
        server.name,
        steady_cpu * 1e6 / (steady as f64 * n as f64),
        steady_client_cpu * 1e6 / (steady as f64 * n as f64)
    );

    // Phase 2: closed loop — message k goes once message k - window reached everyone.
    let cpu_before = cpu_seconds(server.pid());
    let client_cpu_before = cpu_seconds(std::process::id());
    let started = Instant::now();
    let base = steady as u64 * n;
    for k in 0..args.messages as u64 {
        let needed = base + k.saturating_sub(args.window as u64) * n;
        wait_delivered(&delivered, needed, deadline, server.name).await?;
        pub_tx
            .send(Message::text(frame(epoch.elapsed().as_micros() as u64)))
            .await?;
    }
    wait_delivered(
        &delivered,
        base + args.messages as u64 * n,
        deadline,
        server.name,
    )
    .await?;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(server.pid()) - cpu_before;
    let client_cpu = cpu_seconds(std::process::id()) - client_cpu_before;
    let rss = rss_kib(server.pid());
    drain.abort();
    let (mut steady_lat, mut loaded_lat) = (Vec::new(), Vec::new());
    for r in readers {
        let mut l = r.await.context("reader task")?;
        loaded_lat.extend(l.split_off(steady.min(l.len())));
        steady_lat.extend(l);
    }
    steady_lat.sort_unstable();
    loaded_lat.sort_unstable();
    Ok(Outcome {
        delivered: args.messages as u64 * n,
        seconds,
        steady_p50_ms: percentile(&steady_lat, 0.50),
        steady_p99_ms: percentile(&steady_lat, 0.99),
        p50_ms: percentile(&loaded_lat, 0.50),
        p99_ms: percentile(&loaded_lat, 0.99),
        cpu,
        client_cpu,
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
            "note: {} not found; running without the Node peer",
            args.node_server.display()
        );
    }
    println!(
        "fanout: {} subscribers; latency: {} messages at {}/s; capacity: {} messages, window {}; {} bytes each",
        args.subscribers, args.latency_messages, args.rate, args.messages, args.window, args.size
    );
    let tandem = {
        let server = start_tandem(&bin, "")?;
        fanout(&args, &server, Flavor::Tandem).await?
    };
    let baseline = if args.no_baseline {
        None
    } else {
        let server = start_baseline(&bin)?;
        Some(fanout(&args, &server, Flavor::Broadcast).await?)
    };
    let node = if node_available {
        let server = start_node(&args.node_server)?;
        Some(fanout(&args, &server, Flavor::Broadcast).await?)
    } else {
        None
    };
    println!("| server | steady p50 ms | steady p99 ms | capacity msg/s | loaded p50 ms | loaded p99 ms | server CPU s | bench client CPU s | server RSS MiB |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let rows = [
        ("tandem", Some(&tandem)),
        ("bare baseline", baseline.as_ref()),
        ("node ws", node.as_ref()),
    ];
    for (name, o) in rows {
        if let Some(o) = o {
            println!(
                "| {name} | {:.1} | {:.1} | {:.0} | {:.1} | {:.1} | {:.2} | {:.2} | {:.1} |",
                o.steady_p50_ms,
                o.steady_p99_ms,
                o.delivered as f64 / o.seconds,
                o.p50_ms,
                o.p99_ms,
                o.cpu,
                o.client_cpu,
                o.rss_kib as f64 / 1024.0
            );
        }
    }
    let rate = |o: &Outcome| o.delivered as f64 / o.seconds;
    let per_cpu = |o: &Outcome| o.delivered as f64 / o.cpu.max(0.001);
    for (name, peer) in [("node", node.as_ref()), ("baseline", baseline.as_ref())] {
        if let Some(peer) = peer {
            println!(
                "ratio tandem/{name}: capacity (delivered msg/s) {:.2}x, delivered msg per server CPU-second {:.2}x",
                rate(&tandem) / rate(peer),
                per_cpu(&tandem) / per_cpu(peer)
            );
        }
    }
    if args.idle > 0 {
        let server = start_tandem(&bin, "")?;
        let per = idle_cost(&server, Flavor::Tandem, args.idle).await?;
        println!(
            "idle: {} authenticated connections, tandem RSS per connection: {per:.1} KiB",
            args.idle
        );
        if node_available {
            let server = start_node(&args.node_server)?;
            let per_node = idle_cost(&server, Flavor::Broadcast, args.idle).await?;
            println!(
                "idle: {} connections, node ws RSS per connection: {per_node:.1} KiB",
                args.idle
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_t;

    #[test]
    fn reads_the_timestamp_from_a_payload() {
        assert_eq!(parse_t(br#"{"t":1234,"p":"xx"}"#), Some(1234));
        let publication =
            br#"{"type":"publication","channel":"bench","offset":7,"data":{"t":42,"p":""}}"#;
        assert_eq!(parse_t(publication), Some(42));
        assert_eq!(parse_t(br#"{"p":"no stamp"}"#), None);
        assert_eq!(parse_t(br#"{"t":"x"}"#), None);
    }
}
