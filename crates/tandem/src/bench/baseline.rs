//! `tandem bench broadcast-server`: the bare baseline for the fan-out bench.
//!
//! The same shape as the Node peer (`bench/fanout/node-server.mjs`): every text
//! message from a client goes to every other client. It is built like Tandem's
//! gateway — tokio, tokio-websockets, one task per socket with a bounded queue,
//! TCP_NODELAY — but has no protocol, authentication, subscriptions or durable
//! history. What it delivers per second on a machine is what this socket design can
//! do there; the gap between it and Tandem is the price of Tandem's features.

use anyhow::Result;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_websockets::{Message, Payload, ServerBuilder};

type Clients = RwLock<HashMap<u64, mpsc::Sender<Bytes>>>;

/// Frames queued for one client before it is dropped as too slow.
const QUEUE: usize = 1024;
const WRITE_BATCH: usize = 64;

pub async fn run() -> Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("baseline listening on {}", listener.local_addr()?);
    let clients: Arc<Clients> = Arc::default();
    let next_id = AtomicU64::new(1);
    loop {
        let (socket, _) = listener.accept().await?;
        let id = next_id.fetch_add(1, Relaxed);
        tokio::spawn(serve(socket, id, clients.clone()));
    }
}

async fn serve(socket: TcpStream, id: u64, clients: Arc<Clients>) {
    let _ = socket.set_nodelay(true);
    let Ok((_request, mut ws)) = ServerBuilder::new().accept(socket).await else {
        return;
    };
    let (tx, mut rx) = mpsc::channel::<Bytes>(QUEUE);
    clients.write().expect("clients lock").insert(id, tx);
    loop {
        tokio::select! {
            msg = ws.next() => {
                let Some(Ok(msg)) = msg else { break };
                if !msg.is_text() {
                    continue;
                }
                let frame = Bytes::copy_from_slice(msg.as_payload());
                for (other, client) in clients.read().expect("clients lock").iter() {
                    if *other != id {
                        let _ = client.try_send(frame.clone());
                    }
                }
            }
            frame = rx.recv() => {
                let Some(frame) = frame else { break };
                let mut batch = vec![frame];
                while batch.len() < WRITE_BATCH {
                    match rx.try_recv() {
                        Ok(frame) => batch.push(frame),
                        Err(_) => break,
                    }
                }
                let mut failed = false;
                for frame in batch {
                    failed |= ws.feed(Message::text(Payload::from(frame))).await.is_err();
                }
                if failed || ws.flush().await.is_err() {
                    break;
                }
            }
        }
    }
    clients.write().expect("clients lock").remove(&id);
}
