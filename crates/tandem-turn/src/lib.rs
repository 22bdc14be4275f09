//! Tandem's built-in STUN/TURN server.
//!
//! - [`message`]: STUN codec (RFC 8489), TURN attributes, ChannelData.
//! - [`auth`]: long-term and coturn-compatible REST credentials, nonces.
//! - [`policy`]: which peer addresses may be relayed to.
//! - [`core`]: the sans-IO state machine (allocations, permissions,
//!   channels, quotas, lifetimes).
//! - [`io`]: tokio listeners (UDP, TCP, TLS) and relay sockets.
//! - [`metrics`]: counters in the Prometheus text format.
//!
//! The server calls [`TurnServer::start`] with a [`TurnConfig`], hands clients
//! [`ice_servers`], and appends [`render_metrics`] to `/metrics`.

pub mod auth;
pub mod config;
pub mod core;
pub mod io;
pub mod message;
pub mod metrics;
pub mod policy;

#[cfg(test)]
mod core_tests;

pub use config::{ice_servers, ConfigError, IceServerEntry, TurnConfig};
pub use io::{StartError, TurnHandle, TurnServer};
pub use metrics::{render_metrics, Metrics};
