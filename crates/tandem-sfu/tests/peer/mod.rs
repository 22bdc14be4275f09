//! A WebRTC peer acting like a browser for tests: a str0m `Rtc` as a full ICE agent
//! on its own loopback UDP socket, publishing synthetic Opus and VP8 frames and
//! recording every frame it receives.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::channel::ChannelId;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, MediaTime, Mid, Rid};
use str0m::net::{Protocol, Receive, TcpType};
use str0m::{Candidate, Event, Input, Output, Rtc};

/// A VP8 keyframe-looking payload (key frame bit clear, start code 9d 01 2a, 640x480).
pub fn vp8_frame(tag: u8, n: u32) -> Vec<u8> {
    let mut f = vec![
        0x50, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01, tag,
    ];
    f.extend_from_slice(&n.to_be_bytes());
    f.extend(std::iter::repeat_n(0xAB, 300));
    f
}

pub fn opus_frame(tag: u8, n: u32) -> Vec<u8> {
    let mut f = vec![0xFC, tag];
    f.extend_from_slice(&n.to_be_bytes());
    f.extend(std::iter::repeat_n(0x11, 60));
    f
}

pub struct Peer {
    pub rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    pending: Option<SdpPendingOffer>,
    pub audio: Option<Mid>,
    pub video: Option<Mid>,
    pub connected: bool,
    /// Frames received, by mid.
    pub received: HashMap<Mid, Vec<Vec<u8>>>,
    /// RTP time of each frame received, by mid.
    pub times: HashMap<Mid, Vec<MediaTime>>,
    /// Frames str0m delivered after a gap in the sequence numbers.
    pub discontinuous: usize,
    /// Mids the remote added, with their kind.
    pub remote_media: HashMap<Mid, MediaKind>,
    frame: u32,
    start: Instant,
    /// Put in every frame this peer sends, to tell senders apart.
    pub tag: u8,
    /// Audio level (dBov) sent with each Opus frame, if any.
    pub audio_level: Option<i8>,
    /// Open data channels by label.
    pub channels: HashMap<String, ChannelId>,
    /// Data channel messages received: (label, text).
    pub messages: Vec<(String, String)>,
    /// The latest REMB bitrate cap the remote sent, in bit/s.
    pub remb: Option<u64>,
    /// ICE-TCP only (no UDP candidate): the connection to the server's passive
    /// candidate, opened on the first TCP transmit, and unparsed bytes read from it.
    tcp_only: bool,
    tcp: Option<(SocketAddr, TcpStream)>,
    tcp_buf: Vec<u8>,
    /// Simulcast layers the video track sends, lowest first (empty: not simulcast).
    pub simulcast: Vec<str0m::media::Rid>,
}

/// The address an active ICE-TCP candidate announces (port 9, RFC 6544).
const TCP_ACTIVE: &str = "127.0.0.1:9";

impl Peer {
    pub fn new(tag: u8) -> Peer {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(2)))
            .unwrap();
        let local = socket.local_addr().unwrap();
        let now = Instant::now();
        let mut rtc = Rtc::builder()
            .set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()))
            .build(now);
        rtc.add_local_candidate(Candidate::host(local, "udp").unwrap());
        Peer {
            rtc,
            socket,
            local,
            pending: None,
            audio: None,
            video: None,
            connected: false,
            received: HashMap::new(),
            times: HashMap::new(),
            discontinuous: 0,
            remote_media: HashMap::new(),
            frame: 0,
            start: now,
            tag,
            audio_level: None,
            channels: HashMap::new(),
            messages: Vec::new(),
            remb: None,
            tcp_only: false,
            tcp: None,
            tcp_buf: Vec::new(),
            simulcast: Vec::new(),
        }
    }

    /// A peer that can only use ICE-TCP (as behind a firewall that blocks UDP).
    pub fn new_tcp_only(tag: u8) -> Peer {
        let mut p = Peer::new(tag);
        let now = Instant::now();
        let mut rtc = Rtc::builder()
            .set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()))
            .build(now);
        let active = Candidate::builder()
            .tcp()
            .host(TCP_ACTIVE.parse().unwrap())
            .tcptype(TcpType::Active)
            .build()
            .unwrap();
        rtc.add_local_candidate(active);
        p.rtc = rtc;
        p.tcp_only = true;
        p
    }

    /// Sends raw bytes from this peer's own UDP socket: to the SFU they come from the
    /// address of a connected participant (as a spoofed or buggy sender's would).
    pub fn send_raw(&self, to: SocketAddr, bytes: &[u8]) {
        self.socket.send_to(bytes, to).unwrap();
    }

    /// Whether this peer's media goes over TCP (connected to the server over TCP).
    pub fn uses_tcp(&self) -> bool {
        self.tcp.is_some()
    }

    fn tcp_send(&mut self, to: SocketAddr, packet: &[u8]) {
        if self.tcp.as_ref().map(|(a, _)| *a) != Some(to) {
            let Ok(stream) = TcpStream::connect(to) else {
                return;
            };
            stream
                .set_read_timeout(Some(Duration::from_millis(2)))
                .unwrap();
            stream.set_nodelay(true).unwrap();
            self.tcp = Some((to, stream));
        }
        let (_, stream) = self.tcp.as_mut().unwrap();
        let mut frame = (packet.len() as u16).to_be_bytes().to_vec();
        frame.extend_from_slice(packet);
        let _ = stream.write_all(&frame);
    }

    /// Reads what arrived on the TCP connection and feeds whole frames to the `Rtc`.
    fn tcp_read(&mut self) -> bool {
        let Some((server, stream)) = self.tcp.as_mut() else {
            std::thread::sleep(Duration::from_millis(2));
            return false;
        };
        let server = *server;
        let mut buf = [0u8; 4096];
        match stream.read(&mut buf) {
            Ok(n) if n > 0 => self.tcp_buf.extend_from_slice(&buf[..n]),
            _ => return false,
        }
        while self.tcp_buf.len() >= 2 {
            let len = u16::from_be_bytes([self.tcp_buf[0], self.tcp_buf[1]]) as usize;
            if self.tcp_buf.len() < 2 + len {
                break;
            }
            let packet: Vec<u8> = self.tcp_buf.drain(..2 + len).skip(2).collect();
            let Ok(contents) = packet.as_slice().try_into() else {
                continue;
            };
            let input = Input::Receive(
                Instant::now(),
                Receive {
                    proto: Protocol::Tcp,
                    source: server,
                    destination: TCP_ACTIVE.parse().unwrap(),
                    contents,
                },
            );
            if self.rtc.accepts(&input) {
                self.rtc.handle_input(input).expect("tcp input ok");
            }
        }
        true
    }

    /// An offer that publishes one audio and one video track.
    pub fn offer_publish(&mut self) -> String {
        let mut api = self.rtc.sdp_api();
        let audio = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let video = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
        api.add_channel("chat".into());
        let (offer, pending) = api.apply().expect("changes");
        self.audio = Some(audio);
        self.video = Some(video);
        self.pending = Some(pending);
        offer.to_sdp_string()
    }

    /// An offer that publishes one VP8 track in simulcast layers `rids` (lowest first).
    pub fn offer_publish_simulcast(&mut self, rids: &[&str]) -> String {
        let mut simulcast = str0m::media::Simulcast::new();
        for rid in rids {
            simulcast.add_send_layer(str0m::media::SimulcastLayer::new(rid));
        }
        let mut api = self.rtc.sdp_api();
        let video = api.add_media(
            MediaKind::Video,
            Direction::SendOnly,
            None,
            None,
            Some(simulcast),
        );
        let (offer, pending) = api.apply().expect("changes");
        self.video = Some(video);
        self.simulcast = rids.iter().map(|r| str0m::media::Rid::from(*r)).collect();
        self.pending = Some(pending);
        offer.to_sdp_string()
    }

    /// An offer that only receives (a data channel to have an m-line).
    pub fn offer_receive_only(&mut self) -> String {
        let mut api = self.rtc.sdp_api();
        api.add_channel("chat".into());
        let (offer, pending) = api.apply().expect("changes");
        self.pending = Some(pending);
        offer.to_sdp_string()
    }

    pub fn accept_answer(&mut self, sdp: &str) {
        let answer = SdpAnswer::from_sdp_string(sdp).expect("answer parses");
        let pending = self.pending.take().expect("pending offer");
        self.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .expect("answer accepted");
    }

    /// Answers a server offer.
    pub fn accept_offer(&mut self, sdp: &str) -> String {
        let offer = SdpOffer::from_sdp_string(sdp).expect("offer parses");
        let answer = self.rtc.sdp_api().accept_offer(offer).expect("offer ok");
        answer.to_sdp_string()
    }

    /// Runs the peer for `d`: network in and out, timeouts, events.
    pub fn drive(&mut self, d: Duration) {
        let until = Instant::now() + d;
        let mut buf = vec![0u8; 2048];
        loop {
            self.poll();
            let now = Instant::now();
            if now >= until {
                return;
            }
            if self.tcp_only {
                if !self.tcp_read() {
                    self.rtc
                        .handle_input(Input::Timeout(Instant::now()))
                        .expect("timeout ok");
                }
                continue;
            }
            match self.socket.recv_from(&mut buf) {
                Ok((n, source)) => {
                    let Ok(contents) = buf[..n].try_into() else {
                        continue;
                    };
                    let input = Input::Receive(
                        Instant::now(),
                        Receive {
                            proto: Protocol::Udp,
                            source,
                            destination: self.local,
                            contents,
                        },
                    );
                    if self.rtc.accepts(&input) {
                        self.rtc.handle_input(input).expect("input ok");
                    }
                }
                Err(_) => {
                    self.rtc
                        .handle_input(Input::Timeout(Instant::now()))
                        .expect("timeout ok");
                }
            }
        }
    }

    fn poll(&mut self) {
        // Due timeouts are fed at once: str0m sends one queued packet per timeout.
        let mut due = 0;
        loop {
            match self.rtc.poll_output().expect("poll ok") {
                Output::Timeout(t) if t <= Instant::now() && due < 1024 => {
                    due += 1;
                    self.rtc
                        .handle_input(Input::Timeout(Instant::now()))
                        .expect("timeout ok");
                }
                Output::Timeout(_) => return,
                Output::Transmit(t) => {
                    if t.proto == Protocol::Tcp {
                        let packet = t.contents.to_vec();
                        self.tcp_send(t.destination, &packet);
                    } else {
                        let _ = self.socket.send_to(&t.contents, t.destination);
                    }
                }
                Output::Event(e) => match e {
                    Event::Connected => self.connected = true,
                    Event::MediaAdded(m) => {
                        self.remote_media.insert(m.mid, m.kind);
                    }
                    Event::MediaData(d) => {
                        if !d.contiguous {
                            self.discontinuous += 1;
                        }
                        self.times.entry(d.mid).or_default().push(d.time);
                        self.received
                            .entry(d.mid)
                            .or_default()
                            .push(d.data.to_vec());
                    }
                    Event::ChannelOpen(id, label) => {
                        self.channels.insert(label, id);
                    }
                    Event::EgressBitrateEstimate(str0m::bwe::BweKind::Remb {
                        estimate, ..
                    }) => {
                        self.remb = Some(estimate.as_u64());
                    }
                    Event::ChannelData(d) => {
                        let label = self
                            .channels
                            .iter()
                            .find(|(_, id)| **id == d.id)
                            .map(|(l, _)| l.clone())
                            .unwrap_or_default();
                        let text = String::from_utf8_lossy(&d.data).to_string();
                        self.messages.push((label, text));
                    }
                    _ => {}
                },
            }
        }
    }

    /// Sends one Opus and one VP8 frame on the published tracks.
    pub fn send_frames(&mut self) {
        self.frame += 1;
        let n = self.frame;
        let now = Instant::now();
        let elapsed = now - self.start;
        for (mid, codec, data, rate) in [
            (self.audio, Codec::Opus, opus_frame(self.tag, n), 48_000u64),
            (self.video, Codec::Vp8, vp8_frame(self.tag, n), 90_000u64),
        ] {
            let Some(mid) = mid else { continue };
            let Some(mut writer) = self.rtc.writer(mid) else {
                continue;
            };
            if let (Codec::Opus, Some(level)) = (codec, self.audio_level) {
                writer = writer.audio_level(level, level > -50);
            }
            let Some(pt) = writer
                .payload_params()
                .find(|p| p.spec().codec == codec)
                .map(|p| p.pt())
            else {
                continue;
            };
            let ticks = elapsed.as_micros() as u64 * rate / 1_000_000;
            let time = if rate == 48_000 {
                MediaTime::new(ticks, str0m::media::Frequency::FORTY_EIGHT_KHZ)
            } else {
                MediaTime::from_90khz(ticks)
            };
            writer.write(pt, now, time, data).expect("write ok");
        }
        self.poll();
    }

    /// Sends one VP8 keyframe per simulcast layer, each announcing its own width
    /// (160 doubled per layer) and carrying the layer's index after the tag.
    pub fn send_simulcast_frames(&mut self) {
        let Some(mid) = self.video else { return };
        self.frame += 1;
        let now = Instant::now();
        let time = MediaTime::from_90khz((now - self.start).as_micros() as u64 * 9 / 100);
        for (i, rid) in self.simulcast.clone().into_iter().enumerate() {
            let mut data = vp8_frame(self.tag, self.frame);
            let width = 160u16 << (i + 1);
            data[6..8].copy_from_slice(&width.to_le_bytes());
            data.insert(11, i as u8);
            self.write_vp8(mid, Some(rid), now, time, data);
        }
        self.poll();
    }

    /// Writes `n` small VP8 frames on the video track at once (33 ms apart in RTP
    /// time), as a publisher does whose packets the network delivers in a clump.
    /// Small, so that pacing by bitrate does not slow them down.
    pub fn send_video_burst(&mut self, n: usize) {
        let Some(mid) = self.video else { return };
        let now = Instant::now();
        for _ in 0..n {
            self.frame += 1;
            let mut data = vp8_frame(self.tag, self.frame);
            data.truncate(16);
            let time = MediaTime::from_90khz(u64::from(self.frame) * 3000);
            self.write_vp8(mid, None, now, time, data);
        }
        self.poll();
    }

    /// Writes one VP8 frame on `mid` (on simulcast layer `rid`, if given).
    fn write_vp8(
        &mut self,
        mid: Mid,
        rid: Option<Rid>,
        now: Instant,
        time: MediaTime,
        data: Vec<u8>,
    ) {
        let mut writer = self.rtc.writer(mid).expect("video writer");
        if let Some(rid) = rid {
            writer = writer.rid(rid);
        }
        let pt = writer
            .payload_params()
            .find(|p| p.spec().codec == Codec::Vp8)
            .map(|p| p.pt())
            .expect("VP8 negotiated");
        writer.write(pt, now, time, data).expect("write ok");
    }

    /// Sends a text message on data channel `label`; false if it is not open.
    pub fn send_text(&mut self, label: &str, text: &str) -> bool {
        let Some(id) = self.channels.get(label).copied() else {
            return false;
        };
        let sent = self
            .rtc
            .channel(id)
            .is_some_and(|mut c| c.write(false, text.as_bytes()).unwrap_or(false));
        self.poll();
        sent
    }

    /// Whether a frame of `kind` sent by the peer with `tag` arrived.
    pub fn got_from(&self, kind: MediaKind, tag: u8) -> usize {
        let at = if kind == MediaKind::Audio { 1 } else { 10 };
        self.frames_of(kind)
            .iter()
            .filter(|f| f.get(at) == Some(&tag))
            .count()
    }

    /// Frames received on any mid of `kind` that the remote added.
    pub fn frames_of(&self, kind: MediaKind) -> Vec<&Vec<u8>> {
        self.received
            .iter()
            .filter(|(mid, _)| self.remote_media.get(mid) == Some(&kind))
            .flat_map(|(_, v)| v.iter())
            .collect()
    }
}
