//! `[sfu]` settings: where the UDP socket listens, which addresses are advertised as
//! ICE candidates, and the limits.

use crate::policy::PolicyKind;
use serde::Deserialize;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SfuConfig {
    /// Start the SFU with `tandem serve`. Off by default while the SFU is experimental.
    pub enabled: bool,
    /// The one UDP socket all WebRTC traffic uses.
    pub udp_bind: SocketAddr,
    /// Passive ICE-TCP for clients without UDP: a TCP listener on the UDP socket's IP
    /// and port number (an ephemeral port when `udp_bind` has port 0).
    pub ice_tcp: bool,
    /// Addresses put in ICE candidates (with the UDP port), e.g. the public IP of a
    /// host behind 1:1 NAT. Empty: the bind IP, or 127.0.0.1 when binding 0.0.0.0.
    pub advertise_ips: Vec<IpAddr>,
    /// Participants with a media session in one room.
    pub max_participants_per_room: usize,
    /// Tracks one participant may publish; further tracks are not forwarded.
    pub max_tracks_per_participant: usize,
    /// A participant whose ICE/DTLS has not connected by then is dropped.
    pub connect_timeout_ms: u64,
    /// How long a connected participant whose ICE went `disconnected` (its
    /// connectivity checks stopped arriving) is kept before its media session ends.
    /// Nothing is forwarded to it meanwhile; when its checks come back (a brief
    /// network drop, or datagrams the kernel dropped while the SFU was overloaded)
    /// it resumes from the next keyframe. 0 ends it at once.
    pub ice_disconnect_grace_ms: u64,
    /// Longest SDP accepted in `sfu_offer` / `sfu_answer`.
    pub max_sdp_bytes: usize,
    /// Fewest milliseconds between two keyframe requests sent to one publisher track.
    pub keyframe_request_interval_ms: u64,
    /// Most bitrate a publisher should send per video track, in kbit/s (told with
    /// REMB every second; browsers cap their encoders to it).
    pub max_video_bitrate_kbps: u64,
    /// Largest data channel message relayed to the room; larger ones are dropped.
    pub max_data_message_bytes: usize,
    /// Kernel receive and send buffer of the UDP socket, in bytes (capped by
    /// `net.core.rmem_max` / `wmem_max`; a warning at start says when). One socket
    /// carries everyone's traffic: a small buffer overflows while the SFU forwards a
    /// frame to many subscribers. Drops: `tandem_sfu_udp_receive_drops_total`.
    pub udp_buffer_bytes: usize,
    /// Longest a packet may wait in a subscriber's send queue, in milliseconds; while
    /// one waits longer, frames for that subscriber are dropped (video until the next
    /// keyframe) and counted in `tandem_sfu_media_drops_total`. Bounds the memory a
    /// subscriber the SFU cannot serve fast enough can take.
    pub max_send_queue_ms: u64,
    /// Room media policy: `mesh`, `sfu` or `auto` (mesh until the room grows).
    pub policy: PolicyKind,
    /// `auto`: a room with more participants than this moves to the SFU.
    pub auto_sfu_above: usize,
    /// `auto`: a room in the SFU moves back to mesh at this many participants or fewer.
    pub auto_mesh_at_or_below: usize,
}

impl Default for SfuConfig {
    fn default() -> Self {
        SfuConfig {
            enabled: false,
            udp_bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 7882),
            ice_tcp: true,
            advertise_ips: Vec::new(),
            max_participants_per_room: 50,
            max_tracks_per_participant: 8,
            connect_timeout_ms: 15_000,
            ice_disconnect_grace_ms: 10_000,
            max_sdp_bytes: 32 * 1024,
            keyframe_request_interval_ms: 500,
            max_data_message_bytes: 64 * 1024,
            max_video_bitrate_kbps: 2500,
            udp_buffer_bytes: 4 * 1024 * 1024,
            max_send_queue_ms: 1000,
            policy: PolicyKind::Auto,
            auto_sfu_above: 4,
            auto_mesh_at_or_below: 2,
        }
    }
}

impl SfuConfig {
    /// Checks the settings; the message names the offending one.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_participants_per_room == 0 {
            return Err("sfu.max_participants_per_room must be at least 1".into());
        }
        if self.max_tracks_per_participant == 0 {
            return Err("sfu.max_tracks_per_participant must be at least 1".into());
        }
        if self.connect_timeout_ms < 1000 {
            return Err("sfu.connect_timeout_ms must be at least 1000".into());
        }
        if self.ice_disconnect_grace_ms > 300_000 {
            return Err("sfu.ice_disconnect_grace_ms must be at most 300000 (5 minutes)".into());
        }
        if self.max_sdp_bytes < 1024 {
            return Err("sfu.max_sdp_bytes must be at least 1024".into());
        }
        if self.max_send_queue_ms < 100 {
            return Err("sfu.max_send_queue_ms must be at least 100".into());
        }
        if self.max_video_bitrate_kbps < 30 {
            return Err("sfu.max_video_bitrate_kbps must be at least 30".into());
        }
        if self.auto_mesh_at_or_below >= self.auto_sfu_above {
            return Err(format!(
                "sfu.auto_mesh_at_or_below ({}) must be below sfu.auto_sfu_above ({}) so rooms \
                 do not flap between mesh and sfu",
                self.auto_mesh_at_or_below, self.auto_sfu_above
            ));
        }
        for ip in &self.advertise_ips {
            if ip.is_unspecified() || ip.is_multicast() {
                return Err(format!("sfu.advertise_ips: {ip} cannot be a candidate"));
            }
        }
        Ok(())
    }

    /// The IPs to advertise for a socket bound to `bound`.
    pub fn candidate_ips(&self, bound: SocketAddr) -> Vec<IpAddr> {
        if !self.advertise_ips.is_empty() {
            return self.advertise_ips.clone();
        }
        if bound.ip().is_unspecified() {
            vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]
        } else {
            vec![bound.ip()]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_candidates() {
        let c = SfuConfig::default();
        assert!(c.validate().is_ok());
        assert_eq!(c.udp_bind.port(), 7882);
        let any: SocketAddr = "0.0.0.0:7882".parse().unwrap();
        assert_eq!(
            c.candidate_ips(any),
            vec!["127.0.0.1".parse::<IpAddr>().unwrap()]
        );
        let one: SocketAddr = "10.1.2.3:7882".parse().unwrap();
        assert_eq!(
            c.candidate_ips(one),
            vec!["10.1.2.3".parse::<IpAddr>().unwrap()]
        );
        let public = SfuConfig {
            advertise_ips: vec!["203.0.113.7".parse().unwrap()],
            ..SfuConfig::default()
        };
        assert_eq!(public.candidate_ips(any), public.advertise_ips);
    }

    #[test]
    fn bad_settings_are_named() {
        let c = SfuConfig {
            advertise_ips: vec!["0.0.0.0".parse().unwrap()],
            ..SfuConfig::default()
        };
        assert!(c.validate().unwrap_err().contains("advertise_ips"));
        let c = SfuConfig {
            ice_disconnect_grace_ms: 600_000,
            ..SfuConfig::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .contains("ice_disconnect_grace_ms"));
        let c = SfuConfig {
            max_tracks_per_participant: 0,
            ..SfuConfig::default()
        };
        assert!(c.validate().unwrap_err().contains("max_tracks"));
        let c = SfuConfig {
            auto_sfu_above: 2,
            auto_mesh_at_or_below: 2,
            ..SfuConfig::default()
        };
        assert!(c.validate().unwrap_err().contains("flap"));
    }
}
