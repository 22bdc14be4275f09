use crate::common::*;
use futures_util::SinkExt;
use serde_json::json;
use std::time::Duration;
use tandem_client::{Client, Options};
use tandem_protocol::ErrorCode;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn publish_rate_is_limited_with_retry_hint() {
    let server = Server::start("[limits]\npublish_rate = 5\npublish_burst = 5");
    let (c, _e) = server.client("alice").await;
    c.join("r", None).await.unwrap();
    for i in 0..5 {
        c.publish("room:r:chat", json!(i)).await.unwrap();
    }
    let e = c.publish("room:r:chat", json!("over")).await.unwrap_err();
    match e {
        tandem_client::ClientError::Server {
            code,
            retry_after_ms,
            ..
        } => {
            assert_eq!(code, ErrorCode::RateLimited);
            let wait = retry_after_ms.expect("retry_after_ms");
            assert!(wait > 0 && wait <= 200, "{wait}");
            tokio::time::sleep(Duration::from_millis(wait + 20)).await;
        }
        other => panic!("{other:?}"),
    }
    c.publish("room:r:chat", json!("after waiting"))
        .await
        .unwrap();
}

#[tokio::test]
async fn room_connection_room_and_subscription_limits() {
    let server = Server::start(
        "[limits]\nmax_participants_per_room = 2\nmax_connections_per_identity = 2\nmax_rooms_per_connection = 2\nmax_subscriptions_per_connection = 2",
    );
    let (a, _ea) = server.client("a").await;
    let (b, _eb) = server.client("b").await;
    let (c, _ec) = server.client("c").await;
    a.join("r", None).await.unwrap();
    b.join("r", None).await.unwrap();
    assert_eq!(
        c.join("r", None).await.unwrap_err().code(),
        Some(ErrorCode::RoomFull)
    );
    a.join("r2", None).await.unwrap();
    assert_eq!(
        a.join("r3", None).await.unwrap_err().code(),
        Some(ErrorCode::TooManyRooms)
    );
    a.subscribe("room:r:1", None).await.unwrap();
    a.subscribe("room:r:2", None).await.unwrap();
    assert_eq!(
        a.subscribe("room:r:3", None).await.unwrap_err().code(),
        Some(ErrorCode::TooManySubscriptions)
    );

    let _second = server.client("a").await;
    let (third, mut events) = Client::open(&server.url()).await.unwrap();
    let e = third
        .authenticate(&token("a", room_grants()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::TooManyConnections));
    assert_eq!(expect_closed(&mut events).await, Some(4006));
    assert_alive(&a).await;
}

#[tokio::test]
async fn idle_clients_are_timed_out_and_answering_clients_are_not() {
    // Generous against the ping interval: on a loaded 2-core machine an answering
    // client can be descheduled for a few hundred milliseconds.
    let server = Server::start("[limits]\nping_interval_ms = 200\nidle_timeout_ms = 1200");
    let silent_options = Options {
        auto_pong: false,
        ..Options::default()
    };
    let (silent, mut silent_events) = Client::open_with(&server.url(), silent_options)
        .await
        .unwrap();
    silent
        .authenticate(&token("silent", room_grants()))
        .await
        .unwrap();
    let (alive, _e) = server.client("alive").await;
    let ping = expect_push(&mut silent_events, "ping").await;
    assert_eq!(ping["type"], "ping");
    let notice = expect_push(&mut silent_events, "disconnect").await;
    assert_eq!(notice["code"], 4005);
    assert_eq!(expect_closed(&mut silent_events).await, Some(4005));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_alive(&alive).await;
}

#[tokio::test]
async fn slow_consumer_is_disconnected_and_others_unaffected() {
    let server = Server::start(
        "[limits]\noutbound_queue = 8\npublish_rate = 100000\npublish_burst = 100000\n[history]\nsync = \"normal\"",
    );
    // A raw socket that subscribes and then never reads again.
    let (mut stalled, _) = tokio_websockets::ClientBuilder::new()
        .uri(&server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let t = token("stalled", room_grants());
    for frame in [
        json!({"id": 1, "type": "connect", "token": t}),
        json!({"id": 2, "type": "join", "room": "r"}),
        json!({"id": 3, "type": "subscribe", "channel": "room:r:chat"}),
    ] {
        stalled
            .send(tokio_websockets::Message::text(frame.to_string()))
            .await
            .unwrap();
    }
    let (healthy, mut healthy_events) = server.client("healthy").await;
    healthy.join("r", None).await.unwrap();
    healthy.subscribe("room:r:chat", None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let blob = "z".repeat(60_000);
    let count = 400;
    for i in 0..count {
        healthy
            .publish("room:r:chat", json!({"i": i, "blob": blob}))
            .await
            .unwrap();
    }
    let got = publications(&mut healthy_events, count).await;
    assert_eq!(got.last().unwrap().offset, count as u64);
    assert_eq!(server.metric("tandem_slow_consumer_disconnects_total"), 1.0);
    // 24 MB went to a client that read none of it; the server held at most its queue.
    let rss_kib = rss_kib(server.pid());
    eprintln!("slow consumer test: server RSS {rss_kib} KiB");
    assert!(
        rss_kib < 64 * 1024,
        "server RSS {rss_kib} KiB: memory was not bounded"
    );
    let participants = server.api("GET", "/api/v1/rooms/r/participants", None).1;
    assert_eq!(
        participants["participants"].as_array().unwrap().len(),
        1,
        "the stalled client left the room"
    );
    drop(stalled);
}
