use crate::common::*;
use serde_json::json;
use tandem_client::Client;
use tandem_protocol::ErrorCode;
use tandem_server::auth::{ChannelGrants, Grants};

#[tokio::test]
async fn valid_token_gets_welcome() {
    let server = Server::start("");
    let (_c, _e, welcome) = Client::connect(&server.url(), &token("alice", room_grants()))
        .await
        .unwrap();
    assert_eq!(welcome.identity, "alice");
    assert_eq!(welcome.name.as_deref(), Some("alice name"));
    assert_eq!(welcome.protocol, 1);
    assert_eq!(welcome.limits.max_message_bytes, 65536);
    assert!(welcome.client_id.starts_with('C'));
}

async fn refused(server: &Server, token: &str) -> (ErrorCode, Option<u16>) {
    let (client, mut events) = Client::open(&server.url()).await.unwrap();
    let code = client
        .authenticate(token)
        .await
        .unwrap_err()
        .code()
        .unwrap();
    (code, expect_closed(&mut events).await)
}

#[tokio::test]
async fn bad_tokens_are_refused_and_closed() {
    let server = Server::start("");
    let forged = tandem_server::auth::encode(
        &tandem_server::auth::Claims {
            iss: KEY.into(),
            sub: "eve".into(),
            exp: u64::MAX / 2,
            ..Default::default()
        },
        "not-the-secret",
    );
    assert_eq!(
        refused(&server, &forged).await,
        (ErrorCode::TokenInvalid, Some(4001))
    );
    let expired = token_with("alice", room_grants(), -5);
    assert_eq!(
        refused(&server, &expired).await,
        (ErrorCode::TokenExpired, Some(4001))
    );
    assert_eq!(
        refused(&server, "garbage").await,
        (ErrorCode::TokenInvalid, Some(4001))
    );
    assert_eq!(
        refused(&server, "").await,
        (ErrorCode::TokenInvalid, Some(4001))
    );
    // The server keeps serving others.
    let (c, _) = server.client("bob").await;
    assert_alive(&c).await;
}

#[tokio::test]
async fn missing_token_and_requests_before_connect() {
    let server = Server::start("");
    let (client, _events) = Client::open(&server.url()).await.unwrap();
    let e = client.request("connect", json!({})).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BadRequest));
    let e = client
        .request("join", json!({"room": "demo"}))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NotAuthenticated));
    let e = client
        .request(
            "connect",
            json!({"token": token("a", room_grants()), "protocol": 2}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::UnsupportedProtocol));
}

#[tokio::test]
async fn second_connect_is_refused_but_connection_works() {
    let server = Server::start("");
    let (client, _e) = server.client("alice").await;
    let e = client
        .authenticate(&token("alice", room_grants()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::AlreadyAuthenticated));
    assert_alive(&client).await;
}

#[tokio::test]
async fn no_connect_within_auth_timeout_closes() {
    let server = Server::start("[limits]\nauth_timeout_ms = 300");
    let (_client, mut events) = Client::open(&server.url()).await.unwrap();
    let push = expect_push(&mut events, "disconnect").await;
    assert_eq!(push["code"], 4001);
    assert_eq!(expect_closed(&mut events).await, Some(4001));
}

#[tokio::test]
async fn token_minted_by_pyjwt_is_accepted() {
    let server = Server::start("");
    let script = format!(
        "import jwt, time\nprint(jwt.encode({{'iss': '{KEY}', 'sub': 'py-user', 'exp': int(time.time()) + 600, \
         'grants': {{'join': ['demo']}}}}, '{SECRET}', algorithm='HS256'))"
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "PyJWT is required (pip install pyjwt): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let (client, _e, welcome) = Client::connect(&server.url(), &token).await.unwrap();
    assert_eq!(welcome.identity, "py-user");
    client.join("demo", None).await.unwrap();
    let e = client.join("other", None).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Forbidden));
}

#[tokio::test]
async fn cli_token_is_accepted() {
    let server = Server::start("");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args([
            "token",
            "--identity",
            "cli-user",
            "--room",
            "demo",
            "--ttl",
            "10m",
            "--subscribe",
            "news.*",
        ])
        .env("TANDEM_KEYS", format!("{KEY}:{SECRET}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let (client, _e, welcome) = Client::connect(&server.url(), &token).await.unwrap();
    assert_eq!(welcome.identity, "cli-user");
    client.subscribe("news.sport", None).await.unwrap();
    assert_eq!(
        client.subscribe("weather", None).await.unwrap_err().code(),
        Some(ErrorCode::Forbidden)
    );
}

#[tokio::test]
async fn origin_allow_list() {
    let server = Server::start("[server]\nallowed_origins = [\"https://app.example\"]");
    let url = server.url();
    let open = |origin: &str| {
        let options = tandem_client::Options {
            origin: Some(origin.to_string()),
            ..Default::default()
        };
        Client::open_with(&url, options)
    };
    assert!(
        open("https://evil.example").await.is_err(),
        "foreign origin must be refused"
    );
    assert!(open("https://app.example").await.is_ok());
    assert!(
        open(&format!("http://{}", server.addr)).await.is_ok(),
        "same origin is allowed"
    );
    assert!(
        Client::open(&server.url()).await.is_ok(),
        "no Origin (non-browser) is allowed"
    );
}

#[tokio::test]
async fn channel_grants() {
    let server = Server::start("");
    let grants = Grants {
        channels: ChannelGrants {
            subscribe: vec!["feed.*".into()],
            publish: vec!["feed.in".into()],
        },
        ..Grants::default()
    };
    let (c, _e, _) = Client::connect(&server.url(), &token("alice", grants))
        .await
        .unwrap();
    c.subscribe("feed.out", None).await.unwrap();
    c.subscribe("user:alice", None).await.unwrap();
    c.publish("feed.in", json!(1)).await.unwrap();
    for (result, what) in [
        (
            c.subscribe("user:bob", None).await.map(drop),
            "other user's channel",
        ),
        (
            c.publish("feed.out", json!(1)).await.map(drop),
            "publish without grant",
        ),
        (
            c.publish("user:alice", json!(1)).await.map(drop),
            "publish to user channel",
        ),
        (
            c.subscribe("room:demo:chat", None).await.map(drop),
            "room channel without join",
        ),
        (c.join("demo", None).await.map(drop), "room not in grants"),
    ] {
        assert_eq!(
            result.unwrap_err().code(),
            Some(ErrorCode::Forbidden),
            "{what}"
        );
    }
    assert_alive(&c).await;
}

/// A session ends when its token expires (close 4002 `token_expired`, after a
/// `disconnect` push) unless the client sends `refresh` with a new token for the same
/// identity first; a refresh for someone else or with a bad token is refused and the
/// session goes on.
#[tokio::test]
async fn tokens_expire_unless_refreshed() {
    let server = Server::start("");
    // Expiry has one-second resolution: 2 s leaves at least 1 s.
    let (lapsing, mut lapsing_events, welcome) =
        Client::connect(&server.url(), &token_with("lapse", room_grants(), 2))
            .await
            .unwrap();
    let now = tandem_server::auth::now_secs();
    assert!((now + 1..=now + 2).contains(&welcome.expires_at));
    let (renewing, _renewing_events, _) =
        Client::connect(&server.url(), &token_with("renew", room_grants(), 2))
            .await
            .unwrap();

    let wrong = renewing
        .refresh(&token("someone-else", room_grants()))
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Some(ErrorCode::Forbidden));
    let expired = renewing
        .refresh(&token_with("renew", room_grants(), -10))
        .await
        .unwrap_err();
    assert_eq!(expired.code(), Some(ErrorCode::TokenExpired));
    let refreshed = renewing
        .refresh(&token_with("renew", room_grants(), 3600))
        .await
        .unwrap();
    assert!(refreshed.expires_at >= now + 3599);

    let notice = expect_push(&mut lapsing_events, "disconnect").await;
    assert_eq!(notice["code"], 4002);
    assert_eq!(expect_closed(&mut lapsing_events).await, Some(4002));
    assert!(lapsing.request("ping", json!(null)).await.is_err());
    // Well past the first token's expiry, the refreshed session still works.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_alive(&renewing).await;
}
