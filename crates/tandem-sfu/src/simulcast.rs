//! Simulcast layer selection for one (subscriber, track), sans-IO. A publisher sends
//! the same video in several layers (rids); a subscriber's m-line carries one of them.
//! The selector forwards the current layer until the target layer delivers a
//! keyframe, then switches, so the subscriber's decoder never sees a frame it cannot
//! decode.

use str0m::media::Rid;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerSelector {
    /// The layer being forwarded.
    current: Option<Rid>,
    /// The layer wanted; differs from `current` while waiting for its keyframe.
    target: Option<Rid>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Drop,
    Forward {
        /// This frame starts the target layer.
        switched: bool,
    },
}

impl LayerSelector {
    /// Starts wanting `target` (`None`: adopt the first layer seen).
    pub fn new(target: Option<Rid>) -> Self {
        LayerSelector {
            current: None,
            target,
        }
    }

    pub fn current(&self) -> Option<Rid> {
        self.current
    }

    pub fn target(&self) -> Option<Rid> {
        self.target
    }

    /// Asks for another layer; returns whether that changes anything.
    pub fn set_target(&mut self, rid: Rid) -> bool {
        if self.target == Some(rid) {
            return false;
        }
        self.target = Some(rid);
        true
    }

    /// The layer a keyframe is needed on: the target while a switch is pending.
    pub fn pending_switch(&self) -> Option<Rid> {
        match (self.current, self.target) {
            (c, Some(t)) if c != Some(t) => Some(t),
            _ => None,
        }
    }

    /// Decides about a frame of layer `rid` (`None`: the track is not simulcast).
    pub fn on_frame(&mut self, rid: Option<Rid>, keyframe: bool) -> Decision {
        let Some(rid) = rid else {
            return Decision::Forward { switched: false };
        };
        if self.target.is_none() {
            self.target = Some(rid);
        }
        if self.target == Some(rid) && self.current != Some(rid) {
            if keyframe {
                self.current = Some(rid);
                return Decision::Forward { switched: true };
            }
            return Decision::Drop;
        }
        if self.current == Some(rid) {
            Decision::Forward { switched: false }
        } else {
            Decision::Drop
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rid(s: &str) -> Option<Rid> {
        Some(Rid::from(s))
    }

    #[test]
    fn not_simulcast_always_forwards() {
        let mut s = LayerSelector::new(None);
        assert_eq!(
            s.on_frame(None, false),
            Decision::Forward { switched: false }
        );
        assert_eq!(s.pending_switch(), None);
    }

    #[test]
    fn starts_on_a_keyframe_of_the_target() {
        let mut s = LayerSelector::new(rid("q"));
        assert_eq!(s.pending_switch(), rid("q"));
        assert_eq!(s.on_frame(rid("f"), true), Decision::Drop, "not the target");
        assert_eq!(
            s.on_frame(rid("q"), false),
            Decision::Drop,
            "no keyframe yet"
        );
        assert_eq!(
            s.on_frame(rid("q"), true),
            Decision::Forward { switched: true }
        );
        assert_eq!(
            s.on_frame(rid("q"), false),
            Decision::Forward { switched: false }
        );
        assert_eq!(s.on_frame(rid("h"), false), Decision::Drop);
        assert_eq!(s.pending_switch(), None);
    }

    #[test]
    fn switches_only_on_the_new_layers_keyframe() {
        let mut s = LayerSelector::new(rid("q"));
        s.on_frame(rid("q"), true);
        assert!(s.set_target(Rid::from("f")));
        assert!(!s.set_target(Rid::from("f")));
        assert_eq!(s.pending_switch(), rid("f"));
        // The old layer keeps flowing until the new one has a keyframe.
        assert_eq!(
            s.on_frame(rid("q"), false),
            Decision::Forward { switched: false }
        );
        assert_eq!(s.on_frame(rid("f"), false), Decision::Drop);
        assert_eq!(
            s.on_frame(rid("f"), true),
            Decision::Forward { switched: true }
        );
        assert_eq!(s.current(), rid("f"));
        assert_eq!(
            s.on_frame(rid("q"), true),
            Decision::Drop,
            "old layer stops"
        );
        // Back down, and a switch back before the keyframe cancels it.
        s.set_target(Rid::from("q"));
        s.set_target(Rid::from("f"));
        assert_eq!(s.pending_switch(), None);
        assert_eq!(
            s.on_frame(rid("f"), false),
            Decision::Forward { switched: false }
        );
    }

    #[test]
    fn adopts_the_first_layer_without_a_target() {
        let mut s = LayerSelector::new(None);
        assert_eq!(s.on_frame(rid("h"), false), Decision::Drop);
        assert_eq!(s.target(), rid("h"));
        assert_eq!(
            s.on_frame(rid("h"), true),
            Decision::Forward { switched: true }
        );
    }
}
