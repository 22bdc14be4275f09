//! Arbitrary bytes through the STUN/ChannelData parsers, stream framing and
//! the sans-IO core (as a client datagram and as a peer datagram on a live
//! allocation). Nothing may panic, and every STUN message the server emits
//! must parse. Run: `cargo +nightly fuzz run message` in this directory.
#![no_main]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use tandem_turn::auth::{long_term_key, Authenticator};
use tandem_turn::core::{Core, CoreConfig, FiveTuple, Output, Proto};
use tandem_turn::message::{self as m, attr, Builder, ChannelData, Class, Message};
use tandem_turn::{Metrics, TurnConfig};

fn core() -> (Core, FiveTuple, Instant) {
    let mut users = HashMap::new();
    users.insert("u".to_string(), "p".to_string());
    let cfg = TurnConfig {
        enabled: true,
        public_ip: Some("192.0.2.1".parse().unwrap()),
        static_users: users.clone(),
        allowed_peer_ips: vec!["0.0.0.0/0".into()],
        ..TurnConfig::default()
    };
    let policy = cfg.validate().unwrap();
    let now = Instant::now();
    let core = Core::new(
        CoreConfig::from_turn(&cfg, policy),
        Authenticator::new("tandem", None, &users),
        [1; 32],
        now,
        1_000_000,
        Arc::new(Metrics::default()),
    );
    let five = FiveTuple {
        client: "198.51.100.1:5000".parse().unwrap(),
        server: "192.0.2.1:3478".parse().unwrap(),
        proto: Proto::Udp,
    };
    (core, five, now)
}

fn check(out: Vec<Output>) {
    for o in out {
        if let Output::ToClient { data, .. } = o {
            if data[0] >> 6 == 0 {
                Message::parse(&data).expect("server output parses");
            } else {
                ChannelData::parse(&data).expect("server channel data parses");
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = Message::parse(data) {
        let _ = msg.unknown_required();
        let _ = msg.lifetime();
        for a in msg.attrs() {
            let _ = msg.xor_address(a.value);
        }
        let _ = msg.verify_integrity(b"key");
    }
    let _ = ChannelData::parse(data);
    let _ = m::stream_frame_len(data);

    let (mut core, five, now) = core();
    let mut out = Vec::new();
    core.handle_client(now, five, data, &mut out);
    check(std::mem::take(&mut out));

    // With an allocation in place: obtain a nonce, allocate, then feed again.
    let mut req = Vec::new();
    Builder::new(&mut req, m::ALLOCATE, Class::Request, [2; 12]).finish();
    core.handle_client(now, five, &req, &mut out);
    let nonce = match out.pop() {
        Some(Output::ToClient { data, .. }) => {
            Message::parse(&data).unwrap().nonce().unwrap().to_vec()
        }
        _ => unreachable!(),
    };
    let mut req = Vec::new();
    let mut b = Builder::new(&mut req, m::ALLOCATE, Class::Request, [3; 12]);
    b.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
    b.attr(attr::USERNAME, b"u");
    b.attr(attr::REALM, b"tandem");
    b.attr(attr::NONCE, &nonce);
    b.integrity(&long_term_key("u", "tandem", "p"));
    b.finish();
    core.handle_client(now, five, &req, &mut out);
    let Some(Output::BindRelay(rr)) = out.pop() else {
        unreachable!()
    };
    let id = rr.id;
    let relay: SocketAddr = "192.0.2.1:50000".parse().unwrap();
    core.relay_bound(now, rr, Some(relay), &mut out);
    out.clear();
    core.handle_client(now, five, data, &mut out);
    core.handle_peer(now, id, "203.0.113.9:1".parse().unwrap(), data, &mut out);
    let mut more = Vec::new();
    for o in out {
        if let Output::BindRelay(rr) = o {
            core.relay_bound(now, rr, Some(relay), &mut more);
        } else {
            more.push(o);
        }
    }
    check(more);
});
