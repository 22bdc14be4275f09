//! Durable, ordered message log per channel.
//!
//! Offsets are assigned inside the store's own transaction (`UPDATE … RETURNING`), never
//! from a node's memory, so a shared store (Redis) can replace SQLite without changing
//! the guarantee. One writer thread group-commits appends and, after each commit, hands
//! the publications to the fan-out in offset order; acknowledgements go out only after
//! the commit.

mod sqlite;

pub use sqlite::SqliteHistory;

use std::sync::Arc;
use tandem_protocol::{Publication, RawValue, RecoveryFailure, StreamPosition};

/// A channel's log position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelState {
    pub epoch: Arc<str>,
    /// Latest offset (0 when nothing was ever published).
    pub top: u64,
}

/// Which slice of the log to read.
#[derive(Debug, Clone, Copy)]
pub enum Range {
    /// The newest `limit` publications.
    Latest { limit: u64 },
    /// The newest `limit` publications with offset < `before`.
    Before { before: u64, limit: u64 },
    /// The first `limit` publications with offset > `after`.
    After { after: u64, limit: u64 },
}

/// A read of the log, consistent with one point in time.
#[derive(Debug)]
pub struct Page {
    pub state: ChannelState,
    /// Oldest retained offset, 0 when nothing is retained.
    pub earliest: u64,
    /// Ascending by offset.
    pub publications: Vec<Publication>,
}

/// The outcome of a recovery request.
#[derive(Debug)]
pub struct Recovery {
    pub state: ChannelState,
    pub failure: Option<RecoveryFailure>,
    pub publications: Vec<Publication>,
}

/// A publication committed to the log.
#[derive(Debug, Clone)]
pub struct Committed {
    pub channel: Arc<str>,
    pub epoch: Arc<str>,
    pub publication: Publication,
}

/// A store failure; clients see `internal`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("history store: {0}")]
pub struct StoreError(pub String);

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError(e.to_string())
    }
}

/// Called once per append, after its commit (or failure).
pub type AckFn = Box<dyn FnOnce(Result<&Committed, &StoreError>) + Send>;
/// Called with each transaction's committed publications, in offset order, before
/// acks.
pub type CommitHook = Arc<dyn Fn(&[Committed]) + Send + Sync>;

/// What one append carries into the writer.
pub struct Append {
    pub channel: Arc<str>,
    pub data: Box<RawValue>,
    pub from: Option<Arc<str>>,
    pub ack: AckFn,
}

/// Decides whether a subscriber that stopped at `since` can be caught up from `page`,
/// which was read with `Range::After { after: since.offset, limit: max + 1 }`.
pub fn recovery_outcome(since: &StreamPosition, page: Page, max: u64) -> Recovery {
    let Page {
        state,
        earliest,
        mut publications,
    } = page;
    let fail = |state, failure, publications| Recovery {
        state,
        failure: Some(failure),
        publications,
    };
    if *state.epoch != since.epoch || since.offset > state.top {
        return fail(state, RecoveryFailure::EpochChanged, Vec::new());
    }
    if since.offset == state.top {
        return Recovery {
            state,
            failure: None,
            publications: Vec::new(),
        };
    }
    let first_needed = since.offset + 1;
    if earliest == 0 || earliest > first_needed {
        // Return what is still retained, but say the gap was not covered.
        publications.truncate(max as usize);
        return fail(state, RecoveryFailure::HistoryExpired, publications);
    }
    if publications.len() as u64 > max {
        return fail(state, RecoveryFailure::TooMany, Vec::new());
    }
    Recovery {
        state,
        failure: None,
        publications,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(epoch: &str, top: u64, earliest: u64, offsets: std::ops::Range<u64>) -> Page {
        Page {
            state: ChannelState {
                epoch: epoch.into(),
                top,
            },
            earliest,
            publications: offsets
                .map(|offset| Publication {
                    offset,
                    data: RawValue::from_string("1".into()).unwrap(),
                    from: None,
                    ts: 0,
                })
                .collect(),
        }
    }
    fn since(offset: u64, epoch: &str) -> StreamPosition {
        StreamPosition {
            offset,
            epoch: epoch.into(),
        }
    }

    #[test]
    fn outcomes() {
        let r = recovery_outcome(&since(3, "e"), page("e", 5, 1, 4..6), 10);
        assert_eq!(r.failure, None);
        assert_eq!(r.publications.len(), 2);
        let r = recovery_outcome(&since(3, "x"), page("e", 5, 1, 4..6), 10);
        assert_eq!(r.failure, Some(RecoveryFailure::EpochChanged));
        let r = recovery_outcome(&since(9, "e"), page("e", 5, 1, 0..0), 10);
        assert_eq!(r.failure, Some(RecoveryFailure::EpochChanged));
        let r = recovery_outcome(&since(1, "e"), page("e", 5, 4, 4..6), 10);
        assert_eq!(r.failure, Some(RecoveryFailure::HistoryExpired));
        assert_eq!(r.publications.len(), 2);
        let r = recovery_outcome(&since(1, "e"), page("e", 5, 0, 0..0), 10);
        assert_eq!(r.failure, Some(RecoveryFailure::HistoryExpired));
        let r = recovery_outcome(&since(0, "e"), page("e", 20, 1, 1..5), 3);
        assert_eq!(r.failure, Some(RecoveryFailure::TooMany));
        let r = recovery_outcome(&since(5, "e"), page("e", 5, 1, 0..0), 3);
        assert_eq!(r.failure, None);
        assert!(r.publications.is_empty());
    }
}
