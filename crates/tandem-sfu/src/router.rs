//! Who receives what, without any I/O: rooms of participants, the tracks each one
//! publishes, and for every subscriber the outgoing m-line (mid) that carries each
//! track. The UDP loop asks it where an incoming frame goes and where a keyframe
//! request from a subscriber must be sent.
//!
//! Subscription policy today: every participant subscribes to every track of the
//! others in its room (automatic subscription).

use std::collections::HashMap;
use std::sync::Arc;
use str0m::media::{MediaKind, Mid, Rid};

/// A participant's media session, unique for the life of the SFU.
pub type Pid = u64;

/// A published track, unique for the life of the SFU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrackId(pub u64);

impl std::fmt::Display for TrackId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TR{}", self.0)
    }
}

/// What a publisher says about a track (optional, from `sfu_offer`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrackMeta {
    /// `camera`, `microphone`, `screen`, `screen_audio` or anything the app uses.
    pub source: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    pub id: TrackId,
    pub owner: Pid,
    /// The mid of the m-line on which the owner sends it.
    pub mid: Mid,
    pub kind: MediaKind,
    pub meta: TrackMeta,
    /// Simulcast layers (rids) in the order the publisher listed them; empty when
    /// the track is not simulcast.
    pub layers: Vec<Rid>,
    /// The publisher muted it: not forwarded, shown as muted to subscribers.
    pub muted: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteError {
    RoomFull { max: usize },
    TooManyTracks { max: usize },
    UnknownParticipant,
    AlreadyPublished,
}

#[derive(Debug)]
struct Member {
    room: Arc<str>,
    sid: Arc<str>,
    published: Vec<TrackId>,
    /// Track → the mid of the outgoing m-line once one is allocated.
    subscribed: HashMap<TrackId, Option<Mid>>,
}

#[derive(Debug)]
pub struct Router {
    max_participants: usize,
    max_tracks: usize,
    /// Room → members in join order.
    rooms: HashMap<Arc<str>, Vec<Pid>>,
    members: HashMap<Pid, Member>,
    tracks: HashMap<TrackId, Track>,
    next_track: u64,
}

impl Router {
    pub fn new(max_participants_per_room: usize, max_tracks_per_participant: usize) -> Self {
        Router {
            max_participants: max_participants_per_room,
            max_tracks: max_tracks_per_participant,
            rooms: HashMap::new(),
            members: HashMap::new(),
            tracks: HashMap::new(),
            next_track: 1,
        }
    }

    /// Adds a participant; returns the tracks of the others it now subscribes to.
    pub fn join(&mut self, pid: Pid, room: &str, sid: &str) -> Result<Vec<TrackId>, RouteError> {
        let members = self.rooms.entry(Arc::from(room)).or_default();
        if members.len() >= self.max_participants {
            let max = self.max_participants;
            if members.is_empty() {
                self.rooms.remove(room);
            }
            return Err(RouteError::RoomFull { max });
        }
        let existing: Vec<TrackId> = members
            .iter()
            .flat_map(|p| self.members[p].published.iter().copied())
            .collect();
        members.push(pid);
        let room = self
            .rooms
            .get_key_value(room)
            .map(|(k, _)| k.clone())
            .expect("room just inserted");
        self.members.insert(
            pid,
            Member {
                room,
                sid: Arc::from(sid),
                published: Vec::new(),
                subscribed: existing.iter().map(|t| (*t, None)).collect(),
            },
        );
        Ok(existing)
    }

    /// Removes a participant and its tracks; returns the removed tracks, and for each
    /// other member the outgoing mids that carried them.
    pub fn leave(&mut self, pid: Pid) -> (Vec<TrackId>, Vec<(Pid, Mid)>) {
        let Some(member) = self.members.remove(&pid) else {
            return (Vec::new(), Vec::new());
        };
        if let Some(list) = self.rooms.get_mut(&member.room) {
            list.retain(|p| *p != pid);
            if list.is_empty() {
                self.rooms.remove(&member.room);
            }
        }
        let mut freed = Vec::new();
        for track in &member.published {
            self.tracks.remove(track);
            for (other, m) in self.members.iter_mut() {
                if let Some(Some(mid)) = m.subscribed.remove(track) {
                    freed.push((*other, mid));
                }
            }
        }
        freed.sort_by_key(|(p, _)| *p);
        (member.published, freed)
    }

    /// Registers a track `pid` sends on `mid`; every other member of its room
    /// subscribes. Returns the track and those subscribers.
    pub fn publish(
        &mut self,
        pid: Pid,
        mid: Mid,
        kind: MediaKind,
        meta: TrackMeta,
        layers: Vec<Rid>,
    ) -> Result<(TrackId, Vec<Pid>), RouteError> {
        let member = self
            .members
            .get(&pid)
            .ok_or(RouteError::UnknownParticipant)?;
        if member
            .published
            .iter()
            .any(|t| self.tracks.get(t).is_some_and(|t| t.mid == mid))
        {
            return Err(RouteError::AlreadyPublished);
        }
        if member.published.len() >= self.max_tracks {
            return Err(RouteError::TooManyTracks {
                max: self.max_tracks,
            });
        }
        let id = TrackId(self.next_track);
        self.next_track += 1;
        let room = member.room.clone();
        self.tracks.insert(
            id,
            Track {
                id,
                owner: pid,
                mid,
                kind,
                meta,
                layers,
                muted: false,
            },
        );
        self.members
            .get_mut(&pid)
            .expect("checked above")
            .published
            .push(id);
        let others: Vec<Pid> = self.rooms[&room]
            .iter()
            .copied()
            .filter(|p| *p != pid)
            .collect();
        for p in &others {
            if let Some(m) = self.members.get_mut(p) {
                m.subscribed.insert(id, None);
            }
        }
        Ok((id, others))
    }

    /// Records the outgoing mid that carries `track` to `sub`.
    pub fn bind(&mut self, sub: Pid, track: TrackId, mid: Mid) -> bool {
        match self
            .members
            .get_mut(&sub)
            .and_then(|m| m.subscribed.get_mut(&track))
        {
            Some(slot) => {
                *slot = Some(mid);
                true
            }
            None => false,
        }
    }

    /// Forgets the mid of `sub`'s subscription to `track` (its m-line is renegotiating).
    pub fn unbind(&mut self, sub: Pid, track: TrackId) {
        if let Some(slot) = self
            .members
            .get_mut(&sub)
            .and_then(|m| m.subscribed.get_mut(&track))
        {
            *slot = None;
        }
    }

    pub fn track(&self, id: TrackId) -> Option<&Track> {
        self.tracks.get(&id)
    }

    /// The track `pid` publishes on `mid`.
    pub fn track_at(&self, pid: Pid, mid: Mid) -> Option<&Track> {
        self.members
            .get(&pid)?
            .published
            .iter()
            .filter_map(|t| self.tracks.get(t))
            .find(|t| t.mid == mid)
    }

    /// Where a frame `owner` sent on `mid` goes: the track, and (subscriber,
    /// outgoing mid) for each subscriber with an m-line for it.
    pub fn route(&self, owner: Pid, mid: Mid) -> Option<(TrackId, Vec<(Pid, Mid)>)> {
        let track = self.track_at(owner, mid)?;
        let room = &self.members[&owner].room;
        let subs = self.rooms[room]
            .iter()
            .filter_map(|p| {
                let out = self.members[p]
                    .subscribed
                    .get(&track.id)
                    .copied()
                    .flatten()?;
                Some((*p, out))
            })
            .collect();
        Some((track.id, subs))
    }

    /// The publisher side of `sub`'s outgoing `mid`: the track, for keyframe requests.
    pub fn source(&self, sub: Pid, mid: Mid) -> Option<&Track> {
        let (track, _) = self
            .members
            .get(&sub)?
            .subscribed
            .iter()
            .find(|(_, m)| **m == Some(mid))?;
        self.tracks.get(track)
    }

    /// Marks the track `pid` sends on `mid` muted or not; returns the track and its
    /// subscribers when that changed anything.
    pub fn set_muted(
        &mut self,
        pid: Pid,
        mid: Mid,
        muted: bool,
    ) -> Result<Option<(TrackId, Vec<Pid>)>, RouteError> {
        let id = self
            .track_at(pid, mid)
            .map(|t| t.id)
            .ok_or(RouteError::UnknownParticipant)?;
        let track = self.tracks.get_mut(&id).expect("found above");
        if track.muted == muted {
            return Ok(None);
        }
        track.muted = muted;
        let subs = self
            .members
            .iter()
            .filter(|(_, m)| m.subscribed.contains_key(&id))
            .map(|(p, _)| *p)
            .collect();
        Ok(Some((id, subs)))
    }

    /// The tracks `pid` publishes.
    pub fn published(&self, pid: Pid) -> Vec<&Track> {
        self.members
            .get(&pid)
            .map(|m| {
                m.published
                    .iter()
                    .filter_map(|t| self.tracks.get(t))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether `sub` subscribes to `track`.
    pub fn is_subscribed(&self, sub: Pid, track: TrackId) -> bool {
        self.members
            .get(&sub)
            .is_some_and(|m| m.subscribed.contains_key(&track))
    }

    /// Tracks `sub` subscribes to, with the outgoing mid when allocated, by track id.
    pub fn subscriptions(&self, sub: Pid) -> Vec<(&Track, Option<Mid>)> {
        let Some(m) = self.members.get(&sub) else {
            return Vec::new();
        };
        let mut list: Vec<(&Track, Option<Mid>)> = m
            .subscribed
            .iter()
            .filter_map(|(t, mid)| Some((self.tracks.get(t)?, *mid)))
            .collect();
        list.sort_by_key(|(t, _)| t.id);
        list
    }

    pub fn sid(&self, pid: Pid) -> Option<&Arc<str>> {
        self.members.get(&pid).map(|m| &m.sid)
    }

    /// The other members of `pid`'s room.
    pub fn peers(&self, pid: Pid) -> Vec<Pid> {
        let Some(m) = self.members.get(&pid) else {
            return Vec::new();
        };
        self.rooms[&m.room]
            .iter()
            .copied()
            .filter(|p| *p != pid)
            .collect()
    }

    pub fn track_count(&self) -> usize {
        self.tracks.len()
    }

    /// Subscriptions with an outgoing m-line.
    pub fn bound_count(&self) -> usize {
        self.members
            .values()
            .map(|m| m.subscribed.values().filter(|s| s.is_some()).count())
            .sum()
    }

    pub fn room_size(&self, room: &str) -> usize {
        self.rooms.get(room).map_or(0, Vec::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mid(s: &str) -> Mid {
        Mid::from(s)
    }

    fn cam() -> TrackMeta {
        TrackMeta {
            source: Some("camera".into()),
            name: None,
        }
    }

    #[test]
    fn new_tracks_reach_every_other_member_once_bound() {
        let mut r = Router::new(10, 4);
        assert_eq!(r.join(1, "a", "C1").unwrap(), vec![]);
        assert_eq!(r.join(2, "a", "C2").unwrap(), vec![]);
        r.join(3, "b", "C3").unwrap();
        let (t, subs) = r
            .publish(1, mid("0"), MediaKind::Video, cam(), vec![])
            .unwrap();
        assert_eq!(subs, vec![2], "only the same room, never the owner");
        // Not routed until the subscriber's m-line exists.
        assert_eq!(r.route(1, mid("0")), Some((t, vec![])));
        assert!(r.bind(2, t, mid("5")));
        assert_eq!(r.route(1, mid("0")), Some((t, vec![(2, mid("5"))])));
        assert_eq!(r.route(1, mid("9")), None, "unknown mid");
        let src = r.source(2, mid("5")).unwrap();
        assert_eq!((src.owner, src.mid, src.id), (1, mid("0"), t));
        assert!(r.source(2, mid("6")).is_none());
        assert!(r.is_subscribed(2, t));
        assert!(!r.is_subscribed(1, t), "never to the owner");
        assert!(!r.bind(3, t, mid("1")), "other room does not subscribe");
    }

    #[test]
    fn late_joiner_gets_existing_tracks() {
        let mut r = Router::new(10, 4);
        r.join(1, "a", "C1").unwrap();
        let (t1, _) = r
            .publish(1, mid("0"), MediaKind::Audio, TrackMeta::default(), vec![])
            .unwrap();
        let (t2, _) = r
            .publish(1, mid("1"), MediaKind::Video, cam(), vec![])
            .unwrap();
        assert_eq!(r.join(2, "a", "C2").unwrap(), vec![t1, t2]);
        let subs = r.subscriptions(2);
        assert_eq!(subs.len(), 2);
        assert_eq!(subs[0].0.kind, MediaKind::Audio);
        assert_eq!(subs[1].0.meta.source.as_deref(), Some("camera"));
        assert!(subs.iter().all(|(_, m)| m.is_none()));
        assert_eq!(r.sid(1).map(|s| &**s), Some("C1"));
    }

    #[test]
    fn leaving_removes_tracks_and_frees_mids() {
        let mut r = Router::new(10, 4);
        r.join(1, "a", "C1").unwrap();
        r.join(2, "a", "C2").unwrap();
        r.join(3, "a", "C3").unwrap();
        let (t, _) = r
            .publish(1, mid("0"), MediaKind::Video, cam(), vec![])
            .unwrap();
        r.bind(2, t, mid("3"));
        // 3 never got its m-line: nothing to free there.
        let (gone, freed) = r.leave(1);
        assert_eq!(gone, vec![t]);
        assert_eq!(freed, vec![(2, mid("3"))]);
        assert!(r.track(t).is_none());
        assert!(r.subscriptions(2).is_empty());
        assert!(r.subscriptions(3).is_empty());
        assert_eq!(r.peers(2), vec![3]);
        assert_eq!(r.leave(1), (vec![], vec![]), "second leave is a no-op");
        r.leave(2);
        r.leave(3);
        assert_eq!(r.room_size("a"), 0);
    }

    #[test]
    fn limits() {
        let mut r = Router::new(2, 1);
        r.join(1, "a", "C1").unwrap();
        r.join(2, "a", "C2").unwrap();
        assert_eq!(r.join(3, "a", "C3"), Err(RouteError::RoomFull { max: 2 }));
        r.join(3, "b", "C3").unwrap();
        r.publish(1, mid("0"), MediaKind::Audio, TrackMeta::default(), vec![])
            .unwrap();
        assert_eq!(
            r.publish(1, mid("0"), MediaKind::Audio, TrackMeta::default(), vec![]),
            Err(RouteError::AlreadyPublished)
        );
        assert_eq!(
            r.publish(1, mid("1"), MediaKind::Video, TrackMeta::default(), vec![]),
            Err(RouteError::TooManyTracks { max: 1 })
        );
        assert_eq!(
            r.publish(9, mid("0"), MediaKind::Video, TrackMeta::default(), vec![]),
            Err(RouteError::UnknownParticipant)
        );
        // Leaving frees the seat.
        r.leave(2);
        r.join(4, "a", "C4").unwrap();
    }

    #[test]
    fn muting_reports_subscribers_once() {
        let mut r = Router::new(10, 4);
        r.join(1, "a", "C1").unwrap();
        r.join(2, "a", "C2").unwrap();
        let (t, _) = r
            .publish(1, mid("0"), MediaKind::Audio, TrackMeta::default(), vec![])
            .unwrap();
        assert_eq!(r.set_muted(1, mid("0"), true), Ok(Some((t, vec![2]))));
        assert!(r.track(t).unwrap().muted);
        assert_eq!(r.set_muted(1, mid("0"), true), Ok(None), "no change");
        assert!(r.set_muted(1, mid("7"), true).is_err(), "unknown mid");
        assert!(r.set_muted(2, mid("0"), true).is_err(), "not its track");
    }

    #[test]
    fn unbind_stops_routing() {
        let mut r = Router::new(10, 4);
        r.join(1, "a", "C1").unwrap();
        r.join(2, "a", "C2").unwrap();
        let (t, _) = r
            .publish(1, mid("0"), MediaKind::Video, cam(), vec![])
            .unwrap();
        r.bind(2, t, mid("1"));
        r.unbind(2, t);
        assert_eq!(r.route(1, mid("0")), Some((t, vec![])));
        assert!(r.source(2, mid("1")).is_none());
    }
}
