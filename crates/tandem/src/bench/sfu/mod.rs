//! `tandem bench sfu`: one call of P publishers (VP8 + Opus) and S subscribers,
//! first through Tandem's SFU, then through Janus's VideoRoom, with the same str0m
//! load client (`load`) and a signaling adapter per server (`tandem`, `janus`).
//! Reports forwarded packets/s, loss, server CPU and RSS, and forwarded packets per
//! server CPU-second, and the Tandem/Janus ratios.

mod janus;
mod load;
mod loss;
mod synth;
mod tandem;

use super::procstat::{cpu_seconds, rss_kib};
use super::SfuArgs;
use anyhow::{bail, Result};
use load::{Fleet, MediaParams, PeerHandle, PeerReport};
use std::time::{Duration, Instant};

/// The participants of one call, and the signaling tasks that keep them in it.
#[derive(Default)]
pub struct Call {
    pub publishers: Vec<PeerHandle>,
    pub subscribers: Vec<PeerHandle>,
    pub signaling: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Call {
    fn drop(&mut self) {
        for t in &self.signaling {
            t.abort();
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum JanusMode {
    /// Run Janus too; fail if it is not installed.
    On,
    /// Tandem only.
    Off,
}

/// What one server did during the measurement window.
pub struct Outcome {
    pub name: &'static str,
    pub subscribers_receiving: usize,
    pub subscribers: usize,
    pub sent_pps: f64,
    pub forwarded_pps: f64,
    /// Duplicate packets/s received by all subscribers together (not in `forwarded_pps`).
    pub duplicates_pps: f64,
    /// RTP payload bits/s received by all subscribers together.
    pub forwarded_payload_mbps: f64,
    pub loss_mean: f64,
    pub loss_max: f64,
    pub server_cpu: f64,
    pub client_cpu: f64,
    pub rss_mib: f64,
    pub seconds: f64,
}

impl Outcome {
    /// Forwarded packets per server CPU-second.
    pub fn per_cpu(&self) -> f64 {
        self.forwarded_pps * self.seconds / self.server_cpu.max(1e-9)
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "server": self.name,
            "subscribers": self.subscribers,
            "subscribers_receiving": self.subscribers_receiving,
            "published_pps": self.sent_pps,
            "forwarded_pps": self.forwarded_pps,
            "duplicates_pps": self.duplicates_pps,
            "forwarded_payload_mbps": self.forwarded_payload_mbps,
            "loss_mean_percent": self.loss_mean,
            "loss_max_percent": self.loss_max,
            "server_cpu_s": self.server_cpu,
            "client_cpu_s": self.client_cpu,
            "forwarded_per_server_cpu_s": self.per_cpu(),
            "server_rss_mib": self.rss_mib,
            "seconds": self.seconds,
        })
    }

    /// Forwarded payload megabits per server CPU-second (fair when the servers
    /// packetize differently: Tandem repacketizes frames, Janus relays packets).
    pub fn mbit_per_cpu(&self) -> f64 {
        self.forwarded_payload_mbps * self.seconds / self.server_cpu.max(1e-9)
    }
}

pub async fn run(args: SfuArgs) -> Result<()> {
    if args.janus == JanusMode::On && janus::find().is_none() {
        bail!(janus::INSTALL_HINT);
    }
    let bin = match &args.tandem_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()?,
    };
    let mut outcomes = Vec::new();
    {
        let server = tandem::start(&bin)?;
        println!(
            "tandem: {} publishers, {} subscribers …",
            args.publishers, args.subscribers
        );
        let fleet = fleet(&args, [127, 0, 0, 1].into())?;
        let call = tandem::call(&server, &fleet, args.publishers, args.subscribers).await?;
        let before = tandem::sfu_counters(&server).await.unwrap_or_default();
        outcomes.push(measure("tandem", server.pid(), &call, &args).await?);
        let after = tandem::sfu_counters(&server).await.unwrap_or_default();
        print_counters(&before, &after);
    }
    if args.janus == JanusMode::On {
        let ip = match args.janus_ip {
            Some(ip) => ip,
            None => janus::host_ip()?,
        };
        let server = janus::start(ip)?;
        println!(
            "janus: {} publishers, {} subscribers (ICE on {ip}) …",
            args.publishers, args.subscribers
        );
        let fleet = fleet(&args, ip)?;
        let call = match janus::call(&server, &fleet, args.publishers, args.subscribers).await {
            Ok(c) => c,
            Err(e) => bail!("{e:#}\nthe end of janus's log:\n{}", server.log_tail()),
        };
        outcomes.push(measure("janus", server.pid(), &call, &args).await?);
    }
    print_table(&outcomes, &args);
    if args.json {
        let results: Vec<serde_json::Value> = outcomes.iter().map(Outcome::to_json).collect();
        println!("sfu-results {}", serde_json::Value::from(results));
    }
    Ok(())
}

fn fleet(args: &SfuArgs, bind_ip: std::net::IpAddr) -> Result<Fleet> {
    Fleet::new(
        args.client_threads,
        MediaParams {
            bind_ip,
            video_kbps: args.bitrate_kbps,
            keyframe_every: Duration::from_secs(args.keyframe_secs),
        },
    )
}

/// Waits for media to reach every subscriber (or the setup time to pass), lets it run
/// `warmup`, then measures for `duration`.
pub async fn measure(
    name: &'static str,
    server_pid: u32,
    call: &Call,
    args: &SfuArgs,
) -> Result<Outcome> {
    let setup_limit = Instant::now() + Duration::from_secs(args.setup_timeout);
    let receiving = |call: &Call| call.subscribers.iter().filter(|s| s.packets() > 0).count();
    while receiving(call) < call.subscribers.len() && Instant::now() < setup_limit {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(args.warmup)).await;
    let subscribers_receiving = receiving(call);
    if subscribers_receiving == 0 && !call.subscribers.is_empty() {
        bail!("{name}: no subscriber received any media");
    }
    for p in call.publishers.iter().chain(&call.subscribers) {
        p.reset();
    }
    let me = std::process::id();
    let (cpu0, client0, t0) = (cpu_seconds(server_pid), cpu_seconds(me), Instant::now());
    tokio::time::sleep(Duration::from_secs(args.duration)).await;
    let mut subs = Vec::new();
    // A peer that stopped (its task failed) reports nothing: it lost everything.
    for s in &call.subscribers {
        subs.push(s.report().await.unwrap_or_default());
    }
    let (mut sent, mut media_bytes) = (0, 0);
    for p in &call.publishers {
        let r = p.report().await.unwrap_or_default();
        sent += r.sent;
        media_bytes += r.media_bytes;
    }
    let seconds = t0.elapsed().as_secs_f64();
    let (cpu1, client1) = (cpu_seconds(server_pid), cpu_seconds(me));
    let losses: Vec<f64> = subs.iter().map(|r| loss_of(r, media_bytes)).collect();
    let forwarded: u64 = subs.iter().map(|r| r.received).sum();
    let forwarded_bytes: u64 = subs.iter().map(|r| r.received_bytes).sum();
    Ok(Outcome {
        name,
        subscribers_receiving,
        subscribers: call.subscribers.len(),
        sent_pps: sent as f64 / seconds,
        forwarded_pps: forwarded as f64 / seconds,
        duplicates_pps: subs.iter().map(|r| r.duplicates).sum::<u64>() as f64 / seconds,
        forwarded_payload_mbps: forwarded_bytes as f64 * 8.0 / 1e6 / seconds,
        loss_mean: losses.iter().sum::<f64>() / losses.len().max(1) as f64,
        loss_max: losses.iter().copied().fold(0.0, f64::max),
        server_cpu: cpu1 - cpu0,
        client_cpu: client1 - client0,
        rss_mib: rss_kib(server_pid) as f64 / 1024.0,
        seconds,
    })
}

/// A subscriber's loss in percent: the larger of the sequence-number gaps and the
/// media bytes missing against what the publishers wrote. Sequence gaps alone miss
/// what an SFU drops before it packetizes (Tandem renumbers each subscriber's leg);
/// payload bytes count the VP8 descriptor too, a few bytes per packet, so small
/// negative differences are read as none. One that received nothing lost all.
fn loss_of(r: &PeerReport, published_media_bytes: u64) -> f64 {
    if r.expected == 0 {
        return 100.0;
    }
    let gaps = r.expected.saturating_sub(r.received) as f64 * 100.0 / r.expected as f64;
    let bytes = published_media_bytes.saturating_sub(r.received_bytes) as f64 * 100.0
        / published_media_bytes.max(1) as f64;
    gaps.max(bytes)
}

/// The SFU counters that moved between the two readings (set-up, warm-up and the
/// measurement), the media ones first: where packets were lost or dropped, if any.
fn print_counters(before: &[(String, u64)], after: &[(String, u64)]) {
    let moved: Vec<String> = after
        .iter()
        .filter_map(|(name, v)| {
            let old = before
                .iter()
                .find(|(n, _)| n == name)
                .map_or(0, |(_, o)| *o);
            let name = name.strip_prefix("tandem_sfu_")?.strip_suffix("_total")?;
            (*v > old).then(|| format!("{name} {}", v - old))
        })
        .collect();
    if !moved.is_empty() {
        println!(
            "tandem sfu counters since the call was set up: {}",
            moved.join(", ")
        );
    }
}

fn print_table(outcomes: &[Outcome], args: &SfuArgs) {
    println!(
        "\n{} publisher(s) × {} subscribers, video {} kbit/s + Opus 32 kbit/s, {} s measured",
        args.publishers, args.subscribers, args.bitrate_kbps, args.duration
    );
    println!(
        "| server | subscribers receiving | published pkt/s | forwarded pkt/s | forwarded payload Mbit/s \
         | duplicates pkt/s | loss mean % | loss max % | server CPU s | fwd pkt per server CPU-s \
         | fwd Mbit per server CPU-s | server RSS MiB | client CPU s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for o in outcomes {
        println!(
            "| {} | {}/{} | {:.0} | {:.0} | {:.1} | {:.0} | {:.3} | {:.3} | {:.2} | {:.0} | {:.0} | {:.1} | {:.2} |",
            o.name,
            o.subscribers_receiving,
            o.subscribers,
            o.sent_pps,
            o.forwarded_pps,
            o.forwarded_payload_mbps,
            o.duplicates_pps,
            o.loss_mean,
            o.loss_max,
            o.server_cpu,
            o.per_cpu(),
            o.mbit_per_cpu(),
            o.rss_mib,
            o.client_cpu
        );
    }
    if let [t, j] = outcomes {
        println!(
            "\ntandem / janus: forwarded pkt/s {:.2}×, forwarded pkt per server CPU-s {:.2}×, \
             forwarded Mbit per server CPU-s {:.2}×, server CPU {:.2}×, RSS {:.2}×",
            t.forwarded_pps / j.forwarded_pps.max(1e-9),
            t.per_cpu() / j.per_cpu().max(1e-9),
            t.mbit_per_cpu() / j.mbit_per_cpu().max(1e-9),
            t.server_cpu / j.server_cpu.max(1e-9),
            t.rss_mib / j.rss_mib.max(1e-9)
        );
    }
}
