//! WebSocket sessions: the HTTP upgrade (with the origin check), then one task per
//! socket that reads frames, drains the session's outbound queue, and keeps the
//! connection alive.

use crate::metrics::METRICS;
use crate::outbound::{Closer, Outbound};
use crate::session::{Flow, Session};
use crate::state::ServerState;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use sha1::{Digest, Sha1};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tandem_protocol::{disconnect_frame, CloseCode, PING_FRAME};
use tokio::sync::mpsc;
use tokio::time::{sleep, Instant};
use tokio_websockets::{Config, Limits, Message, WebSocketStream};

const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Frames over this many times `max_message_bytes` end the socket (1009) instead of
/// being read and answered with `message_too_large`.
pub const HARD_FRAME_FACTOR: usize = 16;
/// Most queued frames written before one flush.
const WRITE_BATCH: usize = 64;

fn refuse(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message.to_string(),
    )
        .into_response()
}

/// Same-origin pages, configured origins and clients sending no Origin are allowed.
pub fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    if allowed
        .iter()
        .any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let origin_host = origin.split_once("://").map_or("", |(_, rest)| rest);
    !host.is_empty() && origin_host.eq_ignore_ascii_case(host)
}

pub async fn upgrade(State(state): State<Arc<ServerState>>, mut req: Request) -> Response {
    let headers = req.headers();
    let has_token = |name: header::HeaderName, token: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|p| p.trim().eq_ignore_ascii_case(token)))
    };
    if !has_token(header::UPGRADE, "websocket") || !has_token(header::CONNECTION, "upgrade") {
        return refuse(
            StatusCode::UPGRADE_REQUIRED,
            "this endpoint speaks WebSocket (protocol v1, see docs/protocol.md)",
        );
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(|v| v.as_bytes())
        != Some(b"13")
    {
        return refuse(StatusCode::BAD_REQUEST, "Sec-WebSocket-Version must be 13");
    }
    let Some(key) = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .map(|k| k.as_bytes().to_vec())
    else {
        return refuse(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key");
    };
    if !origin_allowed(headers, &state.config.server.allowed_origins) {
        METRICS.error(tandem_protocol::ErrorCode::Forbidden);
        return refuse(
            StatusCode::FORBIDDEN,
            "origin not allowed; add it to server.allowed_origins",
        );
    }
    if state.is_shutting_down() {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down",
        );
    }
    let mut sha = Sha1::new();
    sha.update(&key);
    sha.update(WS_GUID.as_bytes());
    let accept = base64::engine::general_purpose::STANDARD.encode(sha.finalize());
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let max = state.config.limits.max_message_bytes;
                let ws = tokio_websockets::ServerBuilder::new()
                    .limits(Limits::default().max_payload_len(Some(max * HARD_FRAME_FACTOR)))
                    .config(Config::default().frame_size(64 * 1024))
                    .serve(TokioIo::new(upgraded));
                run(state, ws).await;
            }
            Err(e) => tracing::debug!(error = %e, "websocket upgrade failed"),
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "Upgrade")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .body(Body::empty())
        .expect("static response parts are valid")
}

type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

async fn send_all(ws: &mut Socket, frames: &mut Vec<Bytes>) -> bool {
    if frames.is_empty() {
        return true;
    }
    // Count once per batch: shared counters bounce between cores on every increment.
    let count = frames.len() as u64;
    let bytes: u64 = frames.iter().map(|f| f.len() as u64).sum();
    METRICS.messages_out.fetch_add(count, Relaxed);
    METRICS.bytes_out.fetch_add(bytes, Relaxed);
    for frame in frames.drain(..) {
        if ws
            .feed(Message::text(tokio_websockets::Payload::from(frame)))
            .await
            .is_err()
        {
            return false;
        }
    }
    ws.flush().await.is_ok()
}

/// Writes `out`, unless the session is told to close first (a peer that stopped
/// reading would otherwise block the write forever). `Err(None)`: the socket failed.
async fn write(
    ws: &mut Socket,
    out: &mut Vec<Bytes>,
    closer: &Closer,
) -> Result<(), Option<CloseCode>> {
    tokio::select! {
        biased;
        code = closer.wait() => Err(Some(code)),
        ok = send_all(ws, out) => if ok { Ok(()) } else { Err(None) },
    }
}

/// Says why (a `disconnect` push), then closes with the same code. Bounded in time: a
/// peer that stopped reading gets its socket dropped.
async fn close(ws: &mut Socket, code: CloseCode) {
    let ws_code = tokio_websockets::CloseCode::try_from(code.code())
        .unwrap_or(tokio_websockets::CloseCode::NORMAL_CLOSURE);
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let mut notice = vec![Bytes::from(disconnect_frame(code))];
        if !send_all(ws, &mut notice).await {
            return;
        }
        let _ = ws.send(Message::close(Some(ws_code), code.reason())).await;
        // Drain until the peer acknowledges the close (or goes away).
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

/// The runtime instant of a Unix-seconds expiry.
fn expiry_instant(exp_unix_secs: u64) -> Instant {
    let left = exp_unix_secs.saturating_sub(crate::auth::now_secs());
    Instant::now() + Duration::from_secs(left)
}

async fn run(state: Arc<ServerState>, mut ws: Socket) {
    METRICS.connections.fetch_add(1, Relaxed);
    METRICS.connections_total.fetch_add(1, Relaxed);
    let limits = state.config.limits.clone();
    let (tx, mut rx) = mpsc::channel::<Outbound>(limits.outbound_queue);
    let closer = Arc::new(Closer::default());
    let mut session = Session::new(state, tx, closer.clone());
    let auth_deadline = sleep(Duration::from_millis(limits.auth_timeout_ms));
    tokio::pin!(auth_deadline);
    let ping_every = Duration::from_millis(limits.ping_interval_ms);
    let idle_timeout = Duration::from_millis(limits.idle_timeout_ms);
    let mut ping = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
    let mut last_heard = Instant::now();
    let mut out: Vec<Bytes> = Vec::new();
    // Armed once authenticated, moved by `refresh`: the token's expiry ends the session.
    let token_expiry = sleep(Duration::ZERO);
    tokio::pin!(token_expiry);
    let mut expires_at: Option<u64> = None;

    let close_code = loop {
        tokio::select! {
            biased;
            code = closer.wait() => break Some(code),
            msg = ws.next() => {
                let Some(msg) = msg else { break None };
                let msg = match msg {
                    Ok(m) => m,
                    Err(e) => {
                        // Protocol errors and oversized frames queue a close frame; send it.
                        tracing::debug!(error = %e, "websocket read failed");
                        let _ = tokio::time::timeout(Duration::from_secs(1), ws.flush()).await;
                        break None;
                    }
                };
                last_heard = Instant::now();
                METRICS.messages_in.fetch_add(1, Relaxed);
                METRICS.bytes_in.fetch_add(msg.as_payload().len() as u64, Relaxed);
                if let Some(text) = msg.as_text() {
                    if let Flow::Close(code) = session.on_text(text, &mut out).await {
                        let _ = write(&mut ws, &mut out, &closer).await;
                        break Some(code);
                    }
                } else if msg.is_binary() {
                    session.on_binary(&mut out);
                } else if msg.is_close() {
                    break None;
                }
                if let Err(code) = write(&mut ws, &mut out, &closer).await {
                    break code;
                }
                if session.expires_at() != expires_at {
                    expires_at = session.expires_at();
                    if let Some(exp) = expires_at {
                        token_expiry.as_mut().reset(expiry_instant(exp));
                    }
                }
            }
            _ = &mut token_expiry, if expires_at.is_some() => {
                break Some(CloseCode::TokenExpired);
            }
            item = rx.recv() => {
                let Some(item) = item else { break None };
                out.extend(session.on_outbound(item));
                while out.len() < WRITE_BATCH {
                    match rx.try_recv() {
                        Ok(item) => out.extend(session.on_outbound(item)),
                        Err(_) => break,
                    }
                }
                if let Err(code) = write(&mut ws, &mut out, &closer).await {
                    break code;
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() >= idle_timeout {
                    break Some(CloseCode::IdleTimeout);
                }
                out.push(Bytes::from_static(PING_FRAME.as_bytes()));
                if let Err(code) = write(&mut ws, &mut out, &closer).await {
                    break code;
                }
            }
            _ = &mut auth_deadline, if !session.is_authenticated() => {
                break Some(CloseCode::Unauthorized);
            }
        }
    };
    session.finish();
    if let Some(code) = close_code {
        close(&mut ws, code).await;
    }
    METRICS.connections.fetch_sub(1, Relaxed);
}
