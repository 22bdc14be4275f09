//! One client's protocol state: authentication, joined rooms, subscriptions with their
//! last delivered offsets, the publish rate bucket. The WebSocket loop in
//! `gateway::ws` feeds it frames and queued items and writes out what it returns.

use crate::acl;
use crate::auth::{self, Claims};
use crate::history::{recovery_outcome, Append, Range};
use crate::media;
use crate::metrics::METRICS;
use crate::outbound::{Closer, Outbound, SessionHandle};
use crate::state::ServerState;
use crate::subscriptions::Subscriptions;
use bytes::Bytes;
use std::collections::HashSet;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;
use tandem_protocol::{
    decode_header, decode_request, error_frame, reply_frame, valid_channel_name, valid_room_name,
    CloseCode, ConnectResult, Empty, ErrorCode, HistoryResult, IceServer, LeaveReason, Limits,
    PublishResult, RawValue, RefreshResult, Request, StreamPosition, SubscribeResult, PONG_FRAME,
    PROTOCOL_VERSION,
};
use tokio::sync::mpsc;

/// A request failure as sent on the wire.
#[derive(Debug)]
pub struct RequestError {
    pub code: ErrorCode,
    pub message: String,
    pub retry_after_ms: Option<u64>,
}

pub(crate) fn err(code: ErrorCode, message: impl Into<String>) -> RequestError {
    RequestError {
        code,
        message: message.into(),
        retry_after_ms: None,
    }
}

impl From<(ErrorCode, String)> for RequestError {
    fn from((code, message): (ErrorCode, String)) -> Self {
        err(code, message)
    }
}

fn internal(e: impl std::fmt::Display) -> RequestError {
    tracing::error!(error = %e, "request failed");
    err(
        ErrorCode::Internal,
        "the server could not complete the request; retry",
    )
}

/// Publications per second per connection, with bursts.
struct TokenBucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(rate: u32, burst: u32) -> Self {
        TokenBucket {
            tokens: burst as f64,
            rate: rate as f64,
            burst: burst as f64,
            last: Instant::now(),
        }
    }

    /// Takes a token, or says how long until one is available.
    fn take(&mut self, now: Instant) -> Result<(), u64> {
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err((((1.0 - self.tokens) / self.rate) * 1000.0).ceil() as u64)
        }
    }
}

pub(crate) struct Authenticated {
    pub(crate) handle: SessionHandle,
    pub(crate) claims: Claims,
}

pub struct Session {
    state: Arc<ServerState>,
    id: u64,
    client_id: Arc<str>,
    tx: mpsc::Sender<Outbound>,
    closer: Arc<Closer>,
    auth: Option<Authenticated>,
    rooms: HashSet<Arc<str>>,
    subscriptions: Subscriptions,
    bucket: TokenBucket,
}

/// What the socket loop should do after a frame.
pub enum Flow {
    Continue,
    Close(CloseCode),
}

fn new_client_id() -> Arc<str> {
    let mut id = String::with_capacity(12);
    id.push('C');
    id.extend(std::iter::repeat_with(fastrand::alphanumeric).take(11));
    id.into()
}

impl Session {
    pub fn new(state: Arc<ServerState>, tx: mpsc::Sender<Outbound>, closer: Arc<Closer>) -> Self {
        let limits = &state.config.limits;
        let bucket = TokenBucket::new(limits.publish_rate, limits.publish_burst);
        Session {
            id: state.next_session_id(),
            client_id: new_client_id(),
            state,
            tx,
            closer,
            auth: None,
            rooms: HashSet::new(),
            subscriptions: Subscriptions::default(),
            bucket,
        }
    }

    pub fn is_authenticated(&self) -> bool {
        self.auth.is_some()
    }

    /// Handles one text frame; frames to send go to `out`.
    pub async fn on_text(&mut self, text: &str, out: &mut Vec<Bytes>) -> Flow {
        let max = self.state.config.limits.max_message_bytes;
        if text.len() > max {
            let id = decode_header(text).ok().and_then(|h| h.id);
            let message = format!(
                "frame of {} bytes exceeds the limit of {max} bytes",
                text.len()
            );
            self.push_error(out, id, err(ErrorCode::MessageTooLarge, message));
            return Flow::Continue;
        }
        let header = match decode_header(text) {
            Ok(h) => h,
            Err(e) => {
                self.push_error(out, None, e.into());
                return Flow::Continue;
            }
        };
        let id = header.id;
        let request = match decode_request(header.kind, text) {
            Ok(r) => r,
            Err(e) => {
                self.push_error(out, id, e.into());
                return Flow::Continue;
            }
        };
        match self.dispatch(id, request).await {
            Ok(Some(reply)) => out.push(Bytes::from(reply)),
            Ok(None) => {}
            Err(e) => {
                // A bad token ends a connection that has no valid one yet; a bad
                // `refresh` leaves the current, still valid token in place.
                let close = if self.auth.is_none() {
                    e.code.closes_with()
                } else {
                    None
                };
                self.push_error(out, id, e);
                if let Some(code) = close {
                    return Flow::Close(code);
                }
            }
        }
        Flow::Continue
    }

    pub fn on_binary(&mut self, out: &mut Vec<Bytes>) {
        self.push_error(
            out,
            None,
            err(
                ErrorCode::UnsupportedFrame,
                "binary frames are not supported; send JSON text frames",
            ),
        );
    }

    /// Counts the error and queues its frame.
    fn push_error(&self, out: &mut Vec<Bytes>, id: Option<u64>, e: RequestError) {
        METRICS.error(e.code);
        out.push(Bytes::from(error_frame(
            id,
            e.code,
            &e.message,
            e.retry_after_ms,
        )));
    }

    /// Filters an item from the outbound queue; returns the frame to send, if any.
    pub fn on_outbound(&mut self, item: Outbound) -> Option<Bytes> {
        match item {
            Outbound::Frame(frame) => Some(frame),
            Outbound::Publication {
                channel,
                offset,
                frame,
            } => {
                // Dropped when covered by the subscribe reply or no longer subscribed.
                self.subscriptions
                    .advance(&channel, offset)
                    .then_some(frame)
            }
            Outbound::Removed { room, frame } => {
                self.forget_room(&room);
                Some(frame)
            }
        }
    }

    fn authenticated(&self) -> Result<&Authenticated, RequestError> {
        self.auth.as_ref().ok_or_else(|| {
            err(
                ErrorCode::NotAuthenticated,
                "send 'connect' with a token first",
            )
        })
    }

    async fn dispatch(
        &mut self,
        id: Option<u64>,
        request: Request,
    ) -> Result<Option<String>, RequestError> {
        if self.state.is_shutting_down() && !matches!(request, Request::Ping | Request::Pong) {
            return Err(err(
                ErrorCode::Unavailable,
                "the server is shutting down; reconnect shortly",
            ));
        }
        // Requests without an id are fire-and-forget: success is silent.
        let reply = |result: &dyn erased::Result| id.map(|_| result.frame(id));
        match request {
            Request::Ping if id.is_some() => Ok(reply(&Empty {})),
            Request::Ping => Ok(Some(PONG_FRAME.to_string())),
            Request::Pong => Ok(None),
            Request::Connect {
                token,
                protocol,
                client: _,
            } => self.connect(&token, protocol).map(|r| reply(&r)),
            Request::Refresh { token } => self.refresh(&token).map(|r| reply(&r)),
            Request::Join { room, metadata } => self.join(room, metadata).map(|r| reply(&r)),
            Request::Leave { room } => {
                self.authenticated()?;
                self.state.hub.leave(&room, self.id, LeaveReason::Left)?;
                self.forget_room(&room);
                Ok(reply(&Empty {}))
            }
            Request::Update { room, metadata } => {
                self.authenticated()?;
                self.state.hub.update(&room, self.id, metadata)?;
                Ok(reply(&Empty {}))
            }
            Request::Publish { channel, data } => {
                self.publish(id, channel, data).await.map(|()| None)
            }
            Request::Subscribe { channel, since } => {
                self.subscribe(channel, since).await.map(|r| reply(&r))
            }
            Request::Unsubscribe { channel } => {
                self.authenticated()?;
                if !self.subscriptions.remove(&channel) {
                    return Err(err(
                        ErrorCode::NotSubscribed,
                        format!("not subscribed to '{channel}'"),
                    ));
                }
                self.state.bus.unsubscribe(&channel, self.id);
                METRICS.subscriptions.fetch_sub(1, Relaxed);
                Ok(reply(&Empty {}))
            }
            Request::History {
                channel,
                before,
                since,
                limit,
            } => self
                .history(channel, before, since, limit)
                .await
                .map(|r| reply(&r)),
            Request::Signal { room, to, data } => {
                let auth = self.authenticated()?;
                self.state.hub.signal(&room, &auth.handle, &to, &data)?;
                Ok(reply(&Empty {}))
            }
            Request::SfuOffer { room, sdp, tracks } => {
                let auth = self.authenticated()?;
                let (state, rooms) = (&self.state, &self.rooms);
                let r = media::offer(state, auth, rooms, &room, sdp, tracks).await?;
                Ok(reply(&r))
            }
            Request::SfuAnswer {
                room,
                sdp,
                revision,
            } => {
                let auth = self.authenticated()?;
                media::answer(&self.state, auth, &self.rooms, &room, revision, sdp).await?;
                Ok(reply(&Empty {}))
            }
            Request::SfuMute { room, mid, muted } => {
                let auth = self.authenticated()?;
                media::mute(&self.state, auth, &self.rooms, &room, &mid, muted).await?;
                Ok(reply(&Empty {}))
            }
            Request::SfuSubscribe {
                room,
                track,
                enabled,
            } => {
                let auth = self.authenticated()?;
                let rooms = &self.rooms;
                media::subscribe(&self.state, auth, rooms, &room, &track, enabled).await?;
                Ok(reply(&Empty {}))
            }
            Request::SfuLayer {
                room,
                track,
                rid,
                max_width,
            } => {
                let auth = self.authenticated()?;
                let rooms = &self.rooms;
                media::layer(&self.state, auth, rooms, &room, &track, &rid, max_width).await?;
                Ok(reply(&Empty {}))
            }
            Request::SfuLeave { room } => {
                let auth = self.authenticated()?;
                media::leave(&self.state, &auth.handle, &room);
                Ok(reply(&Empty {}))
            }
        }
    }

    fn connect(
        &mut self,
        token: &str,
        protocol: Option<u32>,
    ) -> Result<ConnectResult, RequestError> {
        if self.auth.is_some() {
            return Err(err(
                ErrorCode::AlreadyAuthenticated,
                "this connection is already authenticated",
            ));
        }
        if let Some(p) = protocol.filter(|p| *p != PROTOCOL_VERSION) {
            return Err(err(
                ErrorCode::UnsupportedProtocol,
                format!("protocol {p} is not supported; this server speaks {PROTOCOL_VERSION}"),
            ));
        }
        let config = &self.state.config;
        let claims = auth::verify(token, auth::now_secs(), |key| config.secret(key))
            .map_err(|e| err(e.code, e.message))?;
        let handle = SessionHandle::new(
            self.id,
            self.client_id.clone(),
            Arc::from(claims.sub.as_str()),
            self.tx.clone(),
            self.closer.clone(),
        );
        self.state.hub.register(&handle)?;
        let l = &config.limits;
        let ice_servers = self.ice_servers(&claims.sub);
        let result = ConnectResult {
            client_id: self.client_id.to_string(),
            identity: claims.sub.clone(),
            name: claims.name.clone(),
            protocol: PROTOCOL_VERSION,
            server: concat!("tandem/", env!("CARGO_PKG_VERSION")).into(),
            ping_interval_ms: l.ping_interval_ms,
            idle_timeout_ms: l.idle_timeout_ms,
            expires_at: claims.exp,
            limits: Limits {
                max_message_bytes: l.max_message_bytes,
                publish_rate: l.publish_rate,
                publish_burst: l.publish_burst,
                max_subscriptions: l.max_subscriptions_per_connection,
                max_rooms: l.max_rooms_per_connection,
            },
            ice_servers,
        };
        self.auth = Some(Authenticated { handle, claims });
        Ok(result)
    }

    /// Replaces the session's token before it expires. The new token must be valid
    /// and name the same identity; its grants apply to later requests (rooms and
    /// subscriptions already held are kept).
    fn refresh(&mut self, token: &str) -> Result<RefreshResult, RequestError> {
        let auth = self.authenticated()?;
        let config = &self.state.config;
        let claims = auth::verify(token, auth::now_secs(), |key| config.secret(key))
            .map_err(|e| err(e.code, e.message))?;
        if claims.sub != auth.claims.sub {
            return Err(err(
                ErrorCode::Forbidden,
                format!(
                    "a refresh token must be for the same identity ('{}'), not '{}'",
                    auth.claims.sub, claims.sub
                ),
            ));
        }
        let result = RefreshResult {
            expires_at: claims.exp,
            ice_servers: self.ice_servers(&claims.sub),
        };
        if let Some(auth) = self.auth.as_mut() {
            auth.claims = claims;
        }
        Ok(result)
    }

    /// STUN/TURN servers with credentials for `identity`, when the server runs TURN.
    fn ice_servers(&self, identity: &str) -> Vec<IceServer> {
        self.state
            .ice_servers
            .as_ref()
            .map(|f| f(identity))
            .unwrap_or_default()
    }

    /// When the session's token expires (Unix seconds), once authenticated.
    pub fn expires_at(&self) -> Option<u64> {
        self.auth.as_ref().map(|a| a.claims.exp)
    }

    fn join(
        &mut self,
        room: String,
        metadata: Option<Box<RawValue>>,
    ) -> Result<tandem_protocol::JoinResult, RequestError> {
        let auth = self.authenticated()?;
        if !valid_room_name(&room) {
            return Err(err(
                ErrorCode::BadRequest,
                "room names are 1–128 characters from A-Z a-z 0-9 _ - .",
            ));
        }
        if !auth.claims.grants.may_join(&room) {
            return Err(err(
                ErrorCode::Forbidden,
                format!("the token does not grant joining room '{room}'"),
            ));
        }
        let room: Arc<str> = room.into();
        if self.rooms.contains(&room) {
            return Err(err(
                ErrorCode::AlreadyJoined,
                format!("already joined room '{room}'"),
            ));
        }
        let max = self.state.config.limits.max_rooms_per_connection;
        if self.rooms.len() >= max {
            return Err(err(
                ErrorCode::TooManyRooms,
                format!("a connection may be in at most {max} rooms"),
            ));
        }
        let metadata =
            metadata.unwrap_or_else(|| RawValue::from_string("{}".into()).expect("{} is JSON"));
        let name = auth.claims.name.clone();
        let grants = &auth.claims.grants;
        let publisher = grants.publish || grants.admin;
        let now = auth::now_millis();
        let result = (self.state.hub).join(&room, &auth.handle, name, metadata, now, publisher)?;
        media::room_joined(&self.state, &auth.handle, &room);
        self.rooms.insert(room);
        Ok(result)
    }

    /// Drops a room from this session and ends its subscriptions to the room's channels.
    fn forget_room(&mut self, room: &str) {
        if !self.rooms.remove(room) {
            return;
        }
        if let Some(auth) = &self.auth {
            media::leave(&self.state, &auth.handle, room);
        }
        media::room_changed(&self.state, room);
        let gone = self
            .subscriptions
            .remove_where(|c| acl::classify(c) == acl::ChannelKind::Room(room));
        for channel in gone {
            self.state.bus.unsubscribe(&channel, self.id);
            METRICS.subscriptions.fetch_sub(1, Relaxed);
        }
    }

    fn check_channel(channel: &str) -> Result<(), RequestError> {
        if valid_channel_name(channel) {
            Ok(())
        } else {
            Err(err(
                ErrorCode::BadRequest,
                "channel names are 1–255 characters from A-Z a-z 0-9 _ - . : @ / #",
            ))
        }
    }

    async fn publish(
        &mut self,
        id: Option<u64>,
        channel: String,
        data: Box<RawValue>,
    ) -> Result<(), RequestError> {
        let auth = self.authenticated()?;
        Self::check_channel(&channel)?;
        acl::may_publish(&auth.claims, &self.rooms, &channel)
            .map_err(|m| err(ErrorCode::Forbidden, m))?;
        let handle = auth.handle.clone();
        if let Err(wait) = self.bucket.take(Instant::now()) {
            let rate = self.state.config.limits.publish_rate;
            return Err(RequestError {
                code: ErrorCode::RateLimited,
                message: format!("more than {rate} publications per second; retry in {wait} ms"),
                retry_after_ms: Some(wait),
            });
        }
        let append = Append {
            channel: channel.into(),
            data,
            from: Some(handle.identity.clone()),
            ack: Box::new(move |result| {
                let frame = match result {
                    Ok(_) if id.is_none() => return, // fire-and-forget
                    Ok(c) => reply_frame(
                        id,
                        &PublishResult {
                            offset: c.publication.offset,
                            epoch: c.epoch.to_string(),
                        },
                    ),
                    Err(e) => {
                        tracing::error!(error = %e, "publish failed");
                        METRICS.error(ErrorCode::Internal);
                        error_frame(
                            id,
                            ErrorCode::Internal,
                            "the publication was not stored; retry",
                            None,
                        )
                    }
                };
                handle.push_frame(frame);
            }),
        };
        self.state.publish(append).await.map_err(internal)
    }

    async fn subscribe(
        &mut self,
        channel: String,
        since: Option<StreamPosition>,
    ) -> Result<SubscribeResult, RequestError> {
        let auth = self.authenticated()?;
        Self::check_channel(&channel)?;
        acl::may_subscribe(&auth.claims, &self.rooms, &channel)
            .map_err(|m| err(ErrorCode::Forbidden, m))?;
        if self.subscriptions.contains(&channel) {
            return Err(err(
                ErrorCode::AlreadySubscribed,
                format!("already subscribed to '{channel}'"),
            ));
        }
        let max = self.state.config.limits.max_subscriptions_per_connection;
        if self.subscriptions.len() >= max {
            return Err(err(
                ErrorCode::TooManySubscriptions,
                format!("a connection may have at most {max} subscriptions"),
            ));
        }
        let channel: Arc<str> = channel.into();
        // Register for live publications first, then read the log: anything committed
        // after the read arrives live, anything before is in the read, and overlaps
        // are dropped by offset in `on_outbound`.
        let channel = self.state.bus.subscribe(&channel, auth.handle.clone());
        let result = self.read_for_subscribe(&channel, since).await;
        match result {
            Ok(result) => {
                let last = result
                    .publications
                    .last()
                    .map_or(0, |p| p.offset)
                    .max(result.offset);
                self.subscriptions.insert(channel, last);
                METRICS.subscriptions.fetch_add(1, Relaxed);
                Ok(result)
            }
            Err(e) => {
                self.state.bus.unsubscribe(&channel, self.id);
                Err(e)
            }
        }
    }

    async fn read_for_subscribe(
        &self,
        channel: &Arc<str>,
        since: Option<StreamPosition>,
    ) -> Result<SubscribeResult, RequestError> {
        let history = &self.state.history;
        let state = history.ensure(channel.clone()).await.map_err(internal)?;
        let Some(since) = since else {
            return Ok(SubscribeResult {
                channel: channel.to_string(),
                epoch: state.epoch.to_string(),
                offset: state.top,
                recovered: None,
                reason: None,
                publications: Vec::new(),
            });
        };
        let max = history.config().recovery_max;
        let page = history
            .read(
                channel.clone(),
                Range::After {
                    after: since.offset,
                    limit: max + 1,
                },
            )
            .await
            .map_err(internal)?
            .ok_or_else(|| internal("channel vanished after ensure"))?;
        let recovery = recovery_outcome(&since, page, max);
        Ok(SubscribeResult {
            channel: channel.to_string(),
            epoch: recovery.state.epoch.to_string(),
            offset: recovery.state.top,
            recovered: Some(recovery.failure.is_none()),
            reason: recovery.failure,
            publications: recovery.publications,
        })
    }

    async fn history(
        &self,
        channel: String,
        before: Option<u64>,
        since: Option<u64>,
        limit: Option<u32>,
    ) -> Result<HistoryResult, RequestError> {
        let auth = self.authenticated()?;
        Self::check_channel(&channel)?;
        acl::may_subscribe(&auth.claims, &self.rooms, &channel)
            .map_err(|m| err(ErrorCode::Forbidden, m))?;
        let limit = u64::from(limit.unwrap_or(50));
        if limit == 0 || limit > 1000 {
            return Err(err(ErrorCode::BadRequest, "history limit must be 1–1000"));
        }
        let range = match (before, since) {
            (Some(_), Some(_)) => {
                return Err(err(
                    ErrorCode::BadRequest,
                    "use either 'before' or 'since', not both",
                ))
            }
            (Some(before), None) => Range::Before { before, limit },
            (None, Some(after)) => Range::After { after, limit },
            (None, None) => Range::Latest { limit },
        };
        let channel: Arc<str> = channel.into();
        let page = match self
            .state
            .history
            .read(channel.clone(), range)
            .await
            .map_err(internal)?
        {
            Some(page) => page,
            None => {
                let state = self
                    .state
                    .history
                    .ensure(channel.clone())
                    .await
                    .map_err(internal)?;
                crate::history::Page {
                    state,
                    earliest: 0,
                    publications: Vec::new(),
                }
            }
        };
        Ok(HistoryResult {
            channel: channel.to_string(),
            epoch: page.state.epoch.to_string(),
            offset: page.state.top,
            earliest: page.earliest,
            publications: page.publications,
        })
    }

    /// Leaves every room and subscription; called once when the socket ends.
    pub fn finish(&mut self) {
        let Some(auth) = self.auth.take() else {
            return;
        };
        for room in self.rooms.drain() {
            let _ = self
                .state
                .hub
                .leave(&room, self.id, LeaveReason::Disconnected);
            media::leave(&self.state, &auth.handle, &room);
            media::room_changed(&self.state, &room);
        }
        for channel in self.subscriptions.remove_where(|_| true) {
            self.state.bus.unsubscribe(&channel, self.id);
            METRICS.subscriptions.fetch_sub(1, Relaxed);
        }
        self.state.hub.unregister(&auth.handle);
    }
}

/// Lets `dispatch` build reply frames from differently typed results.
mod erased {
    pub trait Result {
        fn frame(&self, id: Option<u64>) -> String;
    }
    impl<T: serde::Serialize> Result for T {
        fn frame(&self, id: Option<u64>) -> String {
            tandem_protocol::reply_frame(id, self)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_limits_rate() {
        let mut b = TokenBucket::new(10, 2);
        let t0 = Instant::now();
        assert!(b.take(t0).is_ok());
        assert!(b.take(t0).is_ok());
        let wait = b.take(t0).unwrap_err();
        assert!((1..=100).contains(&wait), "{wait}");
        assert!(b.take(t0 + Duration::from_millis(150)).is_ok());
    }
}
