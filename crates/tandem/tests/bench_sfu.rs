//! Smoke test of `tandem bench sfu` through the real binary: the bench starts
//! `tandem serve` with its SFU, one str0m publisher sends VP8 + Opus, three str0m
//! subscribers (full ICE, DTLS, SRTP) must receive it with little loss. Fails when
//! SFU forwarding breaks. The same against Janus runs only where `janus` is
//! installed, and says so when it is skipped.

use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs the bench with `args`; returns its per-server results.
fn bench(args: &[&str]) -> Vec<Value> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args([
            "bench",
            "sfu",
            "--json",
            "--warmup",
            "1",
            "--setup-timeout",
            "30",
        ])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start tandem bench sfu");
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("tandem bench sfu did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(out.status.success(), "bench failed: {stdout}");
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("sfu-results "))
        .expect("results line");
    serde_json::from_str::<Value>(line)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn assert_forwarded(r: &Value, subscribers: f64) {
    let server = &r["server"];
    assert_eq!(
        r["subscribers_receiving"], r["subscribers"],
        "{server}: {r}"
    );
    // One publisher sends ≈ 170 packets/s (1 Mbit/s VP8 + Opus); each subscriber gets
    // them all, give or take repacketization.
    let per_subscriber = r["forwarded_pps"].as_f64().unwrap() / subscribers;
    assert!(
        per_subscriber > 100.0,
        "{server}: {per_subscriber} pkt/s each: {r}"
    );
    // Loss counts media bytes missing against what the publisher wrote (and sequence
    // gaps). Forwarding must not drop or hold back media: a track paced below its
    // bitrate, or frames dropped by the SFU, show here. The 2 % leaves room for the
    // window edges (publisher and subscribers are reset a moment apart).
    let loss = r["loss_max_percent"].as_f64().unwrap();
    assert!(loss < 2.0, "{server}: loss {loss} %: {r}");
}

#[test]
fn bench_sfu_forwards_to_every_subscriber_through_tandem() {
    let results = bench(&["--subscribers", "3", "--duration", "3", "--janus", "off"]);
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["server"], "tandem");
    assert_forwarded(&results[0], 3.0);
}

#[test]
fn bench_sfu_runs_against_janus_when_installed() {
    let installed = Command::new("janus")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        println!("skipped: janus is not installed (apt-get install janus)");
        return;
    }
    let results = bench(&["--subscribers", "2", "--duration", "2"]);
    assert_eq!(results.len(), 2);
    assert_eq!(results[1]["server"], "janus");
    for r in &results {
        assert_forwarded(r, 2.0);
    }
}
