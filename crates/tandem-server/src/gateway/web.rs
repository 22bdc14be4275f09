//! Static files for the demo app and the browser SDK: from `server.web_dir` when it is
//! configured, else the copy embedded at build time (see build.rs).

use crate::state::ServerState;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::path::{Component, PathBuf};
use std::sync::Arc;

fn content_type(path: &std::path::Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "ts" => "text/plain; charset=utf-8",
        "md" | "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Resolves a request path inside `root`, refusing anything that climbs out of it.
fn resolve(root: &std::path::Path, rel: &str) -> Option<PathBuf> {
    let mut path = root.to_path_buf();
    for c in std::path::Path::new(rel).components() {
        match c {
            Component::Normal(part) => path.push(part),
            Component::CurDir => {}
            _ => return None,
        }
    }
    if path.is_dir() {
        path.push("index.html");
    }
    Some(path)
}

async fn serve_file(state: &ServerState, sub: &str, rel: &str) -> Response {
    let Some(root) = state.config.server.web_dir.as_ref() else {
        return (
            StatusCode::NOT_FOUND,
            "no web directory configured (server.web_dir)",
        )
            .into_response();
    };
    let Some(path) = resolve(&root.join(sub), rel) else {
        return (StatusCode::BAD_REQUEST, "bad path").into_response();
    };
    match tokio::fs::read(&path).await {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, content_type(&path)),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            bytes,
        )
            .into_response(),
        Err(_) => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

/// Everything no other route claims is a file of the demo app (`/` → `app/index.html`).
pub async fn app(State(state): State<Arc<ServerState>>, uri: Uri) -> Response {
    serve_file(&state, "app", uri.path().trim_start_matches('/')).await
}

pub async fn sdk(State(state): State<Arc<ServerState>>, Path(rel): Path<String>) -> Response {
    serve_file(&state, "sdk", &rel).await
}

pub async fn examples(State(state): State<Arc<ServerState>>, Path(rel): Path<String>) -> Response {
    serve_file(&state, "examples", &rel).await
}
