//! Listening in a cluster. Each name has one home node, which decides who provides it: the
//! live node with the highest rendezvous score for the name, so every node works out the
//! same home from the same members, and a node leaving moves only the names homed there.
//! Listeners are known on every node (announced like RPC providers). A node with subscribers
//! of a name some pattern matches tells the name's home (its owner shard there); the home runs
//! the same `Listening` as one node does over the union of the nodes' interest: it offers the
//! name to one listener anywhere, tells every interested node when the name has a provider,
//! and tells the provider when the last subscriber anywhere is gone. A listener's answer goes
//! from its node to the home. When the members change, names move to their new homes: the
//! nodes report their interest there, providers claim what they provide, and the new home
//! holds its offers for a settling time so a claim is not overtaken by an offer.

use super::msg::Kind;
use super::Shard;
use crate::cluster::{BusOut, ListenOp};
use crate::core::ids::{ConnId, NodeId, LOCAL_NODE};
use crate::core::listen::ListenEffect;
use crate::protocol::message::{record_action, topic, Message};
use ahash::{AHashMap, AHashSet};
use bytes::Bytes;
use regex::Regex;
use std::sync::Arc;

/// A provider of a name homed on another node: the listener here, its pattern, the home.
type Providing = (ConnId, Bytes, NodeId);

#[derive(Default)]
pub(super) struct ListenCluster {
    /// This node's id among `members` (0 until the bus says).
    me: NodeId,
    /// The live nodes, sorted; empty until the bus says (every name is then homed here).
    members: Vec<NodeId>,
    /// Names of this shard with subscribers here whose home is another node: that node.
    reported: [AHashMap<Bytes, NodeId>; 2],
    /// Names homed here with subscribers somewhere: the nodes that have them (`LOCAL_NODE`
    /// for this one).
    homed: [AHashMap<Bytes, Vec<NodeId>>; 2],
    /// Names a listener here provides for their home on another node.
    providing: [AHashMap<Bytes, Providing>; 2],
    /// Names with a provider as their home on another node says, for subscribers here.
    provided_elsewhere: [AHashSet<Bytes>; 2],
    /// When the cluster has settled after the members last changed (0: settled).
    settle_until: u64,
    /// Members in force before a change, each until the change has settled (at most
    /// `VIEWS_KEPT`): a name one of them homed elsewhere may have a provider this node has
    /// not heard of yet.
    earlier_views: Vec<(Vec<NodeId>, u64)>,
    /// Names whose interest arrived here while settling: nodes may still believe in a
    /// provider that left with the name's old home.
    arrived_while_settling: [AHashSet<Bytes>; 2],
}

/// Member changes remembered while settling; past that, every name waits.
const VIEWS_KEPT: usize = 16;

impl ListenCluster {
    /// Until when `name`, homed here, must wait for the cluster to settle before it is
    /// offered (`None`: not at all): while members in force before a recent change homed it on
    /// another node. (Before the bus first said who is in the cluster nothing was homed
    /// anywhere else: a starting node hears every provider during its startup listen.)
    fn held_until(&self, name: &[u8], now: u64) -> Option<u64> {
        let full = self.earlier_views.len() >= VIEWS_KEPT;
        self.earlier_views
            .iter()
            .filter(|(view, until)| {
                now < *until && (full || home_among(view, name) != Some(self.me))
            })
            .map(|(_, until)| *until)
            .max()
    }

    /// The node that decides for `name` (its listening, and which node brings a change
    /// followed from storage into the bucket): `LOCAL_NODE` when that is this one.
    pub(super) fn home(&self, name: &[u8]) -> NodeId {
        match home_among(&self.members, name) {
            Some(node) if node != self.me => node,
            _ => LOCAL_NODE,
        }
    }

    /// Whether a provider elsewhere provides record `name`.
    pub fn provided_elsewhere(&self, name: &[u8]) -> bool {
        self.provided_elsewhere[Kind::Record as usize].contains(name)
    }
}

/// The member with the highest rendezvous score for `name`.
pub(super) fn home_among(members: &[NodeId], name: &[u8]) -> Option<NodeId> {
    let hashed = fnv1a(name);
    members
        .iter()
        .copied()
        .max_by_key(|node| (mix(hashed ^ u64::from(*node)), *node))
}

/// FNV-1a: the same on every node and every build (a name's home must not depend on a
/// process's hash seed).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// SplitMix64's finaliser: spreads a name's hash combined with a node id.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl Shard {
    /// This node gained its first (`on`) or lost its last subscriber of `name`.
    pub(super) fn listen_interest_edge(&mut self, kind: Kind, name: &Bytes, on: bool, now: u64) {
        let mut effects = Vec::new();
        if !self.bus.on {
            let listening = &mut self.owner_side.listening[kind as usize];
            if on {
                listening.interest_started(name, LOCAL_NODE, now, &mut effects);
            } else {
                listening.interest_ended(name, &mut effects);
            }
            return self.apply_listen_effects(kind, effects);
        }
        let k = kind as usize;
        if on {
            if self.owner_side.listening[k].matches(name) {
                self.report_interest(kind, name, now);
            }
            return;
        }
        self.listen_cluster.provided_elsewhere[k].remove(name.as_ref());
        match self.listen_cluster.reported[k].remove(name.as_ref()) {
            Some(home) => self.push_listen(home, kind, name, ListenOp::Interest(false)),
            None => self.homed_remove(kind, name, LOCAL_NODE),
        }
    }

    /// Tells `name`'s home this node has subscribers of it.
    fn report_interest(&mut self, kind: Kind, name: &Bytes, now: u64) {
        let home = self.listen_cluster.home(name);
        if home == LOCAL_NODE {
            return self.homed_add(kind, name, LOCAL_NODE, now);
        }
        let key = crate::core::detach(name);
        if self.listen_cluster.reported[kind as usize].insert(key, home) != Some(home) {
            self.push_listen(home, kind, name, ListenOp::Interest(true));
        }
    }

    fn push_listen(&mut self, node: NodeId, kind: Kind, name: &Bytes, op: ListenOp) {
        self.push_bus_request(BusOut::Listen {
            node,
            kind,
            name: crate::core::detach(name),
            op,
        });
    }

    /// On the home of `name`: `node` has subscribers of it.
    fn homed_add(&mut self, kind: Kind, name: &Bytes, node: NodeId, now: u64) {
        let k = kind as usize;
        let nodes = {
            let homed = &mut self.listen_cluster.homed[k];
            let key = crate::core::map_key(homed, name);
            homed.entry(key).or_default()
        };
        if nodes.contains(&node) {
            return;
        }
        nodes.push(node);
        if self.listen_cluster.settle_until != 0 && node != LOCAL_NODE {
            let key = crate::core::detach(name);
            self.listen_cluster.arrived_while_settling[k].insert(key);
        }
        let first = nodes.len() == 1;
        let mut effects = Vec::new();
        if first {
            if let Some(until) = self.listen_cluster.held_until(name, now) {
                self.owner_side.listening[k].hold(name, until);
            }
            self.owner_side.listening[k].interest_started(name, node, now, &mut effects);
        }
        if node != LOCAL_NODE && self.owner_side.listening[k].has_provider(name) {
            self.push_listen(node, kind, name, ListenOp::HasProvider(true));
        }
        self.apply_listen_effects(kind, effects);
    }

    /// On the home of `name`: `node` no longer has subscribers of it.
    fn homed_remove(&mut self, kind: Kind, name: &[u8], node: NodeId) {
        let k = kind as usize;
        let Some(nodes) = self.listen_cluster.homed[k].get_mut(name) else {
            return;
        };
        nodes.retain(|n| *n != node);
        if !nodes.is_empty() {
            return;
        }
        self.listen_cluster.homed[k].remove(name);
        let mut effects = Vec::new();
        self.owner_side.listening[k].interest_ended(name, &mut effects);
        self.apply_listen_effects(kind, effects);
    }

    /// A listener here or on another node began listening to `pattern`.
    pub(super) fn on_listener_added(
        &mut self,
        kind: Kind,
        pattern: Bytes,
        regex: Arc<Regex>,
        conn: ConnId,
        now: u64,
    ) {
        let k = kind as usize;
        let new_pattern = !self.owner_side.listening[k].has_pattern(&pattern);
        let mut effects = Vec::new();
        let listening = &mut self.owner_side.listening[k];
        if self.bus.on {
            let homed = self.listen_cluster.homed[k].keys();
            listening.add_listener(pattern, regex.clone(), conn, homed, now, &mut effects);
        } else {
            let interest = self.owner_side.interest[k].names();
            listening.add_listener(pattern, regex.clone(), conn, interest, now, &mut effects);
        }
        self.apply_listen_effects(kind, effects);
        if !self.bus.on || !new_pattern {
            return;
        }
        // Names with subscribers here that no pattern matched before: their homes learn now.
        let unreported: Vec<Bytes> = self.owner_side.interest[k]
            .names()
            .filter(|name| std::str::from_utf8(name).is_ok_and(|n| regex.is_match(n)))
            .filter(|name| !self.listen_cluster.reported[k].contains_key(name.as_ref()))
            .filter(|name| {
                !self.listen_cluster.homed[k]
                    .get(name.as_ref())
                    .is_some_and(|nodes| nodes.contains(&LOCAL_NODE))
            })
            .cloned()
            .collect();
        for name in unreported {
            self.report_interest(kind, &name, now);
        }
    }

    /// A connection here began or stopped listening to `pattern`: every node hears of it.
    pub(super) fn publish_listener(&mut self, kind: Kind, pattern: &Bytes, conn: ConnId, on: bool) {
        if self.bus.on && conn.node == LOCAL_NODE {
            self.push_bus_request(BusOut::Listener {
                kind,
                pattern: crate::core::detach(pattern),
                conn,
                on,
            });
        }
    }

    /// A listener of another node began or stopped listening.
    pub(super) fn on_remote_listener(
        &mut self,
        kind: Kind,
        pattern: Bytes,
        regex: Option<Arc<Regex>>,
        conn: ConnId,
        on: bool,
        now: u64,
    ) {
        match (on, regex) {
            (true, Some(regex)) => self.on_listener_added(kind, pattern, regex, conn, now),
            (true, None) => {}
            (false, _) => self.on_listener_removed(kind, &pattern, conn, now),
        }
    }

    /// A listener here or on another node stopped listening to `pattern`.
    pub(super) fn on_listener_removed(
        &mut self,
        kind: Kind,
        pattern: &[u8],
        conn: ConnId,
        now: u64,
    ) {
        self.forget_providing(kind, conn, Some(pattern));
        let mut effects = Vec::new();
        self.owner_side.listening[kind as usize].remove_listener(pattern, conn, now, &mut effects);
        self.apply_listen_effects(kind, effects);
    }

    /// A listener here answered an offer. `Err` gives it back when this node is the name's
    /// home (or alone), for the owner's `Listening` here.
    pub(super) fn listen_response_to_home(
        &mut self,
        kind: Kind,
        conn: ConnId,
        pattern: &Bytes,
        name: &Bytes,
        accept: bool,
    ) -> Result<(), ()> {
        if !self.bus.on {
            return Err(());
        }
        let home = self.listen_cluster.home(name);
        if home == LOCAL_NODE {
            return Err(());
        }
        let pattern = crate::core::detach(pattern);
        if accept {
            let key = crate::core::detach(name);
            self.listen_cluster.providing[kind as usize].insert(key, (conn, pattern.clone(), home));
        }
        let op = ListenOp::Response {
            conn,
            pattern,
            accept,
        };
        self.push_listen(home, kind, name, op);
        Ok(())
    }

    /// Node `from` about `name`.
    pub(super) fn on_listen_from_node(
        &mut self,
        from: NodeId,
        kind: Kind,
        name: Bytes,
        op: ListenOp,
        now: u64,
    ) {
        let k = kind as usize;
        let mut effects = Vec::new();
        match op {
            ListenOp::Interest(true) => self.homed_add(kind, &name, from, now),
            ListenOp::Interest(false) => self.homed_remove(kind, &name, from),
            ListenOp::Response {
                conn,
                pattern,
                accept: true,
            } => self.owner_side.listening[k].accept(conn, &pattern, &name, &mut effects),
            ListenOp::Response { conn, pattern, .. } => {
                self.owner_side.listening[k].reject(conn, &pattern, &name, now, &mut effects)
            }
            ListenOp::Claim { conn, pattern } => {
                self.owner_side.listening[k].claim(conn, &pattern, &name, &mut effects)
            }
            ListenOp::Removed { conn, pattern } => {
                let conn = ConnId {
                    node: LOCAL_NODE,
                    ..conn
                };
                let providing = &mut self.listen_cluster.providing[k];
                if providing
                    .get(name.as_ref())
                    .is_some_and(|(c, p, _)| *c == conn && *p == pattern)
                {
                    providing.remove(name.as_ref());
                }
                effects.push(ListenEffect::Removed {
                    to: conn,
                    pattern,
                    name,
                });
            }
            ListenOp::HasProvider(has) => {
                let wanted = self.owner_side.interest[k].shards(&name) != 0;
                let known = &mut self.listen_cluster.provided_elsewhere[k];
                let changed = if has && wanted {
                    known.insert(crate::core::detach(&name))
                } else {
                    known.remove(name.as_ref())
                };
                if changed {
                    self.tell_subscribers_provider(kind, &name, has && wanted);
                }
            }
        }
        self.apply_listen_effects(kind, effects);
    }

    /// SUBSCRIPTION_HAS_PROVIDER or _HAS_NO_PROVIDER to the subscribers of record `name` here.
    pub(super) fn tell_subscribers_provider(&mut self, kind: Kind, name: &Bytes, has: bool) {
        if kind != Kind::Record {
            return;
        }
        let action = if has {
            record_action::SUBSCRIPTION_HAS_PROVIDER
        } else {
            record_action::SUBSCRIPTION_HAS_NO_PROVIDER
        };
        let frame = super::ws_frame(&Message {
            name: Some(name.clone()),
            ..Message::new(topic::RECORD, action)
        });
        self.fan_out(kind, name, frame, None);
    }

    /// On a name's home: whether it has a provider now, for the other interested nodes.
    pub(super) fn tell_nodes_provider(&mut self, kind: Kind, name: &Bytes, has: bool) {
        if !self.bus.on || kind != Kind::Record {
            return;
        }
        let nodes: Vec<NodeId> = self.listen_cluster.homed[kind as usize]
            .get(name.as_ref())
            .map(|nodes| nodes.iter().copied().filter(|n| *n != LOCAL_NODE).collect())
            .unwrap_or_default();
        for node in nodes {
            self.push_listen(node, kind, name, ListenOp::HasProvider(has));
        }
    }

    /// A connection closed (on any shard of this node) or stopped listening to `pattern`
    /// (`None`: to anything): names it provided for other homes are no longer claimed.
    pub(super) fn forget_providing(&mut self, kind: Kind, conn: ConnId, pattern: Option<&[u8]>) {
        self.listen_cluster.providing[kind as usize]
            .retain(|_, (c, p, _)| !(*c == conn && pattern.is_none_or(|pattern| p == pattern)));
    }

    /// Node `node` is gone: its listeners and its interest, too.
    pub(super) fn listen_node_gone(&mut self, node: NodeId, now: u64) {
        for kind in [Kind::Event, Kind::Record] {
            let k = kind as usize;
            for conn in self.owner_side.listening[k].conns_on(node) {
                let mut effects = Vec::new();
                self.owner_side.listening[k].conn_closed(conn, now, &mut effects);
                self.apply_listen_effects(kind, effects);
            }
            let names: Vec<Bytes> = self.listen_cluster.homed[k]
                .iter()
                .filter(|(_, nodes)| nodes.contains(&node))
                .map(|(name, _)| name.clone())
                .collect();
            for name in names {
                self.homed_remove(kind, &name, node);
            }
        }
    }

    /// The cluster's members changed: names whose home moved are reported, claimed and
    /// forgotten as the new homes require, and offers wait until the nodes agree.
    pub(super) fn on_members(
        &mut self,
        me: NodeId,
        mut nodes: Vec<NodeId>,
        settle_ms: u64,
        now: u64,
    ) {
        nodes.sort_unstable();
        nodes.dedup();
        self.listen_cluster.me = me;
        let until = now.saturating_add(settle_ms);
        let views = &mut self.listen_cluster.earlier_views;
        views.retain(|(_, settled)| now < *settled);
        let earlier = std::mem::replace(&mut self.listen_cluster.members, nodes);
        if !earlier.is_empty() && views.len() < VIEWS_KEPT {
            views.push((earlier, until));
        }
        self.listen_cluster.settle_until = until;
        for kind in [Kind::Event, Kind::Record] {
            let k = kind as usize;
            // Interest reported to a home that is no longer the home.
            let moved: Vec<(Bytes, NodeId)> = self.listen_cluster.reported[k]
                .iter()
                .filter(|(name, home)| self.listen_cluster.home(name) != **home)
                .map(|(name, home)| (name.clone(), *home))
                .collect();
            for (name, old) in moved {
                self.listen_cluster.reported[k].remove(&name);
                if self.listen_cluster.members.contains(&old) {
                    self.push_listen(old, kind, &name, ListenOp::Interest(false));
                }
                self.report_interest(kind, &name, now);
            }
            // Names homed here that now have another home: the nodes report to it.
            let leaving: Vec<Bytes> = self.listen_cluster.homed[k]
                .keys()
                .filter(|name| self.listen_cluster.home(name) != LOCAL_NODE)
                .cloned()
                .collect();
            for name in leaving {
                let nodes = self.listen_cluster.homed[k]
                    .remove(&name)
                    .unwrap_or_default();
                self.owner_side.listening[k].forget(&name);
                if nodes.contains(&LOCAL_NODE) {
                    self.report_interest(kind, &name, now);
                }
            }
            // Providers here whose names moved: the new home hears it from them.
            let claims: Vec<(Bytes, ConnId, Bytes)> = self.listen_cluster.providing[k]
                .iter()
                .filter(|(name, (_, _, home))| self.listen_cluster.home(name) != *home)
                .map(|(name, (conn, pattern, _))| (name.clone(), *conn, pattern.clone()))
                .collect();
            for (name, conn, pattern) in claims {
                self.claim_at_home(kind, name, conn, pattern);
            }
        }
    }

    /// Says to `name`'s home that `conn` provides it.
    fn claim_at_home(&mut self, kind: Kind, name: Bytes, conn: ConnId, pattern: Bytes) {
        let k = kind as usize;
        let home = self.listen_cluster.home(&name);
        if home == LOCAL_NODE {
            self.listen_cluster.providing[k].remove(&name);
            let mut effects = Vec::new();
            self.owner_side.listening[k].claim(conn, &pattern, &name, &mut effects);
            return self.apply_listen_effects(kind, effects);
        }
        self.listen_cluster.providing[k].insert(name.clone(), (conn, pattern.clone(), home));
        self.push_listen(home, kind, &name, ListenOp::Claim { conn, pattern });
    }

    /// Another node asked for everything again (it joined, came back, or NATS restarted):
    /// listeners here, the interest reported to homes, and what listeners here provide.
    pub(super) fn announce_listening(&mut self) {
        let mut listeners = Vec::new();
        for (local, conn) in &self.conn_side.conns {
            let Some(extras) = conn.extras.as_ref() else {
                continue;
            };
            for kind in [Kind::Event, Kind::Record] {
                for pattern in &extras.listens[kind as usize] {
                    listeners.push((kind, pattern.clone(), *local));
                }
            }
        }
        for (kind, pattern, local) in listeners {
            let conn = self.conn_id(local);
            self.publish_listener(kind, &pattern, conn, true);
        }
        for kind in [Kind::Event, Kind::Record] {
            let k = kind as usize;
            let reported: Vec<(Bytes, NodeId)> = self.listen_cluster.reported[k]
                .iter()
                .map(|(name, home)| (name.clone(), *home))
                .collect();
            for (name, home) in reported {
                self.push_listen(home, kind, &name, ListenOp::Interest(true));
            }
            let providing: Vec<(Bytes, ConnId, Bytes)> = self.listen_cluster.providing[k]
                .iter()
                .map(|(name, (conn, pattern, _))| (name.clone(), *conn, pattern.clone()))
                .collect();
            for (name, conn, pattern) in providing {
                self.claim_at_home(kind, name, conn, pattern);
            }
        }
    }

    /// Periodic: once the members have settled, names homed here that no node reported are
    /// dropped (their claimed provider is told to stop), and waiting names are offered.
    pub(super) fn listen_settle_tick(&mut self, now: u64) {
        let until = self.listen_cluster.settle_until;
        if until == 0 || now < until {
            return;
        }
        self.listen_cluster.settle_until = 0;
        self.listen_cluster
            .earlier_views
            .retain(|(_, settled)| now < *settled);
        for kind in [Kind::Event, Kind::Record] {
            let k = kind as usize;
            let orphans: Vec<Bytes> = self.owner_side.listening[k]
                .names()
                .filter(|name| !self.listen_cluster.homed[k].contains_key(name.as_ref()))
                .cloned()
                .collect();
            let mut effects = Vec::new();
            for name in orphans {
                self.owner_side.listening[k].interest_ended(&name, &mut effects);
            }
            let arrived = std::mem::take(&mut self.listen_cluster.arrived_while_settling[k]);
            for name in arrived {
                if !self.owner_side.listening[k].has_provider(&name) {
                    self.tell_nodes_provider(kind, &name, false);
                }
            }
            self.owner_side.listening[k].rematch(now, &mut effects);
            self.apply_listen_effects(kind, effects);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_node_agrees_on_a_home_and_a_leaving_node_moves_only_its_names() {
        let view = |me: NodeId, members: &[NodeId]| ListenCluster {
            me,
            members: members.to_vec(),
            ..ListenCluster::default()
        };
        let absolute = |cluster: &ListenCluster, name: &[u8]| match cluster.home(name) {
            LOCAL_NODE => cluster.me,
            node => node,
        };
        let names: Vec<String> = (0..300).map(|i| format!("news/{i}")).collect();
        let (a, b, c) = (
            view(7, &[3, 7, 9]),
            view(3, &[3, 7, 9]),
            view(9, &[3, 7, 9]),
        );
        let mut per_node = AHashMap::new();
        for name in &names {
            let home = absolute(&a, name.as_bytes());
            assert_eq!(home, absolute(&b, name.as_bytes()));
            assert_eq!(home, absolute(&c, name.as_bytes()));
            *per_node.entry(home).or_insert(0) += 1;
        }
        assert!(per_node.values().all(|n| *n > 60), "spread: {per_node:?}");
        let without_nine = view(7, &[3, 7]);
        for name in &names {
            let before = absolute(&a, name.as_bytes());
            let after = absolute(&without_nine, name.as_bytes());
            if before != 9 {
                assert_eq!(before, after, "{name} moved though its home stayed");
            }
        }
        assert_eq!(ListenCluster::default().home(b"x"), LOCAL_NODE);
    }
}
