//! Loss from RTP sequence numbers, per incoming stream (SSRC): packets expected
//! (highest − lowest extended sequence number + 1) against packets received, since
//! the last reset. str0m hands out extended (64-bit) sequence numbers, so wrap-around
//! is already handled. Retransmissions repair gaps, as they would for a browser.

#[derive(Default)]
pub struct SeqCounter {
    /// (ssrc, lowest seq, highest seq, packets received); few streams, so a Vec.
    streams: Vec<(u32, u64, u64, u64)>,
}

impl SeqCounter {
    pub fn on_packet(&mut self, ssrc: u32, seq: u64) {
        match self.streams.iter_mut().find(|s| s.0 == ssrc) {
            Some(s) => {
                s.1 = s.1.min(seq);
                s.2 = s.2.max(seq);
                s.3 += 1;
            }
            None => self.streams.push((ssrc, seq, seq, 1)),
        }
    }

    pub fn reset(&mut self) {
        self.streams.clear();
    }

    /// (received, expected) over all streams. Duplicates count as received, so
    /// `received` can exceed `expected`; loss is then zero.
    pub fn totals(&self) -> (u64, u64) {
        self.streams
            .iter()
            .fold((0, 0), |(r, e), s| (r + s.3, e + s.2 - s.1 + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_per_stream_count_as_lost() {
        let mut c = SeqCounter::default();
        for seq in [10, 11, 13, 14] {
            c.on_packet(1, seq);
        }
        for seq in [70_000, 70_001] {
            c.on_packet(2, seq);
        }
        assert_eq!(c.totals(), (6, 7));
        // A late packet fills the gap.
        c.on_packet(1, 12);
        assert_eq!(c.totals(), (7, 7));
        c.reset();
        assert_eq!(c.totals(), (0, 0));
    }
}
