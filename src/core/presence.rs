//! Presence: on the owner shard of a user name, how many connections that user has (so join and
//! leave happen once per transition); on every shard, a replica of who is online.

use ahash::{AHashMap, AHashSet};
use bytes::Bytes;

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

/// Who is online, as every shard sees it (updated by the owners' transitions).
#[derive(Default)]
pub struct OnlineUsers {
    users: AHashSet<Bytes>,
}

impl OnlineUsers {
    pub fn set(&mut self, user: Bytes, online: bool) {
        if online {
            self.users.insert(super::detach(&user));
        } else {
            self.users.remove(&user);
        }
    }

    pub fn contains(&self, user: &[u8]) -> bool {
        self.users.contains(user)
    }

    pub fn all_except<'a>(&'a self, me: &'a [u8]) -> impl Iterator<Item = &'a Bytes> {
        self.users.iter().filter(move |u| u.as_ref() != me)
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
}
