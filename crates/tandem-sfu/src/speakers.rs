//! Active-speaker detection from the audio level RTP header extension (RFC 6464),
//! sans-IO. Each publisher's level (dBov, 0 loudest, -127 silence) is smoothed; the
//! active speakers are those above a threshold and heard recently, loudest first.

use crate::router::Pid;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Smoothed levels below this (dBov) are not speech.
pub const THRESHOLD_DBOV: f32 = -50.0;
/// A speaker not heard for this long is no longer active.
const STALE: Duration = Duration::from_millis(1000);
/// Weight of a new sample in the moving average.
const ALPHA: f32 = 0.3;
/// Most speakers reported.
pub const MAX_SPEAKERS: usize = 3;

#[derive(Debug, Clone, Copy)]
struct Level {
    smoothed: f32,
    heard: Instant,
}

#[derive(Debug, Default)]
pub struct SpeakerDetector {
    levels: HashMap<Pid, Level>,
}

impl SpeakerDetector {
    /// Records an audio level sample from `pid` (several audio tracks: the loudest
    /// sample wins over time).
    pub fn on_level(&mut self, pid: Pid, dbov: i8, now: Instant) {
        let sample = f32::from(dbov.clamp(-127, 0));
        let level = self.levels.entry(pid).or_insert(Level {
            smoothed: -127.0,
            heard: now,
        });
        level.smoothed = level.smoothed * (1.0 - ALPHA) + sample * ALPHA;
        level.heard = now;
    }

    pub fn forget(&mut self, pid: Pid) {
        self.levels.remove(&pid);
    }

    pub fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }

    /// Active speakers, loudest first, with their smoothed level in dBov.
    pub fn active(&self, now: Instant) -> Vec<(Pid, i8)> {
        let mut list: Vec<(Pid, f32)> = self
            .levels
            .iter()
            .filter(|(_, l)| {
                l.smoothed >= THRESHOLD_DBOV && now.saturating_duration_since(l.heard) < STALE
            })
            .map(|(p, l)| (*p, l.smoothed))
            .collect();
        list.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        list.truncate(MAX_SPEAKERS);
        list.into_iter()
            .map(|(p, l)| (p, l.round() as i8))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(d: &mut SpeakerDetector, pid: Pid, dbov: i8, n: usize, t: Instant) {
        for _ in 0..n {
            d.on_level(pid, dbov, t);
        }
    }

    #[test]
    fn loud_recent_speakers_loudest_first() {
        let t = Instant::now();
        let mut d = SpeakerDetector::default();
        feed(&mut d, 1, -30, 20, t);
        feed(&mut d, 2, -10, 20, t);
        feed(&mut d, 3, -127, 20, t);
        let active = d.active(t);
        assert_eq!(active.iter().map(|a| a.0).collect::<Vec<_>>(), vec![2, 1]);
        assert!((-11..=-9).contains(&active[0].1), "{active:?}");
        // One loud sample is not enough to become active (smoothing).
        feed(&mut d, 3, -5, 1, t);
        assert_eq!(d.active(t).len(), 2);
        // Silence takes a speaker out; so does not being heard.
        feed(&mut d, 1, -127, 20, t);
        assert_eq!(d.active(t).iter().map(|a| a.0).collect::<Vec<_>>(), vec![2]);
        assert!(d.active(t + Duration::from_secs(2)).is_empty());
        d.forget(2);
        d.forget(1);
        d.forget(3);
        assert!(d.is_empty());
    }

    #[test]
    fn at_most_three() {
        let t = Instant::now();
        let mut d = SpeakerDetector::default();
        for pid in 1..=5 {
            feed(&mut d, pid, -(pid as i8) * 5, 20, t);
        }
        let ids: Vec<Pid> = d.active(t).iter().map(|a| a.0).collect();
        assert_eq!(ids, vec![1, 2, 3]);
    }
}
