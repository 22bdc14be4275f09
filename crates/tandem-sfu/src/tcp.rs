//! Passive ICE-TCP (RFC 6544) for clients whose UDP is blocked: a TCP listener next to
//! the UDP socket. Each connection carries RFC 4571 frames (2-byte big-endian length,
//! then one STUN/DTLS/SRTP packet); frames go to the engine like datagrams, and the
//! engine's TCP transmits come back through a bounded per-connection queue.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Most TCP connections at once; further ones are closed right away.
pub const MAX_CONNECTIONS: usize = 1024;
/// Frames queued toward one connection; more are dropped (media is loss tolerant).
const OUT_QUEUE: usize = 512;
/// A connection silent for this long is closed (ICE consent checks come every few
/// seconds).
const IDLE: Duration = Duration::from_secs(30);

pub(crate) enum TcpEvent {
    Connected(SocketAddr, mpsc::Sender<Vec<u8>>),
    Frame(SocketAddr, Vec<u8>),
    Closed(SocketAddr),
}

/// Encodes one RFC 4571 frame.
pub fn frame(packet: &[u8]) -> Option<Vec<u8>> {
    let len = u16::try_from(packet.len()).ok()?;
    let mut out = Vec::with_capacity(packet.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(packet);
    Some(out)
}

pub(crate) async fn accept_loop(listener: TcpListener, events: mpsc::Sender<TcpEvent>) {
    let open = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        if events.is_closed() {
            return;
        }
        if open.load(std::sync::atomic::Ordering::Relaxed) >= MAX_CONNECTIONS {
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        open.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (events, open) = (events.clone(), open.clone());
        tokio::spawn(async move {
            connection(stream, peer, &events).await;
            let _ = events.send(TcpEvent::Closed(peer)).await;
            open.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        });
    }
}

async fn connection(stream: TcpStream, peer: SocketAddr, events: &mpsc::Sender<TcpEvent>) {
    let (mut reader, mut writer) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(OUT_QUEUE);
    if events.send(TcpEvent::Connected(peer, tx)).await.is_err() {
        return;
    }
    let write = async move {
        while let Some(buf) = rx.recv().await {
            if writer.write_all(&buf).await.is_err() {
                break;
            }
        }
    };
    let read = async {
        let mut len = [0u8; 2];
        loop {
            match tokio::time::timeout(IDLE, reader.read_exact(&mut len)).await {
                Ok(Ok(_)) => {}
                _ => return,
            }
            let mut packet = vec![0u8; usize::from(u16::from_be_bytes(len))];
            match tokio::time::timeout(IDLE, reader.read_exact(&mut packet)).await {
                Ok(Ok(_)) => {}
                _ => return,
            }
            if events.send(TcpEvent::Frame(peer, packet)).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = write => {}
        _ = read => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_length_prefixed() {
        assert_eq!(frame(&[1, 2, 3]), Some(vec![0, 3, 1, 2, 3]));
        assert_eq!(frame(&[]), Some(vec![0, 0]));
        assert!(frame(&vec![0u8; 70_000]).is_none(), "too long for RFC 4571");
    }
}
