//! Counters the SFU keeps; the server renders them on `/metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
pub struct SfuMetrics {
    /// Participants with a live `Rtc`.
    pub participants: AtomicU64,
    /// Published tracks being forwarded.
    pub tracks: AtomicU64,
    /// (subscriber, track) pairs negotiated.
    pub subscriptions: AtomicU64,
    pub packets_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub packets_out: AtomicU64,
    pub bytes_out: AtomicU64,
    /// RTP packets handed from one participant to another (per subscriber), and
    /// their payload bytes.
    pub media_packets_forwarded: AtomicU64,
    pub media_bytes_forwarded: AtomicU64,
    pub keyframe_requests: AtomicU64,
    /// Data channel messages relayed to another participant.
    pub data_messages_forwarded: AtomicU64,
    pub data_bytes_forwarded: AtomicU64,
    /// Data channel messages not relayed (too large, or a receiver's buffer full).
    pub data_drops: AtomicU64,
    /// Simulcast layer switches done for a subscriber.
    pub layer_switches: AtomicU64,
    /// Simulcast layers a publisher was told to stop sending (nobody received them).
    pub layer_pauses: AtomicU64,
    /// Datagrams no participant accepted.
    pub unmatched_datagrams: AtomicU64,
    /// Datagrams dropped because the socket's send buffer was full.
    pub send_drops: AtomicU64,
    /// `Rtc` calls that panicked (the participant is dropped, the SFU goes on).
    pub panics: AtomicU64,
    pub connect_timeouts: AtomicU64,
    /// Connected participants whose ICE went `disconnected` (the grace period began).
    pub ice_disconnects: AtomicU64,
    /// Of those, the ones whose ICE came back within the grace period.
    pub ice_reconnects: AtomicU64,
    /// Packets not forwarded to a subscriber because its send queue was over
    /// `max_send_queue_ms` (and, for video, the packets after it until a keyframe).
    pub media_drops: AtomicU64,
    /// The SFU's UDP socket, whose kernel drops (full receive buffer) are rendered.
    pub udp_local: std::sync::OnceLock<std::net::SocketAddr>,
}

impl SfuMetrics {
    /// Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let gauges = [
            ("tandem_sfu_participants", &self.participants),
            ("tandem_sfu_tracks", &self.tracks),
            ("tandem_sfu_subscriptions", &self.subscriptions),
        ];
        for (name, v) in gauges {
            let _ = writeln!(out, "# TYPE {name} gauge\n{name} {}", v.load(Relaxed));
        }
        let counters = [
            ("tandem_sfu_packets_in_total", &self.packets_in),
            ("tandem_sfu_bytes_in_total", &self.bytes_in),
            ("tandem_sfu_packets_out_total", &self.packets_out),
            ("tandem_sfu_bytes_out_total", &self.bytes_out),
            (
                "tandem_sfu_media_packets_forwarded_total",
                &self.media_packets_forwarded,
            ),
            (
                "tandem_sfu_media_bytes_forwarded_total",
                &self.media_bytes_forwarded,
            ),
            (
                "tandem_sfu_keyframe_requests_total",
                &self.keyframe_requests,
            ),
            ("tandem_sfu_layer_switches_total", &self.layer_switches),
            ("tandem_sfu_layer_pauses_total", &self.layer_pauses),
            (
                "tandem_sfu_data_messages_forwarded_total",
                &self.data_messages_forwarded,
            ),
            (
                "tandem_sfu_data_bytes_forwarded_total",
                &self.data_bytes_forwarded,
            ),
            ("tandem_sfu_data_drops_total", &self.data_drops),
            (
                "tandem_sfu_unmatched_datagrams_total",
                &self.unmatched_datagrams,
            ),
            ("tandem_sfu_send_drops_total", &self.send_drops),
            ("tandem_sfu_panics_total", &self.panics),
            ("tandem_sfu_connect_timeouts_total", &self.connect_timeouts),
            ("tandem_sfu_ice_disconnects_total", &self.ice_disconnects),
            ("tandem_sfu_ice_reconnects_total", &self.ice_reconnects),
            ("tandem_sfu_media_drops_total", &self.media_drops),
        ];
        for (name, v) in counters {
            let _ = writeln!(out, "# TYPE {name} counter\n{name} {}", v.load(Relaxed));
        }
        if let Some(drops) = self
            .udp_local
            .get()
            .and_then(|a| crate::sockbuf::kernel_drops(*a))
        {
            let name = "tandem_sfu_udp_receive_drops_total";
            let _ = writeln!(out, "# TYPE {name} counter\n{name} {drops}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = SfuMetrics::default();
        m.media_packets_forwarded.fetch_add(3, Relaxed);
        let mut out = String::new();
        m.render(&mut out);
        assert!(
            out.contains("\ntandem_sfu_media_packets_forwarded_total 3\n"),
            "{out}"
        );
        assert!(out.contains("# TYPE tandem_sfu_participants gauge\ntandem_sfu_participants 0\n"));
    }
}
