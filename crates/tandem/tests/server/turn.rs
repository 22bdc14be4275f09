//! `tandem serve` with `[turn] enabled`: the welcome carries STUN/TURN URLs with
//! fresh REST credentials, and those credentials allocate a relay on the built-in
//! TURN server; its counters appear on /metrics.

use crate::common::*;
use std::net::SocketAddr;
use std::time::Duration;
use tandem_client::Client;
use tandem_turn::auth::long_term_key;
use tandem_turn::message::{self as m, attr, Builder, Class, Message};
use tokio::net::UdpSocket;

const TURN: &str = "[turn]\nenabled = true\nudp_bind = \"127.0.0.1:0\"\ntcp_bind = \"127.0.0.1:0\"\npublic_ip = \"127.0.0.1\"\nrelay_bind_ip = \"127.0.0.1\"\nrelay_port_min = 30000\nrelay_port_max = 32000\nsecret = \"turn-shared-secret\"\n";

async fn ask(sock: &UdpSocket, to: SocketAddr, req: &[u8]) -> Vec<u8> {
    sock.send_to(req, to).await.unwrap();
    let mut buf = vec![0u8; 1500];
    let n = tokio::time::timeout(Duration::from_secs(3), sock.recv(&mut buf))
        .await
        .expect("TURN answers")
        .unwrap();
    buf.truncate(n);
    buf
}

fn error_code(msg: &Message) -> Option<u16> {
    msg.get(attr::ERROR_CODE)
        .map(|v| v[2] as u16 * 100 + v[3] as u16)
}

#[tokio::test]
async fn welcome_hands_out_working_turn_credentials() {
    let server = Server::start(TURN);
    let (_c, _e, welcome) = Client::connect(&server.url(), &token("alice", room_grants()))
        .await
        .unwrap();
    let ice = &welcome.ice_servers;
    assert_eq!(ice.len(), 2, "{ice:?}");
    let stun = &ice[0].urls[0];
    assert!(stun.starts_with("stun:127.0.0.1:"), "{stun}");
    let port: u16 = stun.rsplit(':').next().unwrap().parse().unwrap();
    assert_ne!(port, 0);
    let turn = &ice[1];
    assert_eq!(turn.urls.len(), 2);
    assert_eq!(turn.urls[0], format!("turn:127.0.0.1:{port}?transport=udp"));
    assert!(turn.urls[1].ends_with("?transport=tcp"));
    let user = turn.username.clone().unwrap();
    let pass = turn.credential.clone().unwrap();
    assert!(user.ends_with(":alice"), "{user}");

    let to: SocketAddr = ([127, 0, 0, 1], port).into();
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // STUN Binding.
    let mut req = Vec::new();
    Builder::new(&mut req, m::BINDING, Class::Request, [1; 12]).finish();
    let resp = ask(&sock, to, &req).await;
    let msg = Message::parse(&resp).unwrap();
    assert_eq!(msg.class, Class::Success);
    let mapped = msg.xor_address(msg.get(attr::XOR_MAPPED_ADDRESS).unwrap());
    assert_eq!(mapped, Some(sock.local_addr().unwrap()));

    // Allocate: 401 challenge, then success with the handed-out credentials.
    let mut req = Vec::new();
    let mut b = Builder::new(&mut req, m::ALLOCATE, Class::Request, [2; 12]);
    b.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
    b.finish();
    let resp = ask(&sock, to, &req).await;
    let msg = Message::parse(&resp).unwrap();
    assert_eq!(error_code(&msg), Some(401));
    let nonce = msg.nonce().unwrap().to_vec();
    let realm = msg.realm().unwrap().to_vec();
    let mut req = Vec::new();
    let mut b = Builder::new(&mut req, m::ALLOCATE, Class::Request, [3; 12]);
    b.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
    b.attr(attr::USERNAME, user.as_bytes());
    b.attr(attr::REALM, &realm);
    b.attr(attr::NONCE, &nonce);
    b.integrity(&long_term_key(
        &user,
        std::str::from_utf8(&realm).unwrap(),
        &pass,
    ));
    b.finish();
    let resp = ask(&sock, to, &req).await;
    let msg = Message::parse(&resp).unwrap();
    assert_eq!(error_code(&msg), None);
    let relay = msg
        .xor_address(msg.get(attr::XOR_RELAYED_ADDRESS).unwrap())
        .unwrap();
    assert_eq!(relay.ip().to_string(), "127.0.0.1");

    assert_eq!(server.metric("tandem_turn_allocations"), 1.0);
    assert_eq!(server.metric("tandem_turn_binding_requests_total"), 1.0);
}

#[tokio::test]
async fn without_turn_the_welcome_has_no_ice_servers() {
    let server = Server::start("");
    let (_c, _e, welcome) = Client::connect(&server.url(), &token("bob", room_grants()))
        .await
        .unwrap();
    assert!(welcome.ice_servers.is_empty());
}

/// Dev mode starts STUN/TURN on the server's own address, port 3478, and the welcome
/// carries working REST credentials for it; it also starts the SFU.
#[tokio::test]
async fn dev_mode_starts_turn_and_hands_out_credentials() {
    let server = Server::start("#dev");
    let (_, body) = server.http("GET", "/dev/token?identity=dev-user&room=demo", None, None);
    let token: serde_json::Value = serde_json::from_str(&body).unwrap();
    let (_c, _e, welcome) =
        tandem_client::Client::connect(&server.url(), token["token"].as_str().unwrap())
            .await
            .unwrap();
    let urls: Vec<&str> = welcome
        .ice_servers
        .iter()
        .flat_map(|s| s.urls.iter().map(String::as_str))
        .collect();
    assert!(urls.contains(&"stun:127.0.0.1:3478"), "{urls:?}");
    assert!(
        urls.iter().any(|u| u.starts_with("turn:127.0.0.1:3478")),
        "{urls:?}"
    );
    let turn = welcome
        .ice_servers
        .iter()
        .find(|s| s.username.is_some())
        .expect("TURN credentials");
    assert!(
        turn.username.as_deref().unwrap().ends_with(":dev-user"),
        "REST username is expiry:identity"
    );
    // coturn's own client gets its reflexive address from it.
    let out = std::process::Command::new("turnutils_stunclient")
        .args(["-p", "3478", "127.0.0.1"])
        .output()
        .expect("turnutils_stunclient (apt-get install coturn)");
    assert!(String::from_utf8_lossy(&out.stdout).contains("reflexive addr: 127.0.0.1"));
    // …and the SFU, so that the demo app's growing rooms move to it.
    let (status, metrics) = server.http("GET", "/metrics", None, None);
    assert_eq!(status, 200);
    assert!(
        metrics.contains("tandem_sfu_participants"),
        "dev mode runs the SFU"
    );
}
