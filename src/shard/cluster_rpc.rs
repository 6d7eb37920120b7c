//! RPC in a cluster. Every node knows every provider: a connection that starts or stops
//! providing a name is announced to all nodes, whose owner shard of the name lists it beside
//! its own (a `ConnId` of another node). A call is routed where it is made, by the same router
//! as on one node, among all providers: a request for a provider elsewhere goes to that node
//! with its correlation id, and the provider's shard sends the provider's answers back to the
//! routing node, whose router reroutes a reject, relays the rest and keeps the deadlines. A
//! node that is gone takes its providers with it: calls waiting for one are rerouted, or fail
//! as the reference fails a call whose provider disconnected.

use super::msg::ShardMsg;
use super::Shard;
use crate::cluster::BusOut;
use crate::core::ids::{ConnId, NodeId, LOCAL_NODE};
use crate::protocol::message::{rpc_action, topic, Message};
use bytes::Bytes;

/// Calls from other nodes a shard tracks for its providers at most; past this the oldest
/// are forgotten (their answers then reach no router, and the caller's deadline answers).
const MAX_REMOTE_CALLS: usize = 65_536;

impl Shard {
    /// A connection here began or stopped providing `name`: every node hears of it.
    pub(super) fn publish_provider(&mut self, name: &Bytes, conn: ConnId, on: bool) {
        if self.bus.on && conn.node == LOCAL_NODE {
            self.push_bus_request(BusOut::RpcProvider {
                name: crate::core::detach(name),
                conn,
                on,
            });
        }
    }

    /// A connection here closed: the names it provided are withdrawn everywhere.
    pub(super) fn unprovide_everywhere(&mut self, conn: ConnId) {
        if !self.bus.on || conn.node != LOCAL_NODE {
            return;
        }
        for name in self.owner_side.rpc.names_of(conn) {
            self.publish_provider(&name, conn, false);
        }
    }

    pub(super) fn on_remote_provider(&mut self, name: Bytes, conn: ConnId, on: bool) {
        if on {
            self.owner_side.rpc.provide(&name, conn);
        } else {
            self.owner_side.rpc.unprovide(&name, conn);
        }
    }

    /// Node `node` is gone: its providers are, too.
    pub(super) fn rpc_node_gone(&mut self, node: NodeId, now: u64) {
        for conn in self.owner_side.rpc.providers_on(node) {
            self.route_rpc(|rpc, out| rpc.conn_closed(conn, now, out));
        }
    }

    /// Another node asked: every provider here, again.
    pub(super) fn announce_providers(&mut self) {
        for (name, conn) in self.owner_side.rpc.local_providers() {
            self.publish_provider(&name, conn, true);
        }
    }

    /// What the RPC router sends: a request for a provider on another node carries its
    /// correlation id, so that node can send the answers back here.
    pub(super) fn send_rpc(&mut self, to: ConnId, msg: &Message) {
        if to.node == LOCAL_NODE || msg.action != rpc_action::REQUEST {
            return self.send(to, msg);
        }
        self.count(|m| m.messages_out.add(msg.topic, msg.action));
        self.push_bus_request(BusOut::ToConn {
            conn: to,
            frame: super::replies::ws_frame(msg),
            rpc_call: msg.correlation_id.clone(),
        });
    }

    /// A frame another node sends a connection of this shard.
    pub(super) fn on_frame_from_node(
        &mut self,
        local: u32,
        frame: Bytes,
        rpc_call: Option<(NodeId, Bytes)>,
    ) {
        let Some(conn) = self.conn_side.conns.get(&local) else {
            return;
        };
        conn.outbox.push(frame);
        if let Some((node, cid)) = rpc_call {
            let calls = &mut self.conn_side.remote_rpc_calls;
            if calls.len() >= MAX_REMOTE_CALLS {
                crate::log!(
                    crate::log::Level::Warn,
                    "CLUSTER_RPC",
                    "too many calls from other nodes in flight here; older ones forgotten"
                );
                calls.clear();
            }
            calls.insert((local, cid), node);
        }
    }

    /// A provider's answer: sent to the node that routes its call, if another node does
    /// (`Ok`); else given back to go to the owner here.
    pub(super) fn answer_remote_call(
        &mut self,
        msg: Box<Message>,
        from: ConnId,
    ) -> Result<(), Box<Message>> {
        if !self.bus.on || msg.topic != topic::RPC || msg.action == rpc_action::REQUEST {
            return Err(msg);
        }
        let Some(cid) = msg.correlation_id.clone() else {
            return Err(msg);
        };
        let key = (from.local, cid);
        let Some(node) = self.conn_side.remote_rpc_calls.get(&key).copied() else {
            return Err(msg);
        };
        if msg.action != rpc_action::ACCEPT {
            self.conn_side.remote_rpc_calls.remove(&key);
        }
        self.push_bus_request(BusOut::RpcAnswer { node, msg, from });
        Ok(())
    }

    /// A provide's ack, once every node has applied the provider: each owner of its names
    /// passes a barrier through the bus after announcing them (`BusOut::Barrier`), answered by
    /// each node's owner of each name once it has applied what came before; the ack waits for
    /// all of them, so a call made anywhere after the ack finds the provider.
    pub(super) fn ack_once_nodes_know(&mut self, local: u32, ack: Bytes, names: &[Bytes]) {
        let token = self.conn_side.held_replies.begin(local);
        let mut per_owner: Vec<Vec<Bytes>> = vec![Vec::new(); self.shards];
        for name in names {
            per_owner[self.owner(name)].push(name.clone());
        }
        for (owner, names) in per_owner.into_iter().enumerate() {
            if names.is_empty() {
                continue;
            }
            self.conn_side.held_replies.expect_confirmation(token);
            let shard = self.id as u16;
            self.route(
                owner,
                ShardMsg::Barrier {
                    shard,
                    token,
                    names,
                },
            );
        }
        if let Some((local, frames)) = self.conn_side.held_replies.finish(token, vec![ack]) {
            self.send_frames_local(local, frames);
        }
    }

    /// On an owner: what it announced before is known to every node once the barrier passes.
    pub(super) fn pass_barrier(&mut self, shard: u16, token: u64, names: Vec<Bytes>) {
        if self.bus.on {
            self.push_bus_request(BusOut::Barrier {
                shard,
                token,
                names,
            });
        } else {
            self.route(usize::from(shard), ShardMsg::InterestApplied { token });
        }
    }

    /// A connection closed: the calls routed to it from elsewhere are forgotten.
    pub(super) fn forget_remote_calls(&mut self, local: u32) {
        if !self.conn_side.remote_rpc_calls.is_empty() {
            self.conn_side
                .remote_rpc_calls
                .retain(|(l, _), _| *l != local);
        }
    }
}
