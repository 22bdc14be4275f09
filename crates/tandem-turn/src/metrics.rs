//! Counters of the TURN server, rendered in the Prometheus text format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};

/// Atomic counters shared by the core and the I/O layer.
#[derive(Debug, Default)]
pub struct Metrics {
    pub allocations_active: AtomicU64,
    pub allocations_total: AtomicU64,
    pub permissions_created: AtomicU64,
    pub channels_bound: AtomicU64,
    pub binding_requests: AtomicU64,
    pub packets_to_peer: AtomicU64,
    pub bytes_to_peer: AtomicU64,
    pub packets_to_client: AtomicU64,
    pub bytes_to_client: AtomicU64,
    pub auth_failures: AtomicU64,
    pub quota_rejections: AtomicU64,
    pub denied_peers: AtomicU64,
    pub bandwidth_drops: AtomicU64,
    pub malformed_drops: AtomicU64,
    pub error_responses: AtomicU64,
    pub tcp_connections_active: AtomicU64,
}

impl Metrics {
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Relaxed);
    }

    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }

    /// Appends the Prometheus text lines of these counters to `out`.
    pub fn render(&self, out: &mut String) {
        let g = |c: &AtomicU64| c.load(Relaxed);
        let mut line = |name: &str, kind: &str, help: &str, v: &[(Option<&str>, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (label, value) in v {
                match label {
                    Some(l) => {
                        let _ = writeln!(out, "{name}{{{l}}} {value}");
                    }
                    None => {
                        let _ = writeln!(out, "{name} {value}");
                    }
                }
            }
        };
        line(
            "tandem_turn_allocations",
            "gauge",
            "Active TURN allocations.",
            &[(None, g(&self.allocations_active))],
        );
        line(
            "tandem_turn_allocations_total",
            "counter",
            "TURN allocations created.",
            &[(None, g(&self.allocations_total))],
        );
        line(
            "tandem_turn_permissions_total",
            "counter",
            "TURN permissions created or refreshed.",
            &[(None, g(&self.permissions_created))],
        );
        line(
            "tandem_turn_channel_binds_total",
            "counter",
            "TURN channel bindings created or refreshed.",
            &[(None, g(&self.channels_bound))],
        );
        line(
            "tandem_turn_binding_requests_total",
            "counter",
            "STUN Binding requests answered.",
            &[(None, g(&self.binding_requests))],
        );
        line(
            "tandem_turn_relayed_packets_total",
            "counter",
            "Packets relayed, by direction.",
            &[
                (Some("direction=\"to_peer\""), g(&self.packets_to_peer)),
                (Some("direction=\"to_client\""), g(&self.packets_to_client)),
            ],
        );
        line(
            "tandem_turn_relayed_bytes_total",
            "counter",
            "Payload bytes relayed, by direction.",
            &[
                (Some("direction=\"to_peer\""), g(&self.bytes_to_peer)),
                (Some("direction=\"to_client\""), g(&self.bytes_to_client)),
            ],
        );
        line(
            "tandem_turn_auth_failures_total",
            "counter",
            "Requests refused for bad credentials (unknown or expired user, wrong MESSAGE-INTEGRITY).",
            &[(None, g(&self.auth_failures))],
        );
        line(
            "tandem_turn_quota_rejections_total",
            "counter",
            "Allocations refused by a quota (486/508).",
            &[(None, g(&self.quota_rejections))],
        );
        line(
            "tandem_turn_denied_peer_total",
            "counter",
            "Permissions or channels refused because the peer address is denied (403).",
            &[(None, g(&self.denied_peers))],
        );
        line(
            "tandem_turn_dropped_packets_total",
            "counter",
            "Packets dropped, by reason.",
            &[
                (Some("reason=\"bandwidth\""), g(&self.bandwidth_drops)),
                (Some("reason=\"malformed\""), g(&self.malformed_drops)),
            ],
        );
        line(
            "tandem_turn_error_responses_total",
            "counter",
            "STUN error responses sent.",
            &[(None, g(&self.error_responses))],
        );
        line(
            "tandem_turn_tcp_connections",
            "gauge",
            "Open TCP/TLS client connections.",
            &[(None, g(&self.tcp_connections_active))],
        );
    }
}

static CURRENT: RwLock<Option<Arc<Metrics>>> = RwLock::new(None);

/// Makes `m` the metrics rendered by [`render_metrics`].
pub(crate) fn set_current(m: Arc<Metrics>) {
    *CURRENT.write().unwrap_or_else(|e| e.into_inner()) = Some(m);
}

/// Appends the metrics of the running TURN server (the last one started) in
/// the Prometheus text format. Appends nothing when none was started.
pub fn render_metrics(out: &mut String) {
    if let Some(m) = CURRENT.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
        m.render(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_lines() {
        let m = Metrics::default();
        Metrics::add(&m.bytes_to_peer, 42);
        Metrics::inc(&m.auth_failures);
        let mut s = String::new();
        m.render(&mut s);
        assert!(s.contains("tandem_turn_relayed_bytes_total{direction=\"to_peer\"} 42\n"));
        assert!(s.contains("tandem_turn_auth_failures_total 1\n"));
        assert!(s.contains("# TYPE tandem_turn_allocations gauge\n"));
    }
}
