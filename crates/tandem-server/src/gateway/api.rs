//! The server API for backends: publish, rooms, participants, disconnects. Authenticated
//! with `Authorization: Basic base64(key:secret)` or `Authorization: Bearer <JWT>` whose
//! grants include `admin`.

use crate::auth::{self, Claims, Grants};
use crate::history::Append;
use crate::metrics::METRICS;
use crate::state::ServerState;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde::Deserialize;
use serde_json::json;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use tandem_protocol::{valid_channel_name, CloseCode, ErrorCode, PublishResult, RawValue};
use tokio::sync::oneshot;

/// A JSON error body: `{"code": "...", "message": "..."}`.
pub struct ApiError(StatusCode, ErrorCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        METRICS.error(self.1);
        (self.0, Json(json!({"code": self.1, "message": self.2}))).into_response()
    }
}

fn status_for(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::TokenInvalid | ErrorCode::TokenExpired | ErrorCode::NotAuthenticated => {
            StatusCode::UNAUTHORIZED
        }
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::RoomNotFound | ErrorCode::ParticipantNotFound => StatusCode::NOT_FOUND,
        ErrorCode::MessageTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

impl From<(ErrorCode, String)> for ApiError {
    fn from((code, message): (ErrorCode, String)) -> Self {
        ApiError(status_for(code), code, message)
    }
}

fn unauthorized(message: &str) -> ApiError {
    ApiError(
        StatusCode::UNAUTHORIZED,
        ErrorCode::NotAuthenticated,
        message.into(),
    )
}

/// Checks the API credentials on a request.
pub fn authorize(state: &ServerState, headers: &HeaderMap) -> Result<(), ApiError> {
    METRICS.api_requests.fetch_add(1, Relaxed);
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            unauthorized("send Authorization: Basic base64(key:secret) or Bearer <admin JWT>")
        })?;
    if let Some(basic) = value.strip_prefix("Basic ") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(basic.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| unauthorized("Basic credentials are not base64 of key:secret"))?;
        let (key, secret) = decoded
            .split_once(':')
            .ok_or_else(|| unauthorized("Basic credentials must be key:secret"))?;
        return match state.config.secret(key) {
            Some(expected) if auth::secrets_equal(expected, secret) => Ok(()),
            _ => Err(unauthorized("unknown API key or wrong secret")),
        };
    }
    if let Some(token) = value.strip_prefix("Bearer ") {
        let claims = auth::verify(token.trim(), auth::now_secs(), |k| state.config.secret(k))
            .map_err(|e| ApiError(StatusCode::UNAUTHORIZED, e.code, e.message))?;
        return if claims.grants.admin {
            Ok(())
        } else {
            Err(ApiError(
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                "the token has no admin grant".into(),
            ))
        };
    }
    Err(unauthorized("Authorization must be Basic or Bearer"))
}

#[derive(Deserialize)]
pub struct PublishBody {
    channel: String,
    data: Box<RawValue>,
}

pub async fn publish(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<PublishResult>, ApiError> {
    authorize(&state, &headers)?;
    let max = state.config.limits.max_message_bytes;
    if body.len() > max {
        return Err(ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::MessageTooLarge,
            format!(
                "body of {} bytes exceeds the limit of {max} bytes",
                body.len()
            ),
        ));
    }
    let body: PublishBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            format!("expected {{\"channel\", \"data\"}}: {e}"),
        )
    })?;
    if !valid_channel_name(&body.channel) {
        return Err((ErrorCode::BadRequest, "invalid channel name".to_string()).into());
    }
    if state.is_shutting_down() {
        return Err((
            ErrorCode::Unavailable,
            "the server is shutting down".to_string(),
        )
            .into());
    }
    let (tx, rx) = oneshot::channel();
    let append = Append {
        channel: body.channel.into(),
        data: body.data,
        from: None,
        ack: Box::new(move |result| {
            let _ = tx.send(
                result
                    .map(|c| PublishResult {
                        offset: c.publication.offset,
                        epoch: c.epoch.to_string(),
                    })
                    .map_err(|e| e.to_string()),
            );
        }),
    };
    let internal = |e: String| ApiError(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal, e);
    state
        .publish(append)
        .await
        .map_err(|e| internal(e.to_string()))?;
    let result = rx
        .await
        .map_err(|_| internal("history writer stopped".into()))?
        .map_err(internal)?;
    Ok(Json(result))
}

pub async fn rooms(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    Ok(Json(json!({"rooms": state.hub.rooms()})).into_response())
}

pub async fn participants(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Path(room): Path<String>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let list = state.hub.participants(&room).ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            ErrorCode::RoomNotFound,
            format!("no room '{room}'"),
        )
    })?;
    Ok(Json(json!({"room": room, "participants": list})).into_response())
}

pub async fn remove_participant(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Path((room, identity)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let removed = state.hub.remove_identity(&room, &identity)?;
    Ok(Json(json!({"removed": removed})).into_response())
}

#[derive(Deserialize)]
pub struct DisconnectBody {
    identity: String,
    #[serde(default = "yes")]
    reconnect: bool,
}

fn yes() -> bool {
    true
}

pub async fn disconnect(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let body: DisconnectBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            format!("expected {{\"identity\", \"reconnect\"}}: {e}"),
        )
    })?;
    let code = if body.reconnect {
        CloseCode::Reconnect
    } else {
        CloseCode::Disconnected
    };
    let count = state.hub.disconnect_identity(&body.identity, code);
    Ok(Json(json!({"disconnected": count})).into_response())
}

#[derive(Deserialize)]
pub struct DevTokenQuery {
    identity: String,
    room: Option<String>,
    name: Option<String>,
    /// Lifetime in seconds (5 to 86 400; default one hour), e.g. to try token refresh.
    ttl: Option<u64>,
}

/// Dev mode only: mints a token (one hour unless `ttl` says otherwise) for the demo app.
pub async fn dev_token(
    State(state): State<Arc<ServerState>>,
    Query(q): Query<DevTokenQuery>,
) -> Result<Response, ApiError> {
    if !state.config.server.dev {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            ErrorCode::Forbidden,
            "the token endpoint exists in dev mode only".into(),
        ));
    }
    if q.identity.is_empty() || q.identity.len() > auth::MAX_IDENTITY_LEN {
        return Err((
            ErrorCode::BadRequest,
            "identity must be 1–128 bytes".to_string(),
        )
            .into());
    }
    let ttl = q.ttl.unwrap_or(3600);
    if !(5..=86_400).contains(&ttl) {
        return Err((
            ErrorCode::BadRequest,
            "ttl must be 5 to 86400 seconds".to_string(),
        )
            .into());
    }
    let (key, secret) = state
        .config
        .keys
        .iter()
        .next()
        .expect("dev mode always has a key");
    let now = auth::now_secs();
    let claims = Claims {
        iss: key.clone(),
        sub: q.identity.clone(),
        exp: now + ttl,
        nbf: Some(now),
        iat: Some(now),
        name: q.name.or(Some(q.identity)),
        grants: Grants {
            join: vec![q.room.unwrap_or_else(|| "*".into())],
            ..Grants::default()
        },
    };
    Ok(Json(json!({"token": auth::encode(&claims, secret)})).into_response())
}
