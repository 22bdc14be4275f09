//! Rust client for Tandem's WebSocket protocol v1 (docs/protocol.md).
//!
//! ```no_run
//! # async fn demo() -> Result<(), tandem_client::ClientError> {
//! let (client, mut events, welcome) = tandem_client::Client::connect("ws://127.0.0.1:7880/ws", "<token>").await?;
//! client.join("demo", None).await?;
//! client.subscribe("room:demo:chat", None).await?;
//! client.publish("room:demo:chat", serde_json::json!({"text": "hi"})).await?;
//! while let Some(event) = events.recv().await { println!("{event:?}"); }
//! # Ok(()) }
//! ```
//!
//! A background task owns the socket; requests get ids and resolve when their reply
//! arrives. Server pings are answered automatically unless disabled.

use futures_util::{SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tandem_protocol::{
    ConnectResult, ErrorCode, HistoryResult, JoinResult, PublishResult, RefreshResult,
    StreamPosition, SubscribeResult,
};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_websockets::{Message, WebSocketStream};

pub use tandem_protocol as protocol;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("server error {code}: {message}")]
    Server {
        code: ErrorCode,
        message: String,
        retry_after_ms: Option<u64>,
    },
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("the connection is closed")]
    Closed,
    #[error("unexpected reply: {0}")]
    Decode(String),
}

impl ClientError {
    /// The server's error code, if this is a server error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// A publication pushed on a subscribed channel.
#[derive(Debug, Clone, PartialEq)]
pub struct PublicationEvent {
    pub channel: String,
    pub offset: u64,
    pub data: Value,
    pub from: Option<String>,
    pub ts: u64,
}

/// Something the server sent that is not a reply.
#[derive(Debug, Clone)]
pub enum Event {
    Publication(PublicationEvent),
    /// Any other push (`participant_joined`, `signal`, `disconnect`, …) as JSON.
    Push(Value),
    /// An error frame that answers no request (for example a malformed frame).
    Error {
        code: ErrorCode,
        message: String,
    },
    /// The socket closed; `code` is the close frame's code when there was one.
    Closed {
        code: Option<u16>,
        reason: String,
    },
}

impl Event {
    /// The push `type`, for pushes.
    pub fn kind(&self) -> Option<&str> {
        match self {
            Event::Publication(_) => Some("publication"),
            Event::Push(v) => v.get("type").and_then(Value::as_str),
            _ => None,
        }
    }
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Value, ClientError>>>>>;

enum Command {
    Send(Message),
    Close,
}

/// Options for [`Client::open_with`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Answer server `ping` pushes with `pong` (turn off to test idle timeouts).
    pub auto_pong: bool,
    /// Sent as the `Origin` header, like a browser would.
    pub origin: Option<String>,
    /// Capacity of the event queue; events beyond it are dropped.
    pub event_queue: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            auto_pong: true,
            origin: None,
            event_queue: 65_536,
        }
    }
}

#[derive(Clone)]
pub struct Client {
    commands: mpsc::UnboundedSender<Command>,
    pending: Pending,
    next_id: Arc<AtomicU64>,
}

impl Client {
    /// Opens a socket without authenticating.
    pub async fn open(url: &str) -> Result<(Client, mpsc::Receiver<Event>), ClientError> {
        Self::open_with(url, Options::default()).await
    }

    pub async fn open_with(
        url: &str,
        options: Options,
    ) -> Result<(Client, mpsc::Receiver<Event>), ClientError> {
        let mut builder = tokio_websockets::ClientBuilder::new()
            .uri(url)
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        if let Some(origin) = &options.origin {
            builder = builder
                .add_header(
                    http::header::ORIGIN,
                    http::HeaderValue::from_str(origin)
                        .map_err(|e| ClientError::Connect(e.to_string()))?,
                )
                .map_err(|e| ClientError::Connect(e.to_string()))?;
        }
        let (ws, _) = builder
            .connect()
            .await
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (event_tx, events) = mpsc::channel(options.event_queue);
        let pending: Pending = Arc::default();
        tokio::spawn(pump(
            ws,
            command_rx,
            event_tx,
            pending.clone(),
            options.auto_pong,
            commands.clone(),
        ));
        Ok((
            Client {
                commands,
                pending,
                next_id: Arc::new(AtomicU64::new(1)),
            },
            events,
        ))
    }

    /// Opens a socket and authenticates with `token`.
    pub async fn connect(
        url: &str,
        token: &str,
    ) -> Result<(Client, mpsc::Receiver<Event>, ConnectResult), ClientError> {
        let (client, events) = Self::open(url).await?;
        let welcome = client.authenticate(token).await?;
        Ok((client, events, welcome))
    }

    pub async fn authenticate(&self, token: &str) -> Result<ConnectResult, ClientError> {
        self.call(
            "connect",
            json!({"token": token, "protocol": 1, "client": "tandem-rust/0.1"}),
        )
        .await
    }

    /// Hands the server a fresh token for the same identity before the current one
    /// expires (`ConnectResult::expires_at`); the reply carries the new expiry.
    pub async fn refresh(&self, token: &str) -> Result<RefreshResult, ClientError> {
        self.call("refresh", json!({ "token": token })).await
    }

    /// Sends a request and waits for its reply's `result`.
    pub async fn request(&self, kind: &str, body: Value) -> Result<Value, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut frame = match body {
            Value::Object(map) => map,
            Value::Null => serde_json::Map::new(),
            other => {
                return Err(ClientError::Decode(format!(
                    "request body must be an object, got {other}"
                )))
            }
        };
        frame.insert("id".into(), id.into());
        frame.insert("type".into(), kind.into());
        let (tx, rx) = oneshot::channel();
        self.pending.lock().expect("pending lock").insert(id, tx);
        let text = Value::Object(frame).to_string();
        if self
            .commands
            .send(Command::Send(Message::text(text)))
            .is_err()
        {
            self.pending.lock().expect("pending lock").remove(&id);
            return Err(ClientError::Closed);
        }
        rx.await.map_err(|_| ClientError::Closed)?
    }

    async fn call<T: DeserializeOwned>(&self, kind: &str, body: Value) -> Result<T, ClientError> {
        let result = self.request(kind, body).await?;
        serde_json::from_value(result).map_err(|e| ClientError::Decode(e.to_string()))
    }

    pub async fn join(
        &self,
        room: &str,
        metadata: Option<Value>,
    ) -> Result<JoinResult, ClientError> {
        let mut body = json!({"room": room});
        if let Some(m) = metadata {
            body["metadata"] = m;
        }
        // JoinResult holds raw JSON, which cannot come from a `Value`: decode from text.
        let result = self.request("join", body).await?;
        serde_json::from_str(&result.to_string()).map_err(|e| ClientError::Decode(e.to_string()))
    }

    pub async fn leave(&self, room: &str) -> Result<(), ClientError> {
        self.request("leave", json!({"room": room})).await.map(drop)
    }

    pub async fn update(&self, room: &str, metadata: Value) -> Result<(), ClientError> {
        self.request("update", json!({"room": room, "metadata": metadata}))
            .await
            .map(drop)
    }

    pub async fn publish(&self, channel: &str, data: Value) -> Result<PublishResult, ClientError> {
        self.call("publish", json!({"channel": channel, "data": data}))
            .await
    }

    pub async fn subscribe(
        &self,
        channel: &str,
        since: Option<StreamPosition>,
    ) -> Result<SubscribeResult, ClientError> {
        let mut body = json!({"channel": channel});
        if let Some(s) = since {
            body["since"] = json!({"offset": s.offset, "epoch": s.epoch});
        }
        let result = self.request("subscribe", body).await?;
        serde_json::from_str(&result.to_string()).map_err(|e| ClientError::Decode(e.to_string()))
    }

    pub async fn unsubscribe(&self, channel: &str) -> Result<(), ClientError> {
        self.request("unsubscribe", json!({"channel": channel}))
            .await
            .map(drop)
    }

    /// `before`/`since` as in the protocol; both `None` reads the newest `limit`.
    pub async fn history(
        &self,
        channel: &str,
        before: Option<u64>,
        since: Option<u64>,
        limit: Option<u32>,
    ) -> Result<HistoryResult, ClientError> {
        let mut body = json!({"channel": channel});
        if let Some(b) = before {
            body["before"] = b.into();
        }
        if let Some(s) = since {
            body["since"] = s.into();
        }
        if let Some(l) = limit {
            body["limit"] = l.into();
        }
        let result = self.request("history", body).await?;
        serde_json::from_str(&result.to_string()).map_err(|e| ClientError::Decode(e.to_string()))
    }

    pub async fn signal(&self, room: &str, to: &str, data: Value) -> Result<(), ClientError> {
        self.request("signal", json!({"room": room, "to": to, "data": data}))
            .await
            .map(drop)
    }

    /// Sends any text frame as is (for testing the server's handling of bad input).
    pub fn send_text(&self, text: impl Into<String>) -> Result<(), ClientError> {
        self.commands
            .send(Command::Send(Message::text(text.into())))
            .map_err(|_| ClientError::Closed)
    }

    pub fn send_binary(&self, bytes: Vec<u8>) -> Result<(), ClientError> {
        self.commands
            .send(Command::Send(Message::binary(bytes)))
            .map_err(|_| ClientError::Closed)
    }

    /// Closes the socket normally.
    pub fn close(&self) {
        let _ = self.commands.send(Command::Close);
    }
}

/// Opens a raw WebSocket to a `ws://` URL with TCP_NODELAY set (small real-time frames
/// must not wait for Nagle's algorithm), optionally sending an `Origin` header.
pub async fn connect_socket(
    url: &str,
    origin: Option<&str>,
) -> Result<WebSocketStream<TcpStream>, ClientError> {
    let fail = |e: &dyn std::fmt::Display| ClientError::Connect(e.to_string());
    let uri: http::Uri = url.parse().map_err(|e| fail(&e))?;
    if uri.scheme_str() != Some("ws") {
        return Err(ClientError::Connect(format!(
            "only ws:// URLs are supported, got '{url}'"
        )));
    }
    let host = uri
        .host()
        .ok_or_else(|| ClientError::Connect(format!("no host in '{url}'")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(80);
    let tcp = TcpStream::connect((host, port))
        .await
        .map_err(|e| fail(&e))?;
    tcp.set_nodelay(true).map_err(|e| fail(&e))?;
    let mut builder = tokio_websockets::ClientBuilder::from_uri(uri);
    if let Some(origin) = origin {
        let value = http::HeaderValue::from_str(origin).map_err(|e| fail(&e))?;
        builder = builder
            .add_header(http::header::ORIGIN, value)
            .map_err(|e| fail(&e))?;
    }
    let (ws, _) = builder.connect_on(tcp).await.map_err(|e| fail(&e))?;
    Ok(ws)
}

fn decode_error(v: &Value) -> ClientError {
    let code = v
        .get("code")
        .cloned()
        .and_then(|c| serde_json::from_value(c).ok())
        .unwrap_or(ErrorCode::Internal);
    ClientError::Server {
        code,
        message: v
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        retry_after_ms: v.get("retry_after_ms").and_then(Value::as_u64),
    }
}

async fn pump<S>(
    mut ws: tokio_websockets::WebSocketStream<S>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::Sender<Event>,
    pending: Pending,
    auto_pong: bool,
    self_commands: mpsc::UnboundedSender<Command>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let closed = loop {
        tokio::select! {
            command = commands.recv() => match command {
                Some(Command::Send(msg)) => {
                    if ws.send(msg).await.is_err() {
                        break Event::Closed { code: None, reason: "send failed".into() };
                    }
                }
                Some(Command::Close) | None => {
                    let _ = ws.close().await;
                    while let Some(Ok(_)) = ws.next().await {}
                    break Event::Closed { code: Some(1000), reason: "closed by client".into() };
                }
            },
            msg = ws.next() => {
                let msg = match msg {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => break Event::Closed { code: None, reason: e.to_string() },
                    None => break Event::Closed { code: None, reason: "connection ended".into() },
                };
                if let Some((code, reason)) = msg.as_close() {
                    break Event::Closed { code: Some(u16::from(code)), reason: reason.to_string() };
                }
                let Some(text) = msg.as_text() else { continue };
                let Ok(value) = serde_json::from_str::<Value>(text) else { continue };
                let kind = value.get("type").and_then(Value::as_str).unwrap_or("");
                let id = value.get("id").and_then(Value::as_u64);
                match (kind, id) {
                    ("reply", Some(id)) | ("error", Some(id)) => {
                        let waiter = pending.lock().expect("pending lock").remove(&id);
                        if let Some(waiter) = waiter {
                            let result = if kind == "reply" {
                                Ok(value.get("result").cloned().unwrap_or(Value::Null))
                            } else {
                                Err(decode_error(&value))
                            };
                            let _ = waiter.send(result);
                        }
                    }
                    ("error", None) => {
                        if let ClientError::Server { code, message, .. } = decode_error(&value) {
                            let _ = events.try_send(Event::Error { code, message });
                        }
                    }
                    ("ping", _) if auto_pong => {
                        let _ = self_commands.send(Command::Send(Message::text(r#"{"type":"pong"}"#.to_string())));
                    }
                    ("publication", _) => {
                        let p = PublicationEvent {
                            channel: value["channel"].as_str().unwrap_or("").into(),
                            offset: value["offset"].as_u64().unwrap_or(0),
                            data: value["data"].clone(),
                            from: value["from"].as_str().map(str::to_owned),
                            ts: value["ts"].as_u64().unwrap_or(0),
                        };
                        let _ = events.try_send(Event::Publication(p));
                    }
                    _ => {
                        let _ = events.try_send(Event::Push(value));
                    }
                }
            }
        }
    };
    for (_, waiter) in pending.lock().expect("pending lock").drain() {
        let _ = waiter.send(Err(ClientError::Closed));
    }
    let _ = events.send(closed).await;
}
