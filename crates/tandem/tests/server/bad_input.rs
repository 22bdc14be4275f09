use crate::common::*;
use serde_json::json;
use tandem_client::{Client, Event};
use tandem_protocol::ErrorCode;

async fn next_error(events: &mut tokio::sync::mpsc::Receiver<Event>) -> ErrorCode {
    match expect_event(events, "error", |e| matches!(e, Event::Error { .. })).await {
        Event::Error { code, message } => {
            assert!(!message.is_empty(), "errors carry a human message");
            code
        }
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn malformed_frames_get_typed_errors_and_connection_survives() {
    let server = Server::start("");
    let (c, mut events) = server.client("alice").await;
    c.join("demo", None).await.unwrap();
    c.subscribe("room:demo:chat", None).await.unwrap();
    let first = c.publish("room:demo:chat", json!("before")).await.unwrap();
    assert_eq!(publications(&mut events, 1).await[0].offset, first.offset);

    for (frame, expected) in [
        ("not json at all", ErrorCode::Malformed),
        ("[1,2,3]", ErrorCode::Malformed),
        ("{\"type\": 42}", ErrorCode::Malformed),
        ("{\"id\": 1}", ErrorCode::Malformed),
        ("{\"type\": \"frobnicate\"}", ErrorCode::UnknownType),
        (
            "{\"type\": \"publish\", \"channel\": \"room:demo:chat\"}",
            ErrorCode::BadRequest,
        ),
        ("{\"type\": \"join\", \"room\": 7}", ErrorCode::BadRequest),
        (
            "{\"type\": \"subscribe\", \"channel\": \"x\", \"since\": {\"offset\": \"a\"}}",
            ErrorCode::BadRequest,
        ),
    ] {
        c.send_text(frame).unwrap();
        assert_eq!(next_error(&mut events).await, expected, "frame {frame}");
    }
    c.send_binary(vec![1, 2, 3]).unwrap();
    assert_eq!(next_error(&mut events).await, ErrorCode::UnsupportedFrame);

    // Missing field with an id comes back as a reply error.
    let e = c
        .request("signal", json!({"room": "demo"}))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BadRequest));
    let e = c
        .request("join", json!({"room": "bad room name!"}))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BadRequest));
    let e = c
        .request("publish", json!({"channel": "has space", "data": 1}))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BadRequest));

    // Nothing acknowledged was lost and the connection still publishes in order.
    let second = c.publish("room:demo:chat", json!("after")).await.unwrap();
    assert_eq!(second.offset, first.offset + 1);
    assert_eq!(publications(&mut events, 1).await[0].offset, second.offset);
    assert!(server.metric("tandem_errors_total{code=\"malformed\"}") >= 4.0);
}

#[tokio::test]
async fn oversized_frames() {
    let server = Server::start("[limits]\nmax_message_bytes = 1024");
    let (c, mut events) = server.client("alice").await;
    c.join("demo", None).await.unwrap();
    let big = "x".repeat(2000);
    let e = c.publish("room:demo:chat", json!(big)).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::MessageTooLarge));
    assert_alive(&c).await;
    c.publish("room:demo:chat", json!("small")).await.unwrap();
    // Far over the limit (16×): the socket is closed with 1009, the server lives on.
    c.send_text(format!(
        "{{\"type\":\"publish\",\"channel\":\"room:demo:chat\",\"data\":\"{}\"}}",
        "y".repeat(20_000)
    ))
    .unwrap();
    assert_eq!(expect_closed(&mut events).await, Some(1009));
    let (c2, _) = server.client("bob").await;
    assert_alive(&c2).await;
}

#[tokio::test]
async fn forbidden_and_state_errors() {
    let server = Server::start("");
    let (alice, _ea) = server.client("alice").await;
    let (bob, _eb) = server.client("bob").await;
    alice.join("demo", None).await.unwrap();
    let e = alice.join("demo", None).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::AlreadyJoined));
    let e = bob.leave("demo").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NotJoined));
    let e = bob.publish("room:demo:chat", json!(1)).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Forbidden));
    // Signal to someone not in the room / from someone not in the room.
    let e = alice
        .signal("demo", "Cnobody", json!({}))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::ParticipantNotFound));
    let alice_sid = server.api("GET", "/api/v1/rooms/demo/participants", None).1["participants"][0]
        ["sid"]
        .as_str()
        .unwrap()
        .to_string();
    let e = bob.signal("demo", &alice_sid, json!({})).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NotJoined));
    bob.join("lobby", None).await.unwrap();
    let e = bob
        .signal("lobby", &alice_sid, json!({}))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::ParticipantNotFound));
    let e = alice.unsubscribe("room:demo:chat").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NotSubscribed));
    alice.subscribe("room:demo:chat", None).await.unwrap();
    let e = alice.subscribe("room:demo:chat", None).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::AlreadySubscribed));
    let e = alice
        .history("room:demo:chat", Some(5), Some(1), None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BadRequest));
    let e = alice
        .history("room:demo:chat", None, None, Some(5000))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BadRequest));
    assert_alive(&alice).await;
    assert_alive(&bob).await;
}

#[tokio::test]
async fn unknown_paths_and_plain_http_on_ws() {
    let server = Server::start("");
    let (status, _) = server.http("GET", "/ws", None, None);
    assert_eq!(status, 426);
    let (status, _) = server.http("GET", "/no/such/file", None, None);
    assert_eq!(status, 404);
    let (status, _) = server.http("GET", "/healthz", None, None);
    assert_eq!(status, 200);
    let _ = Client::open(&server.url()).await.unwrap();
}
