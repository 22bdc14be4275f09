//! The SFU inside `tandem serve`, end to end: the real binary, signaling over its
//! WebSocket (`sfu_offer` / `sfu_answer` / `tracks`), media over its UDP port on
//! 127.0.0.1, with str0m peers acting like browsers (full ICE, DTLS, SRTP).

#[path = "../server/common.rs"]
mod common;
#[path = "../../../tandem-sfu/tests/peer/mod.rs"]
mod peer;

use common::{room_grants, token, Server};
use peer::Peer;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use str0m::media::MediaKind;
use tandem_client::{Client, ClientError, Event};
use tandem_protocol::ErrorCode;
use tandem_server::auth::Grants;
use tokio::sync::mpsc;

const SFU: &str = "[sfu]\nenabled = true\nudp_bind = \"127.0.0.1:0\"\nconnect_timeout_ms = 3000\n";

struct Member {
    client: Client,
    events: mpsc::Receiver<Event>,
    sid: String,
    peer: Peer,
    tracks: Vec<Value>,
    offers_answered: u32,
    closed: Option<String>,
    speakers: Vec<Value>,
}

impl Member {
    async fn join(server: &Server, identity: &str, tag: u8) -> Member {
        let (client, events) = server.client(identity).await;
        let joined = client.join("call", None).await.unwrap();
        Member {
            client,
            events,
            sid: joined.participant.sid,
            peer: Peer::new(tag),
            tracks: Vec::new(),
            offers_answered: 0,
            closed: None,
            speakers: Vec::new(),
        }
    }

    async fn publish(&mut self) {
        let sdp = self.peer.offer_publish();
        let video = self.peer.video.unwrap().to_string();
        let audio = self.peer.audio.unwrap().to_string();
        let reply = self
            .client
            .request(
                "sfu_offer",
                json!({"room": "call", "sdp": sdp, "tracks": {
                    video: {"source": "camera", "name": "cam"},
                    audio: {"source": "microphone"},
                }}),
            )
            .await
            .unwrap();
        self.peer.accept_answer(reply["sdp"].as_str().unwrap());
    }

    /// Drives the peer a little, answers server offers, records pushes.
    async fn step(&mut self, send: bool) {
        self.peer.drive(Duration::from_millis(5));
        while let Ok(event) = self.events.try_recv() {
            let Event::Push(v) = event else { continue };
            match v["type"].as_str() {
                Some("sfu_offer") => {
                    let answer = self.peer.accept_offer(v["sdp"].as_str().unwrap());
                    self.client
                        .request(
                            "sfu_answer",
                            json!({"room": "call", "sdp": answer, "revision": v["revision"]}),
                        )
                        .await
                        .unwrap();
                    self.offers_answered += 1;
                }
                Some("tracks") => self.tracks = v["tracks"].as_array().unwrap().clone(),
                Some("sfu_closed") => self.closed = v["reason"].as_str().map(String::from),
                Some("active_speakers") => {
                    self.speakers = v["speakers"].as_array().unwrap().clone()
                }
                _ => {}
            }
        }
        if send && self.peer.connected {
            self.peer.send_frames();
        }
    }
}

async fn run_until(
    members: &mut [&mut Member],
    limit: Duration,
    done: impl Fn(&[&mut Member]) -> bool,
) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        for m in members.iter_mut() {
            m.step(true).await;
        }
        if done(members) {
            return true;
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_participants_exchange_media_through_the_sfu() {
    let server = Server::start(SFU);
    let mut a = Member::join(&server, "alice", 0xA1).await;
    let mut b = Member::join(&server, "bob", 0xB2).await;
    a.publish().await;
    b.publish().await;
    a.peer.audio_level = Some(-20);
    let ok = run_until(&mut [&mut a, &mut b], Duration::from_secs(15), |m| {
        m[1].speakers.len() == 1
            && m[0].peer.got_from(MediaKind::Video, 0xB2) >= 5
            && m[0].peer.got_from(MediaKind::Audio, 0xB2) >= 5
            && m[1].peer.got_from(MediaKind::Video, 0xA1) >= 5
            && m[1].peer.got_from(MediaKind::Audio, 0xA1) >= 5
    })
    .await;
    assert!(
        ok,
        "alice got {} video / {} audio, bob got {} / {}",
        a.peer.got_from(MediaKind::Video, 0xB2),
        a.peer.got_from(MediaKind::Audio, 0xB2),
        b.peer.got_from(MediaKind::Video, 0xA1),
        b.peer.got_from(MediaKind::Audio, 0xA1)
    );
    assert!(a.offers_answered >= 1 && b.offers_answered >= 1);
    // Alice's audio level makes her the active speaker, for both.
    assert_eq!(
        b.speakers[0]["participant"],
        a.sid.as_str(),
        "{:?}",
        b.speakers
    );
    // `tracks` names the publisher by sid, with the metadata it gave.
    assert_eq!(a.tracks.len(), 2, "{:?}", a.tracks);
    assert!(a.tracks.iter().all(|t| t["participant"] == b.sid.as_str()));
    let video = a.tracks.iter().find(|t| t["kind"] == "video").unwrap();
    assert_eq!(video["source"], "camera");
    assert_eq!(video["name"], "cam");
    let mic = a.tracks.iter().find(|t| t["kind"] == "audio").unwrap();
    assert_eq!(mic["source"], "microphone");
    assert!(server.metric("tandem_sfu_media_packets_forwarded_total") >= 20.0);
    assert_eq!(server.metric("tandem_sfu_participants"), 2.0);

    // Bob's WebSocket vanishes: his media session and tracks go for Alice.
    b.client.close();
    drop(b);
    let ok = run_until(&mut [&mut a], Duration::from_secs(10), |m| {
        m[0].tracks.is_empty()
    })
    .await;
    assert!(ok, "tracks after bob vanished: {:?}", a.tracks);
    assert_eq!(server.metric("tandem_sfu_participants"), 1.0);
    assert_eq!(server.metric("tandem_sfu_tracks"), 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_the_room_removes_tracks_and_sfu_leave_ends_media_only() {
    let server = Server::start(SFU);
    let mut a = Member::join(&server, "alice", 0xA1).await;
    let mut b = Member::join(&server, "bob", 0xB2).await;
    a.publish().await;
    b.publish().await;
    let ok = run_until(&mut [&mut a, &mut b], Duration::from_secs(15), |m| {
        m[0].tracks.len() == 2 && m[1].tracks.len() == 2
    })
    .await;
    assert!(ok);
    // Alice mutes her microphone: Bob's track list says so.
    let audio_mid = a.peer.audio.unwrap().to_string();
    a.client
        .request(
            "sfu_mute",
            json!({"room": "call", "mid": audio_mid, "muted": true}),
        )
        .await
        .unwrap();
    let ok = run_until(&mut [&mut a, &mut b], Duration::from_secs(5), |m| {
        m[1].tracks
            .iter()
            .any(|t| t["kind"] == "audio" && t["muted"] == true)
    })
    .await;
    assert!(ok, "bob sees alice muted: {:?}", b.tracks);
    // Bob turns Alice's video off and on; unknown tracks are bad_request.
    let video = b.tracks.iter().find(|t| t["kind"] == "video").unwrap()["id"].clone();
    for enabled in [false, true] {
        b.client
            .request(
                "sfu_subscribe",
                json!({"room": "call", "track": video, "enabled": enabled}),
            )
            .await
            .unwrap();
    }
    let e = b
        .client
        .request(
            "sfu_subscribe",
            json!({"room": "call", "track": "TR404", "enabled": false}),
        )
        .await
        .unwrap_err();
    assert_eq!(code(e), ErrorCode::BadRequest);
    b.client.leave("call").await.unwrap();
    let ok = run_until(&mut [&mut a], Duration::from_secs(10), |m| {
        m[0].tracks.is_empty()
    })
    .await;
    assert!(ok, "tracks after bob left: {:?}", a.tracks);
    // sfu_leave ends Alice's media but keeps her in the room.
    a.client
        .request("sfu_leave", json!({"room": "call"}))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.metric("tandem_sfu_participants") != 0.0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.metric("tandem_sfu_participants"), 0.0);
    let (status, body) = server.api("GET", "/api/v1/rooms/call/participants", None);
    assert_eq!(status, 200, "{body}");
    assert!(body.to_string().contains("alice"), "{body}");
}

fn code(e: ClientError) -> ErrorCode {
    e.code()
        .unwrap_or_else(|| panic!("not a server error: {e:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_typed_errors() {
    let server = Server::start(SFU);
    let (c, _events) = server.client("carol").await;
    let mut peer = Peer::new(1);
    let sdp = peer.offer_publish();
    // Not joined.
    let e = c
        .request("sfu_offer", json!({"room": "call", "sdp": sdp}))
        .await
        .unwrap_err();
    assert_eq!(code(e), ErrorCode::NotJoined);
    c.join("call", None).await.unwrap();
    // Garbage SDP.
    let e = c
        .request("sfu_offer", json!({"room": "call", "sdp": "v=0\r\nhello"}))
        .await
        .unwrap_err();
    assert_eq!(code(e), ErrorCode::BadRequest);
    // Missing sdp field.
    let e = c
        .request("sfu_offer", json!({"room": "call"}))
        .await
        .unwrap_err();
    assert_eq!(code(e), ErrorCode::BadRequest);
    // No usable codec.
    let unusable: String = sdp
        .lines()
        .map(|l| match l.strip_prefix("a=rtpmap:") {
            Some(rest) => format!(
                "a=rtpmap:{} X-NOPE/90000\r\n",
                rest.split(' ').next().unwrap()
            ),
            None => format!("{l}\r\n"),
        })
        .collect();
    let e = c
        .request("sfu_offer", json!({"room": "call", "sdp": unusable}))
        .await
        .unwrap_err();
    assert_eq!(code(e), ErrorCode::MediaUnsupported);
    // An answer with no offer outstanding.
    let e = c
        .request(
            "sfu_answer",
            json!({"room": "call", "sdp": sdp, "revision": 1}),
        )
        .await
        .unwrap_err();
    assert_eq!(code(e), ErrorCode::BadRequest);
    // The connection still works: a good offer gets an answer.
    let reply = c
        .request("sfu_offer", json!({"room": "call", "sdp": sdp}))
        .await
        .unwrap();
    assert!(reply["sdp"].as_str().unwrap().contains("a=ice-lite"));
    peer.accept_answer(reply["sdp"].as_str().unwrap());

    // A token without the publish grant cannot send media.
    let grants = Grants {
        publish: false,
        ..room_grants()
    };
    let (viewer, _ev, _) = Client::connect(&server.url(), &token("viewer", grants))
        .await
        .unwrap();
    viewer.join("call", None).await.unwrap();
    let mut p2 = Peer::new(2);
    let e = viewer
        .request(
            "sfu_offer",
            json!({"room": "call", "sdp": p2.offer_publish()}),
        )
        .await
        .unwrap_err();
    assert_eq!(code(e), ErrorCode::Forbidden);
    let mut p3 = Peer::new(3);
    viewer
        .request(
            "sfu_offer",
            json!({"room": "call", "sdp": p3.offer_receive_only()}),
        )
        .await
        .expect("receiving only is allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_whose_ice_never_completes_is_dropped_and_told() {
    let server = Server::start(SFU);
    let mut a = Member::join(&server, "alice", 0xA1).await;
    a.publish().await;
    // Drive nothing: alice's ICE never starts.
    let deadline = Instant::now() + Duration::from_secs(8);
    while a.closed.is_none() && Instant::now() < deadline {
        if let Ok(Some(Event::Push(v))) =
            tokio::time::timeout(Duration::from_millis(100), a.events.recv()).await
        {
            if v["type"] == "sfu_closed" {
                a.closed = v["reason"].as_str().map(String::from);
            }
        }
    }
    assert_eq!(a.closed.as_deref(), Some("connect_timeout"));
    assert_eq!(server.metric("tandem_sfu_connect_timeouts_total"), 1.0);
    assert_eq!(server.metric("tandem_sfu_participants"), 0.0);
}

#[tokio::test]
async fn sfu_disabled_is_unavailable() {
    let server = Server::start("");
    let (c, _events) = server.client("dave").await;
    c.join("call", None).await.unwrap();
    let e = c
        .request("sfu_offer", json!({"room": "call", "sdp": "v=0"}))
        .await
        .unwrap_err();
    assert_eq!(code(e), ErrorCode::Unavailable);
}

/// The next `media_mode` push's mode, skipping other events.
async fn next_mode(events: &mut mpsc::Receiver<Event>) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Some(Event::Push(v))) if v["type"] == "media_mode" => {
                assert_eq!(v["room"], "call");
                return v["mode"].as_str().unwrap().to_string();
            }
            Ok(Some(_)) => continue,
            other => panic!("no media_mode push: {other:?}"),
        }
    }
}

/// No `media_mode` push arrives within a short while.
async fn no_mode(events: &mut mpsc::Receiver<Event>) {
    let deadline = Instant::now() + Duration::from_millis(300);
    while let Ok(Some(event)) = tokio::time::timeout(
        deadline.saturating_duration_since(Instant::now()),
        events.recv(),
    )
    .await
    {
        if let Event::Push(v) = &event {
            assert_ne!(v["type"], "media_mode", "unexpected {v}");
        }
    }
}

#[tokio::test]
async fn auto_policy_moves_a_growing_room_to_the_sfu_and_back_with_hysteresis() {
    let server = Server::start(&format!(
        "{SFU}auto_sfu_above = 2\nauto_mesh_at_or_below = 1\n"
    ));
    let (c1, mut e1) = server.client("one").await;
    c1.join("call", None).await.unwrap();
    assert_eq!(
        next_mode(&mut e1).await,
        "mesh",
        "the joiner is told the mode"
    );
    let (c2, mut e2) = server.client("two").await;
    c2.join("call", None).await.unwrap();
    assert_eq!(next_mode(&mut e2).await, "mesh");
    no_mode(&mut e1).await;
    // The policy counts publishers: viewers (no publish grant) do not move the room.
    let grants = Grants {
        publish: false,
        ..room_grants()
    };
    let mut viewers = Vec::new();
    for name in ["viewer1", "viewer2"] {
        let (v, mut ev, _) = Client::connect(&server.url(), &token(name, grants.clone()))
            .await
            .unwrap();
        v.join("call", None).await.unwrap();
        assert_eq!(next_mode(&mut ev).await, "mesh");
        viewers.push((v, ev));
    }
    no_mode(&mut e1).await;
    // A third publisher is past the threshold: everyone moves to the SFU.
    let (c3, mut e3) = server.client("three").await;
    c3.join("call", None).await.unwrap();
    for e in [&mut e1, &mut e2, &mut e3] {
        assert_eq!(next_mode(e).await, "sfu");
    }
    for (_, ev) in &mut viewers {
        assert_eq!(next_mode(ev).await, "sfu", "viewers are told too");
    }
    // Back to two: still the SFU (hysteresis).
    c3.leave("call").await.unwrap();
    no_mode(&mut e1).await;
    // Down to one publisher (the viewers stay): back to mesh; a disconnect counts
    // like a leave.
    c2.close();
    assert_eq!(next_mode(&mut e1).await, "mesh");
    assert_eq!(next_mode(&mut viewers[1].1).await, "mesh");
}

#[tokio::test]
async fn fixed_sfu_policy_and_no_pushes_without_the_sfu() {
    let server = Server::start(&format!("{SFU}policy = \"sfu\"\n"));
    let (c, mut e) = server.client("one").await;
    c.join("call", None).await.unwrap();
    assert_eq!(next_mode(&mut e).await, "sfu");

    let plain = Server::start("");
    let (c, mut e) = plain.client("one").await;
    c.join("call", None).await.unwrap();
    no_mode(&mut e).await;
}
