//! corestream: a thread-per-core realtime server speaking the deepstream protocol.
pub mod protocol;
pub mod core;
