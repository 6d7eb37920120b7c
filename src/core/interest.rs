//! Who is subscribed to what: local subscriber lists on every shard, and on the owner shard the
//! set of shards that have any subscriber for a name (so a publish crosses cores once per shard).

use ahash::AHashMap;
use bytes::Bytes;

/// Subscribers on this shard, by name, as local connection numbers.
#[derive(Default)]
pub struct LocalSubscribers {
    by_name: AHashMap<Bytes, Vec<u32>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The first local subscriber arrived / the last one left: tell the owner.
    Edge,
    Changed,
    /// Already subscribed / was not subscribed.
    Unchanged,
}

impl LocalSubscribers {
    pub fn add(&mut self, name: &Bytes, conn: u32) -> Change {
        let list = {
            let key = super::map_key(&self.by_name, name);
            self.by_name.entry(key)
        }
        .or_default();
        if list.contains(&conn) {
            return Change::Unchanged;
        }
        list.push(conn);
        if list.len() == 1 {
            Change::Edge
        } else {
            Change::Changed
        }
    }

    pub fn remove(&mut self, name: &[u8], conn: u32) -> Change {
        let Some(list) = self.by_name.get_mut(name) else {
            return Change::Unchanged;
        };
        let Some(at) = list.iter().position(|c| *c == conn) else {
            return Change::Unchanged;
        };
        list.swap_remove(at);
        if list.is_empty() {
            self.by_name.remove(name);
            return Change::Edge;
        }
        Change::Changed
    }

    pub fn get(&self, name: &[u8]) -> &[u32] {
        self.by_name.get(name).map_or(&[], Vec::as_slice)
    }
}

/// On the owner shard: which shards have subscribers for each name (bit i = shard i).
#[derive(Default)]
pub struct ShardInterest {
    by_name: AHashMap<Bytes, u64>,
}

impl ShardInterest {
    /// Records shard `shard` gaining or losing interest. Returns `Edge` when the name gained
    /// its first interested shard or lost its last.
    pub fn set(&mut self, name: &Bytes, shard: usize, on: bool) -> Change {
        let bit = 1u64 << shard;
        if on {
            let set = {
                let key = super::map_key(&self.by_name, name);
                self.by_name.entry(key)
            }
            .or_insert(0);
            let was = *set;
            *set |= bit;
            return match (was, *set == was) {
                (_, true) => Change::Unchanged,
                (0, false) => Change::Edge,
                _ => Change::Changed,
            };
        }
        let Some(set) = self.by_name.get_mut(name) else {
            return Change::Unchanged;
        };
        if *set & bit == 0 {
            return Change::Unchanged;
        }
        *set &= !bit;
        if *set == 0 {
            self.by_name.remove(name);
            return Change::Edge;
        }
        Change::Changed
    }

    pub fn shards(&self, name: &[u8]) -> u64 {
        self.by_name.get(name).copied().unwrap_or(0)
    }

    pub fn names(&self) -> impl Iterator<Item = &Bytes> {
        self.by_name.keys()
    }
}

/// The shard numbers in a bit set.
pub fn each_shard(mut set: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if set == 0 {
            return None;
        }
        let shard = set.trailing_zeros() as usize;
        set &= set - 1;
        Some(shard)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_edges() {
        let mut subs = LocalSubscribers::default();
        let name = Bytes::from_static(b"n");
        assert_eq!(subs.add(&name, 1), Change::Edge);
        assert_eq!(subs.add(&name, 2), Change::Changed);
        assert_eq!(subs.add(&name, 2), Change::Unchanged);
        assert_eq!(subs.get(b"n").len(), 2);
        assert_eq!(subs.remove(b"n", 1), Change::Changed);
        assert_eq!(subs.remove(b"n", 1), Change::Unchanged);
        assert_eq!(subs.remove(b"n", 2), Change::Edge);
        assert!(subs.get(b"n").is_empty());
    }

    #[test]
    fn shard_edges() {
        let mut interest = ShardInterest::default();
        let name = Bytes::from_static(b"n");
        assert_eq!(interest.set(&name, 3, true), Change::Edge);
        assert_eq!(interest.set(&name, 0, true), Change::Changed);
        assert_eq!(interest.set(&name, 0, true), Change::Unchanged);
        assert_eq!(
            each_shard(interest.shards(b"n")).collect::<Vec<_>>(),
            vec![0, 3]
        );
        assert_eq!(interest.set(&name, 3, false), Change::Changed);
        assert_eq!(interest.set(&name, 0, false), Change::Edge);
        assert_eq!(interest.set(&name, 0, false), Change::Unchanged);
    }
}
