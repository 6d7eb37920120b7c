//! Identities that cross cores: connections and the owner shard of a name.

/// A connection anywhere in the server: its shard and its number there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    pub shard: u16,
    pub local: u32,
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
