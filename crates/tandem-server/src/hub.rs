//! Rooms, participants and presence on one node, plus the registry of live sessions
//! (per-identity connection limits, server-initiated disconnects).
//!
//! All state sits behind one mutex per map; nothing awaits while holding it, and pushes
//! to sessions never block (bounded queues, see `outbound`).

use crate::metrics::METRICS;
use crate::outbound::{Outbound, SessionHandle};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use tandem_protocol::{
    signal_frame, CloseCode, ErrorCode, JoinResult, LeaveReason, ParticipantInfo, RawValue,
    RoomEvent,
};

pub type HubError = (ErrorCode, String);

fn not_joined(room: &str) -> HubError {
    (ErrorCode::NotJoined, format!("not joined to room '{room}'"))
}

/// Drops a room that has no participants left.
fn remove_if_empty(rooms: &mut HashMap<Arc<str>, Room>, room_name: &str) {
    if rooms
        .get(room_name)
        .is_some_and(|r| r.participants.is_empty())
    {
        rooms.remove(room_name);
        METRICS.rooms.fetch_sub(1, Relaxed);
    }
}

struct Participant {
    info: ParticipantInfo,
    handle: SessionHandle,
    /// Its token may publish media (counted by the room media policy).
    publisher: bool,
}

#[derive(Default)]
struct Room {
    /// In join order.
    participants: Vec<Participant>,
    created_at: u64,
}

impl Room {
    fn position(&self, session_id: u64) -> Option<usize> {
        self.participants
            .iter()
            .position(|p| p.handle.id == session_id)
    }

    fn broadcast(&self, frame: &Bytes, except: Option<u64>) {
        for p in &self.participants {
            if Some(p.handle.id) != except {
                p.handle.push(Outbound::Frame(frame.clone()));
            }
        }
    }

    /// Removes the participant at `index`, tells the others, and tells it if `notify`.
    fn remove_at(&mut self, room: &Arc<str>, index: usize, reason: LeaveReason, notify: bool) {
        let p = self.participants.remove(index);
        METRICS.participants.fetch_sub(1, Relaxed);
        let left = RoomEvent::ParticipantLeft {
            room: room.to_string(),
            sid: p.info.sid.clone(),
            identity: p.info.identity.clone(),
            reason,
        };
        self.broadcast(&Bytes::from(left.to_frame()), None);
        if notify {
            let removed = RoomEvent::Removed {
                room: room.to_string(),
                reason,
            };
            p.handle.push(Outbound::Removed {
                room: room.clone(),
                frame: Bytes::from(removed.to_frame()),
            });
        }
    }
}

/// A room as the server API lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RoomSummary {
    pub name: String,
    pub participants: usize,
    pub created_at: u64,
}

pub struct Hub {
    rooms: Mutex<HashMap<Arc<str>, Room>>,
    sessions: Mutex<HashMap<Arc<str>, Vec<SessionHandle>>>,
    max_participants: usize,
    max_per_identity: usize,
    max_connections: usize,
}

impl Hub {
    pub fn new(max_participants: usize, max_per_identity: usize, max_connections: usize) -> Self {
        Hub {
            rooms: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            max_participants,
            max_per_identity,
            max_connections,
        }
    }

    /// Registers an authenticated session, enforcing the per-identity limit.
    pub fn register(&self, handle: &SessionHandle) -> Result<(), HubError> {
        let mut sessions = self.sessions.lock().expect("hub lock");
        if METRICS.connections.load(Relaxed) as usize > self.max_connections {
            return Err((
                ErrorCode::TooManyConnections,
                "the server is at its connection limit".into(),
            ));
        }
        let list = sessions.entry(handle.identity.clone()).or_default();
        if list.len() >= self.max_per_identity {
            return Err((
                ErrorCode::TooManyConnections,
                format!(
                    "identity '{}' already has {} connections",
                    handle.identity,
                    list.len()
                ),
            ));
        }
        list.push(handle.clone());
        Ok(())
    }

    pub fn unregister(&self, handle: &SessionHandle) {
        let mut sessions = self.sessions.lock().expect("hub lock");
        if let Some(list) = sessions.get_mut(&handle.identity) {
            list.retain(|h| h.id != handle.id);
            if list.is_empty() {
                sessions.remove(&handle.identity);
            }
        }
    }

    /// Closes every session of `identity`; returns how many.
    pub fn disconnect_identity(&self, identity: &str, code: CloseCode) -> usize {
        let sessions = self.sessions.lock().expect("hub lock");
        let list = sessions.get(identity).map(Vec::as_slice).unwrap_or(&[]);
        for h in list {
            h.close(code);
        }
        list.len()
    }

    /// Closes every session (shutdown).
    pub fn close_all(&self, code: CloseCode) {
        for list in self.sessions.lock().expect("hub lock").values() {
            for h in list {
                h.close(code);
            }
        }
    }

    pub fn join(
        &self,
        room_name: &Arc<str>,
        handle: &SessionHandle,
        name: Option<String>,
        metadata: Box<RawValue>,
        joined_at: u64,
        publisher: bool,
    ) -> Result<JoinResult, HubError> {
        let mut rooms = self.rooms.lock().expect("hub lock");
        let is_new = !rooms.contains_key(room_name);
        let room = rooms.entry(room_name.clone()).or_insert_with(|| Room {
            participants: Vec::new(),
            created_at: joined_at,
        });
        if room.position(handle.id).is_some() {
            return Err((
                ErrorCode::AlreadyJoined,
                format!("already joined room '{room_name}'"),
            ));
        }
        // A second connection of the same identity replaces the first (a reconnect whose
        // old socket has not timed out yet).
        if let Some(i) = room
            .participants
            .iter()
            .position(|p| p.handle.identity == handle.identity)
        {
            room.remove_at(room_name, i, LeaveReason::DuplicateIdentity, true);
        }
        if room.participants.len() >= self.max_participants {
            if is_new {
                rooms.remove(room_name);
            }
            return Err((
                ErrorCode::RoomFull,
                format!(
                    "room '{room_name}' has its maximum of {} participants",
                    self.max_participants
                ),
            ));
        }
        if is_new {
            METRICS.rooms.fetch_add(1, Relaxed);
        }
        let info = ParticipantInfo {
            sid: handle.client_id.to_string(),
            identity: handle.identity.to_string(),
            name,
            metadata,
            joined_at,
        };
        let joined = RoomEvent::ParticipantJoined {
            room: room_name.to_string(),
            participant: info.clone(),
        };
        room.broadcast(&Bytes::from(joined.to_frame()), None);
        let others = room.participants.iter().map(|p| p.info.clone()).collect();
        room.participants.push(Participant {
            info: info.clone(),
            handle: handle.clone(),
            publisher,
        });
        METRICS.participants.fetch_add(1, Relaxed);
        Ok(JoinResult {
            room: room_name.to_string(),
            participant: info,
            participants: others,
        })
    }

    pub fn leave(
        &self,
        room_name: &str,
        session_id: u64,
        reason: LeaveReason,
    ) -> Result<(), HubError> {
        let mut rooms = self.rooms.lock().expect("hub lock");
        let not_joined = || not_joined(room_name);
        let room = rooms.get_mut(room_name).ok_or_else(not_joined)?;
        let index = room.position(session_id).ok_or_else(not_joined)?;
        room.remove_at(&Arc::from(room_name), index, reason, false);
        remove_if_empty(&mut rooms, room_name);
        Ok(())
    }

    pub fn update(
        &self,
        room_name: &str,
        session_id: u64,
        metadata: Box<RawValue>,
    ) -> Result<(), HubError> {
        let mut rooms = self.rooms.lock().expect("hub lock");
        let not_joined = || not_joined(room_name);
        let room = rooms.get_mut(room_name).ok_or_else(not_joined)?;
        let index = room.position(session_id).ok_or_else(not_joined)?;
        room.participants[index].info.metadata = metadata;
        let event = RoomEvent::ParticipantUpdated {
            room: room_name.to_string(),
            participant: room.participants[index].info.clone(),
        };
        room.broadcast(&Bytes::from(event.to_frame()), None);
        Ok(())
    }

    /// Relays a signal from a participant to another participant of the same room.
    pub fn signal(
        &self,
        room_name: &str,
        from: &SessionHandle,
        to_sid: &str,
        data: &RawValue,
    ) -> Result<(), HubError> {
        let rooms = self.rooms.lock().expect("hub lock");
        let not_joined = || not_joined(room_name);
        let room = rooms.get(room_name).ok_or_else(not_joined)?;
        room.position(from.id).ok_or_else(not_joined)?;
        let target = room
            .participants
            .iter()
            .find(|p| p.info.sid == to_sid)
            .ok_or_else(|| {
                (
                    ErrorCode::ParticipantNotFound,
                    format!("no participant '{to_sid}' in room '{room_name}'"),
                )
            })?;
        target.handle.push_frame(signal_frame(
            room_name,
            &from.client_id,
            &from.identity,
            data,
        ));
        METRICS.signals.fetch_add(1, Relaxed);
        Ok(())
    }

    /// Server API: takes every participant with `identity` out of the room.
    pub fn remove_identity(&self, room_name: &str, identity: &str) -> Result<usize, HubError> {
        let mut rooms = self.rooms.lock().expect("hub lock");
        let room = rooms
            .get_mut(room_name)
            .ok_or_else(|| (ErrorCode::RoomNotFound, format!("no room '{room_name}'")))?;
        let key: Arc<str> = Arc::from(room_name);
        let mut removed = 0;
        while let Some(i) = room
            .participants
            .iter()
            .position(|p| p.info.identity == identity)
        {
            room.remove_at(&key, i, LeaveReason::Removed, true);
            removed += 1;
        }
        if removed == 0 {
            return Err((
                ErrorCode::ParticipantNotFound,
                format!("no participant '{identity}' in room '{room_name}'"),
            ));
        }
        remove_if_empty(&mut rooms, room_name);
        Ok(removed)
    }

    pub fn rooms(&self) -> Vec<RoomSummary> {
        let rooms = self.rooms.lock().expect("hub lock");
        let mut list: Vec<RoomSummary> = rooms
            .iter()
            .map(|(name, room)| RoomSummary {
                name: name.to_string(),
                participants: room.participants.len(),
                created_at: room.created_at,
            })
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    /// Queues `frame` for every participant of a room.
    pub fn broadcast(&self, room_name: &str, frame: Bytes) {
        if let Some(room) = self.rooms.lock().expect("hub lock").get(room_name) {
            room.broadcast(&frame, None);
        }
    }

    /// How many participants a room has.
    pub fn room_size(&self, room_name: &str) -> usize {
        self.rooms
            .lock()
            .expect("hub lock")
            .get(room_name)
            .map_or(0, |r| r.participants.len())
    }

    /// Participants of the room whose token may publish media.
    pub fn room_publishers(&self, room_name: &str) -> usize {
        self.rooms
            .lock()
            .expect("hub lock")
            .get(room_name)
            .map_or(0, |r| r.participants.iter().filter(|p| p.publisher).count())
    }

    pub fn participants(&self, room_name: &str) -> Option<Vec<ParticipantInfo>> {
        let rooms = self.rooms.lock().expect("hub lock");
        rooms
            .get(room_name)
            .map(|r| r.participants.iter().map(|p| p.info.clone()).collect())
    }
}
