//! Loss from RTP sequence numbers, per incoming stream (SSRC): packets expected
//! (highest − lowest extended sequence number + 1) against distinct packets received,
//! since the last reset. str0m hands out extended (64-bit) sequence numbers, so
//! wrap-around is already handled. Retransmissions repair gaps, as they would for a
//! browser; duplicates (a retransmission after all, or the bandwidth probes str0m
//! sends as RTX copies of old packets) are counted apart, not as delivered.

/// Sequence numbers remembered per stream to recognise duplicates.
const WINDOW: u64 = 1024;

#[derive(Default)]
pub struct SeqCounter {
    /// Few streams per subscriber, so a Vec.
    streams: Vec<Stream>,
    duplicates: u64,
}

struct Stream {
    ssrc: u32,
    lowest: u64,
    highest: u64,
    received: u64,
    /// Bit `seq % WINDOW` set: `seq` (within WINDOW of `highest`) arrived.
    seen: [u64; (WINDOW / 64) as usize],
}

impl Stream {
    fn bit(seq: u64) -> (usize, u64) {
        let i = seq % WINDOW;
        ((i / 64) as usize, 1 << (i % 64))
    }
}

impl SeqCounter {
    /// Records a packet; false if it is a duplicate (or too old to tell).
    pub fn on_packet(&mut self, ssrc: u32, seq: u64) -> bool {
        let Some(s) = self.streams.iter_mut().find(|s| s.ssrc == ssrc) else {
            let mut s = Stream {
                ssrc,
                lowest: seq,
                highest: seq,
                received: 1,
                seen: [0; (WINDOW / 64) as usize],
            };
            let (w, b) = Stream::bit(seq);
            s.seen[w] |= b;
            self.streams.push(s);
            return true;
        };
        if seq + WINDOW <= s.highest {
            // Too old to tell; too rare to matter.
            return false;
        }
        if seq > s.highest {
            // Forget what the window slides past.
            for old in (s.highest + 1).max(seq.saturating_sub(WINDOW - 1))..=seq {
                let (w, b) = Stream::bit(old);
                s.seen[w] &= !b;
            }
            s.highest = seq;
        }
        let (w, b) = Stream::bit(seq);
        if s.seen[w] & b != 0 {
            self.duplicates += 1;
            return false;
        }
        s.seen[w] |= b;
        s.lowest = s.lowest.min(seq);
        s.received += 1;
        true
    }

    pub fn reset(&mut self) {
        self.streams.clear();
        self.duplicates = 0;
    }

    /// (distinct packets received, packets expected) over all streams.
    pub fn totals(&self) -> (u64, u64) {
        self.streams.iter().fold((0, 0), |(r, e), s| {
            (r + s.received, e + s.highest - s.lowest + 1)
        })
    }

    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_per_stream_count_as_lost_and_duplicates_do_not_count() {
        let mut c = SeqCounter::default();
        for seq in [10, 11, 13, 14] {
            c.on_packet(1, seq);
        }
        for seq in [70_000, 70_001] {
            c.on_packet(2, seq);
        }
        assert_eq!(c.totals(), (6, 7));
        // A late packet fills the gap; a second copy is a duplicate.
        c.on_packet(1, 12);
        c.on_packet(1, 12);
        c.on_packet(2, 70_000);
        assert_eq!(c.totals(), (7, 7));
        assert_eq!(c.duplicates(), 2);
        // Far ahead: the window slides, old bits are forgotten.
        c.on_packet(1, 14 + 3 * WINDOW);
        c.on_packet(1, 14 + 2 * WINDOW + 1);
        assert_eq!(c.totals(), (9, (14 + 3 * WINDOW - 10 + 1) + 2));
        assert_eq!(c.duplicates(), 2);
        c.reset();
        assert_eq!(c.totals(), (0, 0));
    }
}
