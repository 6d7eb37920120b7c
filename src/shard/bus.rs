//! The shard's side of the cluster bus (`cluster::BusOut` / `BusIn`). As the owner of a name
//! it tells the bus when this node gains its first or loses its last subscriber of the name,
//! publishes what its local publishers send, and fans out what other nodes publish. A
//! subscriber's ack waits until the bus routes the name here. Without a cluster, nothing here
//! does anything.

use super::msg::{Kind, ShardMsg};
use super::Shard;
use crate::cluster::{BusIn, BusOut};
use ahash::AHashMap;
use bytes::Bytes;

/// A subscription whose ack waits for the bus: its shard and its confirmation token.
type WaitingAck = (u16, u64);

#[derive(Default)]
pub(super) struct BusSide {
    /// This node is part of a cluster.
    pub on: bool,
    out: Vec<BusOut>,
    /// Names whose interest the bus has yet to confirm: the confirmation asked for last, and
    /// the subscriptions (shard, token) whose acks wait for it.
    confirming: AHashMap<(Kind, Bytes), (u64, Vec<WaitingAck>)>,
    /// Confirmations asked for, by token.
    tokens: AHashMap<u64, (Kind, Bytes)>,
    next_token: u64,
}

impl BusSide {
    pub fn new(on: bool) -> BusSide {
        BusSide {
            on,
            ..BusSide::default()
        }
    }
}

impl Shard {
    /// What this shard asks of the bus, for the runtime to carry out in order.
    #[must_use]
    pub fn take_bus_out(&mut self) -> Vec<BusOut> {
        let mut out = std::mem::take(&mut self.bus.out);
        // After any interest asked for in the same turn: a record is read once the bus
        // routes its changes here.
        let reads = self.owner_side.records.take_cluster_reads();
        out.extend(reads.into_iter().map(|name| BusOut::Read { name }));
        let rechecks = self.take_rechecks();
        out.extend(rechecks.into_iter().map(|name| BusOut::Recheck { name }));
        out
    }

    /// What the bus brought.
    pub fn on_bus(&mut self, msg: BusIn, now: u64) {
        self.now = self.now.max(now);
        match msg {
            BusIn::Published { kind, name, frame } => {
                self.count(|m| m.bus_received += 1);
                self.fan_out(kind, &name, frame, None);
            }
            BusIn::RemotePresence { node, user, online } => {
                self.on_remote_presence(node, user, online)
            }
            BusIn::NodeGone { node } => {
                // It may have written records to the bucket and died before telling anyone.
                self.suspect_all_records();
                self.on_node_gone(node, now)
            }
            BusIn::SyncRequested => {
                // A node is back (or new): changes it published while away may not have
                // reached this one.
                self.suspect_all_records();
                self.on_sync_requested()
            }
            BusIn::PresenceConfirmed { login } => self.login_step_done(login),
            BusIn::RemoteProvider { name, conn, on } => self.on_remote_provider(name, conn, on),
            BusIn::ToConn {
                local,
                frame,
                rpc_call,
            } => self.on_frame_from_node(local, frame, rpc_call),
            BusIn::RpcAnswer { msg, from } => {
                self.route_rpc(|rpc, out| rpc.from_provider(msg, from, now, out))
            }
            BusIn::RemoteListener {
                kind,
                pattern,
                regex,
                conn,
                on,
            } => self.on_remote_listener(kind, pattern, regex, conn, on, now),
            BusIn::Listen {
                from,
                kind,
                name,
                op,
            } => self.on_listen_from_node(from, kind, name, op, now),
            BusIn::BarrierPassed { shard, token } => {
                self.route(usize::from(shard), ShardMsg::InterestApplied { token })
            }
            BusIn::AnswerOnceApplied { reply } => self.push_bus_request(BusOut::Answer { reply }),
            BusIn::Members {
                me,
                nodes,
                settle_ms,
            } => self.on_members(me, nodes, settle_ms, now),
            BusIn::Read { name, result } => self.on_bucket_read(name, result, now),
            BusIn::Rechecked { name, result } => self.on_bucket_recheck(name, result),
            BusIn::Reconnected => self.suspect_all_records(),
            BusIn::Cas { name, result } => self.on_bucket_write(name, result, now),
            BusIn::RecordChanged { name, change } => self.on_record_changed(name, change),
            BusIn::Confirmed { token } => {
                let Some(key) = self.bus.tokens.remove(&token) else {
                    return;
                };
                if self.bus.confirming.get(&key).map(|(last, _)| *last) != Some(token) {
                    // A newer interest in the name asked again: its confirmation releases them.
                    return;
                }
                let waiting = self.bus.confirming.remove(&key).map(|(_, w)| w);
                for (shard, token) in waiting.unwrap_or_default() {
                    self.route(usize::from(shard), ShardMsg::InterestApplied { token });
                }
            }
        }
    }

    /// A frame local publishers sent to `name`, for the other nodes that want it.
    pub(super) fn publish_to_bus(&mut self, kind: Kind, name: &Bytes, frame: Bytes) {
        if !self.bus.on {
            return;
        }
        self.count(|m| m.bus_published += 1);
        self.push_bus_request(BusOut::Publish {
            kind,
            name: name.clone(),
            frame,
        });
    }

    /// The owner has applied a shard's interest in `name` (`edge`: the node's first or last
    /// subscriber). `confirm` is the subscription waiting for its ack: released now, or once
    /// the bus has the name.
    pub(super) fn bus_interest(
        &mut self,
        kind: Kind,
        name: &Bytes,
        on: bool,
        edge: bool,
        confirm: Option<(u16, u64)>,
    ) {
        if self.bus.on && edge {
            let confirm_token = on.then(|| {
                self.bus.next_token = self.bus.next_token.wrapping_add(1);
                let token = self.bus.next_token;
                let key = (kind, crate::core::detach(name));
                self.bus.tokens.insert(token, key.clone());
                self.bus.confirming.entry(key).or_default().0 = token;
                token
            });
            self.push_bus_request(BusOut::Interest {
                kind,
                name: crate::core::detach(name),
                on,
                confirm: confirm_token,
            });
        }
        let Some((shard, token)) = confirm else {
            return;
        };
        match self.bus.confirming.get_mut(&(kind, name.clone())) {
            Some((_, waiting)) => waiting.push((shard, token)),
            None => self.route(usize::from(shard), ShardMsg::InterestApplied { token }),
        }
    }

    pub(super) fn push_bus_request(&mut self, request: BusOut) {
        self.bus.out.push(request);
        // The bus is a peer like any other: a long queue pauses client input.
        if self.bus.out.len() >= super::PEER_BACKLOG {
            self.backlogged.set(true);
        }
    }
}
