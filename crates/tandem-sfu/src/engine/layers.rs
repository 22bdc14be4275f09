//! The engine's side of pausing simulcast layers nobody receives (the rules are in
//! [`crate::layer_demand`]): collects what every subscriber of each simulcast track
//! needs, tells publishers when their set changes, and hands the allocator rates
//! for the layers paused here.

use super::Engine;
use crate::layer_demand::{allocation_rates, keep_unmeasured, wanted, LayerGate, Need};
use crate::router::{Track, TrackId};
use crate::Signal;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;
use str0m::media::Rid;

impl Engine {
    /// Re-evaluates the wanted layers of every simulcast track (after allocation,
    /// pins, subscribe changes, joins, leaves and layer switches) and pushes
    /// `Signal::Layers` to publishers whose set changed.
    pub(super) fn refresh_layer_demand(&mut self, now: Instant) {
        self.demand_dirty = false;
        let mut changes: Vec<(u64, TrackId, Vec<Rid>, usize)> = Vec::new();
        let owners: Vec<u64> = self.entries.keys().copied().collect();
        for owner in owners {
            for t in self.router.published(owner) {
                if t.layers.is_empty() {
                    continue;
                }
                let needs: Vec<Need> = self
                    .router
                    .peers(owner)
                    .into_iter()
                    .filter(|sub| self.router.is_subscribed(*sub, t.id))
                    .map(|sub| self.need(sub, t.id))
                    .collect();
                let want = keep_unmeasured(&t.layers, &wanted(&t.layers, &needs), |r| {
                    self.rates.last_rate(t.id, r).is_some()
                });
                let gate = self
                    .layer_gates
                    .entry(t.id)
                    .or_insert_with(|| LayerGate::new(t.layers.clone(), now));
                if let Some(change) = gate.update(&want, now) {
                    changes.push((owner, t.id, change.active, change.paused));
                }
            }
        }
        let router = &self.router;
        self.layer_gates.retain(|t, _| router.track(*t).is_some());
        for (owner, track, active, paused) in changes {
            self.metrics.layer_pauses.fetch_add(paused as u64, Relaxed);
            let (Some(e), Some(t)) = (self.entries.get(&owner), self.router.track(track)) else {
                continue;
            };
            tracing::debug!(owner, track = %track, active = ?active, "simulcast layers to send");
            (e.sink)(Signal::Layers {
                room: e.participant.room.clone(),
                mid: t.mid.to_string(),
                active: active.iter().map(|r| r.to_string()).collect(),
            });
        }
    }

    /// What subscriber `sub` needs of `track` now.
    fn need(&self, sub: u64, track: TrackId) -> Need {
        if self.paused.contains(&(sub, track)) {
            return Need::Paused;
        }
        // No selector yet (m-line not open, no frame yet): it starts on the lowest.
        let s = self.layers.get(&(sub, track));
        Need::Receiving {
            current: s.and_then(|s| s.current()),
            target: s.and_then(|s| s.target()),
        }
    }

    /// The rates the allocator chooses `t`'s layers by: measured ones, and for layers
    /// paused here their last (or a nominal) rate, so they can be chosen and so
    /// turned back on.
    pub(super) fn allocation_rates(&self, t: &Track, now: Instant) -> Vec<(Rid, u64)> {
        let gate = self.layer_gates.get(&t.id);
        allocation_rates(
            &t.layers,
            |r| self.rates.rate(t.id, r, now),
            |r| self.rates.last_rate(t.id, r),
            |r| gate.is_some_and(|g| g.is_paused(r)),
        )
    }
}
