//! The HTTP side: router, listener, graceful shutdown.

pub mod api;
pub mod web;
pub mod ws;

use crate::metrics::METRICS;
use crate::state::ServerState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::serve::ListenerExt;
use axum::Router;
use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tandem_protocol::CloseCode;

pub fn router(state: Arc<ServerState>) -> Router {
    Router::new()
        .route("/ws", get(ws::upgrade))
        .route("/api/v1/publish", post(api::publish))
        .route("/api/v1/rooms", get(api::rooms))
        .route("/api/v1/rooms/{room}/participants", get(api::participants))
        .route(
            "/api/v1/rooms/{room}/participants/{identity}",
            delete(api::remove_participant),
        )
        .route("/api/v1/connections/disconnect", post(api::disconnect))
        .route("/dev/token", get(api::dev_token))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/sdk/{*rel}", get(web::sdk))
        .route("/examples/{*rel}", get(web::examples))
        .fallback(web::app)
        .with_state(state)
}

async fn readyz(State(state): State<Arc<ServerState>>) -> Response {
    if state.is_shutting_down() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response()
    } else {
        "ready".into_response()
    }
}

async fn metrics(State(state): State<Arc<ServerState>>) -> Response {
    let mut out = String::with_capacity(4096);
    METRICS.render(&mut out);
    if let Some(sfu) = state.sfu.get() {
        sfu.metrics().render(&mut out);
    }
    tandem_turn::render_metrics(&mut out);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// Serves until `shutdown` resolves, then: stops accepting, asks every client to
/// reconnect elsewhere (close 1012), waits up to the grace period for them to go, and
/// flushes history.
pub async fn serve(
    state: Arc<ServerState>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state.clone());
    let trim_state = state.clone();
    let trimmer = tokio::spawn(async move {
        let period = Duration::from_secs(trim_state.config.history.trim_interval_secs);
        let mut every = tokio::time::interval(period);
        loop {
            every.tick().await;
            if trim_state.history.trim_by_age().await.is_err() {
                break;
            }
        }
    });
    let closing = state.clone();
    // Real-time traffic: small frames must not wait for Nagle's algorithm.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down: closing sessions");
            closing.begin_shutdown();
            closing.hub.close_all(CloseCode::ServerShutdown);
        })
        .await?;
    let grace = Duration::from_millis(state.config.server.shutdown_grace_ms);
    let deadline = tokio::time::Instant::now() + grace;
    while METRICS.connections.load(Relaxed) > 0 && tokio::time::Instant::now() < deadline {
        // Unauthenticated sockets are not in the hub; close_all again catches late joiners.
        state.hub.close_all(CloseCode::ServerShutdown);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    trimmer.abort();
    let history_state = state.clone();
    tokio::task::spawn_blocking(move || history_state.history.shutdown())
        .await
        .ok();
    tracing::info!("history flushed; bye");
    Ok(())
}
