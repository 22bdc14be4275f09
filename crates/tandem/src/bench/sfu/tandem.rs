//! Signaling against Tandem: each participant is a WebSocket client (token, `join`)
//! that sends `sfu_offer` for its `Rtc` and answers the server's `sfu_offer` pushes
//! with `sfu_answer` (docs/protocol.md, "SFU media").

use super::load::{Fleet, PeerHandle, Role};
use super::Call;
use crate::bench::servers::{self, start_tandem, ServerProcess};
use anyhow::{Context, Result};
use futures_util::{stream, StreamExt};
use serde_json::{json, Value};
use std::path::Path;
use tandem_client::{Client, Event};
use tandem_server::auth::Grants;

const ROOM: &str = "bench";
/// Subscribers signaling at once while the call is set up.
const CONNECT_CONCURRENCY: usize = 32;

/// Tandem with its SFU on a loopback port and room limits opened up.
pub fn start(bin: &Path) -> Result<ServerProcess> {
    start_tandem(
        bin,
        "[sfu]\nenabled = true\nudp_bind = \"127.0.0.1:0\"\n\
         max_participants_per_room = 100000\nconnect_timeout_ms = 60000\n",
    )
}

/// Connects `publishers` then `subscribers` participants to one room.
pub async fn call(
    server: &ServerProcess,
    fleet: &Fleet,
    publishers: usize,
    subscribers: usize,
) -> Result<Call> {
    let url = format!("ws://{}/ws", server.addr);
    let mut call = Call::default();
    for n in 0..publishers {
        let peer = fleet.peer(Role::Publisher);
        let task = participant(&url, &format!("pub{n}"), peer.clone(), true).await?;
        call.publishers.push(peer);
        call.signaling.push(task);
    }
    let joined: Vec<Result<(PeerHandle, tokio::task::JoinHandle<()>)>> =
        stream::iter(0..subscribers)
            .map(|n| {
                let url = url.clone();
                let peer = fleet.peer(Role::Subscriber);
                async move {
                    let task = participant(&url, &format!("sub{n}"), peer.clone(), false).await?;
                    Ok((peer, task))
                }
            })
            .buffer_unordered(CONNECT_CONCURRENCY)
            .collect()
            .await;
    for j in joined {
        let (peer, task) = j?;
        call.subscribers.push(peer);
        call.signaling.push(task);
    }
    Ok(call)
}

/// Joins the room, negotiates the peer's own offer, then answers server offers in a
/// task that also keeps the WebSocket open.
async fn participant(
    url: &str,
    identity: &str,
    peer: PeerHandle,
    publish: bool,
) -> Result<tokio::task::JoinHandle<()>> {
    let grants = Grants {
        join: vec![ROOM.into()],
        publish,
        ..Grants::default()
    };
    let (client, mut events, _) = Client::connect(url, &servers::token(identity, grants))
        .await
        .with_context(|| format!("{identity}: cannot connect to tandem"))?;
    client
        .join(ROOM, None)
        .await
        .with_context(|| format!("{identity}: join"))?;
    let offer = peer.offer().await?;
    let reply = client
        .request("sfu_offer", json!({"room": ROOM, "sdp": offer}))
        .await
        .with_context(|| format!("{identity}: sfu_offer"))?;
    let answer = reply["sdp"]
        .as_str()
        .context("sfu_offer reply without sdp")?;
    peer.accept_answer(answer.to_string()).await?;
    let identity = identity.to_string();
    Ok(tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            let Event::Push(push) = event else { continue };
            if push["type"] != "sfu_offer" {
                continue;
            }
            if let Err(e) = answer_offer(&client, &peer, &push).await {
                eprintln!("{identity}: server offer not answered: {e:#}");
            }
        }
    }))
}

async fn answer_offer(client: &Client, peer: &PeerHandle, push: &Value) -> Result<()> {
    let sdp = push["sdp"].as_str().context("sfu_offer push without sdp")?;
    let answer = peer.accept_offer(sdp.to_string()).await?;
    client
        .request(
            "sfu_answer",
            json!({"room": ROOM, "sdp": answer, "revision": push["revision"]}),
        )
        .await?;
    Ok(())
}

/// Tandem's own SFU counters (`tandem_sfu_*_total` on `/metrics`), to tell where
/// media went missing: dropped by the SFU, never complete on arrival, not sent.
pub async fn sfu_counters(server: &ServerProcess) -> Result<Vec<(String, u64)>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(server.addr).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await?;
    let mut body = String::new();
    stream.read_to_string(&mut body).await?;
    Ok(body
        .lines()
        .filter(|l| l.starts_with("tandem_sfu_") && !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.split_once(' ')?;
            name.ends_with("_total")
                .then(|| Some((name.to_string(), value.trim().parse().ok()?)))?
        })
        .collect())
}
