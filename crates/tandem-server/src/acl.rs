//! Who may use which channel (docs/protocol.md, "Channels").

use crate::auth::Claims;
use std::collections::HashSet;
use std::sync::Arc;

/// What a channel name means for access control.
#[derive(Debug, PartialEq, Eq)]
pub enum ChannelKind<'a> {
    /// `room:ROOM` or `room:ROOM:…`
    Room(&'a str),
    /// `user:IDENTITY`
    User(&'a str),
    Other,
}

pub fn classify(channel: &str) -> ChannelKind<'_> {
    if let Some(rest) = channel.strip_prefix("room:") {
        let room = rest.split(':').next().unwrap_or("");
        if !room.is_empty() {
            return ChannelKind::Room(room);
        }
    }
    if let Some(identity) = channel.strip_prefix("user:") {
        if !identity.is_empty() {
            return ChannelKind::User(identity);
        }
    }
    ChannelKind::Other
}

/// `Err` carries the human reason for a `forbidden` error.
pub fn may_subscribe(
    claims: &Claims,
    rooms: &HashSet<Arc<str>>,
    channel: &str,
) -> Result<(), String> {
    if claims.grants.admin {
        return Ok(());
    }
    match classify(channel) {
        ChannelKind::Room(room) if !rooms.contains(room) => Err(format!(
            "join room '{room}' before subscribing to '{channel}'"
        )),
        ChannelKind::Room(_) if !claims.grants.subscribe => {
            Err("the token has no subscribe grant".into())
        }
        ChannelKind::Room(_) => Ok(()),
        ChannelKind::User(identity) if identity == claims.sub => Ok(()),
        _ if claims.grants.may_subscribe_channel(channel) => Ok(()),
        _ => Err(format!(
            "the token does not grant subscribing to '{channel}'"
        )),
    }
}

pub fn may_publish(
    claims: &Claims,
    rooms: &HashSet<Arc<str>>,
    channel: &str,
) -> Result<(), String> {
    if claims.grants.admin {
        return Ok(());
    }
    match classify(channel) {
        ChannelKind::Room(room) if !rooms.contains(room) => Err(format!(
            "join room '{room}' before publishing to '{channel}'"
        )),
        ChannelKind::Room(_) if !claims.grants.data => Err("the token has no data grant".into()),
        ChannelKind::Room(_) => Ok(()),
        ChannelKind::User(_) => Err(format!("'{channel}' is written by the server API only")),
        ChannelKind::Other if claims.grants.may_publish_channel(channel) => Ok(()),
        ChannelKind::Other => Err(format!(
            "the token does not grant publishing to '{channel}'"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{ChannelGrants, Grants};

    fn claims(grants: Grants) -> Claims {
        Claims {
            sub: "alice".into(),
            grants,
            ..Default::default()
        }
    }

    #[test]
    fn rules() {
        let mut rooms = HashSet::new();
        let c = claims(Grants {
            channels: ChannelGrants {
                subscribe: vec!["news.*".into()],
                publish: vec!["feed".into()],
            },
            ..Grants::default()
        });
        assert_eq!(classify("room:demo:chat"), ChannelKind::Room("demo"));
        assert_eq!(classify("room:demo"), ChannelKind::Room("demo"));
        assert_eq!(classify("room:"), ChannelKind::Other);
        assert!(may_subscribe(&c, &rooms, "room:demo:chat").is_err());
        rooms.insert(Arc::from("demo"));
        assert!(may_subscribe(&c, &rooms, "room:demo:chat").is_ok());
        assert!(may_publish(&c, &rooms, "room:demo:chat").is_ok());
        assert!(may_subscribe(&c, &rooms, "user:alice").is_ok());
        assert!(may_subscribe(&c, &rooms, "user:bob").is_err());
        assert!(may_publish(&c, &rooms, "user:alice").is_err());
        assert!(may_subscribe(&c, &rooms, "news.sport").is_ok());
        assert!(may_publish(&c, &rooms, "news.sport").is_err());
        assert!(may_publish(&c, &rooms, "feed").is_ok());
        let ro = claims(Grants {
            data: false,
            subscribe: false,
            ..Grants::default()
        });
        assert!(may_publish(&ro, &rooms, "room:demo:chat").is_err());
        assert!(may_subscribe(&ro, &rooms, "room:demo:chat").is_err());
        let admin = claims(Grants {
            admin: true,
            ..Grants::default()
        });
        assert!(may_publish(&admin, &HashSet::new(), "anything").is_ok());
    }
}
