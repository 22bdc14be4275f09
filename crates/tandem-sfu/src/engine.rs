//! The SFU's state machine: participants, the router between them, and what happens
//! on each signaling command, datagram, timeout and str0m event. Driven by `udp`;
//! everything here is synchronous.

use crate::allocation::{allocate, cap_by_width, LayerRates, TrackLayers};
use crate::config::SfuConfig;
use crate::metrics::SfuMetrics;
use crate::participant::{Ended, Out, OutState, Participant, RtcParams};
use crate::router::{Pid, RouteError, Router, TrackId, TrackMeta};
use crate::sdp::{parse_answer, parse_offer, preferred_video_codec};
use crate::simulcast::LayerSelector;
use crate::speakers::SpeakerDetector;
use crate::tcp::{self, TcpEvent};
use crate::{Command, SfuError, Signal, Sink, TrackView};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::media::{KeyframeRequestKind, MediaKind, Rid};
use str0m::net::{Protocol, Receive};
use str0m::{Event, IceConnectionState, Input};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

mod forward;
mod ice_grace;
mod layers;

struct Entry {
    participant: Participant,
    sink: Sink,
}

pub struct Engine {
    config: SfuConfig,
    params: RtcParams,
    router: Router,
    entries: HashMap<Pid, Entry>,
    by_key: HashMap<(Arc<str>, Arc<str>), Pid>,
    /// Last participant that accepted traffic from a remote address (demux fast path).
    by_addr: HashMap<SocketAddr, Pid>,
    /// Open ICE-TCP connections by remote address: the queue toward each.
    tcp_out: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>,
    next_pid: Pid,
    metrics: Arc<SfuMetrics>,
    /// Participants whose `Rtc` has output to poll.
    dirty: BTreeSet<Pid>,
    /// Every participant's next `Rtc` timeout, earliest first.
    deadlines: BTreeSet<(Instant, Pid)>,
    /// Participants whose ICE/DTLS has not connected yet (bounded by the connect
    /// timeout).
    connecting: BTreeSet<Pid>,
    /// Participants that may need a new server offer.
    renegotiate: BTreeSet<Pid>,
    /// Connected participants whose ICE went `disconnected`, since when: kept for
    /// `ice_disconnect_grace_ms`, forwarded nothing meanwhile (module `ice_grace`).
    ice_lost: HashMap<Pid, Instant>,
    /// Simulcast layer choice per (subscriber, track).
    layers: HashMap<(Pid, TrackId), LayerSelector>,
    /// Numbering and payload types per (subscriber, track).
    legs: HashMap<(Pid, TrackId), forward::Leg>,
    /// (subscriber, video track) pairs that dropped a packet (send queue over
    /// `max_send_queue_ms`) and wait for a keyframe before forwarding again.
    resync: HashSet<(Pid, TrackId)>,
    /// (subscriber, track) pairs the subscriber turned off.
    paused: HashSet<(Pid, TrackId)>,
    /// (subscriber, track) pairs whose layer the subscriber chose (no automatic choice).
    pinned: HashSet<(Pid, TrackId)>,
    /// Width a subscriber shows a track at: bounds its automatic layer choice.
    max_width: HashMap<(Pid, TrackId), u32>,
    /// Measured bitrate of every incoming simulcast layer.
    rates: LayerRates,
    next_allocation: Instant,
    /// Audio levels per room, and the active speakers last pushed there.
    speakers: HashMap<Arc<str>, (SpeakerDetector, Vec<String>)>,
    next_speaker_check: Instant,
    /// Per simulcast track, the layers its publisher was told to send.
    layer_gates: HashMap<TrackId, crate::layer_demand::LayerGate>,
    /// Something changed what subscribers need: re-evaluate at the next tick.
    demand_dirty: bool,
}

/// How often simulcast layers are re-allocated from bandwidth estimates.
const ALLOCATION_INTERVAL: Duration = Duration::from_millis(1000);

/// How often active speakers are re-evaluated.
const SPEAKER_INTERVAL: Duration = Duration::from_millis(300);

impl Engine {
    pub fn new(config: SfuConfig, params: RtcParams, metrics: Arc<SfuMetrics>) -> Self {
        Engine {
            router: Router::new(
                config.max_participants_per_room,
                config.max_tracks_per_participant,
            ),
            config,
            params,
            entries: HashMap::new(),
            by_key: HashMap::new(),
            by_addr: HashMap::new(),
            tcp_out: HashMap::new(),
            next_pid: 1,
            metrics,
            dirty: BTreeSet::new(),
            deadlines: BTreeSet::new(),
            connecting: BTreeSet::new(),
            renegotiate: BTreeSet::new(),
            ice_lost: HashMap::new(),
            layers: HashMap::new(),
            legs: HashMap::new(),
            resync: HashSet::new(),
            paused: HashSet::new(),
            pinned: HashSet::new(),
            max_width: HashMap::new(),
            rates: LayerRates::default(),
            next_allocation: Instant::now(),
            speakers: HashMap::new(),
            next_speaker_check: Instant::now(),
            layer_gates: HashMap::new(),
            demand_dirty: false,
        }
    }

    /// The local address str0m is told a packet arrived on: the first candidate of
    /// the protocol and the sender's address family.
    fn destination_for(&self, proto: Protocol, source: SocketAddr) -> SocketAddr {
        let c = if proto == Protocol::Tcp {
            &self.params.tcp_candidates
        } else {
            &self.params.candidates
        };
        c.iter()
            .find(|a| a.is_ipv4() == source.is_ipv4())
            .or(c.first())
            .copied()
            .unwrap_or(source)
    }

    pub fn command(&mut self, cmd: Command, now: Instant) {
        match cmd {
            Command::Offer {
                room,
                sid,
                sdp,
                meta,
                sink,
                reply,
            } => {
                let result = self.offer(room, sid, &sdp, meta, sink, now);
                let _ = reply.send(result);
            }
            Command::Answer {
                room,
                sid,
                revision,
                sdp,
                reply,
            } => {
                let result = self.answer(room, sid, revision, &sdp);
                let _ = reply.send(result);
            }
            Command::Leave { room, sid } => {
                if let Some(pid) = self.by_key.get(&(room, sid)).copied() {
                    self.remove(pid, None);
                }
            }
            Command::Layer {
                room,
                sid,
                track,
                rid,
                max_width,
                reply,
            } => {
                let result = self.select_layer(room, sid, &track, &rid, max_width, now);
                let _ = reply.send(result);
            }
            Command::Mute {
                room,
                sid,
                mid,
                muted,
                reply,
            } => {
                let result = self.mute(room, sid, &mid, muted, now);
                let _ = reply.send(result);
            }
            Command::Subscribe {
                room,
                sid,
                track,
                enabled,
                reply,
            } => {
                let result = self.subscribe(room, sid, &track, enabled, now);
                let _ = reply.send(result);
            }
        }
    }

    fn session(&self, room: Arc<str>, sid: Arc<str>) -> Result<Pid, SfuError> {
        self.by_key.get(&(room, sid)).copied().ok_or_else(|| {
            SfuError::UnknownTrack("no media session in this room; send sfu_offer first".into())
        })
    }

    /// A subscriber's view of `track` ("TR<n>"), checked to be one it receives.
    fn subscribed_track(&self, pid: Pid, track: &str) -> Result<TrackId, SfuError> {
        let unknown =
            || SfuError::UnknownTrack(format!("this session receives no track '{track}'"));
        let id = track
            .strip_prefix("TR")
            .and_then(|n| n.parse().ok())
            .map(TrackId)
            .ok_or_else(unknown)?;
        if self.router.is_subscribed(pid, id) && self.router.track(id).is_some() {
            Ok(id)
        } else {
            Err(unknown())
        }
    }

    fn mute(
        &mut self,
        room: Arc<str>,
        sid: Arc<str>,
        mid: &str,
        muted: bool,
        now: Instant,
    ) -> Result<(), SfuError> {
        let pid = self.session(room, sid)?;
        let changed = self
            .router
            .set_muted(pid, str0m::media::Mid::from(mid), muted)
            .map_err(|_| {
                SfuError::UnknownTrack(format!("this session publishes nothing on mid '{mid}'"))
            })?;
        if let Some((_, subscribers)) = changed {
            for sub in subscribers {
                self.push_tracks(sub);
            }
            if !muted {
                // Subscribers' decoders need a fresh keyframe after the gap.
                self.ask_keyframe(
                    pid,
                    str0m::media::Mid::from(mid),
                    None,
                    KeyframeRequestKind::Pli,
                    now,
                );
            }
        }
        Ok(())
    }

    fn subscribe(
        &mut self,
        room: Arc<str>,
        sid: Arc<str>,
        track: &str,
        enabled: bool,
        now: Instant,
    ) -> Result<(), SfuError> {
        let pid = self.session(room, sid)?;
        let id = self.subscribed_track(pid, track)?;
        if enabled {
            if self.paused.remove(&(pid, id)) {
                let t = self.router.track(id).expect("checked");
                let (owner, mid) = (t.owner, t.mid);
                let rid = self.layers.get(&(pid, id)).and_then(|s| s.target());
                self.ask_keyframe(owner, mid, rid, KeyframeRequestKind::Pli, now);
            }
        } else {
            self.paused.insert((pid, id));
        }
        self.demand_dirty = true;
        Ok(())
    }

    /// Sends `pid` the current list of tracks it receives.
    fn push_tracks(&self, pid: Pid) {
        if let Some(e) = self.entries.get(&pid) {
            (e.sink)(Signal::Tracks {
                room: e.participant.room.clone(),
                tracks: self.track_views(&e.participant),
            });
        }
    }

    fn select_layer(
        &mut self,
        room: Arc<str>,
        sid: Arc<str>,
        track: &str,
        rid: &str,
        max_width: Option<u32>,
        now: Instant,
    ) -> Result<(), SfuError> {
        let pid = self.session(room, sid)?;
        let id = self.subscribed_track(pid, track)?;
        let t = self.router.track(id).expect("checked by subscribed_track");
        if rid == "auto" && !t.layers.is_empty() {
            self.pinned.remove(&(pid, id));
            self.demand_dirty = true;
            match max_width {
                Some(w) => self.max_width.insert((pid, id), w),
                None => self.max_width.remove(&(pid, id)),
            };
            // Applied at the next allocation (within a second).
            return Ok(());
        }
        let Some(rid) = t.layers.iter().copied().find(|r| r.to_string() == rid) else {
            let layers: Vec<String> = t.layers.iter().map(|r| r.to_string()).collect();
            return Err(SfuError::UnknownTrack(format!(
                "track '{track}' has no layer '{rid}' (layers: {})",
                if layers.is_empty() {
                    "none, not simulcast".into()
                } else {
                    layers.join(", ")
                }
            )));
        };
        let (owner, mid) = (t.owner, t.mid);
        let first = t.layers.first().copied();
        let selector = self
            .layers
            .entry((pid, id))
            .or_insert_with(|| LayerSelector::new(first));
        if selector.set_target(rid) {
            self.ask_keyframe(owner, mid, Some(rid), KeyframeRequestKind::Pli, now);
        }
        self.pinned.insert((pid, id));
        self.demand_dirty = true;
        Ok(())
    }

    /// The simulcast layer subscriber `sub` gets of `track`, or is switching to: the
    /// one to ask a keyframe of on its behalf.
    fn wanted_layer(&self, sub: Pid, track: TrackId) -> Option<Rid> {
        self.layers
            .get(&(sub, track))
            .and_then(|s| s.pending_switch().or(s.current()))
    }

    /// Asks publisher `owner` for a keyframe on `mid` (layer `rid`), throttled.
    fn ask_keyframe(
        &mut self,
        owner: Pid,
        mid: str0m::media::Mid,
        rid: Option<Rid>,
        kind: KeyframeRequestKind,
        now: Instant,
    ) {
        let interval = Duration::from_millis(self.config.keyframe_request_interval_ms);
        if let Some(e) = self.entries.get_mut(&owner) {
            if e.participant
                .request_keyframe(mid, rid, kind, interval, now)
            {
                self.dirty.insert(owner);
            }
        }
    }

    fn offer(
        &mut self,
        room: Arc<str>,
        sid: Arc<str>,
        sdp: &str,
        meta: HashMap<String, TrackMeta>,
        sink: Sink,
        now: Instant,
    ) -> Result<String, SfuError> {
        let offer = parse_offer(sdp, self.config.max_sdp_bytes)?;
        let key = (room.clone(), sid.clone());
        let (pid, created) = match self.by_key.get(&key) {
            Some(pid) => (*pid, false),
            None => {
                let pid = self.next_pid;
                let existing = self.router.join(pid, &room, &sid).map_err(|e| match e {
                    RouteError::RoomFull { max } => SfuError::RoomFull(max),
                    other => SfuError::BadSdp(format!("{other:?}")),
                })?;
                self.next_pid += 1;
                let prefer_h264 = preferred_video_codec(sdp).as_deref() == Some("H264");
                let participant = match Participant::new(
                    pid,
                    room.clone(),
                    sid.clone(),
                    &self.params,
                    prefer_h264,
                    self.metrics.clone(),
                    now,
                ) {
                    Ok(p) => p,
                    Err(e) => {
                        self.router.leave(pid);
                        return Err(e);
                    }
                };
                let mut entry = Entry {
                    participant,
                    sink: sink.clone(),
                };
                for t in existing {
                    if let Some(track) = self.router.track(t) {
                        entry.participant.outs.push(out_for(&self.router, track.id));
                    }
                }
                self.deadlines.insert((entry.participant.next_timeout, pid));
                self.connecting.insert(pid);
                self.entries.insert(pid, entry);
                self.by_key.insert(key, pid);
                self.demand_dirty = true;
                (pid, true)
            }
        };
        let entry = self.entries.get_mut(&pid).expect("entry exists");
        entry.sink = sink;
        entry.participant.meta.extend(meta);
        match entry.participant.accept_offer(offer) {
            Ok(answer) => {
                self.dirty.insert(pid);
                self.renegotiate.insert(pid);
                Ok(answer.to_sdp_string())
            }
            Err(e) => {
                if created {
                    self.remove(pid, None);
                } else {
                    self.dirty.insert(pid);
                }
                Err(e)
            }
        }
    }

    fn answer(
        &mut self,
        room: Arc<str>,
        sid: Arc<str>,
        revision: u64,
        sdp: &str,
    ) -> Result<(), SfuError> {
        let answer = parse_answer(sdp, self.config.max_sdp_bytes)?;
        let pid = *self.by_key.get(&(room, sid)).ok_or_else(|| {
            SfuError::NoPendingOffer("no media session in this room; send sfu_offer first".into())
        })?;
        let entry = self.entries.get_mut(&pid).expect("keyed entry exists");
        let result = entry.participant.accept_answer(revision, answer);
        if result.is_ok() {
            let open: Vec<(TrackId, str0m::media::Mid)> = entry
                .participant
                .outs
                .iter()
                .filter_map(|o| match o.state {
                    OutState::Open(mid) => Some((o.track, mid)),
                    _ => None,
                })
                .collect();
            for (track, mid) in open {
                self.router.bind(pid, track, mid);
                let simulcast = self
                    .router
                    .track(track)
                    .is_some_and(|t| !t.layers.is_empty());
                entry.participant.set_paced(mid, simulcast);
            }
        }
        self.dirty.insert(pid);
        self.renegotiate.insert(pid);
        result
    }

    /// Drops a participant: its `Rtc`, its tracks for everyone, its subscriptions.
    fn remove(&mut self, pid: Pid, why: Option<Ended>) {
        let Some(mut entry) = self.entries.remove(&pid) else {
            return;
        };
        let p = &mut entry.participant;
        self.by_key.remove(&(p.room.clone(), p.sid.clone()));
        self.by_addr.retain(|_, v| *v != pid);
        self.deadlines.remove(&(p.next_timeout, pid));
        self.connecting.remove(&pid);
        self.dirty.remove(&pid);
        self.renegotiate.remove(&pid);
        self.ice_lost.remove(&pid);
        let (gone, _) = self.router.leave(pid);
        if let Some((d, _)) = self.speakers.get_mut(&p.room) {
            d.forget(pid);
        }
        self.layers
            .retain(|(sub, track), _| *sub != pid && !gone.contains(track));
        self.legs
            .retain(|(sub, track), _| *sub != pid && !gone.contains(track));
        self.paused
            .retain(|(sub, track)| *sub != pid && !gone.contains(track));
        self.resync
            .retain(|(sub, track)| *sub != pid && !gone.contains(track));
        self.pinned
            .retain(|(sub, track)| *sub != pid && !gone.contains(track));
        self.max_width
            .retain(|(sub, track), _| *sub != pid && !gone.contains(track));
        for track in &gone {
            self.rates.forget(*track);
        }
        self.demand_dirty = true;
        for peer in self.router_peers_of_room(&p.room) {
            // Unopened subscriptions to the removed tracks are dropped in negotiate.
            self.renegotiate.insert(peer);
        }
        if let Some(why) = why {
            tracing::info!(pid, room = %p.room, sid = %p.sid, reason = why.reason(), "media session ended");
            (entry.sink)(Signal::Closed {
                room: p.room.clone(),
                reason: why.reason(),
            });
            p.end(why);
        } else {
            p.end(Ended::Disconnected("left".into()));
        }
    }

    fn router_peers_of_room(&self, room: &str) -> Vec<Pid> {
        self.entries
            .iter()
            .filter(|(_, e)| &*e.participant.room == room)
            .map(|(pid, _)| *pid)
            .collect()
    }

    /// Something happened on an ICE-TCP connection.
    pub fn tcp_event(&mut self, event: TcpEvent, now: Instant) {
        match event {
            TcpEvent::Connected(peer, tx) => {
                self.tcp_out.insert(peer, tx);
            }
            TcpEvent::Frame(peer, packet) => self.receive(now, Protocol::Tcp, peer, &packet),
            TcpEvent::Closed(peer) => {
                self.tcp_out.remove(&peer);
                self.by_addr.remove(&peer);
            }
        }
    }

    /// A datagram (UDP) or RFC 4571 frame (TCP) arrived.
    pub fn receive(&mut self, now: Instant, proto: Protocol, source: SocketAddr, data: &[u8]) {
        self.metrics.packets_in.fetch_add(1, Relaxed);
        self.metrics.bytes_in.fetch_add(data.len() as u64, Relaxed);
        let Ok(contents) = data.try_into() else {
            self.metrics.unmatched_datagrams.fetch_add(1, Relaxed);
            return;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto,
                source,
                destination: self.destination_for(proto, source),
                contents,
            },
        );
        let cached = self.by_addr.get(&source).copied().filter(|pid| {
            self.entries
                .get(pid)
                .is_some_and(|e| e.participant.accepts(&input))
        });
        let pid = cached.or_else(|| {
            self.entries
                .iter()
                .find(|(_, e)| e.participant.accepts(&input))
                .map(|(pid, _)| *pid)
        });
        let Some(pid) = pid else {
            self.metrics.unmatched_datagrams.fetch_add(1, Relaxed);
            return;
        };
        self.by_addr.insert(source, pid);
        let entry = self.entries.get_mut(&pid).expect("found above");
        entry.participant.handle_input(input);
        self.dirty.insert(pid);
    }

    /// Feeds due timeouts and ends sessions that never connected; returns when to
    /// come back.
    pub fn tick(&mut self, now: Instant) -> Instant {
        let connect_timeout = Duration::from_millis(self.config.connect_timeout_ms);
        let mut next = now + Duration::from_millis(500);
        for pid in self.connecting.iter().copied() {
            let Some(e) = self.entries.get_mut(&pid) else {
                continue;
            };
            let p = &mut e.participant;
            if now.saturating_duration_since(p.created) >= connect_timeout {
                if p.ended.is_none() {
                    self.metrics.connect_timeouts.fetch_add(1, Relaxed);
                    p.end(Ended::ConnectTimeout);
                }
                self.dirty.insert(pid);
            } else {
                next = next.min(p.created + connect_timeout);
            }
        }
        // Only the participants whose deadline passed are visited: with hundreds of
        // subscribers, a pass over all of them per datagram would cost more than
        // the forwarding.
        while let Some(&(deadline, pid)) = self.deadlines.first() {
            if deadline > now {
                next = next.min(deadline);
                break;
            }
            self.deadlines.pop_first();
            if let Some(e) = self.entries.get_mut(&pid) {
                e.participant.handle_input(Input::Timeout(now));
                self.dirty.insert(pid);
            }
        }
        next = next.min(self.end_lost_ice(now));
        if now >= self.next_allocation {
            self.next_allocation = now + ALLOCATION_INTERVAL;
            self.allocate_layers(now);
        }
        if self.demand_dirty {
            self.refresh_layer_demand(now);
        }
        if now >= self.next_speaker_check {
            self.next_speaker_check = now + SPEAKER_INTERVAL;
            self.push_speakers(now);
        }
        next.min(self.next_speaker_check)
    }

    /// The earliest timeout any participant asked for (after [`Engine::settle`] polled
    /// them), at the latest `later`.
    pub fn next_timeout(&self, later: Instant) -> Instant {
        self.deadlines
            .first()
            .map_or(later, |(deadline, _)| later.min(*deadline))
    }

    /// For every subscriber: asks its bandwidth estimator to probe up to what its
    /// simulcast tracks could use, and picks each unpinned track's layer from the
    /// estimate (switching on the next keyframe of that layer).
    fn allocate_layers(&mut self, now: Instant) {
        let pids: Vec<Pid> = self.entries.keys().copied().collect();
        self.cap_publishers(&pids);
        for pid in pids {
            let mut desired = 0;
            let mut tracks = Vec::new();
            for (t, mid) in self.router.subscriptions(pid) {
                if t.layers.is_empty() || mid.is_none() || self.paused.contains(&(pid, t.id)) {
                    continue;
                }
                let layers = self.allocation_rates(t, now);
                desired += layers.iter().map(|(_, rate)| *rate).max().unwrap_or(0);
                if !self.pinned.contains(&(pid, t.id)) {
                    let widths: Vec<(Rid, Option<u32>)> = t
                        .layers
                        .iter()
                        .map(|r| (*r, self.rates.width(t.id, *r)))
                        .collect();
                    let allowed = cap_by_width(&widths, self.max_width.get(&(pid, t.id)).copied());
                    let layers = layers
                        .into_iter()
                        .filter(|(r, _)| allowed.contains(r))
                        .collect();
                    let current = self.layers.get(&(pid, t.id)).and_then(|s| s.target());
                    tracks.push(TrackLayers {
                        track: t.id,
                        layers,
                        current,
                    });
                }
            }
            let Some(entry) = self.entries.get_mut(&pid) else {
                continue;
            };
            if desired > 0 {
                // Headroom over the top layers, so probing can prove they fit.
                entry.participant.set_desired_bitrate(desired + desired / 4);
                self.dirty.insert(pid);
            }
            let Some(estimate) = entry.participant.estimate_bps else {
                continue;
            };
            tracing::debug!(pid, estimate, desired, tracks = ?tracks, "layer allocation");
            for (track, rid) in allocate(estimate, &tracks) {
                let Some(t) = self.router.track(track) else {
                    continue;
                };
                let (owner, mid, first) = (t.owner, t.mid, t.layers.first().copied());
                let selector = self
                    .layers
                    .entry((pid, track))
                    .or_insert_with(|| LayerSelector::new(first));
                if selector.set_target(rid) {
                    self.ask_keyframe(owner, mid, Some(rid), KeyframeRequestKind::Pli, now);
                }
            }
        }
        self.demand_dirty = true;
    }

    /// Tells every publisher the most it may send per video track (REMB).
    fn cap_publishers(&mut self, pids: &[Pid]) {
        let cap = self.config.max_video_bitrate_kbps * 1000;
        for pid in pids {
            let videos: Vec<(str0m::media::Mid, Vec<Rid>)> = self
                .router
                .published(*pid)
                .into_iter()
                .filter(|t| t.kind == MediaKind::Video && !t.muted)
                .map(|t| (t.mid, t.layers.clone()))
                .collect();
            let Some(e) = self.entries.get_mut(pid) else {
                continue;
            };
            let mut sent = false;
            for (mid, rids) in videos {
                sent |= e.participant.cap_bitrate(mid, &rids, cap);
            }
            if sent {
                self.dirty.insert(*pid);
            }
        }
    }

    /// Pushes `ActiveSpeakers` to a room's participants when its list changed.
    fn push_speakers(&mut self, now: Instant) {
        let mut empty_rooms = Vec::new();
        for (room, (detector, last)) in self.speakers.iter_mut() {
            let active = active_speakers(detector, &self.router, now);
            let sids: Vec<String> = active.iter().map(|(s, _)| s.clone()).collect();
            if sids != *last {
                *last = sids;
                for e in self
                    .entries
                    .values()
                    .filter(|e| e.participant.room == *room)
                {
                    (e.sink)(Signal::ActiveSpeakers {
                        room: room.clone(),
                        speakers: active.clone(),
                    });
                }
            }
            if detector.is_empty() && last.is_empty() {
                empty_rooms.push(room.clone());
            }
        }
        for room in empty_rooms {
            self.speakers.remove(&room);
        }
    }

    /// Tells `pid` who is speaking in its room now: the others heard it when the list
    /// last changed, and it may not change again for a while.
    fn push_speakers_to(&self, pid: Pid, now: Instant) {
        let Some(e) = self.entries.get(&pid) else {
            return;
        };
        let Some((detector, _)) = self.speakers.get(&e.participant.room) else {
            return;
        };
        let speakers = active_speakers(detector, &self.router, now);
        if !speakers.is_empty() {
            (e.sink)(Signal::ActiveSpeakers {
                room: e.participant.room.clone(),
                speakers,
            });
        }
    }

    /// Polls every participant with pending output, forwards media, sends new offers,
    /// and drops ended participants, until nothing is left to do.
    pub fn settle(&mut self, socket: &UdpSocket, now: Instant) {
        // A participant ends only in a call on its `Rtc` (or in `tick`, which marks
        // it dirty), so the polled ones are the only ones to check.
        let mut polled = Vec::new();
        for _ in 0..64 {
            while let Some(pid) = self.dirty.pop_first() {
                let Some(entry) = self.entries.get_mut(&pid) else {
                    continue;
                };
                let tcp_out = &self.tcp_out;
                let mut send = |proto: Protocol, to: SocketAddr, bytes: &[u8]| match proto {
                    Protocol::Udp => socket.try_send_to(bytes, to).is_ok(),
                    Protocol::Tcp => tcp_out
                        .get(&to)
                        .zip(tcp::frame(bytes))
                        .is_some_and(|(tx, f)| tx.try_send(f).is_ok()),
                    _ => false,
                };
                let before = entry.participant.next_timeout;
                let events = entry.participant.poll(now, &mut send);
                self.deadlines.remove(&(before, pid));
                self.deadlines.insert((entry.participant.next_timeout, pid));
                polled.push(pid);
                for event in events {
                    self.on_event(pid, event, now);
                }
            }
            let pids: Vec<Pid> = std::mem::take(&mut self.renegotiate).into_iter().collect();
            for pid in pids {
                self.negotiate(pid);
            }
            for pid in polled.drain(..) {
                let ended = self
                    .entries
                    .get(&pid)
                    .and_then(|e| e.participant.ended.clone());
                if let Some(why) = ended {
                    self.remove(pid, Some(why));
                }
            }
            if self.dirty.is_empty() && self.renegotiate.is_empty() {
                break;
            }
        }
        self.update_gauges();
    }

    /// Relays a data channel message to the same-label channel of every other media
    /// participant in the room, behind the sender's sid (see [`crate::envelope`]).
    /// Each receiver's channel has the reliability it chose (ordered/reliable or
    /// not); a full send buffer drops the message for that one.
    fn relay_data(&mut self, pid: Pid, d: str0m::channel::ChannelData) {
        let Some((label, sender)) = self.entries.get(&pid).and_then(|e| {
            let label = e.participant.channel_label(d.id)?;
            Some((label.to_string(), e.participant.sid.clone()))
        }) else {
            return;
        };
        if d.data.len() > self.config.max_data_message_bytes {
            self.metrics.data_drops.fetch_add(1, Relaxed);
            return;
        }
        let relayed = crate::envelope::wrap(&sender, &d.data);
        for peer in self.router.peers(pid) {
            let Some(e) = self.entries.get_mut(&peer) else {
                continue;
            };
            if e.participant.write_channel(&label, d.binary, &relayed) {
                self.metrics.data_messages_forwarded.fetch_add(1, Relaxed);
                self.metrics
                    .data_bytes_forwarded
                    .fetch_add(d.data.len() as u64, Relaxed);
                self.dirty.insert(peer);
            } else {
                self.metrics.data_drops.fetch_add(1, Relaxed);
            }
        }
    }

    fn update_gauges(&self) {
        let m = &self.metrics;
        m.participants.store(self.entries.len() as u64, Relaxed);
        m.tracks.store(self.router.track_count() as u64, Relaxed);
        m.subscriptions
            .store(self.router.bound_count() as u64, Relaxed);
    }

    fn negotiate(&mut self, pid: Pid) {
        let router = &self.router;
        let Some(entry) = self.entries.get_mut(&pid) else {
            return;
        };
        let p = &mut entry.participant;
        // Server offers wait until ICE and DTLS are up: some clients (aiortc) do not
        // start receivers added by a renegotiation during the DTLS handshake.
        if !p.connected {
            return;
        }
        // Tracks that are gone were already unbound by `Router::leave`.
        let Some((revision, sdp)) = p.negotiate(|t| router.track(t).is_none()) else {
            return;
        };
        let entry = self.entries.get(&pid).expect("still there");
        let p = &entry.participant;
        let tracks = self.track_views(p);
        (entry.sink)(Signal::Tracks {
            room: p.room.clone(),
            tracks,
        });
        (entry.sink)(Signal::Offer {
            room: p.room.clone(),
            revision,
            sdp,
        });
        self.dirty.insert(pid);
    }

    /// The tracks `p` receives, with the mid of the m-line that carries each.
    fn track_views(&self, p: &Participant) -> Vec<TrackView> {
        p.outs
            .iter()
            .filter_map(|o| {
                let mid = match o.state {
                    OutState::Negotiating(m) | OutState::Open(m) => m,
                    _ => return None,
                };
                let track = self.router.track(o.track)?;
                Some(TrackView {
                    id: track.id.to_string(),
                    participant: self.router.sid(track.owner)?.to_string(),
                    kind: kind_name(track.kind),
                    mid: mid.to_string(),
                    source: track.meta.source.clone(),
                    name: track.meta.name.clone(),
                    layers: track.layers.iter().map(|r| r.to_string()).collect(),
                    muted: track.muted,
                })
            })
            .collect()
    }

    fn on_event(&mut self, pid: Pid, event: Event, now: Instant) {
        match event {
            Event::Connected => {
                if let Some(e) = self.entries.get_mut(&pid) {
                    e.participant.connected = true;
                    self.connecting.remove(&pid);
                    // Offers wait for the connection (see `negotiate`).
                    self.renegotiate.insert(pid);
                }
                self.push_speakers_to(pid, now);
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.ice_disconnected(pid, now);
            }
            Event::IceConnectionStateChange(
                IceConnectionState::Connected | IceConnectionState::Completed,
            ) => self.ice_restored(pid, now),
            Event::MediaAdded(added) if added.direction.is_receiving() => {
                let Some(entry) = self.entries.get(&pid) else {
                    return;
                };
                let meta = entry
                    .participant
                    .meta
                    .get(&added.mid.to_string())
                    .cloned()
                    .unwrap_or_default();
                let layers = added
                    .simulcast
                    .map(|s| if s.recv.is_empty() { s.send } else { s.recv })
                    .unwrap_or_default()
                    .into_iter()
                    .map(|l| l.rid)
                    .collect();
                match self
                    .router
                    .publish(pid, added.mid, added.kind, meta, layers)
                {
                    Ok((track, subscribers)) => {
                        self.demand_dirty = true;
                        for sub in subscribers {
                            if let Some(e) = self.entries.get_mut(&sub) {
                                e.participant.outs.push(out_for(&self.router, track));
                                self.renegotiate.insert(sub);
                            }
                        }
                    }
                    Err(RouteError::AlreadyPublished) => {}
                    Err(e) => {
                        tracing::info!(pid, mid = %added.mid, error = ?e, "track not forwarded");
                    }
                }
            }
            Event::RtpPacket(packet) => self.forward(pid, packet, now),
            Event::ChannelOpen(id, label) => {
                if let Some(e) = self.entries.get_mut(&pid) {
                    e.participant.channel_opened(id, label);
                }
            }
            Event::ChannelClose(id) => {
                if let Some(e) = self.entries.get_mut(&pid) {
                    e.participant.channel_closed(id);
                }
            }
            Event::ChannelData(d) => self.relay_data(pid, d),
            Event::EgressBitrateEstimate(str0m::bwe::BweKind::Twcc { estimate, .. }) => {
                if let Some(e) = self.entries.get_mut(&pid) {
                    e.participant.estimate_bps = Some(estimate.as_u64());
                }
            }
            Event::KeyframeRequest(req) => {
                let Some(track) = self.router.source(pid, req.mid) else {
                    return;
                };
                let (owner, mid, id) = (track.owner, track.mid, track.id);
                let rid = self.wanted_layer(pid, id);
                self.ask_keyframe(owner, mid, rid, req.kind, now);
            }
            _ => {}
        }
    }
}

/// A room's active speakers by sid, loudest first, with their level.
fn active_speakers(detector: &SpeakerDetector, router: &Router, now: Instant) -> Vec<(String, i8)> {
    detector
        .active(now)
        .into_iter()
        .filter_map(|(pid, level)| Some((router.sid(pid)?.to_string(), level)))
        .collect()
}

fn out_for(router: &Router, track: crate::router::TrackId) -> Out {
    let t = router.track(track).expect("track exists");
    Out {
        track,
        kind: t.kind,
        stream_id: router
            .sid(t.owner)
            .map(|s| s.to_string())
            .unwrap_or_default(),
        state: OutState::ToOpen,
    }
}

fn kind_name(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Audio => "audio",
        MediaKind::Video => "video",
    }
}
