//! What the server queues for one session, and the handle other parts of the server
//! use to reach it. Every queue is bounded: a session that cannot keep up is closed
//! with `slow_consumer` instead of growing the server's memory.

use crate::metrics::METRICS;
use bytes::Bytes;
use futures_util::task::AtomicWaker;
use std::future::Future;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::task::Poll;
use tandem_protocol::CloseCode;
use tokio::sync::mpsc;

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
///
/// Only the session's own task waits, so one `AtomicWaker` does: the session polls
/// `wait()` on every turn of its loop and around every write, and registering with an
/// `AtomicWaker` is a compare of wakers, where `tokio::sync::Notify` took a lock.
#[derive(Debug, Default)]
pub struct Closer {
    code: AtomicU16,
    waker: AtomicWaker,
}

impl Closer {
    /// Asks the session to close; the first code wins.
    pub fn close(&self, code: CloseCode) {
        if self
            .code
            .compare_exchange(0, code.code(), Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.waker.wake();
        }
    }

    pub fn requested(&self) -> Option<CloseCode> {
        CloseCode::from_code(self.code.load(Ordering::Acquire))
    }

    /// Resolves once `close` was called. For the session task only (one waiter).
    pub fn wait(&self) -> impl Future<Output = CloseCode> + '_ {
        std::future::poll_fn(|cx| {
            if let Some(code) = self.requested() {
                return Poll::Ready(code);
            }
            self.waker.register(cx.waker());
            // A close between the first check and the registration woke nobody.
            self.requested().map_or(Poll::Pending, Poll::Ready)
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wait_resolves_with_the_first_close_code() {
        let closer = Arc::new(Closer::default());
        let waiter = {
            let closer = closer.clone();
            tokio::spawn(async move { closer.wait().await })
        };
        tokio::task::yield_now().await;
        closer.close(CloseCode::SlowConsumer);
        closer.close(CloseCode::IdleTimeout);
        assert_eq!(waiter.await.unwrap(), CloseCode::SlowConsumer);
        // Already closed: resolves at once, with the same code.
        assert_eq!(closer.wait().await, CloseCode::SlowConsumer);
    }
}
