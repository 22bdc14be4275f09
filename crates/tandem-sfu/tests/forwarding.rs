//! The SFU through real UDP sockets on 127.0.0.1, driven through its `Sfu` handle:
//! str0m peers acting like browsers (full ICE, DTLS, SRTP) publish synthetic Opus
//! and VP8 and must receive each other's frames; participants that leave or never
//! connect have their tracks removed for the others.

mod peer;

use peer::Peer;
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::media::MediaKind;
use tandem_sfu::{Sfu, SfuConfig, SfuError, Signal, Sink, TrackMeta};

fn config() -> SfuConfig {
    SfuConfig {
        enabled: true,
        udp_bind: "127.0.0.1:0".parse().unwrap(),
        connect_timeout_ms: 2000,
        ..SfuConfig::default()
    }
}

fn sink() -> (Sink, mpsc::Receiver<Signal>) {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    (
        Arc::new(move |s| {
            let _ = tx.lock().unwrap().send(s);
        }),
        rx,
    )
}

struct Member {
    sid: &'static str,
    peer: Peer,
    signals: mpsc::Receiver<Signal>,
    tracks: Vec<tandem_sfu::TrackView>,
    closed: Option<&'static str>,
    speakers: Vec<(String, i8)>,
    speaker_pushes: usize,
    /// `Signal::Layers` pushes: (mid, active rids).
    layers: Vec<(String, Vec<String>)>,
}

impl Member {
    async fn join(sfu: &Sfu, sid: &'static str, tag: u8, publish: bool) -> Member {
        Self::join_with(sfu, sid, Peer::new(tag), publish).await
    }

    async fn join_with(sfu: &Sfu, sid: &'static str, mut peer: Peer, publish: bool) -> Member {
        let offer = if publish {
            peer.offer_publish()
        } else {
            peer.offer_receive_only()
        };
        Self::join_offered(sfu, sid, peer, offer).await
    }

    /// Joins with an offer `peer` already made.
    async fn join_offered(sfu: &Sfu, sid: &'static str, mut peer: Peer, offer: String) -> Member {
        let mut meta = HashMap::new();
        if let Some(v) = peer.video {
            meta.insert(
                v.to_string(),
                TrackMeta {
                    source: Some("camera".into()),
                    name: Some(format!("{sid} cam")),
                },
            );
        }
        let (sink, signals) = sink();
        let answer = sfu.offer("room", sid, offer, meta, sink).await.unwrap();
        peer.accept_answer(&answer);
        Member {
            sid,
            peer,
            signals,
            tracks: Vec::new(),
            closed: None,
            speakers: Vec::new(),
            speaker_pushes: 0,
            layers: Vec::new(),
        }
    }

    /// Drives the peer a little and answers server offers.
    async fn step(&mut self, sfu: &Sfu, send: bool) {
        self.peer.drive(Duration::from_millis(5));
        while let Ok(signal) = self.signals.try_recv() {
            match signal {
                Signal::Offer { revision, sdp, .. } => {
                    let answer = self.peer.accept_offer(&sdp);
                    sfu.answer("room", self.sid, revision, answer)
                        .await
                        .unwrap();
                }
                Signal::Tracks { tracks, .. } => self.tracks = tracks,
                Signal::Closed { reason, .. } => self.closed = Some(reason),
                Signal::ActiveSpeakers { speakers, .. } => {
                    self.speakers = speakers;
                    self.speaker_pushes += 1;
                }
                Signal::Layers { mid, active, .. } => self.layers.push((mid, active)),
            }
        }
        if send && self.peer.connected {
            if self.peer.simulcast.is_empty() {
                self.peer.send_frames();
            } else {
                self.peer.send_simulcast_frames();
            }
        }
    }
}

async fn run_until(
    sfu: &Sfu,
    members: &mut [&mut Member],
    limit: Duration,
    send: bool,
    done: impl Fn(&[&mut Member]) -> bool,
) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        for m in members.iter_mut() {
            m.step(sfu, send).await;
        }
        if done(members) {
            return true;
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_receive_each_others_audio_and_video() {
    let sfu = Sfu::start(config()).await.unwrap();
    let mut a = Member::join(&sfu, "CA", 0xA1, true).await;
    let mut b = Member::join(&sfu, "CB", 0xB2, true).await;
    let ok = run_until(
        &sfu,
        &mut [&mut a, &mut b],
        Duration::from_secs(10),
        true,
        |m| {
            m[0].peer.got_from(MediaKind::Video, 0xB2) >= 5
                && m[0].peer.got_from(MediaKind::Audio, 0xB2) >= 5
                && m[1].peer.got_from(MediaKind::Video, 0xA1) >= 5
                && m[1].peer.got_from(MediaKind::Audio, 0xA1) >= 5
        },
    )
    .await;
    assert!(
        ok,
        "a got video {} audio {}, b got video {} audio {}; connected {} {}",
        a.peer.got_from(MediaKind::Video, 0xB2),
        a.peer.got_from(MediaKind::Audio, 0xB2),
        b.peer.got_from(MediaKind::Video, 0xA1),
        b.peer.got_from(MediaKind::Audio, 0xA1),
        a.peer.connected,
        b.peer.connected,
    );
    // Nobody receives its own media back.
    assert_eq!(a.peer.got_from(MediaKind::Video, 0xA1), 0);
    assert_eq!(b.peer.got_from(MediaKind::Audio, 0xB2), 0);
    // The tracks push maps the mids to the publisher, with its metadata.
    assert_eq!(a.tracks.len(), 2, "{:?}", a.tracks);
    assert!(a.tracks.iter().all(|t| t.participant == "CB"));
    let video = a.tracks.iter().find(|t| t.kind == "video").unwrap();
    assert_eq!(video.source.as_deref(), Some("camera"));
    assert_eq!(video.name.as_deref(), Some("CB cam"));
    let video_mid = video.mid.clone();
    let forwarded_to_a = a
        .peer
        .received
        .iter()
        .find(|(mid, _)| mid.to_string() == video_mid)
        .map_or(0, |(_, f)| f.len());
    assert!(forwarded_to_a >= 5, "video arrives on the advertised mid");
    let m = sfu.metrics();
    assert!(m.media_packets_forwarded.load(Relaxed) >= 20);
    assert_eq!(m.participants.load(Relaxed), 2);
    assert_eq!(m.tracks.load(Relaxed), 4);

    // Garbage on the SFU's port from an unknown address (STUN-, DTLS- and RTP-looking
    // datagrams, random bytes, an empty one) is counted and ignored; media goes on.
    let junk = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut stun = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    stun.extend([7u8; 12]);
    let datagrams: Vec<Vec<u8>> = vec![
        stun,
        vec![22, 254, 253, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        vec![0x80, 96, 0, 1, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3],
        (0..200u32).map(|i| (i * 37 % 251) as u8).collect(),
        vec![],
    ];
    let unmatched_before = m.unmatched_datagrams.load(Relaxed);
    for d in &datagrams {
        junk.send_to(d, sfu.local_addr()).unwrap();
    }
    let before = b.peer.got_from(MediaKind::Video, 0xA1);
    let ok = run_until(
        &sfu,
        &mut [&mut a, &mut b],
        Duration::from_secs(5),
        true,
        |m| m[1].peer.got_from(MediaKind::Video, 0xA1) >= before + 5,
    )
    .await;
    assert!(ok, "media keeps flowing after garbage datagrams");
    assert!(
        m.unmatched_datagrams.load(Relaxed) >= unmatched_before + 4,
        "garbage is counted as unmatched"
    );
    assert_eq!(m.participants.load(Relaxed), 2);
    assert_eq!(m.panics.load(Relaxed), 0);

    // B leaves: A is offered a renegotiation that removes B's tracks.
    sfu.leave("room", "CB");
    let ok = run_until(&sfu, &mut [&mut a], Duration::from_secs(5), true, |m| {
        m[0].tracks.is_empty()
    })
    .await;
    assert!(ok, "tracks after leave: {:?}", a.tracks);
    assert_eq!(m.tracks.load(Relaxed), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_receive_only_joiner_gets_existing_tracks() {
    let sfu = Sfu::start(config()).await.unwrap();
    let mut a = Member::join(&sfu, "CA", 0xA1, true).await;
    run_until(&sfu, &mut [&mut a], Duration::from_secs(5), true, |m| {
        m[0].peer.connected
    })
    .await;
    let mut c = Member::join(&sfu, "CC", 0xC3, false).await;
    let ok = run_until(
        &sfu,
        &mut [&mut a, &mut c],
        Duration::from_secs(10),
        true,
        |m| {
            m[1].peer.got_from(MediaKind::Video, 0xA1) >= 3
                && m[1].peer.got_from(MediaKind::Audio, 0xA1) >= 3
        },
    )
    .await;
    assert!(ok, "c received {:?}", c.tracks);
}

/// Bytes that look like each protocol multiplexed on the port (RFC 7983: STUN,
/// DTLS, RTP/RTCP) but are malformed, truncated, unauthenticated or oversized.
fn hostile_datagrams() -> Vec<Vec<u8>> {
    let noise = |n: usize, seed: u32| -> Vec<u8> {
        (0..n as u32)
            .map(|i| (i.wrapping_mul(2654435761).wrapping_add(seed) >> 13) as u8)
            .collect()
    };
    let rtp = |extra: &[u8]| {
        let mut p = vec![0x80, 96, 0x12, 0x34, 0, 0, 0x10, 0, 0xca, 0xfe, 0xba, 0xbe];
        p.extend_from_slice(extra);
        p
    };
    let mut stun_bad_integrity = vec![0x00, 0x01, 0x00, 0x18, 0x21, 0x12, 0xa4, 0x42];
    stun_bad_integrity.extend([9u8; 12]);
    stun_bad_integrity.extend([0x00, 0x08, 0x00, 0x14]); // MESSAGE-INTEGRITY
    stun_bad_integrity.extend([0u8; 20]);
    let mut stun_lying_length = vec![0x00, 0x01, 0x7f, 0xfc, 0x21, 0x12, 0xa4, 0x42];
    stun_lying_length.extend([3u8; 12]);
    let dtls = |content_type: u8, epoch: u8, body: Vec<u8>| {
        let mut r = vec![content_type, 0xfe, 0xfd, 0, epoch, 0, 0, 0, 0, 0, 9];
        r.extend((body.len() as u16).to_be_bytes());
        r.extend(body);
        r
    };
    let mut client_hello = vec![1, 0, 0, 40, 0, 0, 0, 0, 0, 0, 0, 40, 0xfe, 0xfd];
    client_hello.extend(noise(38, 5));
    vec![
        vec![],
        vec![0x80],
        rtp(&[]),            // header only
        rtp(&noise(300, 1)), // unknown SSRC, no valid SRTP tag
        {
            let mut p = rtp(&noise(40, 2));
            p[0] = 0x8f; // claims 15 CSRCs
            p
        },
        {
            let mut p = rtp(&[0xbe, 0xde, 0xff, 0xff]); // extension longer than the packet
            p[0] = 0x90;
            p
        },
        {
            let mut p = rtp(&noise(20, 3));
            p[0] = 0xa0; // padding bit, bogus padding length in the last byte
            p
        },
        vec![0x80, 200, 0xff, 0xff, 1, 2, 3, 4], // RTCP SR with a huge length
        vec![0x81, 205, 0, 2, 1, 2, 3, 4, 5, 6, 7, 8], // RTCP feedback, no SRTCP tag
        stun_bad_integrity,
        stun_lying_length,
        dtls(22, 0, client_hello), // a fresh ClientHello mid-session
        dtls(23, 1, noise(64, 4)), // application data that fails to decrypt
        dtls(21, 1, vec![2, 40]),  // an unauthenticated fatal alert
        dtls(20, 0, vec![1]),      // ChangeCipherSpec out of order
        dtls(22, 0, vec![]),       // empty handshake record
        noise(1400, 6),
        noise(9000, 7), // larger than any MTU
    ]
}

/// Hostile bytes from a connected participant's own address (the port is reachable
/// by anyone, and UDP sources can be spoofed) must not end that participant's
/// session, disturb the others, or panic: media keeps flowing both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_datagrams_from_a_participant_address_are_survived() {
    let sfu = Sfu::start(config()).await.unwrap();
    let mut a = Member::join(&sfu, "CA", 0xA1, true).await;
    let mut b = Member::join(&sfu, "CB", 0xB2, true).await;
    let flowing = |m: &[&mut Member], a_min: usize, b_min: usize| {
        m[0].peer.got_from(MediaKind::Video, 0xB2) >= a_min
            && m[1].peer.got_from(MediaKind::Video, 0xA1) >= b_min
    };
    let ok = run_until(
        &sfu,
        &mut [&mut a, &mut b],
        Duration::from_secs(10),
        true,
        |m| flowing(m, 5, 5),
    )
    .await;
    assert!(ok, "media before the attack");
    let m = sfu.metrics();
    for round in 0..3 {
        for d in hostile_datagrams() {
            a.peer.send_raw(sfu.local_addr(), &d);
        }
        let (a_seen, b_seen) = (
            a.peer.got_from(MediaKind::Video, 0xB2),
            b.peer.got_from(MediaKind::Video, 0xA1),
        );
        let ok = run_until(
            &sfu,
            &mut [&mut a, &mut b],
            Duration::from_secs(5),
            true,
            |m| flowing(m, a_seen + 5, b_seen + 5),
        )
        .await;
        assert!(
            ok,
            "round {round}: media stopped (a got {} of B's frames, b got {} of A's); closed: {:?} {:?}",
            a.peer.got_from(MediaKind::Video, 0xB2),
            b.peer.got_from(MediaKind::Video, 0xA1),
            a.closed,
            b.closed
        );
    }
    assert_eq!(a.closed, None);
    assert_eq!(b.closed, None);
    assert_eq!(m.participants.load(Relaxed), 2);
    assert_eq!(m.panics.load(Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participant_that_never_connects_is_dropped() {
    let sfu = Sfu::start(config()).await.unwrap();
    let mut a = Member::join(&sfu, "CA", 0xA1, true).await;
    // Z offers tracks but never runs ICE (its peer is never driven).
    let z = Member::join(&sfu, "CZ", 0x21, true).await;
    let m = sfu.metrics();
    let ok = run_until(&sfu, &mut [&mut a], Duration::from_secs(6), false, |_| {
        m.connect_timeouts.load(Relaxed) == 1
    })
    .await;
    assert!(ok, "Z is dropped after the connect timeout");
    assert!(a.closed.is_none(), "A connected in time");
    let last = z.signals.try_iter().last();
    assert!(
        matches!(
            last,
            Some(Signal::Closed {
                reason: "connect_timeout",
                ..
            })
        ),
        "{last:?}"
    );
    assert_eq!(m.participants.load(Relaxed), 1);
    assert!(a.tracks.is_empty(), "Z never published: {:?}", a.tracks);
}

/// An SFU with `ice_disconnect_grace_ms = grace_ms`, and two members: A (publishing
/// when `a_publishes`) already receiving Y's video.
async fn a_receiving_y(grace_ms: u64, a_publishes: bool) -> (Sfu, Member, Member) {
    let sfu = Sfu::start(SfuConfig {
        ice_disconnect_grace_ms: grace_ms,
        ..config()
    })
    .await
    .unwrap();
    let mut a = Member::join(&sfu, "CA", 0xA1, a_publishes).await;
    let mut y = Member::join(&sfu, "CY", 0x22, true).await;
    let ok = run_until(
        &sfu,
        &mut [&mut a, &mut y],
        Duration::from_secs(10),
        true,
        |m| m[0].peer.got_from(MediaKind::Video, 0x22) >= 3,
    )
    .await;
    assert!(ok, "a receives y first");
    (sfu, a, y)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanished_peer_is_dropped_with_its_tracks() {
    let (sfu, mut a, y) = a_receiving_y(1000, true).await;
    // Y vanishes without a word: its peer is no longer driven.
    let t0 = Instant::now();
    let ok = run_until(&sfu, &mut [&mut a], Duration::from_secs(60), true, |m| {
        m[0].tracks.is_empty()
    })
    .await;
    assert!(ok, "Y's tracks are removed once ICE gives up on it");
    eprintln!("vanished peer dropped after {:?}", t0.elapsed());
    let last = y.signals.try_iter().last();
    assert!(
        matches!(
            last,
            Some(Signal::Closed {
                reason: "disconnected",
                ..
            })
        ),
        "{last:?}"
    );
    assert_eq!(sfu.metrics().participants.load(Relaxed), 1);
    assert_eq!(sfu.metrics().ice_disconnects.load(Relaxed), 1);
    assert_eq!(sfu.metrics().ice_reconnects.load(Relaxed), 0);
}

/// Drives A and Y again after one of them went silent: A must receive Y's video
/// again, with the one ICE disconnect counted as a reconnect.
async fn both_back(sfu: &Sfu, a: &mut Member, y: &mut Member) {
    let before = a.peer.got_from(MediaKind::Video, 0x22);
    let ok = run_until(sfu, &mut [a, y], Duration::from_secs(20), true, |m| {
        m[0].peer.got_from(MediaKind::Video, 0x22) >= before + 3
    })
    .await;
    assert!(ok, "a receives y's video again");
    assert_eq!(sfu.metrics().ice_reconnects.load(Relaxed), 1);
}

/// A publisher whose connectivity checks stop for a while (a network drop, or an
/// overloaded SFU whose kernel dropped them) is kept through the grace period, and
/// its media reaches the subscriber again once its checks come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_whose_ice_comes_back_within_the_grace_period_keeps_its_session() {
    let (sfu, mut a, mut y) = a_receiving_y(60_000, false).await;
    // Y goes silent (not driven) until the SFU notices its ICE is gone.
    let m = sfu.metrics();
    let t0 = Instant::now();
    let ok = run_until(&sfu, &mut [&mut a], Duration::from_secs(60), false, |_| {
        m.ice_disconnects.load(Relaxed) == 1
    })
    .await;
    assert!(ok, "the SFU sees Y's ICE disconnect");
    eprintln!("ICE disconnect noticed after {:?}", t0.elapsed());
    assert_eq!(m.participants.load(Relaxed), 2, "Y is kept");
    assert!(
        !a.tracks.is_empty(),
        "Y's tracks stay while it may come back"
    );
    // Y is back: its checks and media resume, and so does forwarding.
    both_back(&sfu, &mut a, &mut y).await;
    assert_eq!(m.participants.load(Relaxed), 2);
    assert_eq!(y.closed, None);
    assert_eq!(a.closed, None);
}

/// A subscriber whose ICE is lost is forwarded nothing during the grace period, and
/// gets video again (from a requested keyframe) once its checks come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_forwarded_to_a_subscriber_in_its_grace_period() {
    let (sfu, mut a, mut y) = a_receiving_y(60_000, false).await;
    let m = sfu.metrics();
    // A goes silent while Y keeps publishing.
    let ok = run_until(&sfu, &mut [&mut y], Duration::from_secs(60), true, |_| {
        m.ice_disconnects.load(Relaxed) == 1
    })
    .await;
    assert!(ok, "the SFU sees A's ICE disconnect");
    let forwarded = m.media_packets_forwarded.load(Relaxed);
    let keyframes = m.keyframe_requests.load(Relaxed);
    run_for(&sfu, &mut [&mut y], Duration::from_secs(2)).await;
    assert_eq!(
        m.media_packets_forwarded.load(Relaxed),
        forwarded,
        "nothing goes to A while its ICE is lost"
    );
    // A is back: forwarding resumes from a keyframe the SFU asks Y for.
    both_back(&sfu, &mut a, &mut y).await;
    assert!(m.keyframe_requests.load(Relaxed) > keyframes);
    assert_eq!(a.closed, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_levels_make_active_speaker_pushes() {
    let sfu = Sfu::start(config()).await.unwrap();
    let mut a = Member::join(&sfu, "CA", 0xA1, true).await;
    let mut b = Member::join(&sfu, "CB", 0xB2, true).await;
    a.peer.audio_level = Some(-20);
    b.peer.audio_level = Some(-127);
    let ok = run_until(
        &sfu,
        &mut [&mut a, &mut b],
        Duration::from_secs(10),
        true,
        |m| {
            m.iter()
                .all(|m| m.speakers.len() == 1 && m.speakers[0].0 == "CA")
        },
    )
    .await;
    assert!(ok, "speakers: a {:?}, b {:?}", a.speakers, b.speakers);
    // The level is the smoothed one when the list changed: past the threshold,
    // not above what A sends.
    let level = a.speakers[0].1;
    assert!((-50..=-20).contains(&level), "smoothed level {level}");
    // A late joiner is told who speaks when it connects, though the list stays the same.
    let mut c = Member::join(&sfu, "CC", 0xC3, false).await;
    let ok = run_until(
        &sfu,
        &mut [&mut a, &mut b, &mut c],
        Duration::from_secs(10),
        true,
        |m| m[2].speakers.len() == 1 && m[2].speakers[0].0 == "CA",
    )
    .await;
    assert!(ok, "late joiner's speakers: {:?}", c.speakers);
    sfu.leave("room", "CC");
    // A falls silent, B speaks: the list follows.
    a.peer.audio_level = Some(-127);
    b.peer.audio_level = Some(-10);
    let ok = run_until(
        &sfu,
        &mut [&mut a, &mut b],
        Duration::from_secs(10),
        true,
        |m| {
            m.iter()
                .all(|m| m.speakers.len() == 1 && m.speakers[0].0 == "CB")
        },
    )
    .await;
    assert!(ok, "speakers: a {:?}, b {:?}", a.speakers, b.speakers);
    // Pushed on change only, not on every evaluation.
    assert!(a.speaker_pushes <= 4, "{} pushes", a.speaker_pushes);
    b.peer.audio_level = Some(-127);
    let ok = run_until(
        &sfu,
        &mut [&mut a, &mut b],
        Duration::from_secs(10),
        true,
        |m| m.iter().all(|m| m.speakers.is_empty()),
    )
    .await;
    assert!(ok, "nobody speaks: a {:?}", a.speakers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_channel_messages_reach_the_rest_of_the_room() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
    let sfu = Sfu::start(config()).await.unwrap();
    let mut a = Member::join(&sfu, "CA", 0xA1, true).await;
    let mut b = Member::join(&sfu, "CB", 0xB2, true).await;
    let mut c = Member::join(&sfu, "CC", 0xC3, false).await;
    let ok = run_until(
        &sfu,
        &mut [&mut a, &mut b, &mut c],
        Duration::from_secs(10),
        false,
        |m| m.iter().all(|m| m.peer.channels.contains_key("chat")),
    )
    .await;
    assert!(
        ok,
        "chat channels open: {:?} {:?} {:?} connected {} {} {}",
        a.peer.channels,
        b.peer.channels,
        c.peer.channels,
        a.peer.connected,
        b.peer.connected,
        c.peer.connected
    );
    // Give the server a moment to see the channels open on its side too.
    run_until(
        &sfu,
        &mut [&mut a, &mut b, &mut c],
        Duration::from_millis(300),
        false,
        |_| false,
    )
    .await;
    assert!(a.peer.send_text("chat", "hello from a"));
    assert!(c.peer.send_text("chat", "hello from c"));
    let ok = run_until(
        &sfu,
        &mut [&mut a, &mut b, &mut c],
        Duration::from_secs(5),
        false,
        |m| {
            m[1].peer.messages.len() == 2
                && m[0].peer.messages.len() == 1
                && m[2].peer.messages.len() == 1
        },
    )
    .await;
    // Every relayed message names its sender (the server writes the sid, see
    // tandem_sfu::envelope), so receivers know who sent it.
    let texts =
        |m: &Member| -> Vec<String> { m.peer.messages.iter().map(|(_, t)| t.clone()).collect() };
    assert!(ok, "a {:?} b {:?} c {:?}", texts(&a), texts(&b), texts(&c));
    let mut got_b = texts(&b);
    got_b.sort();
    assert_eq!(got_b, vec!["CA\nhello from a", "CC\nhello from c"]);
    assert_eq!(
        texts(&a),
        vec!["CC\nhello from c"],
        "never echoed to the sender"
    );
    assert_eq!(texts(&c), vec!["CA\nhello from a"]);
    let relayed = c.peer.messages[0].1.as_bytes();
    assert_eq!(
        tandem_sfu::envelope::unwrap(relayed),
        Some(("CA", &b"hello from a"[..]))
    );
    assert!(b.peer.messages.iter().all(|(l, _)| l == "chat"));
    assert_eq!(sfu.metrics().data_messages_forwarded.load(Relaxed), 4);
}

/// Runs the members for `d`, sending media.
async fn run_for(sfu: &Sfu, members: &mut [&mut Member], d: Duration) {
    run_until(sfu, members, d, true, |_| false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selective_subscription_and_mute() {
    let sfu = Sfu::start(config()).await.unwrap();
    let mut a = Member::join(&sfu, "CA", 0xA1, true).await;
    let mut b = Member::join(&sfu, "CB", 0xB2, false).await;
    let ok = run_until(
        &sfu,
        &mut [&mut a, &mut b],
        Duration::from_secs(10),
        true,
        |m| m[1].peer.got_from(MediaKind::Video, 0xA1) >= 3,
    )
    .await;
    assert!(ok, "b receives a");
    let video = b
        .tracks
        .iter()
        .find(|t| t.kind == "video")
        .unwrap()
        .id
        .clone();

    // B turns A's video off: audio goes on, video stops.
    sfu.set_subscribed("room", "CB", &video, false)
        .await
        .unwrap();
    run_for(&sfu, &mut [&mut a, &mut b], Duration::from_millis(200)).await;
    let (v0, a0) = (
        b.peer.got_from(MediaKind::Video, 0xA1),
        b.peer.got_from(MediaKind::Audio, 0xA1),
    );
    run_for(&sfu, &mut [&mut a, &mut b], Duration::from_millis(500)).await;
    assert_eq!(b.peer.got_from(MediaKind::Video, 0xA1), v0, "video paused");
    assert!(
        b.peer.got_from(MediaKind::Audio, 0xA1) > a0 + 3,
        "audio flows"
    );
    // And back on.
    sfu.set_subscribed("room", "CB", &video, true)
        .await
        .unwrap();
    let ok = run_until(
        &sfu,
        &mut [&mut a, &mut b],
        Duration::from_secs(5),
        true,
        |m| m[1].peer.got_from(MediaKind::Video, 0xA1) >= v0 + 3,
    )
    .await;
    assert!(ok, "video resumes");

    // A mutes its audio: B is told, and no audio is forwarded.
    let audio_mid = a.peer.audio.unwrap().to_string();
    sfu.set_muted("room", "CA", &audio_mid, true).await.unwrap();
    let ok = run_until(
        &sfu,
        &mut [&mut a, &mut b],
        Duration::from_secs(5),
        true,
        |m| m[1].tracks.iter().any(|t| t.kind == "audio" && t.muted),
    )
    .await;
    assert!(ok, "muted shown: {:?}", b.tracks);
    run_for(&sfu, &mut [&mut a, &mut b], Duration::from_millis(200)).await;
    let a1 = b.peer.got_from(MediaKind::Audio, 0xA1);
    run_for(&sfu, &mut [&mut a, &mut b], Duration::from_millis(500)).await;
    assert_eq!(
        b.peer.got_from(MediaKind::Audio, 0xA1),
        a1,
        "muted audio is not forwarded"
    );
    sfu.set_muted("room", "CA", &audio_mid, false)
        .await
        .unwrap();
    let ok = run_until(
        &sfu,
        &mut [&mut a, &mut b],
        Duration::from_secs(5),
        true,
        |m| {
            m[1].peer.got_from(MediaKind::Audio, 0xA1) >= a1 + 3
                && m[1].tracks.iter().all(|t| !t.muted)
        },
    )
    .await;
    assert!(ok, "unmuted");

    // Bad input.
    let e = sfu
        .set_subscribed("room", "CB", "TR999", false)
        .await
        .unwrap_err();
    assert!(matches!(e, SfuError::UnknownTrack(_)), "{e:?}");
    let e = sfu
        .set_subscribed("room", "CB", "nonsense", false)
        .await
        .unwrap_err();
    assert!(matches!(e, SfuError::UnknownTrack(_)), "{e:?}");
    let e = sfu.set_muted("room", "CB", "0", true).await.unwrap_err();
    assert!(
        matches!(e, SfuError::UnknownTrack(_)),
        "b publishes nothing: {e:?}"
    );
    let e = sfu.set_muted("room", "CX", "0", true).await.unwrap_err();
    assert!(matches!(e, SfuError::UnknownTrack(_)), "no session: {e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_without_udp_connects_over_ice_tcp() {
    let sfu = Sfu::start(config()).await.unwrap();
    assert_eq!(sfu.tcp_candidates().len(), 1);
    let mut a = Member::join(&sfu, "CA", 0xA1, true).await;
    let mut t = Member::join_with(&sfu, "CT", Peer::new_tcp_only(0x7C), true).await;
    let ok = run_until(
        &sfu,
        &mut [&mut a, &mut t],
        Duration::from_secs(15),
        true,
        |m| {
            m[1].peer.got_from(MediaKind::Video, 0xA1) >= 5
                && m[0].peer.got_from(MediaKind::Video, 0x7C) >= 5
                && m[0].peer.got_from(MediaKind::Audio, 0x7C) >= 5
        },
    )
    .await;
    assert!(
        ok,
        "tcp peer got {} video from a; a got {} video / {} audio from it; connected {}",
        t.peer.got_from(MediaKind::Video, 0xA1),
        a.peer.got_from(MediaKind::Video, 0x7C),
        a.peer.got_from(MediaKind::Audio, 0x7C),
        t.peer.connected
    );
    assert!(t.peer.uses_tcp(), "the media went over TCP");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishers_are_told_the_video_bitrate_cap() {
    let sfu = Sfu::start(SfuConfig {
        max_video_bitrate_kbps: 300,
        ..config()
    })
    .await
    .unwrap();
    let mut a = Member::join(&sfu, "CA", 0xA1, true).await;
    let ok = run_until(&sfu, &mut [&mut a], Duration::from_secs(5), true, |m| {
        m[0].peer.remb.is_some()
    })
    .await;
    assert!(ok, "a REMB arrives");
    let remb = a.peer.remb.unwrap();
    assert!((250_000..=300_000).contains(&remb), "cap {remb}");
}

/// Frames that reach the SFU faster than its I/O loop turns (a clump of packets, or
/// several publishers on a busy machine) are all forwarded at once: every timeout the
/// subscriber's pacer asks for when it has more to send is fed, not one per turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_frames_reaches_the_subscriber_without_delay() {
    let sfu = Sfu::start(config()).await.unwrap();
    let mut a = Member::join(&sfu, "CA", 0xA1, true).await;
    let mut b = Member::join(&sfu, "CB", 0xB2, false).await;
    let ok = run_until(
        &sfu,
        &mut [&mut a, &mut b],
        Duration::from_secs(10),
        true,
        |m| m[1].peer.got_from(MediaKind::Video, 0xA1) >= 3,
    )
    .await;
    assert!(ok, "video flows");
    // Let the frames still on their way arrive, then send a clump of 150
    // (more could overflow the socket's receive buffer).
    run_until(
        &sfu,
        &mut [&mut a, &mut b],
        Duration::from_millis(300),
        false,
        |_| false,
    )
    .await;
    let before = b.peer.got_from(MediaKind::Video, 0xA1);
    a.peer.send_video_burst(150);
    let t0 = Instant::now();
    let ok = run_until(
        &sfu,
        &mut [&mut a, &mut b],
        Duration::from_secs(2),
        false,
        |m| m[1].peer.got_from(MediaKind::Video, 0xA1) >= before + 150,
    )
    .await;
    assert!(
        ok,
        "{} of 150 frames arrived in {:?}",
        b.peer.got_from(MediaKind::Video, 0xA1) - before,
        t0.elapsed()
    );
}

#[tokio::test]
async fn ice_tcp_can_be_turned_off() {
    let sfu = Sfu::start(SfuConfig {
        ice_tcp: false,
        ..config()
    })
    .await
    .unwrap();
    assert!(sfu.tcp_candidates().is_empty());
    let mut p = Peer::new(1);
    let (sink, _rx) = sink();
    let answer = sfu
        .offer("room", "CX", p.offer_publish(), HashMap::new(), sink)
        .await
        .unwrap();
    assert!(!answer.contains(" tcp "), "no TCP candidate: {answer}");
}

#[tokio::test]
async fn bad_input_gets_typed_errors() {
    let sfu = Sfu::start(config()).await.unwrap();
    let (sink, _rx) = sink();
    let err = sfu
        .offer(
            "room",
            "CX",
            "not sdp at all".into(),
            HashMap::new(),
            sink.clone(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, SfuError::BadSdp(_)), "{err:?}");
    // An answer without a session, and one for a revision never offered.
    let err = sfu.answer("room", "CX", 1, "v=0".into()).await.unwrap_err();
    assert!(
        matches!(err, SfuError::BadSdp(_) | SfuError::NoPendingOffer(_)),
        "{err:?}"
    );
    let mut p = Peer::new(1);
    let offer = p.offer_publish();
    // Only a codec the SFU does not forward.
    let unusable: String = offer
        .lines()
        .map(|l| {
            if l.starts_with("a=rtpmap:") {
                let (pt, _) = l.split_once(' ').unwrap();
                format!("{pt} X-UNKNOWN/90000\r\n")
            } else {
                format!("{l}\r\n")
            }
        })
        .collect();
    let err = sfu
        .offer("room", "CX", unusable, HashMap::new(), sink.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, SfuError::MediaUnsupported(_)), "{err:?}");
    let answer = sfu
        .offer("room", "CX", offer, HashMap::new(), sink)
        .await
        .unwrap();
    p.accept_answer(&answer);
    let err = sfu
        .answer("room", "CX", 7, answer.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, SfuError::NoPendingOffer(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulcast_layers_nobody_receives_are_paused_and_come_back_on_demand() {
    let sfu = Sfu::start(config()).await.unwrap();
    let mut peer = Peer::new(0xC1);
    let offer = peer.offer_publish_simulcast(&["q", "h", "f"]);
    let mut p = Member::join_offered(&sfu, "CP", peer, offer).await;
    let mut s = Member::join(&sfu, "CS", 0xD2, false).await;
    let ok = run_until(
        &sfu,
        &mut [&mut p, &mut s],
        Duration::from_secs(10),
        true,
        |m| m[1].peer.got_from(MediaKind::Video, 0xC1) >= 3 && !m[1].tracks.is_empty(),
    )
    .await;
    assert!(ok, "the subscriber receives the simulcast track");
    let track = s.tracks[0].clone();
    assert_eq!(track.layers, ["q", "h", "f"]);
    let mid = p.peer.video.unwrap().to_string();
    let last = |m: &Member| m.layers.last().map(|(mid, a)| (mid.clone(), a.join(",")));

    // Pinned to q: h and f go off once the track's warm-up is over.
    sfu.select_layer("room", "CS", &track.id, "q", None)
        .await
        .unwrap();
    let ok = run_until(
        &sfu,
        &mut [&mut p, &mut s],
        Duration::from_secs(10),
        true,
        |m| last(m[0]) == Some((mid.clone(), "q".into())),
    )
    .await;
    assert!(ok, "publisher told to send only q: {:?}", p.layers);
    assert!(sfu.metrics().layer_pauses.load(Relaxed) >= 2);

    // The subscriber asks for f: it is enabled at once, q kept until the switch.
    let asked = Instant::now();
    sfu.select_layer("room", "CS", &track.id, "f", None)
        .await
        .unwrap();
    let ok = run_until(
        &sfu,
        &mut [&mut p, &mut s],
        Duration::from_secs(5),
        true,
        |m| last(m[0]).is_some_and(|(_, a)| a.contains('f')),
    )
    .await;
    assert!(ok, "f enabled: {:?}", p.layers);
    assert!(asked.elapsed() < Duration::from_secs(1), "not debounced");
    let ok = run_until(
        &sfu,
        &mut [&mut p, &mut s],
        Duration::from_secs(5),
        true,
        |m| last(m[0]) == Some((mid.clone(), "f".into())),
    )
    .await;
    assert!(ok, "after the switch only f: {:?}", p.layers);
    let frames = s.peer.frames_of(MediaKind::Video);
    assert_eq!(frames.last().unwrap()[11], 2, "the subscriber gets f");
    // Layers have their own SSRCs and sequence numbers; the subscriber's m-line
    // must still look like one stream: no sequence gap, time moving forward.
    assert_eq!(s.peer.discontinuous, 0, "no sequence gap at the switches");
    let times = &s.peer.times[&s
        .peer
        .remote_media
        .iter()
        .find(|(_, k)| **k == MediaKind::Video)
        .unwrap()
        .0
        .clone()];
    assert!(
        times.windows(2).all(|w| w[1] > w[0]),
        "RTP time moves forward across the switches: {times:?}"
    );

    // Nobody receives the track any more: only the lowest layer stays on.
    sfu.leave("room", "CS");
    let ok = run_until(&sfu, &mut [&mut p], Duration::from_secs(5), true, |m| {
        last(m[0]) == Some((mid.clone(), "q".into()))
    })
    .await;
    assert!(ok, "no subscriber keeps q: {:?}", p.layers);
}
