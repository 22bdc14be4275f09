//! Synthetic media for a publisher: VP8 frames at a set bitrate and frame rate with a
//! keyframe at a fixed interval (or when one is asked for), and 20 ms Opus frames.
//! The bytes only need to look right to an SFU (VP8 key/inter bit and start code);
//! nobody decodes them.

use std::time::{Duration, Instant};

pub const VIDEO_FPS: u32 = 30;
pub const AUDIO_FRAME: Duration = Duration::from_millis(20);
/// Opus at 32 kbit/s: 80 bytes per 20 ms frame.
pub const AUDIO_FRAME_BYTES: usize = 80;
/// A keyframe is this many times the size of an interframe (typical for camera video).
const KEYFRAME_FACTOR: usize = 3;
/// How late the clock may fall before frames are skipped rather than sent in a burst.
const MAX_LAG: Duration = Duration::from_millis(100);

pub enum Frame {
    Audio { data: Vec<u8>, time_48k: u64 },
    Video { data: Vec<u8>, time_90k: u64 },
}

pub struct Synth {
    start: Instant,
    next_audio: Instant,
    next_video: Instant,
    video_frame: u64,
    frames_per_key: u64,
    inter_bytes: usize,
    key_bytes: usize,
    key_asked: bool,
}

impl Synth {
    /// `video_kbps` is the average video bitrate, keyframes included.
    pub fn new(video_kbps: u64, keyframe_every: Duration, now: Instant) -> Synth {
        let frames_per_key = (keyframe_every.as_secs_f64() * VIDEO_FPS as f64).max(1.0) as u64;
        let gop_bytes = video_kbps as f64 * 1000.0 / 8.0 / VIDEO_FPS as f64 * frames_per_key as f64;
        // One keyframe of KEYFRAME_FACTOR interframes plus the other frames of the group.
        let inter = gop_bytes / (frames_per_key as f64 - 1.0 + KEYFRAME_FACTOR as f64);
        let inter_bytes = (inter as usize).max(16);
        Synth {
            start: now,
            next_audio: now,
            next_video: now,
            video_frame: 0,
            frames_per_key,
            inter_bytes,
            key_bytes: inter_bytes * KEYFRAME_FACTOR,
            key_asked: false,
        }
    }

    /// When the next frame is due.
    pub fn next_due(&self) -> Instant {
        self.next_audio.min(self.next_video)
    }

    /// The receiver asked for a keyframe (PLI/FIR): the next video frame is one.
    pub fn ask_keyframe(&mut self) {
        self.key_asked = true;
    }

    /// Every frame due at `now`, oldest first.
    pub fn due(&mut self, now: Instant, out: &mut Vec<Frame>) {
        let video_interval = Duration::from_secs(1) / VIDEO_FPS;
        catch_up(&mut self.next_audio, now);
        catch_up(&mut self.next_video, now);
        while self.next_audio <= now {
            let t = self.next_audio - self.start;
            out.push(Frame::Audio {
                data: opus_frame(),
                time_48k: (t.as_micros() * 48 / 1000) as u64,
            });
            self.next_audio += AUDIO_FRAME;
        }
        while self.next_video <= now {
            let t = self.next_video - self.start;
            let key = self.key_asked || self.video_frame.is_multiple_of(self.frames_per_key);
            self.key_asked = false;
            let size = if key {
                self.key_bytes
            } else {
                self.inter_bytes
            };
            out.push(Frame::Video {
                data: vp8_frame(key, size),
                time_90k: (t.as_micros() * 90 / 1000) as u64,
            });
            self.video_frame += 1;
            self.next_video += video_interval;
        }
    }
}

fn catch_up(next: &mut Instant, now: Instant) {
    if now.saturating_duration_since(*next) > MAX_LAG {
        *next = now;
    }
}

/// A VP8 frame of `size` bytes: the 3-byte frame tag (bit 0 clear = keyframe, show_frame
/// set), and for keyframes the start code and a 640x480 size, then filler.
pub fn vp8_frame(key: bool, size: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(size.max(10));
    if key {
        f.extend_from_slice(&[0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01]);
    } else {
        f.extend_from_slice(&[0x11, 0x02, 0x00]);
    }
    f.resize(size.max(f.len()), 0xAB);
    f
}

fn opus_frame() -> Vec<u8> {
    let mut f = vec![0x11; AUDIO_FRAME_BYTES];
    f[0] = 0xFC;
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_second_has_the_bitrate_and_a_keyframe() {
        let start = Instant::now();
        let mut s = Synth::new(1000, Duration::from_secs(1), start);
        let mut frames = Vec::new();
        // Step through one second in 5 ms ticks, as a driving loop would.
        for ms in (0..1000).step_by(5) {
            s.due(start + Duration::from_millis(ms), &mut frames);
        }
        let (mut audio, mut video, mut video_bytes, mut keys) = (0, 0, 0, 0);
        for f in &frames {
            match f {
                Frame::Audio { .. } => audio += 1,
                Frame::Video { data, .. } => {
                    video += 1;
                    video_bytes += data.len();
                    keys += usize::from(data[0] & 1 == 0);
                }
            }
        }
        assert_eq!(audio, 50);
        assert_eq!(video, 30);
        assert_eq!(keys, 1);
        let kbps = video_bytes * 8 / 1000;
        assert!((990..=1010).contains(&kbps), "{kbps} kbit/s");
        s.ask_keyframe();
        frames.clear();
        s.due(start + Duration::from_millis(1040), &mut frames);
        assert!(frames
            .iter()
            .any(|f| matches!(f, Frame::Video { data, .. } if data[0] & 1 == 0)));
    }
}
