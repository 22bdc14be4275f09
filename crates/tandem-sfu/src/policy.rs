//! Room media policy: whether a room's participants send media peer to peer (`mesh`)
//! or through the SFU (`sfu`). `auto` starts in mesh, moves to the SFU when the room
//! grows past `sfu_above` participants, and back to mesh only when it shrinks to
//! `mesh_at_or_below` (hysteresis, so a room at the threshold does not flap).

use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyKind {
    Mesh,
    Sfu,
    #[default]
    Auto,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaMode {
    Mesh,
    Sfu,
}

impl MediaMode {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaMode::Mesh => "mesh",
            MediaMode::Sfu => "sfu",
        }
    }
}

/// The mode a room with `count` participants should use, given its current mode.
pub fn decide(
    kind: PolicyKind,
    sfu_above: usize,
    mesh_at_or_below: usize,
    current: MediaMode,
    count: usize,
) -> MediaMode {
    match kind {
        PolicyKind::Mesh => MediaMode::Mesh,
        PolicyKind::Sfu => MediaMode::Sfu,
        PolicyKind::Auto => match current {
            MediaMode::Mesh if count > sfu_above => MediaMode::Sfu,
            MediaMode::Sfu if count <= mesh_at_or_below => MediaMode::Mesh,
            same => same,
        },
    }
}

/// The current mode of every room.
#[derive(Debug)]
pub struct RoomPolicy {
    kind: PolicyKind,
    sfu_above: usize,
    mesh_at_or_below: usize,
    modes: Mutex<HashMap<Arc<str>, MediaMode>>,
}

impl RoomPolicy {
    pub fn new(kind: PolicyKind, sfu_above: usize, mesh_at_or_below: usize) -> Self {
        RoomPolicy {
            kind,
            sfu_above,
            mesh_at_or_below,
            modes: Mutex::new(HashMap::new()),
        }
    }

    fn initial(&self) -> MediaMode {
        match self.kind {
            PolicyKind::Sfu => MediaMode::Sfu,
            PolicyKind::Mesh | PolicyKind::Auto => MediaMode::Mesh,
        }
    }

    /// Records that `room` now has `count` participants; returns its mode and whether
    /// that changed. An empty room is forgotten.
    pub fn update(&self, room: &str, count: usize) -> (MediaMode, bool) {
        let mut modes = self.modes.lock().expect("policy lock");
        let current = modes.get(room).copied().unwrap_or_else(|| self.initial());
        let next = decide(
            self.kind,
            self.sfu_above,
            self.mesh_at_or_below,
            current,
            count,
        );
        if count == 0 {
            modes.remove(room);
        } else {
            modes.insert(Arc::from(room), next);
        }
        (next, next != current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use MediaMode::{Mesh, Sfu};

    #[test]
    fn auto_moves_up_past_the_threshold_and_down_with_hysteresis() {
        let d = |current, n| decide(PolicyKind::Auto, 4, 2, current, n);
        assert_eq!(d(Mesh, 4), Mesh);
        assert_eq!(d(Mesh, 5), Sfu);
        assert_eq!(d(Sfu, 4), Sfu, "no flapping at the threshold");
        assert_eq!(d(Sfu, 3), Sfu);
        assert_eq!(d(Sfu, 2), Mesh);
        assert_eq!(d(Mesh, 3), Mesh);
    }

    #[test]
    fn fixed_policies() {
        assert_eq!(decide(PolicyKind::Sfu, 4, 2, Mesh, 1), Sfu);
        assert_eq!(decide(PolicyKind::Mesh, 4, 2, Sfu, 50), Mesh);
    }

    #[test]
    fn rooms_are_tracked_and_forgotten() {
        let p = RoomPolicy::new(PolicyKind::Auto, 2, 1);
        assert_eq!(p.update("a", 1), (Mesh, false));
        assert_eq!(p.update("a", 2), (Mesh, false));
        assert_eq!(p.update("a", 3), (Sfu, true));
        assert_eq!(p.update("b", 1), (Mesh, false), "rooms are independent");
        assert_eq!(p.update("a", 2), (Sfu, false));
        assert_eq!(p.update("a", 1), (Mesh, true));
        p.update("a", 3);
        assert_eq!(p.update("a", 0), (Mesh, true));
        assert_eq!(p.update("a", 1), (Mesh, false), "a new room starts in mesh");
        let s = RoomPolicy::new(PolicyKind::Sfu, 2, 1);
        assert_eq!(s.update("a", 1), (Sfu, false));
    }
}
