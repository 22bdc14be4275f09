//! Which simulcast layers a publisher should send, sans-IO. A layer nobody receives
//! costs the publisher uplink and encoder CPU for nothing, so the SFU tells the
//! publisher which rids are wanted (`Signal::Layers`) and the client turns the others
//! off (`RTCRtpSender.setParameters`, encodings' `active`).
//!
//! - [`wanted`] computes the set for one track from what each subscriber receives and
//!   is switching to.
//! - [`LayerGate`] decides when the publisher is told: enabling is immediate (a
//!   subscriber waits for that layer's keyframe), pausing waits for a warm-up (so
//!   every layer's bitrate and width get measured once) and is rate-limited;
//!   [`keep_unmeasured`] keeps layers never measured on.
//! - [`allocation_rates`] gives the allocator a bitrate for layers paused here: a
//!   paused layer measures 0, yet must stay choosable, or it could never come back.

use std::time::{Duration, Instant};
use str0m::media::Rid;

/// A new track sends every layer this long before anything is paused.
pub const WARMUP: Duration = Duration::from_secs(3);
/// At most one change per track per this interval, unless a layer is enabled.
pub const HOLD: Duration = Duration::from_secs(1);
/// Assumed bitrate ratio between neighbouring layers when a paused layer was never
/// measured (each layer usually has 4× the pixels of the one below; VP8 bitrate
/// grows slower than the pixel count).
const NOMINAL_STEP: u64 = 3;

/// What one subscriber of a simulcast track needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// The subscriber paused the track (`sfu_subscribe enabled:false`).
    Paused,
    /// Forwarding `current` (if it got a keyframe yet) and waiting to switch to
    /// `target` (`None`: it starts on the first layer it sees, the lowest).
    Receiving {
        current: Option<Rid>,
        target: Option<Rid>,
    },
}

/// The layers of a track (`layers`, lowest first) at least one subscriber needs: the
/// one each receives and the one each switches to (the old layer is forwarded until
/// the new one delivers a keyframe, so both must flow). Never empty: without any
/// receiving subscriber the lowest layer stays on, so a new (or resumed) subscriber
/// starts at once. Returned in `layers` order.
pub fn wanted(layers: &[Rid], needs: &[Need]) -> Vec<Rid> {
    let Some(lowest) = layers.first().copied() else {
        return Vec::new();
    };
    let mut want: Vec<Rid> = Vec::new();
    for need in needs {
        if let Need::Receiving { current, target } = *need {
            want.extend(current);
            want.push(target.unwrap_or(lowest));
        }
    }
    if want.is_empty() {
        want.push(lowest);
    }
    let known: Vec<Rid> = layers
        .iter()
        .copied()
        .filter(|r| want.contains(r))
        .collect();
    // A subscriber's layer the track does not list cannot be asked for; keep the
    // lowest rather than telling the publisher to send nothing.
    if known.is_empty() {
        vec![lowest]
    } else {
        known
    }
}

/// `want` plus the layers of `layers` never measured (`measured` false), in `layers`
/// order. Pausing such a layer saves nothing yet (the publisher may not be sending
/// it: its encoder ramps layers up with its own bandwidth estimate), and would hide
/// its bitrate and width from the allocator, which could then neither choose it by
/// rate nor keep it out by `max_width`.
pub fn keep_unmeasured(layers: &[Rid], want: &[Rid], measured: impl Fn(Rid) -> bool) -> Vec<Rid> {
    layers
        .iter()
        .copied()
        .filter(|r| want.contains(r) || !measured(*r))
        .collect()
}

/// The layers one publisher track was last told to send, and when.
#[derive(Debug, Clone)]
pub struct LayerGate {
    layers: Vec<Rid>,
    active: Vec<Rid>,
    created: Instant,
    last_change: Option<Instant>,
}

/// A change to tell the publisher about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Every layer to send from now on, in the track's order.
    pub active: Vec<Rid>,
    /// How many layers this change turns off.
    pub paused: usize,
}

impl LayerGate {
    /// A track that sends all of `layers` (what a publisher does at first).
    pub fn new(layers: Vec<Rid>, now: Instant) -> Self {
        LayerGate {
            active: layers.clone(),
            layers,
            created: now,
            last_change: None,
        }
    }

    pub fn active(&self) -> &[Rid] {
        &self.active
    }

    /// Whether this gate turned `rid` off (the publisher was told not to send it).
    pub fn is_paused(&self, rid: Rid) -> bool {
        self.layers.contains(&rid) && !self.active.contains(&rid)
    }

    /// Applies the currently wanted layers; returns the change to push, if any.
    /// Layers to enable go out at once; layers to pause wait until the warm-up is
    /// over and the last change is [`HOLD`] old (call again later: the engine
    /// re-evaluates at least every allocation round).
    pub fn update(&mut self, wanted: &[Rid], now: Instant) -> Option<Change> {
        let enables = wanted.iter().any(|r| !self.active.contains(r));
        let settled = now.saturating_duration_since(self.created) >= WARMUP
            && self
                .last_change
                .is_none_or(|t| now.saturating_duration_since(t) >= HOLD);
        let next: Vec<Rid> = self
            .layers
            .iter()
            .copied()
            .filter(|r| wanted.contains(r) || (!settled && self.active.contains(r)))
            .collect();
        if next == self.active || next.is_empty() || !(enables || settled) {
            return None;
        }
        let paused = self.active.iter().filter(|r| !next.contains(r)).count();
        self.active = next.clone();
        self.last_change = Some(now);
        Some(Change {
            active: next,
            paused,
        })
    }
}

/// Bitrates the allocator may choose a track's layers (`layers`, lowest first) by:
/// the fresh measurement (`fresh`) for layers that are sent; for layers paused here
/// (`paused`) the last measurement (`last`), or, never measured, a nominal rate
/// [`NOMINAL_STEP`] times the layer below. Layers without a rate are left out (as
/// before: a layer the publisher itself stopped is not available).
pub fn allocation_rates(
    layers: &[Rid],
    fresh: impl Fn(Rid) -> Option<u64>,
    last: impl Fn(Rid) -> Option<u64>,
    paused: impl Fn(Rid) -> bool,
) -> Vec<(Rid, u64)> {
    let mut out = Vec::new();
    let mut below: Option<u64> = None;
    for rid in layers.iter().copied() {
        let rate = if paused(rid) {
            last(rid).or(below.map(|b| b * NOMINAL_STEP))
        } else {
            fresh(rid)
        };
        if let Some(rate) = rate {
            // Keep rates increasing with the layer, so a stale measurement cannot
            // make a higher layer look cheaper than a lower one.
            let rate = below.map_or(rate, |b| rate.max(b + 1));
            out.push((rid, rate));
            below = Some(rate);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Rid {
        Rid::from(s)
    }

    fn qhf() -> Vec<Rid> {
        vec![r("q"), r("h"), r("f")]
    }

    fn on(current: &str, target: &str) -> Need {
        Need::Receiving {
            current: Some(r(current)),
            target: Some(r(target)),
        }
    }

    fn names(v: &[Rid]) -> Vec<String> {
        v.iter().map(|r| r.to_string()).collect()
    }

    #[test]
    fn wanted_is_what_subscribers_receive() {
        assert_eq!(names(&wanted(&qhf(), &[on("h", "h")])), ["h"]);
        assert_eq!(
            names(&wanted(&qhf(), &[on("f", "f"), on("q", "q")])),
            ["q", "f"]
        );
        // A subscriber that got nothing yet starts on its target, or the lowest.
        let fresh = Need::Receiving {
            current: None,
            target: None,
        };
        assert_eq!(names(&wanted(&qhf(), &[fresh])), ["q"]);
        assert!(wanted(&[], &[on("q", "q")]).is_empty(), "not simulcast");
    }

    #[test]
    fn the_switching_target_is_kept_with_the_current_layer() {
        // Moving q → f: q is still forwarded until f's keyframe, so both flow.
        assert_eq!(names(&wanted(&qhf(), &[on("q", "f")])), ["q", "f"]);
    }

    #[test]
    fn no_receiving_subscriber_keeps_the_lowest_layer() {
        assert_eq!(names(&wanted(&qhf(), &[])), ["q"]);
        assert_eq!(names(&wanted(&qhf(), &[Need::Paused, Need::Paused])), ["q"]);
        assert_eq!(
            names(&wanted(&qhf(), &[Need::Paused, on("f", "f")])),
            ["f"],
            "paused subscribers want nothing"
        );
        assert_eq!(
            names(&wanted(&qhf(), &[on("x", "x")])),
            ["q"],
            "unknown layer"
        );
    }

    #[test]
    fn layers_never_measured_are_not_paused() {
        let want = [r("q")];
        let measured = |rid: Rid| rid != r("f");
        assert_eq!(names(&keep_unmeasured(&qhf(), &want, measured)), ["q", "f"]);
        assert_eq!(names(&keep_unmeasured(&qhf(), &want, |_| true)), ["q"]);
    }

    #[test]
    fn pausing_waits_for_warmup_and_hold_enabling_does_not() {
        let t0 = Instant::now();
        let mut g = LayerGate::new(qhf(), t0);
        let q = [r("q")];
        // Nothing is paused during the warm-up.
        assert_eq!(g.update(&q, t0 + Duration::from_secs(1)), None);
        assert_eq!(names(g.active()), ["q", "h", "f"]);
        let t1 = t0 + WARMUP;
        let c = g.update(&q, t1).unwrap();
        assert_eq!((names(&c.active), c.paused), (vec!["q".to_string()], 2));
        assert!(g.is_paused(r("f")) && !g.is_paused(r("q")));
        assert_eq!(g.update(&q, t1 + HOLD * 5), None, "no change, no push");
        // A subscriber asks for f: on at once, q kept while it switches.
        let t2 = t1 + Duration::from_millis(100);
        let c = g.update(&[r("q"), r("f")], t2).unwrap();
        assert_eq!(
            (names(&c.active), c.paused),
            (vec!["q".into(), "f".into()], 0)
        );
        // The switch is done 100 ms later: q goes off only after the hold.
        let t3 = t2 + Duration::from_millis(100);
        assert_eq!(g.update(&[r("f")], t3), None);
        let c = g.update(&[r("f")], t2 + HOLD).unwrap();
        assert_eq!((names(&c.active), c.paused), (vec!["f".to_string()], 1));
    }

    #[test]
    fn enabling_during_the_hold_keeps_what_is_on() {
        let t0 = Instant::now();
        let mut g = LayerGate::new(qhf(), t0);
        let t1 = t0 + WARMUP;
        g.update(&[r("f")], t1).unwrap();
        // Within the hold: h is enabled, f (no longer wanted) stays on for now.
        let c = g.update(&[r("h")], t1 + Duration::from_millis(10)).unwrap();
        assert_eq!(names(&c.active), ["h", "f"]);
        let c = g.update(&[r("h")], t1 + Duration::from_secs(2)).unwrap();
        assert_eq!(names(&c.active), ["h"]);
    }

    #[test]
    fn paused_layers_stay_choosable_by_their_last_rate() {
        let fresh = |rid: Rid| (rid == r("q")).then_some(150_000);
        let last = |rid: Rid| match rid.to_string().as_str() {
            "q" => Some(150_000),
            "h" => Some(500_000),
            _ => None,
        };
        // Not paused here (stopped by the publisher itself): unavailable, as before.
        assert_eq!(
            names(
                &allocation_rates(&qhf(), fresh, last, |_| false)
                    .iter()
                    .map(|(r, _)| *r)
                    .collect::<Vec<_>>()
            ),
            ["q"]
        );
        // Paused here: h by its last rate, f (never measured) nominally 3× h.
        let rates = allocation_rates(&qhf(), fresh, last, |rid| rid != r("q"));
        assert_eq!(
            rates,
            vec![(r("q"), 150_000), (r("h"), 500_000), (r("f"), 1_500_000)]
        );
        // Pause → re-enable on demand: the allocator now picks f with a large estimate,
        // which makes f wanted, and the gate turns it on at once.
        let pick = crate::allocation::allocate(
            3_000_000,
            &[crate::allocation::TrackLayers {
                track: crate::router::TrackId(1),
                layers: rates,
                current: Some(r("q")),
            }],
        );
        assert_eq!(pick[0].1, r("f"));
        let t0 = Instant::now();
        let mut g = LayerGate::new(qhf(), t0);
        g.update(&[r("q")], t0 + WARMUP).unwrap();
        let c = g
            .update(&wanted(&qhf(), &[on("q", "f")]), t0 + WARMUP)
            .unwrap();
        assert_eq!(names(&c.active), ["q", "f"]);
    }

    #[test]
    fn rates_never_decrease_with_the_layer() {
        let rates = allocation_rates(
            &qhf(),
            |rid| (rid == r("q")).then_some(300_000),
            |_| Some(100_000),
            |rid| rid != r("q"),
        );
        assert_eq!(
            rates,
            vec![(r("q"), 300_000), (r("h"), 300_001), (r("f"), 300_002)]
        );
    }
}
