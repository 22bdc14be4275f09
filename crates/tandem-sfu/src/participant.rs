//! One participant's media session: a str0m `Rtc` in ICE-lite mode and the state of
//! the m-lines the SFU added to send other participants' tracks. Every call into the
//! `Rtc` runs under `catch_unwind`: a panic inside str0m marks this participant dead
//! (it is then dropped) instead of taking the SFU down.

use crate::metrics::SfuMetrics;
use crate::router::{Pid, TrackId, TrackMeta};
use crate::SfuError;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::channel::ChannelId;
use str0m::crypto::CryptoProvider;
use str0m::format::PayloadParams;
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid, Pt, Rid};
use str0m::net::{Protocol, TcpType};
use str0m::rtp::{RtpWrite, Ssrc};
use str0m::{Candidate, Event, Input, Output, Rtc};

/// Bandwidth estimate a subscriber starts from, in kbit/s.
pub const INITIAL_BWE_KBPS: u64 = 300;

/// Most due timeouts one [`Participant::poll`] feeds back before it returns (the
/// rest wait for the next turn of the I/O loop, so one busy participant cannot hold
/// up the others for long).
const MAX_DUE_TIMEOUTS_PER_POLL: usize = 1024;

/// Why a participant's media session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// ICE/DTLS did not connect within the configured time.
    ConnectTimeout,
    /// ICE lost the peer, or the `Rtc` reported an error.
    Disconnected(String),
    /// str0m panicked while handling this participant.
    Panicked,
}

impl Ended {
    pub fn reason(&self) -> &'static str {
        match self {
            Ended::ConnectTimeout => "connect_timeout",
            Ended::Disconnected(_) => "disconnected",
            Ended::Panicked => "internal",
        }
    }
}

/// What became of a packet written toward a subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Yes,
    /// The subscriber's send queue is over its limit.
    Dropped,
    /// No usable sender on that m-line (yet).
    NotOpen,
}

/// Negotiation state of one outgoing m-line carrying another participant's track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutState {
    /// Wanted, not yet in an offer.
    ToOpen,
    /// In the outstanding server offer.
    Negotiating(Mid),
    Open(Mid),
    /// The track went away; the m-line must be stopped in the next offer.
    ToStop(Mid),
    /// Stopped in the outstanding server offer.
    NegotiatingStop(Mid),
}

#[derive(Debug, Clone)]
pub struct Out {
    pub track: TrackId,
    pub kind: MediaKind,
    /// `a=msid` stream id: the publishing participant's sid.
    pub stream_id: String,
    pub state: OutState,
}

/// What every `Rtc` is built from.
#[derive(Clone)]
pub struct RtcParams {
    pub crypto: Arc<CryptoProvider>,
    /// UDP host candidates (advertised IP + the UDP port).
    pub candidates: Vec<SocketAddr>,
    /// Passive TCP host candidates (advertised IP + the TCP port), if ICE-TCP is on.
    pub tcp_candidates: Vec<SocketAddr>,
}

pub struct Participant {
    pub pid: Pid,
    pub room: Arc<str>,
    pub sid: Arc<str>,
    rtc: Rtc,
    pending: Option<(u64, SdpPendingOffer)>,
    revision: u64,
    pub outs: Vec<Out>,
    /// Track metadata the client gave, by its mid.
    pub meta: HashMap<String, TrackMeta>,
    pub created: Instant,
    pub connected: bool,
    /// Latest TWCC bandwidth estimate toward this participant, in bit/s.
    pub estimate_bps: Option<u64>,
    pub ended: Option<Ended>,
    pub next_timeout: Instant,
    /// Open data channels by label, and back.
    channels: HashMap<String, ChannelId>,
    labels: HashMap<ChannelId, String>,
    /// When a keyframe was last requested, per incoming mid and layer.
    keyframe_asked: HashMap<(Mid, Option<Rid>), Instant>,
    /// The m-line and layer of each incoming stream, by SSRC (packets carry the
    /// mid/rid header extensions only at the start).
    streams_in: HashMap<Ssrc, (Mid, Option<Rid>)>,
    metrics: Arc<SfuMetrics>,
}

impl Participant {
    pub fn new(
        pid: Pid,
        room: Arc<str>,
        sid: Arc<str>,
        params: &RtcParams,
        prefer_h264: bool,
        metrics: Arc<SfuMetrics>,
        now: Instant,
    ) -> Result<Self, SfuError> {
        let built = catch_unwind(AssertUnwindSafe(|| {
            let builder = Rtc::builder()
                .set_crypto_provider(params.crypto.clone())
                .set_ice_lite(true)
                // Forward RTP packets as they are (see `rewrite`): no depacketizing
                // into frames and packetizing again for every subscriber.
                .set_rtp_mode(true)
                .clear_codecs()
                .enable_opus(true, false);
            // Answers list codecs in this order and browsers send the first one: the
            // participant's own preference goes first (see `sdp::preferred_video_codec`).
            let builder = if prefer_h264 {
                builder.enable_h264(true).enable_vp8(true)
            } else {
                builder.enable_vp8(true).enable_h264(true)
            };
            let mut rtc = builder
                // TWCC bandwidth estimation toward this participant (see `allocation`).
                .enable_bwe(Some(str0m::bwe::Bitrate::kbps(INITIAL_BWE_KBPS)))
                .build(now);
            for addr in &params.candidates {
                if let Ok(c) = Candidate::host(*addr, "udp") {
                    rtc.add_local_candidate(c);
                }
            }
            for addr in &params.tcp_candidates {
                let c = Candidate::builder()
                    .tcp()
                    .host(*addr)
                    .tcptype(TcpType::Passive)
                    .build();
                if let Ok(c) = c {
                    rtc.add_local_candidate(c);
                }
            }
            rtc
        }));
        let rtc = built.map_err(|_| {
            metrics.panics.fetch_add(1, Relaxed);
            SfuError::BadSdp("the media session could not be created".into())
        })?;
        Ok(Participant {
            pid,
            room,
            sid,
            rtc,
            pending: None,
            revision: 0,
            outs: Vec::new(),
            meta: HashMap::new(),
            created: now,
            connected: false,
            estimate_bps: None,
            ended: None,
            next_timeout: now,
            keyframe_asked: HashMap::new(),
            streams_in: HashMap::new(),
            channels: HashMap::new(),
            labels: HashMap::new(),
            metrics,
        })
    }

    /// Runs `f` on the `Rtc`; a panic ends this participant and yields `None`.
    fn guard<R>(&mut self, f: impl FnOnce(&mut Rtc) -> R) -> Option<R> {
        if self.ended.is_some() {
            return None;
        }
        match catch_unwind(AssertUnwindSafe(|| f(&mut self.rtc))) {
            Ok(r) => Some(r),
            Err(_) => {
                tracing::error!(pid = self.pid, "str0m panicked; dropping the participant");
                self.metrics.panics.fetch_add(1, Relaxed);
                self.ended = Some(Ended::Panicked);
                None
            }
        }
    }

    /// Applies a client offer and returns the answer. An outstanding server offer is
    /// void afterwards; its m-lines are offered again.
    pub fn accept_offer(&mut self, offer: SdpOffer) -> Result<SdpAnswer, SfuError> {
        let answer = self
            .guard(|rtc| rtc.sdp_api().accept_offer(offer))
            .ok_or_else(|| SfuError::BadSdp("the offer could not be applied".into()))?
            .map_err(|e| SfuError::BadSdp(format!("the offer was refused: {e}")))?;
        self.pending = None;
        for out in &mut self.outs {
            out.state = match out.state {
                OutState::Negotiating(_) => OutState::ToOpen,
                OutState::NegotiatingStop(m) => OutState::ToStop(m),
                s => s,
            };
        }
        Ok(answer)
    }

    /// Applies the client's answer to the server offer `revision`.
    pub fn accept_answer(&mut self, revision: u64, answer: SdpAnswer) -> Result<(), SfuError> {
        let Some((rev, pending)) = self.pending.take() else {
            return Err(SfuError::NoPendingOffer(
                "no server offer is waiting for an answer".into(),
            ));
        };
        if rev != revision {
            self.pending = Some((rev, pending));
            return Err(SfuError::NoPendingOffer(format!(
                "answer to offer revision {revision}, but revision {rev} is outstanding"
            )));
        }
        let applied = self.guard(|rtc| rtc.sdp_api().accept_answer(pending, answer));
        match applied {
            Some(Ok(())) => {
                for out in &mut self.outs {
                    if let OutState::Negotiating(m) = out.state {
                        out.state = OutState::Open(m);
                    }
                }
                self.outs
                    .retain(|o| !matches!(o.state, OutState::NegotiatingStop(_)));
                Ok(())
            }
            failed => {
                // Offer the same changes again on the next negotiation.
                for out in &mut self.outs {
                    out.state = match out.state {
                        OutState::Negotiating(_) => OutState::ToOpen,
                        OutState::NegotiatingStop(m) => OutState::ToStop(m),
                        s => s,
                    };
                }
                let why = match failed {
                    Some(Err(e)) => e.to_string(),
                    _ => "internal error".into(),
                };
                Err(SfuError::BadSdp(format!("the answer was refused: {why}")))
            }
        }
    }

    /// Adds wanted m-lines and stops unwanted ones in a new server offer. Returns the
    /// offer's revision and SDP, or `None` when nothing changed or an offer is
    /// already outstanding. `gone(track)` says whether a track no longer exists.
    pub fn negotiate(&mut self, gone: impl Fn(TrackId) -> bool) -> Option<(u64, String)> {
        if self.pending.is_some() || self.ended.is_some() {
            return None;
        }
        for out in &mut self.outs {
            if let OutState::Open(m) = out.state {
                if gone(out.track) {
                    out.state = OutState::ToStop(m);
                }
            }
        }
        self.outs
            .retain(|o| !(o.state == OutState::ToOpen && gone(o.track)));
        let mut outs = std::mem::take(&mut self.outs);
        let made = self.guard(|rtc| {
            let mut change = rtc.sdp_api();
            for out in &mut outs {
                match out.state {
                    OutState::ToOpen => {
                        let mid = change.add_media(
                            out.kind,
                            Direction::SendOnly,
                            Some(out.stream_id.clone()),
                            Some(out.track.to_string()),
                            None,
                        );
                        out.state = OutState::Negotiating(mid);
                    }
                    OutState::ToStop(mid) => {
                        change.stop_media(mid);
                        out.state = OutState::NegotiatingStop(mid);
                    }
                    _ => {}
                }
            }
            if !change.has_changes() {
                return None;
            }
            change.apply()
        });
        self.outs = outs;
        let (offer, pending) = made.flatten()?;
        self.revision += 1;
        self.pending = Some((self.revision, pending));
        Some((self.revision, offer.to_sdp_string()))
    }

    pub fn handle_input(&mut self, input: Input) {
        let result = self.guard(|rtc| rtc.handle_input(input));
        if let Some(Err(e)) = result {
            tracing::debug!(pid = self.pid, error = %e, "rtc input failed");
            self.ended = Some(Ended::Disconnected(e.to_string()));
        }
    }

    pub fn accepts(&self, input: &Input) -> bool {
        if self.ended.is_some() {
            return false;
        }
        catch_unwind(AssertUnwindSafe(|| self.rtc.accepts(input))).unwrap_or(false)
    }

    /// Polls the `Rtc` until it asks for a timeout later than `now`: packets go out
    /// through `send` (protocol, destination, bytes → sent), events are returned.
    ///
    /// A timeout that is already due is fed back at once. This matters with the
    /// bandwidth estimator on: its pacer releases one queued packet per timeout and
    /// then asks for another immediately, so waiting for the next turn of the I/O loop
    /// instead would cap every subscriber at one packet per turn, and with a few
    /// publishers its send queues would grow without bound.
    pub fn poll(
        &mut self,
        now: Instant,
        send: &mut dyn FnMut(Protocol, SocketAddr, &[u8]) -> bool,
    ) -> Vec<Event> {
        let mut events = Vec::new();
        let metrics = self.metrics.clone();
        let mut next = None;
        let mut due = 0;
        let result = self.guard(|rtc| loop {
            if !rtc.is_alive() {
                return Err("closed".to_string());
            }
            match rtc.poll_output() {
                Ok(Output::Transmit(t)) => {
                    let bytes: &[u8] = &t.contents;
                    if send(t.proto, t.destination, bytes) {
                        metrics.packets_out.fetch_add(1, Relaxed);
                        metrics.bytes_out.fetch_add(bytes.len() as u64, Relaxed);
                    } else {
                        metrics.send_drops.fetch_add(1, Relaxed);
                    }
                }
                Ok(Output::Timeout(t)) if t <= now && due < MAX_DUE_TIMEOUTS_PER_POLL => {
                    due += 1;
                    rtc.handle_input(Input::Timeout(now))
                        .map_err(|e| e.to_string())?;
                }
                Ok(Output::Timeout(t)) => {
                    next = Some(t);
                    return Ok(());
                }
                Ok(Output::Event(e)) => events.push(e),
                Err(e) => return Err(e.to_string()),
            }
        });
        match result {
            Some(Ok(())) => {
                if let Some(t) = next {
                    self.next_timeout = t;
                }
            }
            Some(Err(e)) if self.ended.is_none() => {
                self.ended = Some(Ended::Disconnected(e));
            }
            _ => {}
        }
        events
    }

    /// The incoming m-line and simulcast layer of the publisher's stream `ssrc`.
    pub fn stream_of(&mut self, ssrc: Ssrc) -> Option<(Mid, Option<Rid>)> {
        if let Some(known) = self.streams_in.get(&ssrc) {
            return Some(*known);
        }
        let found = self
            .guard(|rtc| {
                rtc.direct_api()
                    .stream_rx(&ssrc)
                    .map(|s| (s.mid(), s.rid()))
            })
            .flatten()?;
        self.streams_in.insert(ssrc, found);
        Some(found)
    }

    /// The codec this participant negotiated under payload type `pt`.
    pub fn payload_params(&mut self, pt: Pt) -> Option<PayloadParams> {
        self.guard(|rtc| {
            rtc.codec_config()
                .params()
                .iter()
                .find(|p| p.pt() == pt)
                .copied()
        })
        .flatten()
    }

    /// This participant's payload type for the codec `params` (another
    /// participant's numbering).
    pub fn match_pt(&mut self, params: PayloadParams) -> Option<Pt> {
        self.guard(|rtc| rtc.codec_config().match_params(params).map(|p| p.pt()))
            .flatten()
    }

    /// Sends a packet from another participant on the outgoing m-line `mid`, unless
    /// that m-line's send queue already holds a packet older than `max_queue`: then
    /// the packet is dropped, so a subscriber the SFU cannot serve fast enough costs
    /// a bounded amount of memory instead of an ever longer queue.
    pub fn write_rtp(
        &mut self,
        mid: Mid,
        packet: impl FnOnce() -> RtpWrite,
        max_queue: Duration,
        now: Instant,
    ) -> Written {
        let written = self.guard(|rtc| {
            let mut api = rtc.direct_api();
            let Some(stream) = api.stream_tx_by_mid(mid, None) else {
                return Written::NotOpen;
            };
            let backlog = stream.queue_info().and_then(|q| q.first_unsent());
            if backlog.is_some_and(|t| now.saturating_duration_since(t) > max_queue) {
                return Written::Dropped;
            }
            stream.write_rtp(packet());
            Written::Yes
        });
        written.unwrap_or(Written::NotOpen)
    }

    /// Asks this participant (a publisher) for a keyframe on its incoming `mid`,
    /// at most once per `min_interval`.
    pub fn request_keyframe(
        &mut self,
        mid: Mid,
        rid: Option<Rid>,
        kind: KeyframeRequestKind,
        min_interval: Duration,
        now: Instant,
    ) -> bool {
        if let Some(last) = self.keyframe_asked.get(&(mid, rid)) {
            if now.saturating_duration_since(*last) < min_interval {
                return false;
            }
        }
        let asked = self.guard(|rtc| {
            rtc.direct_api()
                .stream_rx_by_mid(mid, rid)
                .map(|s| s.request_keyframe(kind))
                .is_some()
        });
        if asked == Some(true) {
            self.keyframe_asked.insert((mid, rid), now);
            self.metrics.keyframe_requests.fetch_add(1, Relaxed);
            true
        } else {
            false
        }
    }

    /// Asks the publisher to send at most `bps` on its incoming m-line `mid` (REMB on
    /// each of the track's streams).
    pub fn cap_bitrate(&mut self, mid: Mid, rids: &[Rid], bps: u64) -> bool {
        let sent = self.guard(|rtc| {
            let mut api = rtc.direct_api();
            let mut any = false;
            let rids: Vec<Option<Rid>> = if rids.is_empty() {
                vec![None]
            } else {
                rids.iter().copied().map(Some).collect()
            };
            for rid in rids {
                if let Some(stream) = api.stream_rx_by_mid(mid, rid) {
                    stream.request_remb(str0m::bwe::Bitrate::bps(bps));
                    any = true;
                }
            }
            any
        });
        sent == Some(true)
    }

    /// Whether the pacer holds the outgoing m-line `mid` to the bandwidth estimate.
    /// Only media the SFU can adapt to the estimate (a simulcast layer choice) should
    /// be paced: pacing a track of fixed bitrate below that bitrate only queues it
    /// (latency, memory) until str0m's pacer drains the backlog in a burst.
    pub fn set_paced(&mut self, mid: Mid, paced: bool) -> bool {
        let set = self.guard(|rtc| {
            rtc.direct_api()
                .stream_tx_by_mid(mid, None)
                .map(|s| s.set_unpaced(!paced))
                .is_some()
        });
        set == Some(true)
    }

    /// Tells the bandwidth estimator how much it should try to discover.
    pub fn set_desired_bitrate(&mut self, bps: u64) {
        self.guard(|rtc| rtc.bwe().set_desired_bitrate(str0m::bwe::Bitrate::bps(bps)));
    }

    pub fn channel_opened(&mut self, id: ChannelId, label: String) {
        self.channels.insert(label.clone(), id);
        self.labels.insert(id, label);
    }

    pub fn channel_closed(&mut self, id: ChannelId) {
        if let Some(label) = self.labels.remove(&id) {
            self.channels.remove(&label);
        }
    }

    pub fn channel_label(&self, id: ChannelId) -> Option<&str> {
        self.labels.get(&id).map(String::as_str)
    }

    /// Sends a message on this participant's data channel `label`; `false` when it has
    /// no such channel or its send buffer is full (the message is dropped).
    pub fn write_channel(&mut self, label: &str, binary: bool, data: &[u8]) -> bool {
        let Some(id) = self.channels.get(label).copied() else {
            return false;
        };
        let written = self.guard(|rtc| {
            rtc.channel(id)
                .map(|mut c| c.write(binary, data).unwrap_or(false))
                .unwrap_or(false)
        });
        written == Some(true)
    }

    /// Drops a closed `Rtc`'s bookkeeping.
    pub fn end(&mut self, why: Ended) {
        if self.ended.is_none() {
            self.ended = Some(why);
        }
        let _ = catch_unwind(AssertUnwindSafe(|| self.rtc.disconnect()));
    }
}
