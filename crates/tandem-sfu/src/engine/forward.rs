//! Forwarding one incoming RTP packet (str0m's RTP mode) to the subscribers of its
//! track: layer choice per subscriber ([`crate::simulcast`]), the subscriber's own
//! numbering ([`crate::rewrite`]), the subscriber's payload type, and the bounded
//! send backlog. The payload itself is shared, not copied, between subscribers.

use super::Engine;
use crate::participant::Written;
use crate::payload::{self, Inspected, PayloadKind};
use crate::rewrite::{Incoming, LegRewriter};
use crate::router::Pid;
use crate::simulcast::{Decision, LayerSelector};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use str0m::format::PayloadParams;
use str0m::media::{KeyframeRequestKind, MediaKind, Mid, Pt, Rid};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, SeqNo};

/// One subscriber's leg of a track: its numbering, and its payload types for the
/// publisher's ones (looked up once per payload type).
pub(super) struct Leg {
    rewriter: LegRewriter,
    pts: Vec<(Pt, Option<Pt>)>,
}

/// The publisher's side of a packet, worked out once for all its subscribers.
struct Source {
    mid: Mid,
    rid: Option<Rid>,
    kind: PayloadKind,
    params: PayloadParams,
    inspected: Inspected,
}

impl Engine {
    pub(super) fn forward(&mut self, pid: Pid, packet: RtpPacket, now: Instant) {
        let Some(source) = self.source_of(pid, &packet) else {
            return;
        };
        let Some((track, routes)) = self.router.route(pid, source.mid) else {
            return;
        };
        let Some(t) = self.router.track(track) else {
            return;
        };
        if t.muted {
            return;
        }
        let is_video = t.kind == MediaKind::Video;
        let first_layer = t.layers.first().copied();
        let keyframe = source.inspected.keyframe_start;
        if let Some(rid) = source.rid {
            self.rates.on_frame(track, rid, packet.payload.len(), now);
            if keyframe {
                if let Some(width) = payload::keyframe_width(source.kind, &packet.payload) {
                    self.rates.on_width(track, rid, width);
                }
            }
        }
        if let Some(level) = packet.header.ext_vals.audio_level {
            if let Some(e) = self.entries.get(&pid) {
                let room = e.participant.room.clone();
                self.speakers
                    .entry(room)
                    .or_default()
                    .0
                    .on_level(pid, level, now);
            }
        }
        let max_queue = Duration::from_millis(self.config.max_send_queue_ms);
        let incoming = Incoming {
            source: *packet.header.ssrc,
            seq: *packet.seq_no,
            timestamp: packet.header.timestamp,
            picture_id: source.inspected.vp8.and_then(|d| d.picture_id()),
            tl0_pic_idx: source.inspected.vp8.and_then(|d| d.tl0_pic_idx()),
            at: packet.timestamp,
        };
        let mut ext_vals = ExtensionValues::default();
        ext_vals.audio_level = packet.header.ext_vals.audio_level;
        ext_vals.voice_activity = packet.header.ext_vals.voice_activity;
        ext_vals.video_orientation = packet.header.ext_vals.video_orientation;
        let clock_rate = source.params.spec().clock_rate.get();
        let mut want_layer: Option<Rid> = None;
        let mut resync_layer: Option<Option<Rid>> = None;
        for (sub, mid) in routes {
            if self.paused.contains(&(sub, track)) || self.ice_lost.contains_key(&sub) {
                continue;
            }
            let selector = self
                .layers
                .entry((sub, track))
                .or_insert_with(|| LayerSelector::new(first_layer));
            let decision = selector.on_frame(source.rid, keyframe);
            if let Some(rid) = selector.pending_switch() {
                want_layer = Some(rid);
            }
            match decision {
                Decision::Drop => continue,
                Decision::Forward { switched } => {
                    if switched {
                        self.metrics.layer_switches.fetch_add(1, Relaxed);
                        self.demand_dirty = true;
                    }
                }
            }
            let leg = self.legs.entry((sub, track)).or_insert_with(|| Leg {
                rewriter: LegRewriter::new(clock_rate),
                pts: Vec::new(),
            });
            // After dropped video packets the subscriber's decoder needs a
            // keyframe; what comes before it would not decode.
            if self.resync.contains(&(sub, track)) {
                if !keyframe {
                    self.metrics.media_drops.fetch_add(1, Relaxed);
                    continue;
                }
                self.resync.remove(&(sub, track));
                leg.rewriter.rebind();
            }
            let Some(e) = self.entries.get_mut(&sub) else {
                continue;
            };
            let in_pt = packet.header.payload_type;
            let out_pt = match leg.pts.iter().find(|(p, _)| *p == in_pt) {
                Some((_, out)) => *out,
                None => {
                    let out = e.participant.match_pt(source.params);
                    leg.pts.push((in_pt, out));
                    out
                }
            };
            let Some(out_pt) = out_pt else {
                continue;
            };
            let Some(out) = leg.rewriter.map(&incoming) else {
                self.metrics.media_drops.fetch_add(1, Relaxed);
                continue;
            };
            let vp8_patch = match (source.inspected.vp8, out.picture_id, out.tl0_pic_idx) {
                (Some(d), pic, tl0) if pic.is_some() || tl0.is_some() => {
                    let mut b = d.patch();
                    if let Some(pic) = pic {
                        b = b.picture_id(pic);
                    }
                    if let Some(tl0) = tl0 {
                        b = b.tl0_pic_idx(tl0);
                    }
                    b.build().ok()
                }
                _ => None,
            };
            let write = || {
                let w = RtpWrite::new(
                    out_pt,
                    SeqNo::from(out.seq),
                    out.timestamp,
                    packet.timestamp,
                    packet.payload.clone(),
                )
                .marker(packet.header.marker)
                .ext_vals(ext_vals.clone())
                // Audio is not retransmitted: a resent Opus frame comes too late.
                .nackable(is_video);
                match vp8_patch {
                    Some(p) => w.vp8_patch(p),
                    None => w,
                }
            };
            match e.participant.write_rtp(mid, write, max_queue, now) {
                Written::Yes => {
                    self.metrics.media_packets_forwarded.fetch_add(1, Relaxed);
                    self.metrics
                        .media_bytes_forwarded
                        .fetch_add(packet.payload.len() as u64, Relaxed);
                    self.dirty.insert(sub);
                }
                Written::Dropped => {
                    self.metrics.media_drops.fetch_add(1, Relaxed);
                    self.dirty.insert(sub);
                    if is_video {
                        self.resync.insert((sub, track));
                        resync_layer = Some(source.rid);
                    }
                }
                Written::NotOpen => {}
            }
        }
        if let Some(rid) = resync_layer {
            self.ask_keyframe(pid, source.mid, rid, KeyframeRequestKind::Pli, now);
        }
        if let Some(rid) = want_layer {
            // A subscriber waits for this layer's keyframe to switch.
            self.ask_keyframe(pid, source.mid, Some(rid), KeyframeRequestKind::Pli, now);
        }
    }

    /// Which incoming m-line and layer a packet belongs to, its codec, and what its
    /// payload says; `None` for an unknown stream or payload type.
    fn source_of(&mut self, pid: Pid, packet: &RtpPacket) -> Option<Source> {
        let e = self.entries.get_mut(&pid)?;
        let (mid, rid) = e.participant.stream_of(packet.header.ssrc)?;
        let params = e.participant.payload_params(packet.header.payload_type)?;
        let kind = PayloadKind::of(params.spec().codec);
        let inspected = payload::inspect(kind, &packet.payload);
        Some(Source {
            mid,
            rid,
            kind,
            params,
            inspected,
        })
    }
}
