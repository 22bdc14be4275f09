use crate::common::*;
use serde_json::json;
use std::collections::HashSet;

#[tokio::test]
async fn every_subscriber_gets_every_publication_once_in_order() {
    let server = Server::start("[limits]\npublish_rate = 10000\npublish_burst = 10000");
    let mut subscribers = Vec::new();
    for i in 0..5 {
        let (c, e) = server.client(&format!("sub{i}")).await;
        c.join("room1", None).await.unwrap();
        c.subscribe("room:room1:chat", None).await.unwrap();
        subscribers.push((c, e));
    }
    // Three publishers in parallel.
    let mut tasks = Vec::new();
    for p in 0..3 {
        let (c, _e) = server.client(&format!("pub{p}")).await;
        c.join("room1", None).await.unwrap();
        tasks.push(tokio::spawn(async move {
            let mut offsets = Vec::new();
            for i in 0..100 {
                offsets.push(
                    c.publish("room:room1:chat", json!({"p": p, "i": i}))
                        .await
                        .unwrap()
                        .offset,
                );
            }
            offsets
        }));
    }
    let mut acked = HashSet::new();
    for t in tasks {
        let offsets = t.await.unwrap();
        // Each publisher's own messages get increasing offsets.
        assert!(offsets.windows(2).all(|w| w[0] < w[1]));
        acked.extend(offsets);
    }
    assert_eq!(acked.len(), 300);
    for (_c, events) in &mut subscribers {
        let got = publications(events, 300).await;
        let offsets: Vec<u64> = got.iter().map(|p| p.offset).collect();
        assert_eq!(
            offsets,
            (1..=300).collect::<Vec<_>>(),
            "gap-free, in order, once"
        );
        assert!(got
            .iter()
            .all(|p| p.from.as_deref().is_some_and(|f| f.starts_with("pub"))));
        assert_no_publication(events, 200).await;
    }
}

#[tokio::test]
async fn history_paging() {
    let server = Server::start("[limits]\npublish_rate = 10000\npublish_burst = 10000");
    let (c, _e) = server.client("alice").await;
    c.join("r", None).await.unwrap();
    for i in 1..=30 {
        c.publish("room:r:chat", json!({"n": i})).await.unwrap();
    }
    let latest = c
        .history("room:r:chat", None, None, Some(10))
        .await
        .unwrap();
    assert_eq!(latest.offset, 30);
    assert_eq!(latest.earliest, 1);
    let offsets: Vec<u64> = latest.publications.iter().map(|p| p.offset).collect();
    assert_eq!(offsets, (21..=30).collect::<Vec<_>>());
    let older = c
        .history("room:r:chat", Some(21), None, Some(10))
        .await
        .unwrap();
    assert_eq!(
        older
            .publications
            .iter()
            .map(|p| p.offset)
            .collect::<Vec<_>>(),
        (11..=20).collect::<Vec<_>>()
    );
    let since = c
        .history("room:r:chat", None, Some(25), None)
        .await
        .unwrap();
    assert_eq!(
        since
            .publications
            .iter()
            .map(|p| p.offset)
            .collect::<Vec<_>>(),
        (26..=30).collect::<Vec<_>>()
    );
    let p = &since.publications[0];
    assert_eq!(p.data.get(), r#"{"n":26}"#);
    assert_eq!(p.from.as_deref(), Some("alice"));
    let empty = c.history("room:r:other", None, None, None).await.unwrap();
    assert_eq!(
        (empty.offset, empty.earliest, empty.publications.len()),
        (0, 0, 0)
    );
}

#[tokio::test]
async fn unsubscribe_stops_delivery_and_leave_ends_room_subscriptions() {
    let server = Server::start("");
    let (a, mut ea) = server.client("alice").await;
    let (b, _eb) = server.client("bob").await;
    a.join("r", None).await.unwrap();
    b.join("r", None).await.unwrap();
    a.subscribe("room:r:chat", None).await.unwrap();
    b.publish("room:r:chat", json!(1)).await.unwrap();
    publications(&mut ea, 1).await;
    a.unsubscribe("room:r:chat").await.unwrap();
    b.publish("room:r:chat", json!(2)).await.unwrap();
    assert_no_publication(&mut ea, 300).await;
    a.subscribe("room:r:chat", None).await.unwrap();
    a.leave("r").await.unwrap();
    b.publish("room:r:chat", json!(3)).await.unwrap();
    assert_no_publication(&mut ea, 300).await;
    assert_eq!(server.metric("tandem_subscriptions"), 0.0);
}

#[tokio::test]
async fn requests_without_id_are_fire_and_forget() {
    let server = Server::start("");
    let (c, mut events) = server.client("alice").await;
    c.join("r", None).await.unwrap();
    c.subscribe("room:r:chat", None).await.unwrap();
    c.send_text(r#"{"type":"publish","channel":"room:r:chat","data":"no id"}"#)
        .unwrap();
    let p = &publications(&mut events, 1).await[0];
    assert_eq!(p.data, json!("no id"));
    // Failures still come back, as errors without an id.
    c.send_text(r#"{"type":"publish","channel":"room:other:chat","data":1}"#)
        .unwrap();
    let e = expect_event(&mut events, "error", |e| {
        matches!(e, tandem_client::Event::Error { .. })
    })
    .await;
    assert!(matches!(
        e,
        tandem_client::Event::Error {
            code: tandem_protocol::ErrorCode::Forbidden,
            ..
        }
    ));
    // And no stray reply arrived for the successful one.
    c.send_text(r#"{"type":"ping"}"#).unwrap();
    let pong = expect_event(&mut events, "pong", |e| e.kind().is_some()).await;
    assert_eq!(pong.kind(), Some("pong"));
}
