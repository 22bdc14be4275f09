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

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded_web.rs"));
}

/// Looks a file up in the copy of `web/` embedded at build time.
fn embedded(sub: &str, rel: &str) -> Option<(&'static [u8], PathBuf)> {
    let rel = rel.trim_end_matches('/');
    if rel.split('/').any(|part| part == ".." || part == ".") {
        return None;
    }
    let key = if rel.is_empty() {
        format!("{sub}/index.html")
    } else {
        format!("{sub}/{rel}")
    };
    let index = format!("{key}/index.html");
    embedded::FILES
        .iter()
        .find(|(name, _)| *name == key || *name == index)
        .map(|(name, bytes)| (*bytes, PathBuf::from(name)))
}

async fn serve_file(state: &ServerState, sub: &str, rel: &str) -> Response {
    let found = match state.config.server.web_dir.as_ref() {
        Some(root) => {
            let Some(path) = resolve(&root.join(sub), rel) else {
                return (StatusCode::BAD_REQUEST, "bad path").into_response();
            };
            tokio::fs::read(&path).await.ok().map(|bytes| (bytes, path))
        }
        None => embedded(sub, rel).map(|(bytes, path)| (bytes.to_vec(), path)),
    };
    match found {
        Some((bytes, path)) => (
            [
                (header::CONTENT_TYPE, content_type(&path)),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
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
