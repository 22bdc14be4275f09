//! Process-wide counters rendered in the Prometheus text format at `/metrics`.
//! Plain atomics: nothing on the hot path takes a lock to count.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use tandem_protocol::ErrorCode;

pub struct Metrics {
    pub connections: AtomicI64,
    pub connections_total: AtomicU64,
    pub rooms: AtomicI64,
    pub participants: AtomicI64,
    pub subscriptions: AtomicI64,
    pub messages_in: AtomicU64,
    pub messages_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub publications: AtomicU64,
    pub history_writes: AtomicU64,
    pub history_commits: AtomicU64,
    pub history_trimmed: AtomicU64,
    pub signals: AtomicU64,
    pub slow_consumers: AtomicU64,
    pub api_requests: AtomicU64,
    errors: [AtomicU64; ErrorCode::ALL.len()],
}

#[allow(clippy::declare_interior_mutable_const)]
const ZERO: AtomicU64 = AtomicU64::new(0);

pub static METRICS: Metrics = Metrics {
    connections: AtomicI64::new(0),
    connections_total: AtomicU64::new(0),
    rooms: AtomicI64::new(0),
    participants: AtomicI64::new(0),
    subscriptions: AtomicI64::new(0),
    messages_in: AtomicU64::new(0),
    messages_out: AtomicU64::new(0),
    bytes_in: AtomicU64::new(0),
    bytes_out: AtomicU64::new(0),
    publications: AtomicU64::new(0),
    history_writes: AtomicU64::new(0),
    history_commits: AtomicU64::new(0),
    history_trimmed: AtomicU64::new(0),
    signals: AtomicU64::new(0),
    slow_consumers: AtomicU64::new(0),
    api_requests: AtomicU64::new(0),
    errors: [ZERO; ErrorCode::ALL.len()],
};

impl Metrics {
    pub fn error(&self, code: ErrorCode) {
        if let Some(i) = ErrorCode::ALL.iter().position(|c| *c == code) {
            self.errors[i].fetch_add(1, Relaxed);
        }
    }

    pub fn render(&self, out: &mut String) {
        let gauges = [
            (
                "tandem_connections",
                "Open WebSocket sessions.",
                self.connections.load(Relaxed),
            ),
            (
                "tandem_rooms",
                "Rooms with at least one participant.",
                self.rooms.load(Relaxed),
            ),
            (
                "tandem_participants",
                "Participants across all rooms.",
                self.participants.load(Relaxed),
            ),
            (
                "tandem_subscriptions",
                "Channel subscriptions across all sessions.",
                self.subscriptions.load(Relaxed),
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        let counters = [
            (
                "tandem_connections_total",
                "WebSocket sessions accepted.",
                &self.connections_total,
            ),
            (
                "tandem_messages_in_total",
                "Frames received from clients.",
                &self.messages_in,
            ),
            (
                "tandem_messages_out_total",
                "Frames sent to clients.",
                &self.messages_out,
            ),
            (
                "tandem_bytes_in_total",
                "Payload bytes received from clients.",
                &self.bytes_in,
            ),
            (
                "tandem_bytes_out_total",
                "Payload bytes sent to clients.",
                &self.bytes_out,
            ),
            (
                "tandem_publications_total",
                "Publications committed and fanned out.",
                &self.publications,
            ),
            (
                "tandem_history_writes_total",
                "Publications written to the history store.",
                &self.history_writes,
            ),
            (
                "tandem_history_commits_total",
                "Group commits of the history store.",
                &self.history_commits,
            ),
            (
                "tandem_history_trimmed_total",
                "Publications trimmed by count or age.",
                &self.history_trimmed,
            ),
            (
                "tandem_signals_total",
                "Signals relayed between participants.",
                &self.signals,
            ),
            (
                "tandem_slow_consumer_disconnects_total",
                "Sessions closed because their queue overflowed.",
                &self.slow_consumers,
            ),
            (
                "tandem_api_requests_total",
                "Server API requests.",
                &self.api_requests,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP tandem_errors_total Error frames sent, by code.\n# TYPE tandem_errors_total counter"
        );
        for (code, value) in ErrorCode::ALL.iter().zip(&self.errors) {
            let _ = writeln!(
                out,
                "tandem_errors_total{{code=\"{code}\"}} {}",
                value.load(Relaxed)
            );
        }
    }
}
