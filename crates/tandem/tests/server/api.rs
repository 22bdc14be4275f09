use crate::common::*;
use serde_json::json;
use tandem_server::auth::Grants;

#[tokio::test]
async fn backend_publishes_to_subscribers() {
    let server = Server::start("");
    let grants = Grants {
        channels: tandem_server::auth::ChannelGrants {
            subscribe: vec!["news".into()],
            publish: vec![],
        },
        ..Grants::default()
    };
    let (c, mut events, _) = tandem_client::Client::connect(&server.url(), &token("alice", grants))
        .await
        .unwrap();
    c.subscribe("news", None).await.unwrap();
    c.subscribe("user:alice", None).await.unwrap();
    let (status, body) = server.api(
        "POST",
        "/api/v1/publish",
        Some(r#"{"channel":"news","data":{"headline":"hi"}}"#),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["offset"], 1);
    server.api(
        "POST",
        "/api/v1/publish",
        Some(r#"{"channel":"user:alice","data":"personal"}"#),
    );
    let got = publications(&mut events, 2).await;
    assert_eq!(got[0].data, json!({"headline": "hi"}));
    assert_eq!(got[0].from, None);
    assert_eq!(
        (got[1].channel.as_str(), &got[1].data),
        ("user:alice", &json!("personal"))
    );
}

#[tokio::test]
async fn api_authentication_and_errors() {
    let server = Server::start("");
    let body = Some(r#"{"channel":"news","data":1}"#);
    let (status, _) = server.http("POST", "/api/v1/publish", None, body);
    assert_eq!(status, 401);
    let (status, _) = server.http("POST", "/api/v1/publish", Some(&basic(KEY, "wrong")), body);
    assert_eq!(status, 401);
    let admin = token(
        "backend",
        Grants {
            admin: true,
            ..Grants::default()
        },
    );
    let (status, _) = server.http(
        "POST",
        "/api/v1/publish",
        Some(&format!("Bearer {admin}")),
        body,
    );
    assert_eq!(status, 200);
    let user = token("user", room_grants());
    let (status, _) = server.http(
        "POST",
        "/api/v1/publish",
        Some(&format!("Bearer {user}")),
        body,
    );
    assert_eq!(status, 403);
    let (status, err) = server.api("POST", "/api/v1/publish", Some("{not json"));
    assert_eq!((status, err["code"].as_str()), (400, Some("bad_request")));
    let (status, err) = server.api(
        "POST",
        "/api/v1/publish",
        Some(r#"{"channel":"bad channel","data":1}"#),
    );
    assert_eq!((status, err["code"].as_str()), (400, Some("bad_request")));
    let big = format!(r#"{{"channel":"news","data":"{}"}}"#, "x".repeat(70_000));
    let (status, err) = server.api("POST", "/api/v1/publish", Some(&big));
    assert_eq!(
        (status, err["code"].as_str()),
        (413, Some("message_too_large"))
    );
    let (status, err) = server.api("GET", "/api/v1/rooms/nope/participants", None);
    assert_eq!(
        (status, err["code"].as_str()),
        (404, Some("room_not_found"))
    );
    let (status, _) = server.http("GET", "/dev/token?identity=x", None, None);
    assert_eq!(status, 404, "no dev token endpoint outside dev mode");
}

#[tokio::test]
async fn remove_participant_and_list() {
    let server = Server::start("");
    let (a, mut ea) = server.client("alice").await;
    let (b, mut eb) = server.client("bob").await;
    a.join("demo", None).await.unwrap();
    b.join("demo", None).await.unwrap();
    let (_, rooms) = server.api("GET", "/api/v1/rooms", None);
    assert_eq!(rooms["rooms"][0]["name"], "demo");
    assert_eq!(rooms["rooms"][0]["participants"], 2);
    let (status, body) = server.api("DELETE", "/api/v1/rooms/demo/participants/bob", None);
    assert_eq!((status, body["removed"].as_u64()), (200, Some(1)));
    let removed = expect_push(&mut eb, "removed").await;
    assert_eq!(removed["reason"], "removed");
    let left = expect_push(&mut ea, "participant_left").await;
    assert_eq!(
        (left["identity"].as_str(), left["reason"].as_str()),
        (Some("bob"), Some("removed"))
    );
    let (status, _) = server.api("DELETE", "/api/v1/rooms/demo/participants/bob", None);
    assert_eq!(status, 404);
    assert_alive(&b).await;
    let (status, body) = server.api(
        "POST",
        "/api/v1/connections/disconnect",
        Some(r#"{"identity":"bob","reconnect":false}"#),
    );
    assert_eq!((status, body["disconnected"].as_u64()), (200, Some(1)));
    let notice = expect_push(&mut eb, "disconnect").await;
    assert_eq!(
        (notice["code"].as_u64(), notice["reconnect"].as_bool()),
        (Some(4003), Some(false))
    );
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let server = Server::start("");
    assert_eq!(server.http("GET", "/healthz", None, None).0, 200);
    assert_eq!(server.http("GET", "/readyz", None, None).0, 200);
    let (c, _e) = server.client("alice").await;
    c.join("r", None).await.unwrap();
    c.publish("room:r:chat", json!(1)).await.unwrap();
    assert_eq!(server.metric("tandem_connections"), 1.0);
    assert_eq!(server.metric("tandem_rooms"), 1.0);
    assert_eq!(server.metric("tandem_participants"), 1.0);
    assert!(server.metric("tandem_history_writes_total") >= 1.0);
    assert!(server.metric("tandem_messages_in_total") >= 3.0);
    let (_, text) = server.http("GET", "/metrics", None, None);
    assert!(text.contains("# TYPE tandem_errors_total counter"));
}

#[tokio::test]
async fn demo_app_and_sdk_are_served_from_the_binary() {
    let server = Server::start("");
    let (status, body) = server.http("GET", "/", None, None);
    assert_eq!(status, 200);
    assert!(
        body.contains("<html") || body.contains("<!doctype") || body.contains("<!DOCTYPE"),
        "{body:.200}"
    );
    let (status, body) = server.http("GET", "/sdk/index.js", None, None);
    assert_eq!(status, 200);
    assert!(body.contains("export"), "the SDK is an ES module");
    let (status, _) = server.http("GET", "/sdk/index.d.ts", None, None);
    assert_eq!(status, 200);
    let (status, _) = server.http("GET", "/examples/minimal.html", None, None);
    assert_eq!(status, 200);
    let (status, _) = server.http("GET", "/sdk/../../Cargo.toml", None, None);
    assert_ne!(status, 200, "no path escapes the web root");
}
