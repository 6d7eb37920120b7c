//! Presence: on the owner shard of a user name, how many connections that user has (so join and
//! leave happen once per transition); on every shard, a replica of who is online.

use ahash::AHashMap;
use bytes::Bytes;
use std::collections::BTreeMap;

#[derive(Default)]
pub struct PresenceCounts {
    connections: AHashMap<Bytes, u32>,
}

impl PresenceCounts {
    /// A connection of `user` logged in (true) or closed (false). Returns true when the user
    /// went online or offline because of it.
    pub fn update(&mut self, user: &Bytes, login: bool) -> bool {
        if login {
            let count = {
                let key = super::map_key(&self.connections, user);
                self.connections.entry(key)
            }
            .or_insert(0);
            *count += 1;
            return *count == 1;
        }
        let Some(count) = self.connections.get_mut(user) else {
            return false;
        };
        *count -= 1;
        if *count == 0 {
            self.connections.remove(user);
            return true;
        }
        false
    }

    /// Users with a connection here.
    pub fn users(&self) -> impl Iterator<Item = &Bytes> {
        self.connections.keys()
    }

    pub fn is_online(&self, user: &[u8]) -> bool {
        self.connections.contains_key(user)
    }
}

/// In a cluster, on the owner shard of a user name: the other nodes where the user is online.
#[derive(Default)]
pub struct RemotePresence {
    nodes: AHashMap<Bytes, Vec<crate::core::ids::NodeId>>,
}

impl RemotePresence {
    /// Node `node` says `user` is online there, or no longer. Returns whether the user's
    /// set of other nodes went from empty to not empty, or back.
    pub fn set(&mut self, user: &Bytes, node: crate::core::ids::NodeId, online: bool) -> bool {
        if online {
            let nodes = {
                let key = super::map_key(&self.nodes, user);
                self.nodes.entry(key).or_default()
            };
            if nodes.contains(&node) {
                return false;
            }
            nodes.push(node);
            return nodes.len() == 1;
        }
        let Some(nodes) = self.nodes.get_mut(user.as_ref()) else {
            return false;
        };
        let before = nodes.len();
        nodes.retain(|n| *n != node);
        if nodes.is_empty() {
            self.nodes.remove(user.as_ref());
            return true;
        }
        debug_assert!(nodes.len() <= before);
        false
    }

    pub fn anywhere(&self, user: &[u8]) -> bool {
        self.nodes.contains_key(user)
    }

    /// Node `node` is gone: the users who were online on no other node.
    pub fn node_gone(&mut self, node: crate::core::ids::NodeId) -> Vec<Bytes> {
        let mut gone = Vec::new();
        self.nodes.retain(|user, nodes| {
            nodes.retain(|n| *n != node);
            if nodes.is_empty() {
                gone.push(user.clone());
                return false;
            }
            true
        });
        gone
    }
}

/// Who is online, as every shard sees it (updated by the owners' transitions), in the order
/// they came online, as the reference answers a query.
#[derive(Default)]
pub struct OnlineUsers {
    /// User → when it came online (a counter).
    since: AHashMap<Bytes, u64>,
    in_order: BTreeMap<u64, Bytes>,
    next: u64,
}

impl OnlineUsers {
    pub fn set(&mut self, user: Bytes, online: bool) {
        if online {
            if self.since.contains_key(&user) {
                return;
            }
            let user = super::detach(&user);
            self.next += 1;
            self.since.insert(user.clone(), self.next);
            self.in_order.insert(self.next, user);
        } else if let Some(at) = self.since.remove(&user) {
            self.in_order.remove(&at);
        }
    }

    pub fn contains(&self, user: &[u8]) -> bool {
        self.since.contains_key(user)
    }

    /// Everyone online but `me`, oldest first.
    pub fn all_except<'a>(&'a self, me: &'a [u8]) -> impl Iterator<Item = &'a Bytes> {
        self.in_order.values().filter(move |u| u.as_ref() != me)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_transition_per_user_however_many_connections() {
        let mut counts = PresenceCounts::default();
        let alice = Bytes::from_static(b"alice");
        assert!(counts.update(&alice, true));
        assert!(!counts.update(&alice, true));
        assert!(!counts.update(&alice, false));
        assert!(counts.update(&alice, false));
        assert!(!counts.update(&alice, false));
    }

    #[test]
    fn remote_presence_changes_on_the_first_and_last_node() {
        let mut remote = RemotePresence::default();
        let bob = Bytes::from_static(b"bob");
        assert!(remote.set(&bob, 7, true));
        assert!(!remote.set(&bob, 7, true), "said twice");
        assert!(!remote.set(&bob, 9, true));
        assert!(!remote.set(&bob, 7, false));
        assert!(remote.anywhere(b"bob"));
        assert!(remote.set(&bob, 9, false));
        assert!(!remote.anywhere(b"bob"));
        assert!(!remote.set(&bob, 9, false), "not there");
        let carol = Bytes::from_static(b"carol");
        remote.set(&bob, 1, true);
        remote.set(&bob, 2, true);
        remote.set(&carol, 1, true);
        assert_eq!(remote.node_gone(1), vec![carol.clone()]);
        assert!(remote.anywhere(b"bob") && !remote.anywhere(b"carol"));
    }

    #[test]
    fn online_users_are_listed_in_the_order_they_came_online() {
        let mut online = OnlineUsers::default();
        for user in ["carol", "alice", "bob", "dave"] {
            online.set(Bytes::from(user), true);
        }
        online.set(Bytes::from("alice"), false);
        online.set(Bytes::from("carol"), true);
        online.set(Bytes::from("alice"), true);
        let listed: Vec<&Bytes> = online.all_except(b"dave").collect();
        assert_eq!(listed, ["carol", "bob", "alice"]);
        assert!(online.contains(b"bob") && !online.contains(b"eve"));
    }
}
