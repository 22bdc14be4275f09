use crate::common::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tandem_client::Client;
use tandem_protocol::{RecoveryFailure, StreamPosition};

const FAST: &str = "[limits]\npublish_rate = 100000\npublish_burst = 100000";

#[tokio::test]
async fn reconnect_recovers_everything_missed_exactly_once() {
    let server = Server::start(FAST);
    let (sub, mut events) = server.client("reader").await;
    sub.join("r", None).await.unwrap();
    let first = sub.subscribe("room:r:chat", None).await.unwrap();
    let (publisher, _pe) = server.client("writer").await;
    publisher.join("r", None).await.unwrap();
    for i in 0..10 {
        publisher.publish("room:r:chat", json!(i)).await.unwrap();
    }
    let seen = publications(&mut events, 10).await;
    let last = seen.last().unwrap().offset;

    // The server cuts the reader's socket; it is told to reconnect.
    let (status, body) = server.api(
        "POST",
        "/api/v1/connections/disconnect",
        Some(r#"{"identity":"reader","reconnect":true}"#),
    );
    assert_eq!((status, body["disconnected"].as_u64()), (200, Some(1)));
    let notice = expect_push(&mut events, "disconnect").await;
    assert_eq!(
        (notice["code"].as_u64(), notice["reconnect"].as_bool()),
        (Some(4010), Some(true))
    );
    assert_eq!(expect_closed(&mut events).await, Some(4010));

    // Meanwhile 25 more are published; a publisher keeps going during the reconnect.
    for i in 10..35 {
        publisher.publish("room:r:chat", json!(i)).await.unwrap();
    }
    let background = {
        let publisher = publisher.clone();
        tokio::spawn(async move {
            for i in 35..60 {
                publisher.publish("room:r:chat", json!(i)).await.unwrap();
            }
        })
    };
    let (sub, mut events) = server.client("reader").await;
    sub.join("r", None).await.unwrap();
    let since = StreamPosition {
        offset: last,
        epoch: first.epoch.clone(),
    };
    let recovered = sub.subscribe("room:r:chat", Some(since)).await.unwrap();
    assert_eq!(recovered.recovered, Some(true));
    background.await.unwrap();
    let mut offsets: Vec<u64> = recovered.publications.iter().map(|p| p.offset).collect();
    let live_needed = 60 - offsets.len() - last as usize;
    offsets.extend(
        publications(&mut events, live_needed)
            .await
            .iter()
            .map(|p| p.offset),
    );
    assert_eq!(
        offsets,
        ((last + 1)..=60).collect::<Vec<_>>(),
        "no gap, no duplicate"
    );
    assert_no_publication(&mut events, 200).await;
}

#[tokio::test]
async fn kill_dash_nine_loses_no_acknowledged_publication() {
    let mut server = Server::start(&format!(
        "{FAST}\n[history]\nrecovery_max = 1000000\nmax_count = 1000000"
    ));
    let acked: Arc<Mutex<BTreeMap<u64, i64>>> = Arc::default();
    // A live subscriber sees part of the stream before the crash.
    let (probe, mut probe_events) = server.client("probe").await;
    probe.join("r", None).await.unwrap();
    let epoch = probe.subscribe("room:r:chat", None).await.unwrap().epoch;
    let mut tasks = Vec::new();
    for p in 0..4i64 {
        let (c, _e) = server.client(&format!("w{p}")).await;
        c.join("r", None).await.unwrap();
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            let _keep_events = _e;
            for i in 0..100_000i64 {
                let value = p * 1_000_000 + i;
                match c.publish("room:r:chat", json!(value)).await {
                    Ok(ack) => {
                        acked.lock().unwrap().insert(ack.offset, value);
                    }
                    Err(_) => break, // the server died mid-request: not acknowledged
                }
            }
        }));
    }
    // Let publishers get going, then SIGKILL the server mid-stream.
    while acked.lock().unwrap().len() < 300 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    server.kill9();
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 300);
    let mut seen_live = Vec::new();
    while let Some(ev) = probe_events.recv().await {
        match ev {
            tandem_client::Event::Publication(p) => seen_live.push(p.offset),
            tandem_client::Event::Closed { .. } => break,
            _ => {}
        }
    }
    assert!(!seen_live.is_empty());
    assert_eq!(
        seen_live,
        (1..=seen_live.len() as u64).collect::<Vec<_>>(),
        "live delivery was gap-free before the crash"
    );

    server.restart();
    let (c, mut events) = server.client("reader").await;
    c.join("r", None).await.unwrap();
    let rec = c
        .subscribe(
            "room:r:chat",
            Some(StreamPosition {
                offset: 0,
                epoch: epoch.clone(),
            }),
        )
        .await
        .unwrap();
    assert_eq!(rec.epoch, epoch, "the epoch survives a restart");
    let top = rec.offset;
    // Recovery may be capped (too_many): page through history instead.
    let mut stored = BTreeMap::new();
    let mut after = 0;
    loop {
        let page = c
            .history("room:r:chat", None, Some(after), Some(1000))
            .await
            .unwrap();
        if page.publications.is_empty() {
            break;
        }
        for p in &page.publications {
            stored.insert(p.offset, p.data.get().parse::<i64>().unwrap());
            after = p.offset;
        }
    }
    assert_eq!(stored.len() as u64, top, "offsets 1..=top are all present");
    for (offset, value) in &acked {
        assert_eq!(
            stored.get(offset),
            Some(value),
            "acknowledged offset {offset} lost or changed"
        );
    }
    // The live subscriber reconnects from its last offset and gets exactly the rest.
    let (probe, _pe) = server.client("probe").await;
    probe.join("r", None).await.unwrap();
    let since = StreamPosition {
        offset: *seen_live.last().unwrap(),
        epoch: epoch.clone(),
    };
    let rec = probe.subscribe("room:r:chat", Some(since)).await.unwrap();
    assert_eq!(rec.recovered, Some(true));
    let mut all = seen_live.clone();
    all.extend(rec.publications.iter().map(|p| p.offset));
    assert_eq!(
        all,
        (1..=top).collect::<Vec<_>>(),
        "exactly once across the crash"
    );
    // Publishing continues after the last stored offset.
    let next = c
        .publish("room:r:chat", json!("after restart"))
        .await
        .unwrap();
    assert_eq!(next.offset, top + 1);
    let _ = publications(&mut events, 1).await;
}

#[tokio::test]
async fn history_gap_is_reported_not_hidden() {
    let server = Server::start(&format!(
        "{FAST}\n[history]\nmax_count = 10\nrecovery_max = 5"
    ));
    let (c, _e) = server.client("alice").await;
    c.join("r", None).await.unwrap();
    let epoch = c.subscribe("room:r:chat", None).await.unwrap().epoch;
    c.unsubscribe("room:r:chat").await.unwrap();
    for i in 0..30 {
        c.publish("room:r:chat", json!(i)).await.unwrap();
    }
    // Offsets 1..=20 were trimmed: recovering from 2 cannot be complete.
    let r = c
        .subscribe(
            "room:r:chat",
            Some(StreamPosition {
                offset: 2,
                epoch: epoch.clone(),
            }),
        )
        .await
        .unwrap();
    assert_eq!(
        (r.recovered, r.reason),
        (Some(false), Some(RecoveryFailure::HistoryExpired))
    );
    assert_eq!(
        r.publications.first().map(|p| p.offset),
        Some(21),
        "what is retained is still returned"
    );
    c.unsubscribe("room:r:chat").await.unwrap();
    // More missed than recovery_max.
    let r = c
        .subscribe(
            "room:r:chat",
            Some(StreamPosition {
                offset: 22,
                epoch: epoch.clone(),
            }),
        )
        .await
        .unwrap();
    assert_eq!(
        (r.recovered, r.reason),
        (Some(false), Some(RecoveryFailure::TooMany))
    );
    c.unsubscribe("room:r:chat").await.unwrap();
    // Within range: complete.
    let r = c
        .subscribe(
            "room:r:chat",
            Some(StreamPosition {
                offset: 27,
                epoch: epoch.clone(),
            }),
        )
        .await
        .unwrap();
    assert_eq!(r.recovered, Some(true));
    assert_eq!(
        r.publications.iter().map(|p| p.offset).collect::<Vec<_>>(),
        vec![28, 29, 30]
    );
    c.unsubscribe("room:r:chat").await.unwrap();
    // Wrong epoch.
    let r = c
        .subscribe(
            "room:r:chat",
            Some(StreamPosition {
                offset: 27,
                epoch: "other".into(),
            }),
        )
        .await
        .unwrap();
    assert_eq!(
        (r.recovered, r.reason),
        (Some(false), Some(RecoveryFailure::EpochChanged))
    );
}

#[tokio::test]
async fn wiped_store_changes_epoch() {
    let mut server = Server::start(FAST);
    let (c, _e) = server.client("alice").await;
    c.join("r", None).await.unwrap();
    let epoch = c.subscribe("room:r:chat", None).await.unwrap().epoch;
    c.publish("room:r:chat", json!(1)).await.unwrap();
    server.kill9();
    std::fs::remove_dir_all(server.dir.join("data")).unwrap();
    server.restart();
    let (c, _e) = server.client("alice").await;
    c.join("r", None).await.unwrap();
    let r = c
        .subscribe("room:r:chat", Some(StreamPosition { offset: 1, epoch }))
        .await
        .unwrap();
    assert_eq!(
        (r.recovered, r.reason),
        (Some(false), Some(RecoveryFailure::EpochChanged))
    );
}

#[tokio::test]
async fn sigterm_tells_clients_to_reconnect_and_keeps_acknowledged_messages() {
    let mut server = Server::start(FAST);
    let (c, mut events) = server.client("alice").await;
    c.join("r", None).await.unwrap();
    let epoch = c.subscribe("room:r:chat", None).await.unwrap().epoch;
    let mut last = 0;
    for i in 0..50 {
        last = c.publish("room:r:chat", json!(i)).await.unwrap().offset;
    }
    let status = server.sigterm();
    assert!(status.success(), "exit status {status:?}");
    let notice = expect_push(&mut events, "disconnect").await;
    assert_eq!(
        (notice["code"].as_u64(), notice["reconnect"].as_bool()),
        (Some(1012), Some(true))
    );
    assert_eq!(expect_closed(&mut events).await, Some(1012));
    server.restart();
    let (c, _e, _) = Client::connect(&server.url(), &token("alice", room_grants()))
        .await
        .unwrap();
    c.join("r", None).await.unwrap();
    let r = c
        .subscribe("room:r:chat", Some(StreamPosition { offset: 0, epoch }))
        .await
        .unwrap();
    assert_eq!(r.recovered, Some(true));
    assert_eq!(r.publications.len() as u64, last);
}

#[tokio::test]
async fn old_publications_are_trimmed_by_age() {
    let server = Server::start(&format!(
        "{FAST}\n[history]\nmax_age_secs = 1\ntrim_interval_secs = 1"
    ));
    let (c, _e) = server.client("alice").await;
    c.join("r", None).await.unwrap();
    let epoch = c.subscribe("room:r:chat", None).await.unwrap().epoch;
    c.unsubscribe("room:r:chat").await.unwrap();
    for i in 0..5 {
        c.publish("room:r:chat", json!(i)).await.unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let page = c.history("room:r:chat", None, None, None).await.unwrap();
        if page.publications.is_empty() {
            assert_eq!(page.offset, 5, "offsets are kept after a trim");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "publications older than max_age_secs were not trimmed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let r = c
        .subscribe("room:r:chat", Some(StreamPosition { offset: 2, epoch }))
        .await
        .unwrap();
    assert_eq!(
        (r.recovered, r.reason),
        (Some(false), Some(RecoveryFailure::HistoryExpired))
    );
    assert!(server.metric("tandem_history_trimmed_total") >= 5.0);
}
