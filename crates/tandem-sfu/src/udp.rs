//! The I/O side: one UDP socket for every participant. Incoming datagrams are
//! demultiplexed to the right `Rtc` (see `Engine::receive`, which uses
//! `Rtc::accepts`), signaling commands arrive on a channel, and timeouts are driven
//! from the earliest one any `Rtc` asked for.

use crate::engine::Engine;
use crate::tcp::TcpEvent;
use crate::Command;
use std::time::{Duration, Instant};
use str0m::net::Protocol;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// Most datagrams read in one go before the engine settles.
const READ_BATCH: usize = 64;

pub(crate) async fn run(
    socket: UdpSocket,
    mut engine: Engine,
    mut commands: mpsc::Receiver<Command>,
    mut tcp: Option<mpsc::Receiver<TcpEvent>>,
) {
    let mut buf = vec![0u8; 2048];
    loop {
        let now = Instant::now();
        let next = engine.tick(now);
        engine.settle(&socket, now);
        // Polling in `settle` sets new deadlines (a pacer with packets to send): `next`
        // was computed before it.
        let deadline = engine
            .next_timeout(next)
            .max(now + Duration::from_millis(1));
        tokio::select! {
            received = socket.recv_from(&mut buf) => {
                match received {
                    Ok((n, source)) => {
                        let now = Instant::now();
                        engine.receive(now, Protocol::Udp, source, &buf[..n]);
                        engine.settle(&socket, now);
                        for _ in 1..READ_BATCH {
                            let Ok((n, source)) = socket.try_recv_from(&mut buf) else {
                                break;
                            };
                            let now = Instant::now();
                            engine.receive(now, Protocol::Udp, source, &buf[..n]);
                            engine.settle(&socket, now);
                        }
                    }
                    // ICMP errors surface here on some systems; the socket stays usable.
                    Err(e) => tracing::debug!(error = %e, "sfu udp receive failed"),
                }
            }
            command = commands.recv() => {
                let Some(command) = command else { break };
                engine.command(command, Instant::now());
            }
            Some(event) = async { tcp.as_mut()?.recv().await } => {
                let now = Instant::now();
                engine.tcp_event(event, now);
                engine.settle(&socket, now);
            }
            _ = tokio::time::sleep_until(deadline.into()) => {}
        }
    }
    tracing::info!("sfu stopped");
}
