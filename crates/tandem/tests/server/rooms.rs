use crate::common::*;
use serde_json::json;

#[tokio::test]
async fn presence_join_update_leave_disconnect() {
    let server = Server::start("");
    let (a, mut ea) = server.client("alice").await;
    let joined = a
        .join("demo", Some(json!({"status": "online"})))
        .await
        .unwrap();
    assert!(joined.participants.is_empty());
    assert_eq!(joined.participant.identity, "alice");
    assert_eq!(joined.participant.metadata.get(), r#"{"status":"online"}"#);

    let (b, mut eb) = server.client("bob").await;
    let joined_b = b.join("demo", None).await.unwrap();
    assert_eq!(joined_b.participants.len(), 1);
    assert_eq!(joined_b.participants[0].identity, "alice");
    let ev = expect_push(&mut ea, "participant_joined").await;
    assert_eq!(ev["participant"]["identity"], "bob");
    assert_eq!(ev["participant"]["name"], "bob name");

    a.update("demo", json!({"status": "away"})).await.unwrap();
    for events in [&mut ea, &mut eb] {
        let ev = expect_push(events, "participant_updated").await;
        assert_eq!(ev["participant"]["metadata"]["status"], "away");
    }

    b.leave("demo").await.unwrap();
    let ev = expect_push(&mut ea, "participant_left").await;
    assert_eq!(
        (ev["identity"].as_str(), ev["reason"].as_str()),
        (Some("bob"), Some("left"))
    );

    let (c, _ec) = server.client("carol").await;
    c.join("demo", None).await.unwrap();
    expect_push(&mut ea, "participant_joined").await;
    c.close();
    let ev = expect_push(&mut ea, "participant_left").await;
    assert_eq!(
        (ev["identity"].as_str(), ev["reason"].as_str()),
        (Some("carol"), Some("disconnected"))
    );
    let rooms = server.api("GET", "/api/v1/rooms", None).1;
    assert_eq!(rooms["rooms"][0]["participants"], 1);
}

#[tokio::test]
async fn same_identity_replaces_old_participant() {
    let server = Server::start("");
    let (watcher, mut ew) = server.client("watcher").await;
    watcher.join("demo", None).await.unwrap();
    let (old, mut eo) = server.client("alice").await;
    old.join("demo", None).await.unwrap();
    expect_push(&mut ew, "participant_joined").await;
    let (new, _en) = server.client("alice").await;
    new.join("demo", None).await.unwrap();
    let removed = expect_push(&mut eo, "removed").await;
    assert_eq!(removed["reason"], "duplicate_identity");
    let left = expect_push(&mut ew, "participant_left").await;
    assert_eq!(left["reason"], "duplicate_identity");
    let joined = expect_push(&mut ew, "participant_joined").await;
    assert_eq!(joined["participant"]["identity"], "alice");
    // The old connection is out of the room but still usable.
    assert_eq!(
        old.publish("room:demo:chat", json!(1))
            .await
            .unwrap_err()
            .code(),
        Some(tandem_protocol::ErrorCode::Forbidden)
    );
    assert_alive(&old).await;
    let list = server.api("GET", "/api/v1/rooms/demo/participants", None).1;
    assert_eq!(list["participants"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn signals_are_relayed_only_within_the_room() {
    let server = Server::start("");
    let (a, _ea) = server.client("alice").await;
    let (b, mut eb) = server.client("bob").await;
    let a_sid = a.join("call", None).await.unwrap().participant.sid;
    let b_sid = b.join("call", None).await.unwrap().participant.sid;
    let offer = json!({"description": {"type": "offer", "sdp": "v=0..."}});
    a.signal("call", &b_sid, offer.clone()).await.unwrap();
    let got = expect_push(&mut eb, "signal").await;
    assert_eq!(got["from"], a_sid.as_str());
    assert_eq!(got["from_identity"], "alice");
    assert_eq!(got["room"], "call");
    assert_eq!(got["data"], offer);
    assert_eq!(server.metric("tandem_signals_total"), 1.0);
}
