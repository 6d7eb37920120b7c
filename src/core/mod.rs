//! The realtime state machines, without I/O or clocks: records, subscriptions, listening,
//! RPC routing and presence. Time is passed in as milliseconds.
pub mod ids;
pub mod interest;
pub mod json;
pub mod jsonpath;
pub mod listen;
pub mod presence;
pub mod records;
pub mod rpc;

use bytes::Bytes;

/// A copy that owns its memory. Names arrive as slices of a connection's read buffer; a
/// long-lived map must not keep that whole buffer alive through one of them.
pub fn detach(bytes: &[u8]) -> Bytes {
    Bytes::copy_from_slice(bytes)
}

/// The key to `entry()` a map with: the caller's slice if the name is already there (the map
/// keeps its own key), else a detached copy.
pub fn map_key<V, S: std::hash::BuildHasher>(
    map: &std::collections::HashMap<Bytes, V, S>,
    name: &Bytes,
) -> Bytes {
    if map.contains_key(name) {
        name.clone()
    } else {
        detach(name)
    }
}
