//! A grace period for participants whose ICE went `disconnected`.
//!
//! str0m's ICE-lite agent reports `disconnected` when the client's connectivity
//! checks stop arriving, and goes back to `completed` when they resume. Checks stop
//! for good when a peer vanishes, but also for a few seconds on a flaky network, and
//! when the SFU is overloaded and the kernel drops datagrams on its socket — checks
//! among them. Ending the session at once turned the last case into an outage (a
//! publisher dropped takes every subscriber's media with it), so the session is kept
//! for `ice_disconnect_grace_ms` first. Nothing is forwarded to it meanwhile, which
//! also sheds load; when its ICE comes back, its video resumes from a keyframe.

use super::Engine;
use crate::participant::Ended;
use crate::router::Pid;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use str0m::media::{KeyframeRequestKind, MediaKind};

impl Engine {
    fn ice_grace(&self) -> Duration {
        Duration::from_millis(self.config.ice_disconnect_grace_ms)
    }

    /// ICE of `pid` went `disconnected`: start its grace period (or end it, with no
    /// grace configured or before it ever connected).
    pub(super) fn ice_disconnected(&mut self, pid: Pid, now: Instant) {
        let grace = self.ice_grace();
        let Some(e) = self.entries.get_mut(&pid) else {
            return;
        };
        if grace.is_zero() || !e.participant.connected {
            e.participant
                .end(Ended::Disconnected("ICE disconnected".into()));
            return;
        }
        if self.ice_lost.contains_key(&pid) {
            return;
        }
        self.metrics.ice_disconnects.fetch_add(1, Relaxed);
        tracing::info!(
            pid,
            room = %e.participant.room,
            sid = %e.participant.sid,
            grace_ms = grace.as_millis() as u64,
            "ICE disconnected; keeping the media session for the grace period"
        );
        self.ice_lost.insert(pid, now);
    }

    /// ICE of `pid` is connected again: forward to it again, each video track from
    /// its next keyframe (what it missed would not decode).
    pub(super) fn ice_restored(&mut self, pid: Pid, now: Instant) {
        let Some(since) = self.ice_lost.remove(&pid) else {
            return;
        };
        self.metrics.ice_reconnects.fetch_add(1, Relaxed);
        tracing::info!(
            pid,
            after_ms = now.saturating_duration_since(since).as_millis() as u64,
            "ICE reconnected within the grace period"
        );
        let video: Vec<_> = self
            .legs
            .keys()
            .filter(|(sub, _)| *sub == pid)
            .filter_map(|(_, track)| self.router.track(*track))
            .filter(|t| t.kind == MediaKind::Video)
            .map(|t| (t.id, t.owner, t.mid))
            .collect();
        for (track, owner, mid) in video {
            self.resync.insert((pid, track));
            let rid = self.wanted_layer(pid, track);
            self.ask_keyframe(owner, mid, rid, KeyframeRequestKind::Pli, now);
        }
    }

    /// Ends the sessions whose grace period is over; returns when the next one ends.
    pub(super) fn end_lost_ice(&mut self, now: Instant) -> Instant {
        let grace = self.ice_grace();
        let mut next = now + Duration::from_secs(3600);
        let mut over = Vec::new();
        for (&pid, &since) in &self.ice_lost {
            if now.saturating_duration_since(since) >= grace {
                over.push(pid);
            } else {
                next = next.min(since + grace);
            }
        }
        for pid in over {
            self.ice_lost.remove(&pid);
            if let Some(e) = self.entries.get_mut(&pid) {
                let secs = grace.as_secs_f32();
                e.participant.end(Ended::Disconnected(format!(
                    "ICE disconnected for more than {secs} s"
                )));
                self.dirty.insert(pid);
            }
        }
        next
    }
}
