//! The realtime state machines, without I/O or clocks: records, subscriptions, listening,
//! RPC routing and presence. Time is passed in as milliseconds.
pub mod jsonpath;
pub mod records;
