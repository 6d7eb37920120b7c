//! The cluster seam: what crosses between nodes, sans-I/O. A shard asks the bus for things
//! (`BusOut`: interest in a name while it has subscribers, a frame published to a name) and
//! hears back (`BusIn`); `bus` says how names become NATS subjects and what a message carries;
//! `nats` runs it over NATS on a connector thread; `wire` encodes messages bound for an owner
//! on another node. A node without `clusterNode` has no bus: it runs alone, exactly as before.

pub mod bus;
pub mod nats;
pub mod wire;

use crate::shard::msg::Kind;
use bytes::Bytes;

/// What a shard asks of the bus. Each owner shard asks only about the names it owns, so the
/// order of one shard's requests is the order per name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusOut {
    /// This node wants what other nodes publish to `name` (`on`), or no longer. With
    /// `confirm`, `BusIn::Confirmed` follows once the bus routes the name here: a subscriber's
    /// ack waits for it, so an emit made anywhere after the ack reaches it.
    Interest {
        kind: Kind,
        name: Bytes,
        on: bool,
        confirm: Option<u64>,
    },
    /// A frame for the subscribers of `name` on every other node that wants it.
    Publish {
        kind: Kind,
        name: Bytes,
        frame: Bytes,
    },
}

/// What the bus tells a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusIn {
    /// Another node published `frame` to `name`, which this node wants.
    Published {
        kind: Kind,
        name: Bytes,
        frame: Bytes,
    },
    /// The interest that asked for confirmation `token` is in force.
    Confirmed { token: u64 },
}
