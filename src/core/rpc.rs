//! RPC routing on the shard that owns the RPC name: providers, calls in flight, rerouting on
//! reject, and the accept and response deadlines.

use super::ids::ConnId;
use crate::protocol::message::{rpc_action, topic, Message};
use ahash::AHashMap;
use bytes::Bytes;
use std::collections::hash_map::Entry;

pub struct RpcRouter {
    providers: AHashMap<Bytes, Vec<ConnId>>,
    /// What each connection provides, so a disconnect costs only its own names.
    provided_by: AHashMap<ConnId, Vec<Bytes>>,
    /// Calls in flight by correlation id (client-made unique ids).
    calls: AHashMap<Bytes, Call>,
    ack_timeout_ms: u64,
    response_timeout_ms: u64,
}

struct Call {
    caller: ConnId,
    provider: ConnId,
    /// Providers that rejected this call or left before accepting it (empty, so no allocation,
    /// until the first reroute).
    tried: Vec<ConnId>,
    request: Box<Message>,
    accepted: bool,
    deadline: u64,
}

/// A message the owner shard must send to a connection.
pub type Send = (ConnId, Box<Message>);

fn reply(request: &Message, action: i32) -> Box<Message> {
    Box::new(Message {
        name: request.name.clone(),
        correlation_id: request.correlation_id.clone(),
        ..Message::new(topic::RPC, action)
    })
}

impl RpcRouter {
    pub fn new(ack_timeout_ms: u64, response_timeout_ms: u64) -> Self {
        RpcRouter {
            providers: AHashMap::new(),
            provided_by: AHashMap::new(),
            calls: AHashMap::new(),
            ack_timeout_ms,
            response_timeout_ms,
        }
    }

    /// New timeouts for calls from now on (calls waiting keep their deadlines).
    pub fn set_timeouts(&mut self, ack_timeout_ms: u64, response_timeout_ms: u64) {
        self.ack_timeout_ms = ack_timeout_ms;
        self.response_timeout_ms = response_timeout_ms;
    }

    /// Returns false if `conn` already provided `name`.
    pub fn provide(&mut self, name: &Bytes, conn: ConnId) -> bool {
        let list = {
            let key = super::map_key(&self.providers, name);
            self.providers.entry(key)
        }
        .or_default();
        if list.contains(&conn) {
            return false;
        }
        list.push(conn);
        self.provided_by
            .entry(conn)
            .or_default()
            .push(super::detach(name));
        true
    }

    /// Returns false if `conn` did not provide `name`.
    pub fn unprovide(&mut self, name: &[u8], conn: ConnId) -> bool {
        let Some(list) = self.providers.get_mut(name) else {
            return false;
        };
        let before = list.len();
        list.retain(|c| *c != conn);
        let removed = list.len() != before;
        if list.is_empty() {
            self.providers.remove(name);
        }
        if let Some(names) = self.provided_by.get_mut(&conn) {
            names.retain(|n| n.as_ref() != name);
            if names.is_empty() {
                self.provided_by.remove(&conn);
            }
        }
        removed
    }

    pub fn request(
        &mut self,
        request: Box<Message>,
        caller: ConnId,
        now: u64,
        out: &mut Vec<Send>,
    ) {
        let (Some(name), Some(cid)) = (request.name.as_deref(), request.correlation_id.clone())
        else {
            out.push((caller, reply(&request, rpc_action::INVALID_MESSAGE_DATA)));
            return;
        };
        let Entry::Vacant(slot) = self.calls.entry(cid) else {
            out.push((
                caller,
                reply(&request, rpc_action::INVALID_RPC_CORRELATION_ID),
            ));
            return;
        };
        let Some(provider) = pick(&self.providers, name, &[]) else {
            out.push((caller, reply(&request, rpc_action::NO_RPC_PROVIDER)));
            return;
        };
        out.push((provider, request.clone()));
        slot.insert(Call {
            caller,
            provider,
            tried: Vec::new(),
            request,
            accepted: false,
            deadline: now + self.ack_timeout_ms,
        });
    }

    /// ACCEPT, RESPONSE, REQUEST_ERROR or REJECT from a provider.
    pub fn from_provider(
        &mut self,
        msg: Box<Message>,
        provider: ConnId,
        now: u64,
        out: &mut Vec<Send>,
    ) {
        let Some(cid) = msg.correlation_id.clone() else {
            return;
        };
        let Some(call) = self.calls.get_mut(&cid) else {
            out.push((
                provider,
                reply(&msg, rpc_action::INVALID_RPC_CORRELATION_ID),
            ));
            return;
        };
        if call.provider != provider {
            out.push((
                provider,
                reply(&msg, rpc_action::INVALID_RPC_CORRELATION_ID),
            ));
            return;
        }
        match msg.action {
            rpc_action::ACCEPT => {
                if call.accepted {
                    out.push((provider, reply(&msg, rpc_action::MULTIPLE_ACCEPT)));
                    return;
                }
                call.accepted = true;
                call.deadline = now + self.response_timeout_ms;
                out.push((call.caller, msg));
            }
            rpc_action::RESPONSE | rpc_action::REQUEST_ERROR => {
                let caller = call.caller;
                self.calls.remove(&cid);
                out.push((caller, msg));
            }
            rpc_action::REJECT => self.reroute(&cid, now, out),
            _ => {}
        }
    }

    /// Sends the call to a provider not yet tried, or fails it with NO_RPC_PROVIDER.
    fn reroute(&mut self, cid: &Bytes, now: u64, out: &mut Vec<Send>) {
        let Some(call) = self.calls.get_mut(cid) else {
            return;
        };
        call.tried.push(call.provider);
        let name = call.request.name.as_deref().unwrap_or_default();
        match pick(&self.providers, name, &call.tried) {
            Some(next) => {
                call.provider = next;
                call.accepted = false;
                call.deadline = now + self.ack_timeout_ms;
                out.push((next, call.request.clone()));
            }
            None => {
                if let Some(call) = self.calls.remove(cid) {
                    out.push((
                        call.caller,
                        reply(&call.request, rpc_action::NO_RPC_PROVIDER),
                    ));
                }
            }
        }
    }

    /// Calls past their deadline fail with ACCEPT_TIMEOUT or RESPONSE_TIMEOUT.
    pub fn tick(&mut self, now: u64, out: &mut Vec<Send>) {
        self.calls.retain(|_, call| {
            if call.deadline > now {
                return true;
            }
            let action = if call.accepted {
                rpc_action::RESPONSE_TIMEOUT
            } else {
                rpc_action::ACCEPT_TIMEOUT
            };
            out.push((call.caller, reply(&call.request, action)));
            false
        });
    }

    /// A connection went away: it provides nothing more; its calls are dropped; calls it was
    /// serving are rerouted (not yet accepted) or failed at once (accepted).
    pub fn conn_closed(&mut self, conn: ConnId, now: u64, out: &mut Vec<Send>) {
        for name in self.provided_by.remove(&conn).unwrap_or_default() {
            if let Some(list) = self.providers.get_mut(&name) {
                list.retain(|c| *c != conn);
                if list.is_empty() {
                    self.providers.remove(&name);
                }
            }
        }
        self.calls.retain(|_, call| call.caller != conn);
        let serving: Vec<(Bytes, bool)> = self
            .calls
            .iter()
            .filter(|(_, call)| call.provider == conn)
            .map(|(cid, call)| (cid.clone(), call.accepted))
            .collect();
        for (cid, accepted) in serving {
            if !accepted {
                self.reroute(&cid, now, out);
            } else if let Some(call) = self.calls.remove(&cid) {
                let mut error = reply(&call.request, rpc_action::REQUEST_ERROR);
                error.data = Some(Bytes::from_static(b"\"RPC provider disconnected\""));
                out.push((call.caller, error));
            }
        }
    }
}

impl RpcRouter {
    /// The names `conn` provides.
    pub fn names_of(&self, conn: ConnId) -> Vec<Bytes> {
        self.provided_by.get(&conn).cloned().unwrap_or_default()
    }

    /// Every (name, provider) whose provider is a connection of this node.
    pub fn local_providers(&self) -> Vec<(Bytes, ConnId)> {
        self.provided_by
            .iter()
            .filter(|(conn, _)| conn.node == super::ids::LOCAL_NODE)
            .flat_map(|(conn, names)| names.iter().map(|name| (name.clone(), *conn)))
            .collect()
    }

    /// The providers that are connections of node `node`.
    pub fn providers_on(&self, node: super::ids::NodeId) -> Vec<ConnId> {
        self.provided_by
            .keys()
            .filter(|conn| conn.node == node)
            .copied()
            .collect()
    }
}

/// A random provider of `name` other than those already tried, on this node if it has one,
/// else on another, as the reference picks (a local provider first, then a remote server);
/// the caller may be one (a client that provides and calls the same RPC answers itself).
/// Counts, then walks again to the chosen one: no allocation per call.
fn pick(providers: &AHashMap<Bytes, Vec<ConnId>>, name: &[u8], tried: &[ConnId]) -> Option<ConnId> {
    let list = providers.get(name)?;
    let untried = |p: &&ConnId| !tried.contains(p);
    let local = |p: &&ConnId| p.node == super::ids::LOCAL_NODE && !tried.contains(p);
    let local_count = list.iter().filter(local).count();
    if local_count > 0 {
        return list
            .iter()
            .filter(local)
            .nth(fastrand::usize(..local_count))
            .copied();
    }
    let count = list.iter().filter(untried).count();
    if count == 0 {
        return None;
    }
    list.iter()
        .filter(untried)
        .nth(fastrand::usize(..count))
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CALLER: ConnId = ConnId::on_this_node(0, 1);
    const P1: ConnId = ConnId::on_this_node(0, 2);
    const P2: ConnId = ConnId::on_this_node(1, 3);

    fn request(cid: &str) -> Box<Message> {
        Box::new(Message {
            name: Some(Bytes::from_static(b"add")),
            correlation_id: Some(Bytes::copy_from_slice(cid.as_bytes())),
            data: Some(Bytes::from_static(b"1")),
            ..Message::new(topic::RPC, rpc_action::REQUEST)
        })
    }

    fn answer(cid: &str, action: i32) -> Box<Message> {
        Box::new(Message {
            action,
            ..*request(cid)
        })
    }

    /// A router whose `providers` provide "add", after CALLER asked it with correlation id "c1"
    /// at time 0; the sends so far.
    fn called(providers: &[ConnId]) -> (RpcRouter, Vec<Send>) {
        let mut rpc = RpcRouter::new(100, 1000);
        for provider in providers {
            rpc.provide(&Bytes::from_static(b"add"), *provider);
        }
        let mut out = Vec::new();
        rpc.request(request("c1"), CALLER, 0, &mut out);
        (rpc, out)
    }

    fn actions(out: &[Send]) -> Vec<(ConnId, i32)> {
        out.iter().map(|(c, m)| (*c, m.action)).collect()
    }

    #[test]
    fn request_accept_response() {
        let (mut rpc, mut out) = called(&[P1]);
        rpc.from_provider(answer("c1", rpc_action::ACCEPT), P1, 10, &mut out);
        rpc.from_provider(answer("c1", rpc_action::RESPONSE), P1, 20, &mut out);
        assert_eq!(
            actions(&out),
            vec![
                (P1, rpc_action::REQUEST),
                (CALLER, rpc_action::ACCEPT),
                (CALLER, rpc_action::RESPONSE)
            ]
        );
        out.clear();
        rpc.tick(5000, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn a_correlation_id_in_flight_is_refused_and_the_first_call_goes_on() {
        let (mut rpc, mut out) = called(&[P1]);
        rpc.request(request("c1"), CALLER, 1, &mut out);
        rpc.from_provider(answer("c1", rpc_action::RESPONSE), P1, 2, &mut out);
        assert_eq!(
            actions(&out),
            vec![
                (P1, rpc_action::REQUEST),
                (CALLER, rpc_action::INVALID_RPC_CORRELATION_ID),
                (CALLER, rpc_action::RESPONSE)
            ]
        );
        out.clear();
        rpc.request(request("c1"), CALLER, 3, &mut out);
        assert_eq!(actions(&out), vec![(P1, rpc_action::REQUEST)]);
    }

    /// Issue 29, item 5: as the reference, a provider on this node is chosen before any on
    /// another node; a remote one only once every local one has rejected.
    #[test]
    fn local_providers_are_chosen_first() {
        let remote = |node, local| ConnId {
            node,
            shard: 0,
            local,
        };
        let (r1, r2) = (remote(7, 10), remote(8, 11));
        for round in 0..50 {
            let (mut rpc, mut out) = called(&[r1, P1, r2]);
            assert_eq!(
                out[0].0, P1,
                "round {round}: a remote provider was chosen first"
            );
            rpc.from_provider(answer("c1", rpc_action::REJECT), P1, 1, &mut out);
            assert!([r1, r2].contains(&out[1].0), "{out:?}");
        }
    }

    #[test]
    fn reject_reroutes_then_no_provider() {
        let (mut rpc, mut out) = called(&[P1, P2]);
        let first = out[0].0;
        rpc.from_provider(answer("c1", rpc_action::REJECT), first, 1, &mut out);
        let second = out[1].0;
        assert_ne!(first, second);
        rpc.from_provider(answer("c1", rpc_action::REJECT), second, 2, &mut out);
        assert_eq!(
            out[2],
            (CALLER, reply(&request("c1"), rpc_action::NO_RPC_PROVIDER))
        );
    }

    #[test]
    fn the_requester_may_be_its_own_provider_and_timeouts_fire() {
        let (mut rpc, mut out) = called(&[CALLER]);
        assert_eq!(actions(&out), vec![(CALLER, rpc_action::REQUEST)]);
        rpc.from_provider(answer("c1", rpc_action::ACCEPT), CALLER, 1, &mut out);
        rpc.from_provider(answer("c1", rpc_action::RESPONSE), CALLER, 2, &mut out);
        assert_eq!(
            actions(&out)[1..],
            [(CALLER, rpc_action::ACCEPT), (CALLER, rpc_action::RESPONSE)]
        );
        rpc.unprovide(&Bytes::from_static(b"add"), CALLER);
        rpc.provide(&Bytes::from_static(b"add"), P1);
        out.clear();
        rpc.request(request("c2"), CALLER, 0, &mut out);
        rpc.tick(99, &mut out);
        rpc.tick(100, &mut out);
        assert_eq!(
            actions(&out),
            vec![
                (P1, rpc_action::REQUEST),
                (CALLER, rpc_action::ACCEPT_TIMEOUT)
            ]
        );
        out.clear();
        rpc.request(request("c3"), CALLER, 0, &mut out);
        rpc.from_provider(answer("c3", rpc_action::ACCEPT), P1, 50, &mut out);
        rpc.tick(1049, &mut out);
        rpc.tick(1050, &mut out);
        assert_eq!(
            actions(&out).last(),
            Some(&(CALLER, rpc_action::RESPONSE_TIMEOUT))
        );
    }

    #[test]
    fn provider_disconnect_fails_accepted_calls_at_once() {
        let (mut rpc, mut out) = called(&[P1]);
        rpc.request(request("c2"), CALLER, 0, &mut out);
        rpc.from_provider(answer("c1", rpc_action::ACCEPT), P1, 1, &mut out);
        out.clear();
        rpc.conn_closed(P1, 2, &mut out);
        let mut got = actions(&out);
        got.sort_by_key(|(_, a)| *a);
        assert_eq!(
            got,
            vec![
                (CALLER, rpc_action::REQUEST_ERROR),
                (CALLER, rpc_action::NO_RPC_PROVIDER)
            ]
        );
        out.clear();
        rpc.request(request("c3"), CALLER, 3, &mut out);
        assert_eq!(actions(&out), vec![(CALLER, rpc_action::NO_RPC_PROVIDER)]);
    }

    #[test]
    fn a_caller_that_disconnects_leaves_nothing_behind() {
        let (mut rpc, mut out) = called(&[P1]);
        rpc.conn_closed(CALLER, 1, &mut out);
        out.clear();
        rpc.from_provider(answer("c1", rpc_action::RESPONSE), P1, 2, &mut out);
        assert_eq!(
            actions(&out),
            vec![(P1, rpc_action::INVALID_RPC_CORRELATION_ID)],
            "the late answer goes nowhere"
        );
        rpc.tick(10_000, &mut out);
        assert_eq!(out.len(), 1, "no timeout for a call that is gone");
        assert!(rpc.unprovide(b"add", P1));
        assert!(!rpc.unprovide(b"add", P1));
    }
}
