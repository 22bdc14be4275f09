//! SFU signaling for a session: `sfu_offer`, `sfu_answer`, `sfu_leave`, and the pushes
//! the SFU sends back (`sfu_offer`, `tracks`, `sfu_closed`, `sfu_layers`, …). The media work itself is
//! in the `tandem-sfu` crate; this module checks rights and maps errors to the wire.

use crate::outbound::SessionHandle;
use crate::session::{err, Authenticated, RequestError};
use crate::state::ServerState;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use tandem_protocol::{
    ActiveSpeaker, ErrorCode, SfuAnswerResult, SfuEvent, SfuTrack, SfuTrackMeta,
};
use tandem_sfu::{Sfu, SfuError, Signal, TrackMeta};

fn sfu(state: &ServerState) -> Result<&Sfu, RequestError> {
    state.sfu.get().ok_or_else(|| {
        err(
            ErrorCode::Unavailable,
            "the SFU is not enabled on this server ([sfu] enabled = true)",
        )
    })
}

fn joined(rooms: &HashSet<Arc<str>>, room: &str) -> Result<(), RequestError> {
    if rooms.contains(room) {
        Ok(())
    } else {
        Err(err(
            ErrorCode::NotJoined,
            format!("join room '{room}' before sending media"),
        ))
    }
}

fn wire(e: SfuError) -> RequestError {
    let code = match &e {
        SfuError::BadSdp(_) | SfuError::NoPendingOffer(_) | SfuError::UnknownTrack(_) => {
            ErrorCode::BadRequest
        }
        SfuError::MediaUnsupported(_) => ErrorCode::MediaUnsupported,
        SfuError::RoomFull(_) => ErrorCode::RoomFull,
        SfuError::Unavailable => ErrorCode::Unavailable,
    };
    err(code, e.to_string())
}

/// Turns SFU signals into frames on this session's queue.
fn sink(handle: SessionHandle) -> tandem_sfu::Sink {
    Arc::new(move |signal: Signal| {
        let event = match signal {
            Signal::Offer {
                room,
                revision,
                sdp,
            } => SfuEvent::SfuOffer {
                room: room.to_string(),
                revision,
                sdp,
            },
            Signal::Tracks { room, tracks } => SfuEvent::Tracks {
                room: room.to_string(),
                tracks: tracks
                    .into_iter()
                    .map(|t| SfuTrack {
                        id: t.id,
                        participant: t.participant,
                        kind: t.kind.to_string(),
                        mid: t.mid,
                        source: t.source,
                        name: t.name,
                        layers: t.layers,
                        muted: t.muted,
                    })
                    .collect(),
            },
            Signal::Closed { room, reason } => SfuEvent::SfuClosed {
                room: room.to_string(),
                reason: reason.to_string(),
            },
            Signal::ActiveSpeakers { room, speakers } => SfuEvent::ActiveSpeakers {
                room: room.to_string(),
                speakers: speakers
                    .into_iter()
                    .map(|(participant, level)| ActiveSpeaker { participant, level })
                    .collect(),
            },
            Signal::Layers { room, mid, active } => SfuEvent::SfuLayers {
                room: room.to_string(),
                mid,
                active,
            },
        };
        handle.push_frame(event.to_frame());
    })
}

pub(crate) async fn offer(
    state: &ServerState,
    auth: &Authenticated,
    rooms: &HashSet<Arc<str>>,
    room: &str,
    sdp: String,
    tracks: BTreeMap<String, SfuTrackMeta>,
) -> Result<SfuAnswerResult, RequestError> {
    let sfu = sfu(state)?;
    joined(rooms, room)?;
    let grants = &auth.claims.grants;
    if tandem_sfu::sdp::sends_media(&sdp) && !(grants.publish || grants.admin) {
        return Err(err(
            ErrorCode::Forbidden,
            "the token does not grant publishing media",
        ));
    }
    let meta: HashMap<String, TrackMeta> = tracks
        .into_iter()
        .map(|(mid, m)| {
            (
                mid,
                TrackMeta {
                    source: m.source,
                    name: m.name,
                },
            )
        })
        .collect();
    let handle = &auth.handle;
    let sdp = sfu
        .offer(room, &handle.client_id, sdp, meta, sink(handle.clone()))
        .await
        .map_err(wire)?;
    Ok(SfuAnswerResult { sdp })
}

pub(crate) async fn answer(
    state: &ServerState,
    auth: &Authenticated,
    rooms: &HashSet<Arc<str>>,
    room: &str,
    revision: u64,
    sdp: String,
) -> Result<(), RequestError> {
    let sfu = sfu(state)?;
    joined(rooms, room)?;
    sfu.answer(room, &auth.handle.client_id, revision, sdp)
        .await
        .map_err(wire)
}

pub(crate) async fn layer(
    state: &ServerState,
    auth: &Authenticated,
    rooms: &HashSet<Arc<str>>,
    room: &str,
    track: &str,
    rid: &str,
    max_width: Option<u32>,
) -> Result<(), RequestError> {
    let sfu = sfu(state)?;
    joined(rooms, room)?;
    sfu.select_layer(room, &auth.handle.client_id, track, rid, max_width)
        .await
        .map_err(wire)
}

pub(crate) async fn mute(
    state: &ServerState,
    auth: &Authenticated,
    rooms: &HashSet<Arc<str>>,
    room: &str,
    mid: &str,
    muted: bool,
) -> Result<(), RequestError> {
    let sfu = sfu(state)?;
    joined(rooms, room)?;
    sfu.set_muted(room, &auth.handle.client_id, mid, muted)
        .await
        .map_err(wire)
}

pub(crate) async fn subscribe(
    state: &ServerState,
    auth: &Authenticated,
    rooms: &HashSet<Arc<str>>,
    room: &str,
    track: &str,
    enabled: bool,
) -> Result<(), RequestError> {
    let sfu = sfu(state)?;
    joined(rooms, room)?;
    sfu.set_subscribed(room, &auth.handle.client_id, track, enabled)
        .await
        .map_err(wire)
}

/// Ends the session's media in `room`, if any (on `sfu_leave`, leave, disconnect).
pub(crate) fn leave(state: &ServerState, handle: &SessionHandle, room: &str) {
    if let Some(sfu) = state.sfu.get() {
        sfu.leave(room, &handle.client_id);
    }
}

fn mode_frame(room: &str, mode: tandem_sfu::MediaMode) -> bytes::Bytes {
    let event = SfuEvent::MediaMode {
        room: room.to_string(),
        mode: mode.as_str().to_string(),
    };
    bytes::Bytes::from(event.to_frame())
}

/// What the media policy counts: participants whose token may publish media. The
/// server cannot see mesh media, so the grant stands in for "publishes"; viewers
/// (no publish grant) add no upload to a mesh, only one download per publisher, so
/// they do not push a room to the SFU. With no publisher left (0) the policy forgets
/// the room, which then starts over in the policy's initial mode.
fn policy_count(state: &ServerState, room: &str) -> usize {
    state.hub.room_publishers(room)
}

/// After the room's participants changed (call after the hub's join or leave):
/// applies the media policy and tells everyone in the room when the mode changes.
/// Returns the room's mode. No-op without the SFU (rooms are then always mesh).
pub(crate) fn room_changed(state: &ServerState, room: &str) -> Option<tandem_sfu::MediaMode> {
    let sfu = state.sfu.get()?;
    let (mode, changed) = sfu.room_size(room, policy_count(state, room));
    if changed {
        state.hub.broadcast(room, mode_frame(room, mode));
    }
    Some(mode)
}

/// After `handle` joined `room`: applies the policy and tells the joiner the mode
/// (everyone, when the join changed it).
pub(crate) fn room_joined(state: &ServerState, handle: &SessionHandle, room: &str) {
    let Some(sfu) = state.sfu.get() else {
        return;
    };
    let (mode, changed) = sfu.room_size(room, policy_count(state, room));
    if changed {
        state.hub.broadcast(room, mode_frame(room, mode));
    } else {
        handle.push_frame(mode_frame(room, mode));
    }
}
