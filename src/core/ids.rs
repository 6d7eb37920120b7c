//! Identities that cross cores and nodes: connections and the owner of a name.

/// A server process in a cluster. A node running alone is `LOCAL_NODE`.
pub type NodeId = u32;
pub const LOCAL_NODE: NodeId = 0;

/// A connection anywhere in the cluster: its node, its shard there and its number there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    pub node: NodeId,
    pub shard: u16,
    pub local: u32,
}

impl ConnId {
    /// A connection of this node.
    pub const fn on_this_node(shard: u16, local: u32) -> ConnId {
        ConnId {
            node: LOCAL_NODE,
            shard,
            local,
        }
    }
}

/// Where a name is owned: a shard of a node. Shard sets stay 64-bit masks per node; nodes
/// are not bits in them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Owner {
    pub node: NodeId,
    pub shard: u16,
}

/// Fixed seeds: every shard must agree on the owner of a name.
fn hasher() -> ahash::RandomState {
    ahash::RandomState::with_seeds(0x5eed_0001, 0x5eed_0002, 0x5eed_0003, 0x5eed_0004)
}

/// The shard that owns `name`: `ahash(name) % shards`.
#[inline]
pub fn owner_of(name: &[u8], shards: usize) -> usize {
    if shards <= 1 {
        return 0;
    }
    (hasher().hash_one(name) % shards as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_stable_and_spread() {
        let mut counts = [0usize; 4];
        for i in 0..4000 {
            let name = format!("record/{i}");
            let owner = owner_of(name.as_bytes(), 4);
            assert_eq!(owner, owner_of(name.as_bytes(), 4));
            counts[owner] += 1;
        }
        assert!(counts.iter().all(|c| *c > 800), "{counts:?}");
        assert_eq!(owner_of(b"x", 1), 0);
    }
}
