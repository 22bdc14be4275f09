//! Renumbering of one forwarded leg (a subscriber's m-line carrying one track),
//! sans-IO. The subscriber sees a single RTP stream whatever the SFU feeds it from:
//! simulcast layers each have their own SSRC, sequence numbers, RTP timestamps and
//! VP8 picture ids, and the SFU skips packets (a paused track, a send backlog). So
//! every forwarded packet gets the leg's own numbers:
//!
//! - within one run of a source, `out = in + offset`, so the publisher's gaps stay
//!   gaps (the subscriber NACKs them) and its retransmissions land on the right
//!   number;
//! - at a *rebind* — another source (a layer switch), or the same one after the SFU
//!   skipped packets and resumes on a keyframe — the new run continues right after
//!   the last number sent, its timestamps advance by the wall-clock time since the
//!   last packet, and its picture ids follow on; packets of the new source from
//!   before the rebind point are dropped (they belong to frames never forwarded).

use std::time::Instant;

/// Where a packet comes from: the publisher's SSRC of its layer.
pub type SourceId = u32;

/// The fields of an incoming packet the rewriter maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Incoming {
    pub source: SourceId,
    /// Extended (roll-over free) sequence number of the source.
    pub seq: u64,
    pub timestamp: u32,
    /// VP8 picture id (15 bits) and TL0PICIDX, when the payload has them.
    pub picture_id: Option<u16>,
    pub tl0_pic_idx: Option<u8>,
    /// When the packet arrived.
    pub at: Instant,
}

/// The leg's numbers for one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outgoing {
    pub seq: u64,
    pub timestamp: u32,
    /// Set when the picture id / TL0PICIDX must be rewritten (differs from the input).
    pub picture_id: Option<u16>,
    pub tl0_pic_idx: Option<u8>,
}

const PICTURE_ID_MODULO: u16 = 1 << 15;

/// A run of one source: the offsets that map it onto the leg.
#[derive(Debug, Clone, Copy)]
struct Run {
    source: SourceId,
    /// Packets of the source below this sequence number predate the run.
    first_seq: u64,
    seq_offset: i64,
    ts_offset: u32,
    picture_id_offset: u16,
    tl0_offset: u8,
}

/// The latest (highest) numbers sent on the leg.
#[derive(Debug, Clone, Copy)]
struct Sent {
    seq: u64,
    timestamp: u32,
    at: Instant,
    picture_id: Option<u16>,
    tl0_pic_idx: Option<u8>,
}

#[derive(Debug, Clone)]
pub struct LegRewriter {
    /// RTP clock rate of the track (90 000 for video, 48 000 for Opus).
    clock_rate: u32,
    run: Option<Run>,
    sent: Option<Sent>,
    /// The next packet starts a new run even from the same source.
    rebind_next: bool,
}

impl LegRewriter {
    pub fn new(clock_rate: u32) -> Self {
        LegRewriter {
            clock_rate: clock_rate.max(1),
            run: None,
            sent: None,
            rebind_next: false,
        }
    }

    /// The SFU skipped packets of the current source (and resumes on a keyframe):
    /// the next forwarded packet continues the numbering instead of leaving a gap
    /// the subscriber would NACK in vain.
    pub fn rebind(&mut self) {
        self.rebind_next = true;
    }

    /// The leg's numbers for a packet the SFU forwards, or `None` to drop it (it
    /// predates the current run).
    pub fn map(&mut self, p: &Incoming) -> Option<Outgoing> {
        let same_source = self.run.is_some_and(|r| r.source == p.source);
        if !same_source || self.rebind_next {
            self.start_run(p);
        }
        let run = self.run.expect("started above");
        if p.seq < run.first_seq {
            return None;
        }
        let seq = u64::try_from(p.seq as i64 + run.seq_offset).ok()?;
        let out = Outgoing {
            seq,
            timestamp: p.timestamp.wrapping_add(run.ts_offset),
            picture_id: p
                .picture_id
                .map(|id| (id.wrapping_add(run.picture_id_offset)) % PICTURE_ID_MODULO),
            tl0_pic_idx: p.tl0_pic_idx.map(|t| t.wrapping_add(run.tl0_offset)),
        };
        let newest = self.sent.is_none_or(|s| out.seq > s.seq);
        if newest {
            self.sent = Some(Sent {
                seq: out.seq,
                timestamp: out.timestamp,
                at: p.at,
                picture_id: out.picture_id.or(self.sent.and_then(|s| s.picture_id)),
                tl0_pic_idx: out.tl0_pic_idx.or(self.sent.and_then(|s| s.tl0_pic_idx)),
            });
        }
        Some(Outgoing {
            picture_id: out.picture_id.filter(|_| run.picture_id_offset != 0),
            tl0_pic_idx: out.tl0_pic_idx.filter(|_| run.tl0_offset != 0),
            ..out
        })
    }

    fn start_run(&mut self, p: &Incoming) {
        self.rebind_next = false;
        let run = match self.sent {
            // The leg's first packet keeps its numbers (the low 16 bits of the
            // sequence number: a fresh stream starts without roll-overs).
            None => Run {
                source: p.source,
                first_seq: p.seq,
                seq_offset: (p.seq & 0xffff) as i64 - p.seq as i64,
                ts_offset: 0,
                picture_id_offset: 0,
                tl0_offset: 0,
            },
            Some(s) => {
                let elapsed = p.at.saturating_duration_since(s.at);
                let ticks = (elapsed.as_micros() * u128::from(self.clock_rate) / 1_000_000)
                    .clamp(1, u128::from(u32::MAX / 2)) as u32;
                let timestamp = s.timestamp.wrapping_add(ticks);
                Run {
                    source: p.source,
                    first_seq: p.seq,
                    seq_offset: (s.seq + 1) as i64 - p.seq as i64,
                    ts_offset: timestamp.wrapping_sub(p.timestamp),
                    picture_id_offset: match (s.picture_id, p.picture_id) {
                        (Some(last), Some(id)) => {
                            (last + 1 + PICTURE_ID_MODULO - id) % PICTURE_ID_MODULO
                        }
                        _ => 0,
                    },
                    tl0_offset: match (s.tl0_pic_idx, p.tl0_pic_idx) {
                        (Some(last), Some(t)) => last.wrapping_add(1).wrapping_sub(t),
                        _ => 0,
                    },
                }
            }
        };
        self.run = Some(run);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    struct Feed {
        t0: Instant,
    }

    impl Feed {
        fn new() -> Self {
            Feed { t0: Instant::now() }
        }
        fn packet(&self, source: u32, seq: u64, ts: u32, pic: u16, ms: u64) -> Incoming {
            Incoming {
                source,
                seq,
                timestamp: ts,
                picture_id: Some(pic),
                tl0_pic_idx: Some(pic as u8),
                at: self.t0 + Duration::from_millis(ms),
            }
        }
    }

    #[test]
    fn first_run_keeps_numbers_and_gaps() {
        let f = Feed::new();
        let mut r = LegRewriter::new(90_000);
        let a = r.map(&f.packet(1, 70_000, 1000, 5, 0)).unwrap();
        assert_eq!(a.seq, 70_000 & 0xffff);
        assert_eq!(a.timestamp, 1000);
        assert_eq!(a.picture_id, None, "unchanged ids are not patched");
        // A publisher gap stays a gap; a late retransmission fills it.
        let c = r.map(&f.packet(1, 70_002, 4000, 7, 66)).unwrap();
        assert_eq!(c.seq, a.seq + 2);
        let b = r.map(&f.packet(1, 70_001, 1000, 5, 70)).unwrap();
        assert_eq!(b.seq, a.seq + 1);
        // Older than the run's first packet: dropped.
        assert_eq!(r.map(&f.packet(1, 69_999, 900, 4, 71)), None);
    }

    #[test]
    fn layer_switch_continues_numbers_and_ids() {
        let f = Feed::new();
        let mut r = LegRewriter::new(90_000);
        r.map(&f.packet(1, 100, 9000, 50, 0)).unwrap();
        let last = r.map(&f.packet(1, 101, 9000, 50, 1)).unwrap();
        // Another layer 100 ms later, its own numbering.
        let s = r.map(&f.packet(2, 5000, 777_000, 32_767, 101)).unwrap();
        assert_eq!(s.seq, last.seq + 1);
        assert_eq!(s.timestamp, 9000 + 9000, "100 ms at 90 kHz after the last");
        assert_eq!(s.picture_id, Some(51));
        assert_eq!(s.tl0_pic_idx, Some(51));
        // The run goes on with the same offsets, picture id wrapping at 15 bits.
        let n = r.map(&f.packet(2, 5001, 780_000, 0, 134)).unwrap();
        assert_eq!(n.seq, s.seq + 1);
        assert_eq!(n.timestamp, s.timestamp + 3000);
        assert_eq!(n.picture_id, Some(52));
        // The new layer's packets from before the switch are not forwarded.
        assert_eq!(r.map(&f.packet(2, 4999, 774_000, 32_766, 135)), None);
        // The old layer's late packets would start a new run: the caller only
        // forwards the current layer, so this is not reached in the engine.
    }

    #[test]
    fn rebind_after_skipped_packets_leaves_no_gap() {
        let f = Feed::new();
        let mut r = LegRewriter::new(90_000);
        let a = r.map(&f.packet(1, 10, 0, 1, 0)).unwrap();
        // Packets 11..=40 were skipped (backlog); resume on a keyframe at 41.
        r.rebind();
        let b = r.map(&f.packet(1, 41, 90_000, 31, 1000)).unwrap();
        assert_eq!(b.seq, a.seq + 1);
        assert_eq!(b.timestamp, 90_000);
        assert_eq!(b.picture_id, Some(2));
        let c = r.map(&f.packet(1, 42, 90_000, 31, 1001)).unwrap();
        assert_eq!(c.seq, a.seq + 2);
        assert_eq!(c.picture_id, Some(2));
    }

    #[test]
    fn timestamps_wrap_and_advance_at_least_one_tick() {
        let f = Feed::new();
        let mut r = LegRewriter::new(48_000);
        let a = r.map(&f.packet(1, 1, u32::MAX - 10, 0, 0)).unwrap();
        let b = r.map(&f.packet(1, 2, 949, 0, 20)).unwrap();
        assert_eq!(b.timestamp, a.timestamp.wrapping_add(960));
        let c = r.map(&f.packet(9, 1, 5, 0, 20)).unwrap();
        assert_eq!(
            c.timestamp,
            b.timestamp.wrapping_add(1),
            "same instant: one tick"
        );
        assert_eq!(c.seq, b.seq + 1);
    }

    #[test]
    fn payloads_without_vp8_ids_are_never_patched() {
        let f = Feed::new();
        let mut r = LegRewriter::new(48_000);
        let mut p = f.packet(1, 1, 0, 0, 0);
        p.picture_id = None;
        p.tl0_pic_idx = None;
        r.map(&p).unwrap();
        p.source = 2;
        let o = r.map(&p).unwrap();
        assert_eq!((o.picture_id, o.tl0_pic_idx), (None, None));
    }
}
