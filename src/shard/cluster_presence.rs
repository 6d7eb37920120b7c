//! Presence in a cluster, on the owner shard of a user name: a user is online while it has a
//! connection on any node. Each node tells the others when a user goes online or offline
//! there (its first or last connection on that node); the owner shard joins that with its own
//! count, and the shards hear of a change only when the cluster-wide answer changes. A node
//! that is gone takes its users with it.

use super::msg::ShardMsg;
use super::Shard;
use crate::cluster::BusOut;
use crate::core::ids::{ConnId, NodeId};
use bytes::Bytes;

impl Shard {
    /// On the owner of a user name: one of its connections logged in or closed. `reply` is
    /// the login answer: it goes out once every shard knows the user is online and, in a
    /// cluster, every other node too, so a client never learns of its login before presence
    /// queries anywhere can see it.
    pub(super) fn on_presence_login(
        &mut self,
        user: Bytes,
        login: bool,
        reply: Option<(ConnId, Bytes)>,
    ) {
        let here = self.owner_side.presence_counts.update(&user, login);
        // Online elsewhere in the cluster: nothing changes for anyone.
        let changed = here && !self.owner_side.remote_presence.anywhere(&user);
        let ask_nodes = self.bus.on && here && login && reply.is_some();
        if here && self.bus.on {
            let confirm = reply.as_ref().filter(|_| ask_nodes).map(|(conn, _)| *conn);
            self.push_bus_request(BusOut::Presence {
                user: crate::core::detach(&user),
                online: login,
                confirm,
            });
        }
        let waits = if changed { self.shards } else { 0 } + usize::from(ask_nodes);
        match reply {
            Some((conn, frame)) if waits > 0 => {
                self.owner_side.pending_logins.insert(conn, (waits, frame));
                if changed {
                    self.broadcast(ShardMsg::PresenceChanged {
                        user,
                        online: login,
                        login: Some(conn),
                    });
                }
            }
            Some((conn, frame)) => self.send_frame(conn, frame),
            None if changed => self.broadcast(ShardMsg::PresenceChanged {
                user,
                online: login,
                login: None,
            }),
            None => {}
        }
    }

    /// A shard, or the other nodes, know of a login's user: its answer goes out after the last.
    pub(super) fn login_step_done(&mut self, login: ConnId) {
        if let Some((left, _)) = self.owner_side.pending_logins.get_mut(&login) {
            *left -= 1;
            if *left == 0 {
                if let Some((_, frame)) = self.owner_side.pending_logins.remove(&login) {
                    self.send_frame(login, frame);
                }
            }
        }
    }

    /// This node's users: `user` went online or offline here.
    fn publish_presence(&mut self, user: &Bytes, online: bool) {
        if self.bus.on {
            self.push_bus_request(BusOut::Presence {
                user: crate::core::detach(user),
                online,
                confirm: None,
            });
        }
    }

    fn online_anywhere(&self, user: &[u8]) -> bool {
        self.owner_side.presence_counts.is_online(user)
            || self.owner_side.remote_presence.anywhere(user)
    }

    pub(super) fn on_remote_presence(&mut self, node: NodeId, user: Bytes, online: bool) {
        let before = self.online_anywhere(&user);
        self.owner_side.remote_presence.set(&user, node, online);
        let after = self.online_anywhere(&user);
        if before != after {
            self.broadcast(ShardMsg::PresenceChanged {
                user,
                online: after,
                login: None,
            });
        }
    }

    /// A node is gone: its users leave, unless they are online elsewhere, and its RPC
    /// providers are dropped.
    pub(super) fn on_node_gone(&mut self, node: NodeId, now: u64) {
        self.rpc_node_gone(node, now);
        self.listen_node_gone(node, now);
        for user in self.owner_side.remote_presence.node_gone(node) {
            if !self.owner_side.presence_counts.is_online(&user) {
                self.broadcast(ShardMsg::PresenceChanged {
                    user,
                    online: false,
                    login: None,
                });
            }
        }
    }

    /// Another node asked: every user online here and every provider, again.
    pub(super) fn on_sync_requested(&mut self) {
        self.announce_providers();
        self.announce_listening();
        let users: Vec<Bytes> = self.owner_side.presence_counts.users().cloned().collect();
        for user in users {
            self.publish_presence(&user, true);
        }
    }
}
