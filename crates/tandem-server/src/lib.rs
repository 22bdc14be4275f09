//! The Tandem server as a library (see `../../shared/DESIGN.md` for the architecture).
//!
//! Data flows one way: socket → session → hub/history → bus → sessions.

pub mod acl;
pub mod auth;
pub mod bus;
pub mod config;
pub mod gateway;
pub mod history;
pub mod hub;
pub mod media;
pub mod metrics;
pub mod outbound;
pub mod session;
pub mod state;
pub mod subscriptions;

pub use config::Config;
pub use state::ServerState;
