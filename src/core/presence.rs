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
