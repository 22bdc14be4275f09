//! Integration tests: the real binary, real sockets. One test binary keeps linking cheap.

mod api;
mod auth;
mod bad_input;
mod common;
mod durability;
mod limits;
mod pubsub;
mod rooms;
mod turn;
