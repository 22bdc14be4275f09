//! A session's subscriptions: channel → last offset delivered (or covered by the
//! subscribe reply).
//!
//! Looked up once per delivered publication, so the lookup is the hot path of
//! fan-out. The bus hands every session the same `Arc<str>` for a channel (its map
//! key), so a pointer comparison over a short vector finds the entry without hashing
//! or comparing the name; names are compared only when the pointer is not found
//! (a publication queued before an unsubscribe and resubscribe). A connection has at
//! most `limits.max_subscriptions_per_connection` entries (128 by default).

use std::sync::Arc;

#[derive(Debug, Default)]
pub struct Subscriptions {
    entries: Vec<(Arc<str>, u64)>,
}

impl Subscriptions {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains(&self, channel: &str) -> bool {
        self.entries.iter().any(|(c, _)| &**c == channel)
    }

    /// Adds a subscription whose history up to `last` is already covered.
    pub fn insert(&mut self, channel: Arc<str>, last: u64) {
        debug_assert!(!self.contains(&channel));
        self.entries.push((channel, last));
    }

    /// Returns whether the channel was subscribed.
    pub fn remove(&mut self, channel: &str) -> bool {
        let before = self.entries.len();
        self.entries.retain(|(c, _)| &**c != channel);
        self.entries.len() != before
    }

    /// Records a delivery of `offset` on `channel`; false when the channel is not
    /// subscribed or the offset was already delivered, so the publication is dropped.
    pub fn advance(&mut self, channel: &Arc<str>, offset: u64) -> bool {
        let slot = match self
            .entries
            .iter()
            .position(|(c, _)| Arc::ptr_eq(c, channel))
        {
            Some(i) => &mut self.entries[i].1,
            None => match self.entries.iter_mut().find(|(c, _)| c == channel) {
                Some((_, last)) => last,
                None => return false,
            },
        };
        if offset <= *slot {
            return false;
        }
        *slot = offset;
        true
    }

    /// Removes and returns the channels that `filter` selects.
    pub fn remove_where(&mut self, filter: impl Fn(&str) -> bool) -> Vec<Arc<str>> {
        let mut gone = Vec::new();
        self.entries.retain(|(c, _)| {
            let drop = filter(c);
            if drop {
                gone.push(c.clone());
            }
            !drop
        });
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_drops_old_offsets_and_unknown_channels() {
        let mut subs = Subscriptions::default();
        let chat: Arc<str> = "chat".into();
        subs.insert(chat.clone(), 5);
        assert!(!subs.advance(&chat, 5), "covered by the subscribe reply");
        assert!(subs.advance(&chat, 6));
        assert!(!subs.advance(&chat, 6), "duplicate");
        assert!(!subs.advance(&"news".into(), 1), "not subscribed");
    }

    #[test]
    fn a_different_arc_with_the_same_name_still_matches() {
        let mut subs = Subscriptions::default();
        subs.insert("chat".into(), 0);
        assert!(subs.advance(&"chat".into(), 1));
    }

    #[test]
    fn remove_and_remove_where() {
        let mut subs = Subscriptions::default();
        subs.insert("room:a:chat".into(), 0);
        subs.insert("room:b:chat".into(), 0);
        subs.insert("news".into(), 0);
        assert!(subs.remove("news"));
        assert!(!subs.remove("news"));
        let gone = subs.remove_where(|c| c.starts_with("room:a:"));
        assert_eq!(gone, vec![Arc::<str>::from("room:a:chat")]);
        assert_eq!(subs.len(), 1);
        assert!(subs.contains("room:b:chat"));
    }
}
