//! In-process fan-out of committed publications to the sessions subscribed on this
//! node. A cluster bus (Redis) delivers into the same `deliver` entry point.

use crate::outbound::{Outbound, SessionHandle};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

#[derive(Default)]
pub struct LocalBus {
    channels: RwLock<HashMap<Arc<str>, HashMap<u64, SessionHandle>>>,
}

impl LocalBus {
    /// Registers `handle` for `channel`'s publications. Returns the bus's own `Arc`
    /// for the channel name: deliveries carry that same pointer, so a session keying
    /// its subscriptions with it matches deliveries by pointer (`Subscriptions`).
    pub fn subscribe(&self, channel: &Arc<str>, handle: SessionHandle) -> Arc<str> {
        let mut channels = self.channels.write().expect("bus lock");
        let entry = channels.entry(channel.clone());
        let canonical = entry.key().clone();
        entry.or_default().insert(handle.id, handle);
        canonical
    }

    pub fn unsubscribe(&self, channel: &str, session_id: u64) {
        let mut channels = self.channels.write().expect("bus lock");
        if let Some(subs) = channels.get_mut(channel) {
            subs.remove(&session_id);
            if subs.is_empty() {
                channels.remove(channel);
            }
        }
    }

    /// Pushes publication frames `(offset, frame)` of `channel` to every subscriber.
    /// Called in offset order by the history writer, so each session's queue
    /// receives offsets in order.
    ///
    /// Each session gets all of the frames before the next session gets any: it is
    /// woken once, and by the time it runs its queue holds the whole batch, which it
    /// writes to its socket in one go. (Frame by frame, a session woken for the
    /// first frame often runs before the second arrives and writes twice.)
    pub fn deliver(&self, channel: &Arc<str>, frames: &[(u64, Bytes)]) -> usize {
        let channels = self.channels.read().expect("bus lock");
        let Some((channel, subs)) = channels.get_key_value(channel) else {
            return 0;
        };
        for handle in subs.values() {
            for (offset, frame) in frames {
                let queued = handle.push(Outbound::Publication {
                    channel: channel.clone(),
                    offset: *offset,
                    frame: frame.clone(),
                });
                if !queued {
                    break;
                }
            }
        }
        subs.len()
    }

    pub fn subscriber_count(&self, channel: &str) -> usize {
        self.channels
            .read()
            .expect("bus lock")
            .get(channel)
            .map_or(0, HashMap::len)
    }
}
