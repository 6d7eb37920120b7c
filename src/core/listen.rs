//! Listening, per topic, on the shard that owns the names: patterns with their listeners, and for
//! every name that has subscribers, its provider or the listener currently being asked.

use super::ids::ConnId;
use ahash::AHashMap;
use bytes::Bytes;
use regex::Regex;
use std::sync::Arc;

/// What the owner shard must send because of a listen event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenEffect {
    /// SUBSCRIPTION_FOR_PATTERN_FOUND to a listener.
    Offer {
        to: ConnId,
        pattern: Bytes,
        name: Bytes,
    },
    /// SUBSCRIPTION_FOR_PATTERN_REMOVED to a provider.
    Removed {
        to: ConnId,
        pattern: Bytes,
        name: Bytes,
    },
    /// Subscribers learn that the name now has (or no longer has) a provider.
    HasProvider { name: Bytes, has: bool },
}

struct Pattern {
    source: Bytes,
    regex: Arc<Regex>,
    listeners: Vec<ConnId>,
}

#[derive(Default)]
struct NameState {
    provider: Option<(ConnId, Bytes)>,
    offer: Option<(ConnId, Bytes, u64)>,
    tried: Vec<(ConnId, Bytes)>,
    /// The node of the name's first subscriber: its listeners are offered the name first
    /// (`LOCAL_NODE` alone, or when that is this node).
    near: super::ids::NodeId,
}

pub struct Listening {
    patterns: Vec<Pattern>,
    /// Only names that currently have subscribers.
    names: AHashMap<Bytes, NameState>,
    shuffle: bool,
    response_timeout_ms: u64,
    /// Names not offered before a time: a cluster settling who decides for them (their
    /// decider moved here, and a provider elsewhere may not have said so yet).
    held: AHashMap<Bytes, u64>,
}

impl Listening {
    pub fn new(shuffle: bool, response_timeout_ms: u64) -> Self {
        Listening {
            patterns: Vec::new(),
            names: AHashMap::new(),
            shuffle,
            response_timeout_ms,
            held: AHashMap::new(),
        }
    }

    /// Whether some listener listens to `pattern`.
    pub fn has_pattern(&self, pattern: &[u8]) -> bool {
        self.patterns.iter().any(|p| p.source == pattern)
    }

    /// Whether some listener's pattern matches `name`.
    pub fn matches(&self, name: &[u8]) -> bool {
        std::str::from_utf8(name)
            .is_ok_and(|text| self.patterns.iter().any(|p| p.regex.is_match(text)))
    }

    /// The names this instance decides for.
    pub fn names(&self) -> impl Iterator<Item = &Bytes> {
        self.names.keys()
    }

    /// Listeners on connections of node `node` (ids of another node, in a cluster).
    pub fn conns_on(&self, node: super::ids::NodeId) -> Vec<ConnId> {
        let mut conns: Vec<ConnId> = self
            .patterns
            .iter()
            .flat_map(|p| p.listeners.iter().copied())
            .filter(|c| c.node == node)
            .collect();
        conns.sort_unstable_by_key(|c| (c.shard, c.local));
        conns.dedup();
        conns
    }

    /// Makes no offer of `name` before `until`; `rematch` afterwards offers it if it waited.
    pub fn hold(&mut self, name: &[u8], until: u64) {
        let until = self.held.get(name).map_or(until, |held| until.max(*held));
        self.held.insert(super::detach(name), until);
    }

    /// Another instance decides for `name` now: its state here is dropped without a word to
    /// anyone (its provider goes on providing).
    pub fn forget(&mut self, name: &[u8]) {
        self.names.remove(name);
    }

    /// A listener already provides `name` (it accepted when another instance decided): it
    /// stays the provider, and an offer out to another is withdrawn (a late accept of it is
    /// then ignored, as for any offer no longer out). If another listener has become the
    /// provider meanwhile, the claimer is told to stop.
    pub fn claim(
        &mut self,
        conn: ConnId,
        pattern: &Bytes,
        name: &Bytes,
        out: &mut Vec<ListenEffect>,
    ) {
        let state = {
            let key = super::map_key(&self.names, name);
            self.names.entry(key)
        }
        .or_default();
        if let Some((provider, _)) = &state.provider {
            // Another listener provides it already (its offer went out before this claim
            // arrived): the claimer stops, so a name never keeps two providers.
            if *provider != conn {
                out.push(ListenEffect::Removed {
                    to: conn,
                    pattern: super::detach(pattern),
                    name: name.clone(),
                });
            }
            return;
        }
        state.offer = None;
        state.tried.clear();
        state.provider = Some((conn, super::detach(pattern)));
        out.push(ListenEffect::HasProvider {
            name: name.clone(),
            has: true,
        });
    }

    /// A listener registers; names with subscribers and no provider are offered to it.
    pub fn add_listener<'a>(
        &mut self,
        pattern: Bytes,
        regex: Arc<Regex>,
        conn: ConnId,
        interested: impl Iterator<Item = &'a Bytes>,
        now: u64,
        out: &mut Vec<ListenEffect>,
    ) {
        match self.patterns.iter_mut().find(|p| p.source == pattern) {
            Some(p) if p.listeners.contains(&conn) => return,
            Some(p) => p.listeners.push(conn),
            None => self.patterns.push(Pattern {
                source: super::detach(&pattern),
                regex: regex.clone(),
                listeners: vec![conn],
            }),
        }
        let candidates: Vec<Bytes> = interested
            .filter(|name| std::str::from_utf8(name).is_ok_and(|n| regex.is_match(n)))
            .cloned()
            .collect();
        for name in candidates {
            let state = {
                let key = super::map_key(&self.names, &name);
                self.names.entry(key)
            }
            .or_default();
            if state.provider.is_none() && state.offer.is_none() {
                self.offer_next(&name, now, out);
            }
        }
    }

    pub fn remove_listener(
        &mut self,
        pattern: &[u8],
        conn: ConnId,
        now: u64,
        out: &mut Vec<ListenEffect>,
    ) {
        if let Some(at) = self.patterns.iter().position(|p| p.source == pattern) {
            self.patterns[at].listeners.retain(|c| *c != conn);
            if self.patterns[at].listeners.is_empty() {
                self.patterns.swap_remove(at);
            }
        }
        self.drop_listener(|c, p| c == conn && p == pattern, now, out);
    }

    /// The listener is gone entirely (disconnect). Every shard hears of every closed
    /// connection, so one that listened to nothing costs a look at the patterns only, never a
    /// walk over every subscribed name.
    pub fn conn_closed(&mut self, conn: ConnId, now: u64, out: &mut Vec<ListenEffect>) {
        let mut listened = false;
        for p in &mut self.patterns {
            let before = p.listeners.len();
            p.listeners.retain(|c| *c != conn);
            listened |= p.listeners.len() != before;
        }
        if !listened {
            return;
        }
        self.patterns.retain(|p| !p.listeners.is_empty());
        self.drop_listener(|c, _| c == conn, now, out);
    }

    /// Distinct patterns listened to.
    pub fn pattern_count(&self) -> usize {
        self.patterns.len()
    }

    /// Names provided or offered to a departing listener are rematched.
    fn drop_listener(
        &mut self,
        gone: impl Fn(ConnId, &[u8]) -> bool,
        now: u64,
        out: &mut Vec<ListenEffect>,
    ) {
        let mut rematch = Vec::new();
        for (name, state) in &mut self.names {
            if state.provider.as_ref().is_some_and(|(c, p)| gone(*c, p)) {
                state.provider = None;
                out.push(ListenEffect::HasProvider {
                    name: name.clone(),
                    has: false,
                });
                rematch.push(name.clone());
            }
            if state.offer.as_ref().is_some_and(|(c, p, _)| gone(*c, p)) {
                state.offer = None;
                rematch.push(name.clone());
            }
        }
        for name in rematch {
            self.offer_next(&name, now, out);
        }
    }

    /// Whether a listener has accepted to provide `name`.
    pub fn has_provider(&self, name: &[u8]) -> bool {
        self.names.get(name).is_some_and(|s| s.provider.is_some())
    }

    /// A name gained its first subscriber anywhere: on node `near`, whose listeners are
    /// offered it first, as the reference offers a subscription to listeners on the
    /// subscriber's own server before remote ones.
    pub fn interest_started(
        &mut self,
        name: &Bytes,
        near: super::ids::NodeId,
        now: u64,
        out: &mut Vec<ListenEffect>,
    ) {
        if self.patterns.is_empty() {
            return;
        }
        {
            let key = super::map_key(&self.names, name);
            self.names.entry(key)
        }
        .or_default()
        .near = near;
        self.offer_next(name, now, out);
    }

    /// A name lost its last subscriber: its provider is told to stop.
    pub fn interest_ended(&mut self, name: &[u8], out: &mut Vec<ListenEffect>) {
        self.held.remove(name);
        if let Some(state) = self.names.remove(name) {
            if let Some((to, pattern)) = state.provider {
                out.push(ListenEffect::Removed {
                    to,
                    pattern,
                    name: Bytes::copy_from_slice(name),
                });
            }
        }
    }

    pub fn accept(
        &mut self,
        conn: ConnId,
        pattern: &Bytes,
        name: &Bytes,
        out: &mut Vec<ListenEffect>,
    ) {
        let Some(state) = self.names.get_mut(name.as_ref()) else {
            // Interest ended while the offer was out: tell the would-be provider to stop.
            out.push(ListenEffect::Removed {
                to: conn,
                pattern: pattern.clone(),
                name: name.clone(),
            });
            return;
        };
        let offered = state
            .offer
            .as_ref()
            .is_some_and(|(c, p, _)| *c == conn && p == pattern);
        if !offered || state.provider.is_some() {
            return;
        }
        state.offer = None;
        state.tried.clear();
        state.provider = Some((conn, pattern.clone()));
        out.push(ListenEffect::HasProvider {
            name: name.clone(),
            has: true,
        });
    }

    pub fn reject(
        &mut self,
        conn: ConnId,
        pattern: &Bytes,
        name: &Bytes,
        now: u64,
        out: &mut Vec<ListenEffect>,
    ) {
        let Some(state) = self.names.get_mut(name.as_ref()) else {
            return;
        };
        if state
            .offer
            .as_ref()
            .is_some_and(|(c, p, _)| *c == conn && p == pattern)
        {
            state.offer = None;
            self.offer_next(name, now, out);
        }
    }

    /// Offers past their response timeout count as rejections.
    pub fn tick(&mut self, now: u64, out: &mut Vec<ListenEffect>) {
        let expired: Vec<Bytes> = self
            .names
            .iter_mut()
            .filter_map(|(name, state)| match state.offer {
                Some((_, _, deadline)) if deadline <= now => {
                    state.offer = None;
                    Some(name.clone())
                }
                _ => None,
            })
            .collect();
        for name in expired {
            self.offer_next(&name, now, out);
        }
    }

    /// Names with subscribers but no provider get a fresh round of offers.
    pub fn rematch(&mut self, now: u64, out: &mut Vec<ListenEffect>) {
        self.held.retain(|_, until| now < *until);
        let idle: Vec<Bytes> = self
            .names
            .iter_mut()
            .filter(|(_, s)| s.provider.is_none() && s.offer.is_none())
            .map(|(name, s)| {
                s.tried.clear();
                name.clone()
            })
            .collect();
        for name in idle {
            self.offer_next(&name, now, out);
        }
    }

    fn offer_next(&mut self, name: &Bytes, now: u64, out: &mut Vec<ListenEffect>) {
        let Some(state) = self.names.get_mut(name.as_ref()) else {
            return;
        };
        if state.provider.is_some() || state.offer.is_some() {
            return;
        }
        if self
            .held
            .get(name.as_ref())
            .is_some_and(|until| now < *until)
        {
            return;
        }
        let Ok(text) = std::str::from_utf8(name) else {
            return;
        };
        let mut candidates: Vec<(ConnId, &Bytes)> = self
            .patterns
            .iter()
            .filter(|p| p.regex.is_match(text))
            .flat_map(|p| p.listeners.iter().map(move |c| (*c, &p.source)))
            .filter(|(c, p)| !state.tried.iter().any(|(tc, tp)| tc == c && tp == *p))
            .collect();
        if candidates.iter().any(|(c, _)| c.node == state.near) {
            candidates.retain(|(c, _)| c.node == state.near);
        }
        if candidates.is_empty() {
            return;
        }
        let pick = if self.shuffle {
            fastrand::usize(..candidates.len())
        } else {
            0
        };
        let (to, pattern) = (candidates[pick].0, candidates[pick].1.clone());
        state.tried.push((to, pattern.clone()));
        state.offer = Some((to, pattern.clone(), now + self.response_timeout_ms));
        out.push(ListenEffect::Offer {
            to,
            pattern,
            name: name.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: ConnId = ConnId::on_this_node(0, 1);
    const B: ConnId = ConnId::on_this_node(1, 2);

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    const LOCAL: crate::core::ids::NodeId = crate::core::ids::LOCAL_NODE;

    /// Issue 29, item 4: as the reference, listeners on the node of the name's first
    /// subscriber are offered it first; others only once those have all rejected.
    #[test]
    fn listeners_on_the_subscribers_node_are_offered_first() {
        let far = |node, local| ConnId {
            node,
            shard: 0,
            local,
        };
        let (x1, y1) = (far(7, 1), far(9, 2));
        let regex = Arc::new(Regex::new("news/.*").unwrap());
        for near in [7, 9] {
            for shuffle in [false, true] {
                let mut l = Listening::new(shuffle, 1000);
                let mut out = Vec::new();
                for conn in [A, x1, y1] {
                    l.add_listener(
                        b("news/.*"),
                        regex.clone(),
                        conn,
                        std::iter::empty(),
                        0,
                        &mut out,
                    );
                }
                l.interest_started(&b("news/a"), near, 0, &mut out);
                let offered = |out: &[ListenEffect]| match out.last() {
                    Some(ListenEffect::Offer { to, .. }) => *to,
                    other => panic!("no offer: {other:?}"),
                };
                let first = offered(&out);
                assert_eq!(first.node, near, "near {near}, shuffle {shuffle}: {out:?}");
                l.reject(first, &b("news/.*"), &b("news/a"), 1, &mut out);
                assert_ne!(offered(&out).node, near, "then the others");
            }
        }
    }

    fn setup() -> Listening {
        let mut l = Listening::new(false, 1000);
        let mut out = Vec::new();
        let regex = Arc::new(Regex::new("news/.*").unwrap());
        l.add_listener(
            b("news/.*"),
            regex.clone(),
            A,
            std::iter::empty(),
            0,
            &mut out,
        );
        l.add_listener(b("news/.*"), regex, B, std::iter::empty(), 0, &mut out);
        assert!(out.is_empty());
        l
    }

    /// A provider that claims a name another listener already provides (it was offered the
    /// name under an older home, and its claim came late) is told to stop: one provider a name.
    #[test]
    fn a_late_claim_for_a_name_already_provided_is_stopped() {
        let mut l = setup();
        let mut out = Vec::new();
        l.interest_started(&b("news/a"), LOCAL, 0, &mut out);
        l.accept(A, &b("news/.*"), &b("news/a"), &mut out);
        out.clear();
        l.claim(B, &b("news/.*"), &b("news/a"), &mut out);
        assert_eq!(
            out,
            vec![ListenEffect::Removed {
                to: B,
                pattern: b("news/.*"),
                name: b("news/a")
            }]
        );
        // The provider's own claim (sent again after a sync) changes nothing.
        out.clear();
        l.claim(A, &b("news/.*"), &b("news/a"), &mut out);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn offer_accept_and_stop() {
        let mut l = setup();
        let mut out = Vec::new();
        l.interest_started(&b("news/a"), LOCAL, 0, &mut out);
        assert_eq!(
            out,
            vec![ListenEffect::Offer {
                to: A,
                pattern: b("news/.*"),
                name: b("news/a")
            }]
        );
        out.clear();
        l.accept(A, &b("news/.*"), &b("news/a"), &mut out);
        assert_eq!(
            out,
            vec![ListenEffect::HasProvider {
                name: b("news/a"),
                has: true
            }]
        );
        out.clear();
        l.interest_ended(b"news/a", &mut out);
        assert_eq!(
            out,
            vec![ListenEffect::Removed {
                to: A,
                pattern: b("news/.*"),
                name: b("news/a")
            }]
        );
    }

    #[test]
    fn reject_and_timeout_move_to_the_next_listener() {
        let mut l = setup();
        let mut out = Vec::new();
        l.interest_started(&b("news/a"), LOCAL, 0, &mut out);
        l.reject(A, &b("news/.*"), &b("news/a"), 5, &mut out);
        assert_eq!(
            out[1],
            ListenEffect::Offer {
                to: B,
                pattern: b("news/.*"),
                name: b("news/a")
            }
        );
        out.clear();
        l.tick(900, &mut out);
        assert!(out.is_empty());
        l.tick(1005, &mut out);
        assert!(out.is_empty(), "both tried, nobody left: {out:?}");
        l.rematch(2000, &mut out);
        assert_eq!(
            out,
            vec![ListenEffect::Offer {
                to: A,
                pattern: b("news/.*"),
                name: b("news/a")
            }]
        );
    }

    #[test]
    fn provider_disconnect_rematches_and_late_accept_is_stopped() {
        let mut l = setup();
        let mut out = Vec::new();
        l.interest_started(&b("news/a"), LOCAL, 0, &mut out);
        l.accept(A, &b("news/.*"), &b("news/a"), &mut out);
        out.clear();
        l.conn_closed(A, 10, &mut out);
        assert_eq!(
            out,
            vec![
                ListenEffect::HasProvider {
                    name: b("news/a"),
                    has: false
                },
                ListenEffect::Offer {
                    to: B,
                    pattern: b("news/.*"),
                    name: b("news/a")
                }
            ]
        );
        out.clear();
        l.interest_ended(b"news/a", &mut out);
        assert!(out.is_empty());
        l.accept(B, &b("news/.*"), &b("news/a"), &mut out);
        assert_eq!(
            out,
            vec![ListenEffect::Removed {
                to: B,
                pattern: b("news/.*"),
                name: b("news/a")
            }]
        );
    }

    #[test]
    fn a_new_listener_gets_existing_names() {
        let mut l = Listening::new(false, 1000);
        let mut out = Vec::new();
        let names = [b("x/1"), b("y/1")];
        l.add_listener(
            b("x/.*"),
            Arc::new(Regex::new("x/.*").unwrap()),
            A,
            names.iter(),
            0,
            &mut out,
        );
        assert_eq!(
            out,
            vec![ListenEffect::Offer {
                to: A,
                pattern: b("x/.*"),
                name: b("x/1")
            }]
        );
    }

    #[test]
    fn disconnect_while_offered_moves_on_and_a_listener_without_names_leaves_quietly() {
        let mut l = setup();
        let mut out = Vec::new();
        l.interest_started(&b("news/a"), LOCAL, 0, &mut out);
        out.clear();
        l.conn_closed(A, 1, &mut out);
        assert_eq!(
            out,
            vec![ListenEffect::Offer {
                to: B,
                pattern: b("news/.*"),
                name: b("news/a")
            }]
        );
        out.clear();
        l.conn_closed(B, 2, &mut out);
        assert!(out.is_empty(), "nobody left to offer to: {out:?}");
        l.interest_ended(b"news/a", &mut out);
        assert!(out.is_empty());
        let mut quiet = setup();
        quiet.conn_closed(A, 0, &mut out);
        quiet.remove_listener(b"news/.*", B, 0, &mut out);
        assert!(out.is_empty());
        quiet.interest_started(&b("news/b"), LOCAL, 0, &mut out);
        assert!(out.is_empty(), "no listeners remain");
    }
}
