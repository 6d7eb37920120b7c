//! corestream: a thread-per-core realtime server speaking the deepstream protocol.
pub mod auth;
pub mod config;
pub mod core;
pub mod net;
pub mod permission;
pub mod protocol;
pub mod shard;
