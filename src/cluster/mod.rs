//! The cluster seam: what leaves the process. A node tells the bus which names it wants while
//! it has local subscribers to them (interest, not broadcast), publishes frames to a name, and
//! sends bytes to one node; what other nodes send arrives through `drain`. Messages bound for
//! an owner have a wire encoding (`wire`), so a bus only carries bytes. The single-node
//! default has no one to tell: a node without `clusterNode` runs alone, exactly as before.

pub mod wire;

use crate::core::ids::NodeId;
use crate::shard::msg::Kind;
use bytes::Bytes;

/// What another node sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// A frame published to a name this node said it wants.
    Published {
        kind: Kind,
        name: Bytes,
        frame: Bytes,
    },
    /// Bytes for this node (an encoded `ShardMsg`, see `wire`).
    Direct { from: NodeId, payload: Bytes },
}

/// A message bus between nodes.
pub trait ClusterBus {
    /// This node's id.
    fn node(&self) -> NodeId;
    /// This node wants frames published to `name` (`on`), or no longer.
    fn set_interest(&self, kind: Kind, name: &[u8], on: bool);
    /// A frame for every other node that wants `name`.
    fn publish(&self, kind: Kind, name: &[u8], frame: Bytes);
    /// Bytes for one node.
    fn send(&self, to: NodeId, payload: Bytes);
    /// What arrived since the last call.
    fn drain(&self) -> Vec<Inbound>;
}

/// A node alone: nothing leaves, nothing arrives.
#[derive(Debug, Default, Clone, Copy)]
pub struct SingleNode;

impl ClusterBus for SingleNode {
    fn node(&self) -> NodeId {
        crate::core::ids::LOCAL_NODE
    }

    fn set_interest(&self, _kind: Kind, _name: &[u8], _on: bool) {}

    fn publish(&self, _kind: Kind, _name: &[u8], _frame: Bytes) {}

    fn send(&self, _to: NodeId, _payload: Bytes) {}

    fn drain(&self) -> Vec<Inbound> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_alone_sends_nothing_and_hears_nothing() {
        let bus: Box<dyn ClusterBus> = Box::new(SingleNode);
        bus.set_interest(Kind::Event, b"news", true);
        bus.publish(Kind::Event, b"news", Bytes::from_static(b"frame"));
        bus.send(3, Bytes::from_static(b"op"));
        assert_eq!(bus.drain(), Vec::new());
        assert_eq!(bus.node(), crate::core::ids::LOCAL_NODE);
    }
}
