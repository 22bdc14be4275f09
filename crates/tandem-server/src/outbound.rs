//! What the server queues for one session, and the handle other parts of the server
//! use to reach it. Every queue is bounded: a session that cannot keep up is closed
//! with `slow_consumer` instead of growing the server's memory.

use crate::metrics::METRICS;
use bytes::Bytes;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use tandem_protocol::CloseCode;
use tokio::sync::{mpsc, Notify};

/// One item in a session's outbound queue.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A ready frame (often shared by many sessions).
    Frame(Bytes),
    /// A publication; the session drops it unless it is subscribed and the offset is new.
    Publication {
        channel: Arc<str>,
        offset: u64,
        frame: Bytes,
    },
    /// The hub took this session out of a room; `frame` is the `removed` push.
    Removed { room: Arc<str>, frame: Bytes },
}

/// Set once by whoever decides the session must end; the session task watches it.
#[derive(Debug, Default)]
pub struct Closer {
    code: AtomicU16,
    notify: Notify,
}

impl Closer {
    /// Asks the session to close; the first code wins.
    pub fn close(&self, code: CloseCode) {
        if self
            .code
            .compare_exchange(0, code.code(), Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.notify.notify_one();
        }
    }

    pub fn requested(&self) -> Option<CloseCode> {
        CloseCode::from_code(self.code.load(Ordering::Acquire))
    }

    pub async fn wait(&self) -> CloseCode {
        loop {
            if let Some(code) = self.requested() {
                return code;
            }
            self.notify.notified().await;
        }
    }
}

/// A cheap, cloneable way to push to one session.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    /// Process-unique number, used as a map key.
    pub id: u64,
    /// The client id shown on the wire (participant `sid`).
    pub client_id: Arc<str>,
    pub identity: Arc<str>,
    tx: mpsc::Sender<Outbound>,
    closer: Arc<Closer>,
}

impl SessionHandle {
    pub fn new(
        id: u64,
        client_id: Arc<str>,
        identity: Arc<str>,
        tx: mpsc::Sender<Outbound>,
        closer: Arc<Closer>,
    ) -> Self {
        SessionHandle {
            id,
            client_id,
            identity,
            tx,
            closer,
        }
    }

    /// Queues an item without waiting. A full queue closes the session as a slow
    /// consumer; returns whether the item was queued.
    pub fn push(&self, item: Outbound) -> bool {
        match self.tx.try_send(item) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                if self.closer.requested().is_none() {
                    METRICS.slow_consumers.fetch_add(1, Ordering::Relaxed);
                }
                self.closer.close(CloseCode::SlowConsumer);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    pub fn push_frame(&self, frame: impl Into<Bytes>) -> bool {
        self.push(Outbound::Frame(frame.into()))
    }

    pub fn close(&self, code: CloseCode) {
        self.closer.close(code);
    }
}
