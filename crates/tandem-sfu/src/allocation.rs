//! Automatic simulcast layer choice, sans-IO: measures the bitrate (and keeps the
//! width its keyframes announce, see [`crate::payload::keyframe_width`]) of every
//! incoming layer, and for one subscriber picks per
//! simulcast track the best layer that fits its share of the subscriber's bandwidth
//! estimate (str0m's TWCC BWE), never above the size the subscriber shows the video at
//! (`max_width`, see [`cap_by_width`]).

use crate::router::TrackId;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use str0m::media::Rid;

/// Window over which a layer's bitrate is measured.
const WINDOW: Duration = Duration::from_millis(1000);
/// Moving up needs this much headroom over the layer's bitrate.
const UP_HEADROOM: f64 = 1.15;
/// Part of the estimate handed to video (the rest: audio, RTCP, padding).
const VIDEO_SHARE: f64 = 0.85;

#[derive(Debug, Default)]
struct Meter {
    start: Option<Instant>,
    bytes: u64,
    rate_bps: Option<u64>,
    /// Frame width of the layer's latest keyframe, when the codec tells (VP8).
    width: Option<u32>,
}

/// Incoming bitrate per (track, layer).
#[derive(Debug, Default)]
pub struct LayerRates {
    meters: HashMap<(TrackId, Rid), Meter>,
}

impl LayerRates {
    pub fn on_frame(&mut self, track: TrackId, rid: Rid, bytes: usize, now: Instant) {
        let m = self.meters.entry((track, rid)).or_default();
        let start = *m.start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= WINDOW {
            m.rate_bps = Some(m.bytes * 8 * 1000 / elapsed.as_millis().max(1) as u64);
            m.start = Some(now);
            m.bytes = 0;
        }
        m.bytes += bytes as u64;
    }

    /// Records the frame width a keyframe of the layer announces (see
    /// [`crate::payload::keyframe_width`]; a layer of unknown width is not bounded by
    /// `max_width`).
    pub fn on_width(&mut self, track: TrackId, rid: Rid, width: u32) {
        self.meters.entry((track, rid)).or_default().width = Some(width);
    }

    /// The layer's width as of its latest keyframe, if known.
    pub fn width(&self, track: TrackId, rid: Rid) -> Option<u32> {
        self.meters.get(&(track, rid))?.width
    }

    /// The layer's bitrate over the last full window, if measured.
    pub fn rate(&self, track: TrackId, rid: Rid, now: Instant) -> Option<u64> {
        let m = self.meters.get(&(track, rid))?;
        // A layer that stopped (paused by the publisher) is not available.
        if now.saturating_duration_since(m.start?) > WINDOW * 3 {
            return None;
        }
        m.rate_bps
    }

    /// The layer's latest measured bitrate however old: for a layer paused on purpose
    /// (see `layer_demand`), which measures nothing while off.
    pub fn last_rate(&self, track: TrackId, rid: Rid) -> Option<u64> {
        self.meters.get(&(track, rid))?.rate_bps
    }

    pub fn forget(&mut self, track: TrackId) {
        self.meters.retain(|(t, _), _| *t != track);
    }
}

/// The layers a subscriber showing the video `max_width` pixels wide can use: up to
/// the narrowest layer at least that wide (a bigger one would be scaled down anyway),
/// plus layers of unknown width (not measured yet, or not VP8). `layers` are
/// `(rid, width)` lowest first; returns the allowed rids. Without `max_width`, all.
pub fn cap_by_width(layers: &[(Rid, Option<u32>)], max_width: Option<u32>) -> Vec<Rid> {
    let Some(max) = max_width else {
        return layers.iter().map(|(r, _)| *r).collect();
    };
    let enough = layers
        .iter()
        .filter_map(|(_, w)| *w)
        .filter(|w| *w >= max)
        .min();
    layers
        .iter()
        .filter(|(_, w)| match (w, enough) {
            (None, _) => true,
            (Some(w), Some(enough)) => *w <= enough,
            (Some(_), None) => true, // every known layer is smaller than asked
        })
        .map(|(r, _)| *r)
        .collect()
}

/// One simulcast track as the allocator sees it: its layers with their measured
/// bitrate (unmeasured layers are left out) and the layer currently wanted.
#[derive(Debug, Clone)]
pub struct TrackLayers {
    pub track: TrackId,
    pub layers: Vec<(Rid, u64)>,
    pub current: Option<Rid>,
}

/// Picks a layer per track for a subscriber with bandwidth estimate `estimate_bps`:
/// each track gets an equal share; the highest layer within it wins (moving up needs
/// some headroom); the lowest layer when none fits.
pub fn allocate(estimate_bps: u64, tracks: &[TrackLayers]) -> Vec<(TrackId, Rid)> {
    let with_layers: Vec<&TrackLayers> = tracks.iter().filter(|t| !t.layers.is_empty()).collect();
    if with_layers.is_empty() {
        return Vec::new();
    }
    let share = estimate_bps as f64 * VIDEO_SHARE / with_layers.len() as f64;
    with_layers
        .into_iter()
        .map(|t| {
            let mut layers = t.layers.clone();
            layers.sort_by_key(|(_, rate)| *rate);
            let current_rate = t
                .current
                .and_then(|c| layers.iter().find(|(r, _)| *r == c))
                .map(|(_, rate)| *rate);
            let fits = |rate: u64| {
                let need = match current_rate {
                    Some(cur) if rate > cur => rate as f64 * UP_HEADROOM,
                    _ => rate as f64,
                };
                need <= share
            };
            let pick = layers
                .iter()
                .rev()
                .find(|(_, rate)| fits(*rate))
                .unwrap_or(&layers[0]);
            (t.track, pick.0)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rid(s: &str) -> Rid {
        Rid::from(s)
    }

    fn track(n: u64, current: Option<&str>) -> TrackLayers {
        TrackLayers {
            track: TrackId(n),
            layers: vec![
                (rid("q"), 150_000),
                (rid("h"), 500_000),
                (rid("f"), 1_500_000),
            ],
            current: current.map(rid),
        }
    }

    #[test]
    fn the_estimate_picks_the_layer() {
        assert_eq!(
            allocate(100_000, &[track(1, None)]),
            vec![(TrackId(1), rid("q"))]
        );
        assert_eq!(
            allocate(700_000, &[track(1, None)]),
            vec![(TrackId(1), rid("h"))]
        );
        assert_eq!(
            allocate(3_000_000, &[track(1, None)]),
            vec![(TrackId(1), rid("f"))]
        );
        // Two tracks share the estimate.
        assert_eq!(
            allocate(3_000_000, &[track(1, None), track(2, None)]),
            vec![(TrackId(1), rid("h")), (TrackId(2), rid("h"))]
        );
        assert!(allocate(1_000_000, &[]).is_empty());
    }

    #[test]
    fn moving_up_needs_headroom_moving_down_does_not() {
        // 600 kbps * 0.85 = 510 kbps share: h (500k) fits from scratch…
        assert_eq!(allocate(600_000, &[track(1, None)])[0].1, rid("h"));
        // …but not as an upgrade from q (needs 575k).
        assert_eq!(allocate(600_000, &[track(1, Some("q"))])[0].1, rid("q"));
        // Staying on h is fine, and a drop goes down at once.
        assert_eq!(allocate(600_000, &[track(1, Some("h"))])[0].1, rid("h"));
        assert_eq!(allocate(300_000, &[track(1, Some("f"))])[0].1, rid("q"));
    }

    #[test]
    fn max_width_bounds_the_layers() {
        let l = [
            (rid("q"), Some(320)),
            (rid("h"), Some(640)),
            (rid("f"), Some(1280)),
        ];
        let rids = |v: Vec<Rid>| v.iter().map(|r| r.to_string()).collect::<Vec<_>>();
        assert_eq!(rids(cap_by_width(&l, None)), ["q", "h", "f"]);
        assert_eq!(rids(cap_by_width(&l, Some(160))), ["q"]);
        assert_eq!(rids(cap_by_width(&l, Some(320))), ["q"]);
        assert_eq!(rids(cap_by_width(&l, Some(321))), ["q", "h"]);
        assert_eq!(rids(cap_by_width(&l, Some(4000))), ["q", "h", "f"]);
        // Unknown widths are not excluded.
        let partly = [(rid("q"), Some(320)), (rid("h"), None), (rid("f"), None)];
        assert_eq!(rids(cap_by_width(&partly, Some(100))), ["q", "h", "f"]);
    }

    #[test]
    fn layer_widths_are_kept() {
        let mut r = LayerRates::default();
        r.on_width(TrackId(1), rid("h"), 640);
        assert_eq!(r.width(TrackId(1), rid("h")), Some(640));
        assert_eq!(r.width(TrackId(1), rid("q")), None, "never seen");
    }

    #[test]
    fn rates_are_measured_per_layer() {
        let t0 = Instant::now();
        let mut r = LayerRates::default();
        for i in 0..=20 {
            let now = t0 + Duration::from_millis(i * 50);
            r.on_frame(TrackId(1), rid("q"), 1000, now); // 20 kB/s = 160 kbps
        }
        let now = t0 + Duration::from_millis(1000);
        let rate = r.rate(TrackId(1), rid("q"), now).unwrap();
        assert!((150_000..=170_000).contains(&rate), "{rate}");
        assert_eq!(r.rate(TrackId(1), rid("f"), now), None);
        assert_eq!(
            r.rate(TrackId(1), rid("q"), now + Duration::from_secs(5)),
            None,
            "stale"
        );
        assert!(
            r.last_rate(TrackId(1), rid("q")).is_some(),
            "kept for paused layers"
        );
        r.forget(TrackId(1));
        assert_eq!(r.rate(TrackId(1), rid("q"), now), None);
    }
}
