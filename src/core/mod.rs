//! The realtime state machines, without I/O or clocks: records, subscriptions, listening,
//! RPC routing and presence. Time is passed in as milliseconds.
pub mod ids;
pub mod interest;
pub mod jsonpath;
pub mod listen;
pub mod presence;
pub mod records;
pub mod rpc;
