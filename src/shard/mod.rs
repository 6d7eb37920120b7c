//! A shard: everything one core owns, without I/O. Connections feed it frames, other shards feed
//! it `ShardMsg`s; it fills connection outboxes and per-peer queues that the runtime drains.

pub mod admin;
mod bus;
mod client;
mod cluster_listen;
mod cluster_presence;
mod cluster_record_state;
mod cluster_records;
mod cluster_rpc;
mod held;
pub mod metrics;
pub mod msg;
mod notify;
mod ops;
pub mod outbox;
mod permit;
pub mod records;
mod replies;
pub mod session;
mod waiting;

use crate::config::Config;
use crate::core::ids::{owner_of, ConnId};
use crate::core::interest::{each_shard, Change, LocalSubscribers, ShardInterest};
use crate::core::listen::{ListenEffect, Listening};
use crate::core::presence::{OnlineUsers, PresenceCounts};
use crate::core::rpc::RpcRouter;
use crate::protocol::message::{event_action, presence_action, record_action, topic, Message};
use ahash::{AHashMap, AHashSet};
use bytes::Bytes;
use msg::{Kind, ShardMsg};
use outbox::Outbox;
use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;

/// Messages queued for one peer shard past which this shard is backlogged: the runtime stops
/// reading from this shard's connections until the queue has gone out. Nothing is ever
/// dropped: the queue is bounded by what the connections sent before they were paused.
pub const PEER_BACKLOG: usize = 64 * 1024;

/// How often connections are checked for login and heartbeat deadlines.
const SWEEP_INTERVAL_MS: u64 = 100;
/// Connections one sweep looks at. Every visit reads the connection's outbox, a cache miss
/// each: sweeping all of 19,000 connections every 100 ms held the shard about 0.9 ms each time
/// (a pause every message in flight would feel). A bounded sweep goes on where the last one
/// stopped, so a pass over 19,000 takes about 2 s and over 50,000 about 5 s, which the
/// deadlines it checks (seconds to minutes) do not notice.
pub(crate) const SWEEP_BATCH: usize = 1024;

/// Most shards a server runs: shard sets are 64-bit masks.
pub const MAX_SHARDS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitChallenge,
    AwaitAuth,
    /// Waiting for an auth webhook's answer.
    Authenticating,
    Open,
    Closed,
}

struct Conn {
    outbox: Outbox,
    phase: Phase,
    auth_attempts: u16,
    /// Where this connection is in the sweep's list (`Shard::sweep_order`).
    sweep_slot: u32,
    opened_at: u64,
    /// Who this connection is, as permission rules see it.
    identity: Arc<crate::permission::rules::User>,
    /// Which endpoint it came through (`Config::endpoint`): its login and heartbeat settings;
    /// `API_ENDPOINT` for an HTTP API request (one byte with the endpoint keeps the entry at
    /// 40 bytes).
    endpoint: u8,
    /// Allocated on first use, so a connection that only idles stays small.
    extras: Option<Box<ConnExtras>>,
}

/// What a connection collects once it does more than log in.
#[derive(Default)]
struct ConnExtras {
    /// Names this connection subscribed to, per kind, for teardown.
    subscriptions: [AHashSet<Bytes>; 2],
    presence_users: AHashSet<Bytes>,
    presence_all: bool,
    /// Listen patterns this connection holds, per kind (bounded by
    /// `limits.listenPatternsPerConnection`).
    listens: [AHashSet<Bytes>; 2],
    /// The auth data while a webhook is asked.
    pending_auth: Option<simd_json::OwnedValue>,
    /// Permission results that depend only on name and user.
    permission_cache: permit::DecisionCache,
    /// When the server last pinged it (endpoints whose protocol has the server ping).
    pinged_at: u64,
}

/// `Conn::endpoint` of an HTTP API request, not a socket: it is not in presence, has no
/// heartbeat, and is told when an emit has passed its permission check.
const API_ENDPOINT: u8 = u8::MAX;

impl Conn {
    fn is_api(&self) -> bool {
        self.endpoint == API_ENDPOINT
    }

    /// The login id; empty before login.
    fn user(&self) -> &Bytes {
        &self.identity.id
    }

    fn extras(&mut self) -> &mut ConnExtras {
        self.extras.get_or_insert_with(Box::default)
    }
}

/// One core's state, without I/O (docs/ARCHITECTURE.md, "the sans-I/O contract").
///
/// Inputs, each with the time passed in: `on_client_frame`, `open_conn` / `close_conn`,
/// `on_peer_msg`, `on_store_result`, `on_auth_answer`, `tick`, `request_metrics`. After every
/// input the runtime drains the outputs, all pull-based: `take_outgoing` (messages for peer
/// shards), `take_store_jobs`, `take_auth_jobs`, `take_metrics`; outboxes wake their writers.
pub struct Shard {
    pub id: usize,
    pub shards: usize,
    config: Arc<Config>,
    /// What this shard holds for the connections it accepted.
    conn_side: ConnSide,
    /// What this shard holds for the names it owns.
    owner_side: OwnerSide,
    /// The replica of who is online, kept by every shard from the owners' broadcasts.
    online: OnlineUsers,
    /// Messages for other shards, by shard, drained by the runtime.
    pub outgoing: Vec<Vec<ShardMsg>>,
    /// A queue for a peer has reached `PEER_BACKLOG` since the runtime last took them. Shared
    /// (`backlog_flag`) so connections can check it on every read without reaching into the
    /// shard.
    backlogged: Rc<Cell<bool>>,
    /// The latest time any entry point was given, for work routed within this shard.
    now: u64,
    /// This shard's counters. A `RefCell` so that `&self` paths (sending) can count too.
    metrics: std::cell::RefCell<metrics::Metrics>,
    /// Sums being gathered from every shard, by token: shards yet to answer, the sum so far.
    metrics_gathering: AHashMap<u64, (usize, metrics::Metrics)>,
    /// Sums gathered, for the runtime to take (`take_metrics`).
    metrics_done: Vec<(u64, metrics::Metrics)>,
    /// Admin requests being answered by every shard, and the answers gathered (`shard::admin`).
    admin_gathering: AHashMap<u64, (usize, Vec<admin::AdminAnswer>)>,
    admin_done: Vec<(u64, Vec<admin::AdminAnswer>)>,
    /// The generation of the config in force (admin changes count up from 0).
    config_generation: u64,
    /// Logins and logouts for the session webhook (`admin.sessionWebhook`), as JSON objects.
    session_events: Vec<String>,
    /// What this shard asks of the cluster bus, and the interest it waits to see confirmed.
    bus: bus::BusSide,
    /// Listening across nodes: which names are homed here, reported or provided elsewhere.
    listen_cluster: cluster_listen::ListenCluster,
}

/// Session events a shard keeps for the webhook before it drops (and counts) more.
pub const SESSION_EVENTS_KEPT: usize = 10_000;

/// The connection side: connections, their local subscriptions and presence subscriptions,
/// replies held for remote owners, permission checks waiting for records, logins being
/// checked, and the sweep over deadlines.
#[derive(Default)]
struct ConnSide {
    conns: AHashMap<u32, Conn>,
    next_local: u32,
    local: [LocalSubscribers; 2],
    presence_subscribers: LocalSubscribers,
    presence_all: Vec<u32>,
    /// Subscribe acks waiting for remote owners to confirm.
    held_replies: held::HeldReplies,
    /// Messages waiting for records their permission rules read.
    waiting_checks: AHashMap<u64, permit::WaitingCheck>,
    next_check: u64,
    /// Webhook calls for the runtime to make.
    auth_jobs: Vec<session::AuthJob>,
    /// The identity of a connection before login, shared by all of them.
    anonymous: Arc<crate::permission::rules::User>,
    /// Connections that have not logged in yet (their identity is still `anonymous`).
    awaiting_login: usize,
    /// When connections were last checked for login and heartbeat deadlines.
    last_sweep: u64,
    /// Connections in the order the sweep visits them; a closed one leaves at once (the last
    /// takes its slot), so the list is exactly the live connections.
    sweep_order: Vec<u32>,
    /// Where the next sweep starts in `sweep_order`.
    sweep_cursor: usize,
    /// RPC requests other nodes routed to this shard's connections: (connection, correlation
    /// id) → the routing node, where the provider's answers go.
    remote_rpc_calls: AHashMap<(u32, Bytes), crate::core::ids::NodeId>,
    /// Clients' `record.notify` waiting for the owners of their names.
    notifying: AHashMap<u64, notify::PendingNotify>,
    next_notify: u64,
}

/// The owner side: for the names this shard owns, which shards have subscribers, listening,
/// the live records, RPC routing, presence counts, and logins waiting for every shard to
/// learn the user is online.
struct OwnerSide {
    interest: [ShardInterest; 2],
    listening: [Listening; 2],
    records: records::RecordCache,
    rpc: RpcRouter,
    /// The RPC router's decisions, kept between calls (see `route_rpc`).
    rpc_sends: Vec<crate::core::rpc::Send>,
    presence_counts: PresenceCounts,
    /// In a cluster: the other nodes where the users this shard owns are online.
    remote_presence: crate::core::presence::RemotePresence,
    /// Login answers held until every shard has applied the user's going online.
    pending_logins: AHashMap<ConnId, (usize, Bytes)>,
    /// Records being read again for a notify, by asking shard and token.
    refreshing: AHashMap<(u16, u64), notify::Refreshing>,
    /// Tokens of refreshes for changes followed from the storage.
    next_external: u64,
    last_rematch: u64,
}

pub use replies::ws_frame;

fn kind_topic(kind: Kind) -> i32 {
    match kind {
        Kind::Event => topic::EVENT,
        Kind::Record => topic::RECORD,
    }
}

impl Shard {
    pub fn new(id: usize, shards: usize, config: Arc<Config>) -> Shard {
        let listening = || {
            Listening::new(
                config.listen_shuffle_providers,
                config.listen_response_timeout_ms,
            )
        };
        Shard {
            id,
            shards,
            conn_side: ConnSide::default(),
            owner_side: OwnerSide {
                interest: Default::default(),
                listening: [listening(), listening()],
                records: if config.cluster.is_some() {
                    records::RecordCache::in_cluster()
                } else {
                    records::RecordCache::keeping_idle(config.store.idle_records_kept())
                },
                rpc: RpcRouter::new(config.rpc_ack_timeout_ms, config.rpc_response_timeout_ms),
                rpc_sends: Vec::new(),
                presence_counts: PresenceCounts::default(),
                remote_presence: Default::default(),
                pending_logins: AHashMap::new(),
                refreshing: AHashMap::new(),
                next_external: 0,
                last_rematch: 0,
            },
            online: OnlineUsers::default(),
            outgoing: (0..shards).map(|_| Vec::new()).collect(),
            now: 0,
            backlogged: Rc::default(),
            metrics: Default::default(),
            metrics_gathering: AHashMap::new(),
            metrics_done: Vec::new(),
            admin_gathering: AHashMap::new(),
            admin_done: Vec::new(),
            config_generation: 0,
            session_events: Vec::new(),
            bus: bus::BusSide::new(config.cluster.is_some()),
            listen_cluster: Default::default(),
            config,
        }
    }

    pub fn config_arc(&self) -> Arc<Config> {
        self.config.clone()
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    fn conn_id(&self, local: u32) -> ConnId {
        ConnId::on_this_node(self.id as u16, local)
    }

    /// A new WebSocket connection; returns its local number.
    pub fn open_conn(&mut self, outbox: Outbox, now: u64) -> u32 {
        self.open(outbox, now, 0)
    }

    /// A connection of another endpoint (`Config::endpoint(endpoint)`); its codec turns what
    /// it reads into messages for `on_client_message_of` and what its outbox gets back into
    /// its own protocol.
    pub fn open_conn_on(&mut self, outbox: Outbox, now: u64, endpoint: u8) -> u32 {
        self.open(outbox, now, endpoint.min(API_ENDPOINT - 1))
    }

    /// A connection for one HTTP API request: it logs in with `api_login`, then sends its
    /// items through `on_api_message`; the replies arrive in `outbox` as for a socket.
    pub fn open_api_conn(&mut self, outbox: Outbox, now: u64) -> u32 {
        let local = self.open(outbox, now, API_ENDPOINT);
        if let Some(conn) = self.conn_side.conns.get_mut(&local) {
            conn.phase = Phase::AwaitAuth;
        }
        local
    }

    fn open(&mut self, outbox: Outbox, now: u64, endpoint: u8) -> u32 {
        self.conn_side.next_local = self.conn_side.next_local.wrapping_add(1);
        while self
            .conn_side
            .conns
            .contains_key(&self.conn_side.next_local)
        {
            self.conn_side.next_local = self.conn_side.next_local.wrapping_add(1);
        }
        let local = self.conn_side.next_local;
        self.count(|m| m.connections_opened += 1);
        let sweep_slot = u32::try_from(self.conn_side.sweep_order.len()).unwrap_or(u32::MAX);
        self.conn_side.awaiting_login += 1;
        self.conn_side.sweep_order.push(local);
        self.conn_side.conns.insert(
            local,
            Conn {
                outbox,
                phase: Phase::AwaitChallenge,
                auth_attempts: 0,
                sweep_slot,
                opened_at: now,
                identity: self.conn_side.anonymous.clone(),
                endpoint,
                extras: None,
            },
        );
        local
    }

    pub fn connections(&self) -> usize {
        self.conn_side.conns.len()
    }

    /// Connections that have not logged in yet.
    pub fn awaiting_login(&self) -> usize {
        self.conn_side.awaiting_login
    }

    /// Whether a connection has logged in (and may send messages of full size).
    pub fn logged_in(&self, local: u32) -> bool {
        self.conn_side
            .conns
            .get(&local)
            .is_some_and(|c| !Arc::ptr_eq(&c.identity, &self.conn_side.anonymous))
    }

    /// Notes a login or logout for the session webhook, when one is configured.
    fn session_event(&mut self, event: &str, local: u32, user: &[u8]) {
        if self.config.admin.session_webhook.is_none() {
            return;
        }
        if self.session_events.len() >= SESSION_EVENTS_KEPT {
            self.count(|m| m.session_events_dropped += 1);
            return;
        }
        let time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let user = serde_json::to_string(&String::from_utf8_lossy(user)).unwrap_or_default();
        self.session_events.push(format!(
            "{{\"event\":\"{event}\",\"user\":{user},\"connection\":\"{}:{local}\",\"time\":{time}}}",
            self.id
        ));
    }

    /// Session events for the webhook since the last call.
    #[must_use]
    pub fn take_session_events(&mut self) -> Vec<String> {
        std::mem::take(&mut self.session_events)
    }

    /// Sends `msg` to a connection on any shard.
    /// Runs the RPC router with the shard's reusable output buffer (so routing allocates
    /// nothing) and sends what it decided.
    fn route_rpc(&mut self, decide: impl FnOnce(&mut RpcRouter, &mut Vec<crate::core::rpc::Send>)) {
        let mut sends = std::mem::take(&mut self.owner_side.rpc_sends);
        decide(&mut self.owner_side.rpc, &mut sends);
        for (to, msg) in sends.drain(..) {
            self.send_rpc(to, &msg);
        }
        self.owner_side.rpc_sends = sends;
    }

    fn send(&mut self, to: ConnId, msg: &Message) {
        self.count(|m| m.messages_out.add(msg.topic, msg.action));
        self.send_frame(to, ws_frame(msg));
    }

    /// Bumps this shard's counters.
    #[inline]
    fn count(&self, bump: impl FnOnce(&mut metrics::Metrics)) {
        bump(&mut self.metrics.borrow_mut());
    }

    /// How long one store operation took, as the runtime measured it.
    pub fn record_store_latency(&self, micros: u64) {
        self.count(|m| m.record_store_latency(micros));
    }

    /// This shard's counters as they are now.
    pub fn metrics(&self) -> metrics::Metrics {
        self.metrics.borrow().clone()
    }

    /// Asks every shard for its counters; their sum comes out of `take_metrics` under `token`.
    pub fn request_metrics(&mut self, token: u64) {
        self.metrics_gathering
            .insert(token, (self.shards, metrics::Metrics::default()));
        let reply_to = self.id as u16;
        self.broadcast(ShardMsg::MetricsRequest { token, reply_to });
    }

    /// Sums gathered since the last call.
    #[must_use]
    pub fn take_metrics(&mut self) -> Vec<(u64, metrics::Metrics)> {
        std::mem::take(&mut self.metrics_done)
    }

    fn on_metrics_reply(&mut self, token: u64, part: &metrics::Metrics) {
        let Some((left, sum)) = self.metrics_gathering.get_mut(&token) else {
            return;
        };
        sum.merge(part);
        *left = left.saturating_sub(1);
        if *left == 0 {
            if let Some((_, sum)) = self.metrics_gathering.remove(&token) {
                self.metrics_done.push((token, sum));
            }
        }
    }

    fn send_frame(&mut self, to: ConnId, frame: Bytes) {
        if to.node != crate::core::ids::LOCAL_NODE {
            self.push_bus_request(crate::cluster::BusOut::ToConn {
                conn: to,
                frame,
                rpc_call: None,
            });
        } else if usize::from(to.shard) == self.id {
            if let Some(conn) = self.conn_side.conns.get(&to.local) {
                conn.outbox.push(frame);
            }
        } else {
            self.route(usize::from(to.shard), ShardMsg::ToConn { conn: to, frame });
        }
    }

    fn send_local(&self, local: u32, msg: &Message) {
        if let Some(conn) = self.conn_side.conns.get(&local) {
            self.count(|m| m.messages_out.add(msg.topic, msg.action));
            conn.outbox.push(ws_frame(msg));
        }
    }

    fn send_frames_local(&self, local: u32, frames: Vec<Bytes>) {
        if let Some(conn) = self.conn_side.conns.get(&local) {
            for frame in frames {
                conn.outbox.push(frame);
            }
        }
    }

    /// Hands a message to shard `to`: at once if that is this shard, else through the mesh.
    fn route(&mut self, to: usize, msg: ShardMsg) {
        if to == self.id {
            self.on_peer_msg(msg, self.now);
        } else if let Some(queue) = self.outgoing.get_mut(to) {
            queue.push(msg);
            if queue.len() >= PEER_BACKLOG {
                self.backlogged.set(true);
            }
        } else {
            self.count(|m| m.dropped_peer_messages += 1);
            crate::log!(
                crate::log::Level::Error,
                "DROPPED_PEER_MESSAGE",
                "shard {}: a message for shard {to}, which does not exist, was dropped",
                self.id
            );
        }
    }

    /// True while a queue for a peer is long: the runtime reads no more client input on this
    /// shard until it has taken the queues (`take_outgoing`) and the peers have caught up.
    pub fn backlogged(&self) -> bool {
        self.backlogged.get()
    }

    /// The `backlogged` flag itself, for the runtime's read side.
    pub fn backlog_flag(&self) -> Rc<Cell<bool>> {
        self.backlogged.clone()
    }

    /// The messages queued for each peer, for the runtime to send.
    #[must_use]
    pub fn take_outgoing(&mut self) -> Vec<(usize, Vec<ShardMsg>)> {
        self.backlogged.set(false);
        self.outgoing
            .iter_mut()
            .enumerate()
            .filter(|(_, q)| !q.is_empty())
            .map(|(peer, q)| (peer, std::mem::take(q)))
            .collect()
    }

    fn broadcast(&mut self, msg: ShardMsg) {
        for shard in 0..self.shards {
            self.route(shard, msg.clone());
        }
    }

    fn owner(&self, name: &[u8]) -> usize {
        owner_of(name, self.shards)
    }

    /// Handles a message from another shard (or this one): owner-bound messages go to the
    /// owner side's dispatcher, the rest to the connection side's.
    pub fn on_peer_msg(&mut self, msg: ShardMsg, now: u64) {
        self.now = self.now.max(now);
        let now = self.now;
        if matches!(
            msg,
            ShardMsg::Op { .. }
                | ShardMsg::RuleRead { .. }
                | ShardMsg::Emit { .. }
                | ShardMsg::Interest { .. }
                | ShardMsg::Listen { .. }
                | ShardMsg::Unlisten { .. }
                | ShardMsg::PresenceLogin { .. }
                | ShardMsg::PresenceApplied { .. }
                | ShardMsg::MetricsRequest { .. }
                | ShardMsg::AdminRequest { .. }
                | ShardMsg::ConnClosed { .. }
                | ShardMsg::Refresh { .. }
                | ShardMsg::Barrier { .. }
        ) {
            self.on_owner_msg(msg, now);
        } else {
            self.on_conn_msg(msg, now);
        }
    }

    /// The owner side: messages about names this shard owns, and what every shard applies as
    /// an owner (listeners, closed connections' providers and calls).
    fn on_owner_msg(&mut self, msg: ShardMsg, now: u64) {
        match msg {
            ShardMsg::Op {
                msg,
                from,
                user,
                refs,
            } => self.on_owner_op(msg, from, user.as_deref(), refs.as_deref(), now),
            ShardMsg::RuleRead {
                names,
                token,
                reply_to,
            } => self.on_rule_read(names, token, reply_to),
            ShardMsg::Refresh {
                names,
                token,
                reply_to,
            } => self.on_refresh(names, token, reply_to),
            ShardMsg::Emit { name, data, from } => {
                let out = Message {
                    name: Some(name.clone()),
                    data,
                    ..Message::new(topic::EVENT, event_action::EMIT)
                };
                let frame = ws_frame(&out);
                if self.bus.on {
                    self.publish_to_bus(Kind::Event, &name, frame.clone());
                }
                self.fan_out(Kind::Event, &name, frame, Some(from));
            }
            ShardMsg::Interest {
                kind,
                name,
                shard,
                on,
                confirm,
            } => {
                let edge =
                    self.owner_side.interest[kind as usize].set(&name, usize::from(shard), on)
                        == Change::Edge;
                self.bus_interest(kind, &name, on, edge, confirm.map(|token| (shard, token)));
                if edge {
                    if !on && kind == Kind::Record {
                        self.owner_side.records.evict_if_idle(&name, false);
                    }
                    self.listen_interest_edge(kind, &name, on, now);
                }
            }
            ShardMsg::Listen {
                kind,
                pattern,
                regex,
                conn,
            } => {
                let Some(regex) = regex else { return };
                self.on_listener_added(kind, pattern, regex, conn, now);
            }
            ShardMsg::Unlisten {
                kind,
                pattern,
                conn,
            } => self.on_listener_removed(kind, &pattern, conn, now),
            ShardMsg::PresenceLogin { user, login, reply } => {
                self.on_presence_login(user, login, reply)
            }
            ShardMsg::PresenceApplied { login, .. } => self.login_step_done(login),
            ShardMsg::Barrier {
                shard,
                token,
                names,
            } => self.pass_barrier(shard, token, names),
            ShardMsg::MetricsRequest { token, reply_to } => {
                let mut metrics = Box::new(self.metrics());
                metrics.shards = vec![metrics::ShardGauges {
                    shard: self.id as u16,
                    connections: self.conn_side.conns.len() as u64,
                    records_in_memory: self.owner_side.records.in_memory() as u64,
                    deliveries: metrics.deliveries,
                    peer_queue: self.outgoing.iter().map(Vec::len).sum::<usize>() as u64,
                }];
                self.route(
                    usize::from(reply_to),
                    ShardMsg::MetricsReply { token, metrics },
                );
            }
            ShardMsg::AdminRequest {
                token,
                reply_to,
                op,
            } => self.on_admin_request(token, reply_to, op),
            ShardMsg::ConnClosed { conn } => {
                self.unprovide_everywhere(conn);
                self.route_rpc(|rpc, out| rpc.conn_closed(conn, now, out));
                for kind in [Kind::Event, Kind::Record] {
                    self.forget_providing(kind, conn, None);
                    let mut effects = Vec::new();
                    self.owner_side.listening[kind as usize].conn_closed(conn, now, &mut effects);
                    self.apply_listen_effects(kind, effects);
                }
            }
            _ => {}
        }
    }

    /// The connection side: deliveries, answers and replicas for this shard's connections.
    fn on_conn_msg(&mut self, msg: ShardMsg, now: u64) {
        match msg {
            ShardMsg::RuleData { token, records } => self.on_rule_data(token, records, now),
            ShardMsg::Refreshed { token, failed } => self.on_refreshed(token, failed),
            ShardMsg::Deliver {
                kind,
                name,
                frame,
                exclude,
            } => {
                let skip = exclude
                    .filter(|c| usize::from(c.shard) == self.id)
                    .map(|c| c.local);
                let mut delivered = 0;
                for local in self.conn_side.local[kind as usize].get(&name) {
                    if Some(*local) != skip {
                        if let Some(conn) = self.conn_side.conns.get(local) {
                            conn.outbox.push(frame.clone());
                            delivered += 1;
                        }
                    }
                }
                self.count(|m| m.deliveries += delivered);
            }
            ShardMsg::ToConn { conn, frame } => {
                if let Some(c) = self.conn_side.conns.get(&conn.local) {
                    c.outbox.push(frame);
                }
            }
            ShardMsg::PresenceChanged {
                user,
                online,
                login,
            } => {
                self.on_presence_changed(user.clone(), online);
                if let Some(login) = login {
                    let owner = self.owner(&user);
                    self.route(owner, ShardMsg::PresenceApplied { user, login });
                }
            }
            ShardMsg::InterestApplied { token } => {
                if let Some((local, frames)) = self.conn_side.held_replies.confirmed(token) {
                    self.send_frames_local(local, frames);
                }
            }
            ShardMsg::MetricsReply { token, metrics } => self.on_metrics_reply(token, &metrics),
            ShardMsg::AdminReply { token, answer } => self.on_admin_reply(token, *answer),
            _ => {}
        }
        let _ = now;
    }

    fn apply_listen_effects(&mut self, kind: Kind, effects: Vec<ListenEffect>) {
        let topic = kind_topic(kind);
        let (found, removed) = match kind {
            Kind::Event => (
                event_action::SUBSCRIPTION_FOR_PATTERN_FOUND,
                event_action::SUBSCRIPTION_FOR_PATTERN_REMOVED,
            ),
            Kind::Record => (
                record_action::SUBSCRIPTION_FOR_PATTERN_FOUND,
                record_action::SUBSCRIPTION_FOR_PATTERN_REMOVED,
            ),
        };
        for effect in effects {
            match effect {
                ListenEffect::Offer { to, pattern, name } => {
                    let msg = Message {
                        name: Some(pattern),
                        subscription: Some(name),
                        ..Message::new(topic, found)
                    };
                    self.send(to, &msg);
                }
                ListenEffect::Removed { to, pattern, name }
                    if to.node != crate::core::ids::LOCAL_NODE =>
                {
                    // Through the listener's node, which keeps what its listeners provide.
                    let op = crate::cluster::ListenOp::Removed { conn: to, pattern };
                    self.push_bus_request(crate::cluster::BusOut::Listen {
                        node: to.node,
                        kind,
                        name,
                        op,
                    });
                }
                ListenEffect::Removed { to, pattern, name } => {
                    let msg = Message {
                        name: Some(pattern),
                        subscription: Some(name),
                        ..Message::new(topic, removed)
                    };
                    self.send(to, &msg);
                }
                ListenEffect::HasProvider { name, has } => {
                    self.tell_subscribers_provider(kind, &name, has);
                    self.tell_nodes_provider(kind, &name, has);
                }
            }
        }
    }

    /// Sends an encoded frame to every shard with subscribers of `name` (owner side).
    fn fan_out(&mut self, kind: Kind, name: &Bytes, frame: Bytes, exclude: Option<ConnId>) {
        for shard in each_shard(self.owner_side.interest[kind as usize].shards(name)) {
            self.route(
                shard,
                ShardMsg::Deliver {
                    kind,
                    name: name.clone(),
                    frame: frame.clone(),
                    exclude,
                },
            );
        }
    }

    fn on_presence_changed(&mut self, user: Bytes, online: bool) {
        self.online.set(user.clone(), online);
        let (one, all) = if online {
            (
                presence_action::PRESENCE_JOIN,
                presence_action::PRESENCE_JOIN_ALL,
            )
        } else {
            (
                presence_action::PRESENCE_LEAVE,
                presence_action::PRESENCE_LEAVE_ALL,
            )
        };
        let frame = ws_frame(&Message {
            name: Some(user.clone()),
            ..Message::new(topic::PRESENCE, one)
        });
        for local in self.conn_side.presence_subscribers.get(&user) {
            if let Some(conn) = self.conn_side.conns.get(local) {
                conn.outbox.push(frame.clone());
            }
        }
        let frame = ws_frame(&Message {
            name: Some(user.clone()),
            ..Message::new(topic::PRESENCE, all)
        });
        for local in &self.conn_side.presence_all {
            if let Some(conn) = self.conn_side.conns.get(local) {
                if *conn.user() != user {
                    conn.outbox.push(frame.clone());
                }
            }
        }
    }

    /// Periodic work: login and listen deadlines, RPC timeouts, listen rematching.
    pub fn tick(&mut self, now: u64) {
        self.now = self.now.max(now);
        if now.saturating_sub(self.conn_side.last_sweep) >= SWEEP_INTERVAL_MS {
            self.conn_side.last_sweep = now;
            self.sweep_connections(now);
        }
        self.route_rpc(|rpc, out| rpc.tick(now, out));
        let rematch = now.saturating_sub(self.owner_side.last_rematch)
            >= self.config.listen_rematch_interval_ms;
        for kind in [Kind::Event, Kind::Record] {
            let mut effects = Vec::new();
            self.owner_side.listening[kind as usize].tick(now, &mut effects);
            if rematch {
                self.owner_side.listening[kind as usize].rematch(now, &mut effects);
            }
            self.apply_listen_effects(kind, effects);
        }
        if rematch {
            self.owner_side.last_rematch = now;
        }
        if self.bus.on {
            self.listen_settle_tick(now);
            self.recheck_tick(now);
        }
    }

    /// Takes a closed connection out of the sweep's list; the last entry moves into its slot.
    fn leave_sweep(&mut self, local: u32, slot: u32) {
        let slot = slot as usize;
        if self.conn_side.sweep_order.get(slot) != Some(&local) {
            debug_assert!(false, "sweep slot of {local} out of date");
            self.conn_side.sweep_order.retain(|l| *l != local);
            return;
        }
        self.conn_side.sweep_order.swap_remove(slot);
        if let Some(moved) = self.conn_side.sweep_order.get(slot).copied() {
            if let Some(conn) = self.conn_side.conns.get_mut(&moved) {
                conn.sweep_slot = slot as u32;
            }
        }
    }

    /// A connection is gone: its subscriptions, presence and everything other shards hold.
    pub fn close_conn(&mut self, local: u32) {
        let Some(conn) = self.conn_side.conns.remove(&local) else {
            return;
        };
        let slow = conn
            .outbox
            .closing()
            .is_some_and(|(_, r)| r == outbox::SLOW_CONSUMER);
        self.count(|m| {
            m.connections_closed += 1;
            m.slow_consumer_closes += u64::from(slow);
        });
        self.leave_sweep(local, conn.sweep_slot);
        if Arc::ptr_eq(&conn.identity, &self.conn_side.anonymous) {
            self.conn_side.awaiting_login -= 1;
        }
        let me = self.conn_id(local);
        self.conn_side.held_replies.forget(local);
        self.forget_remote_calls(local);
        if let Some(extras) = &conn.extras {
            for kind in [Kind::Event, Kind::Record] {
                for name in &extras.subscriptions[kind as usize] {
                    self.unsubscribe_local(kind, name, local);
                }
            }
            for user in &extras.presence_users {
                self.conn_side.presence_subscribers.remove(user, local);
            }
            if extras.presence_all {
                self.conn_side.presence_all.retain(|c| *c != local);
            }
        }
        // Only a logged-in socket has a user in presence; anonymous ones and API requests not.
        let user = conn.user();
        if !conn.is_api() && conn.phase != Phase::AwaitChallenge && !user.is_empty() {
            self.session_event("logout", local, user);
        }
        if !conn.is_api() && !user.is_empty() && user != crate::auth::OPEN_USER.as_bytes() {
            let owner = self.owner(user);
            self.route(
                owner,
                ShardMsg::PresenceLogin {
                    user: user.clone(),
                    login: false,
                    reply: None,
                },
            );
        }
        if let Some(extras) = &conn.extras {
            for kind in [Kind::Event, Kind::Record] {
                for pattern in &extras.listens[kind as usize] {
                    self.publish_listener(kind, pattern, me, false);
                }
            }
        }
        self.broadcast(ShardMsg::ConnClosed { conn: me });
    }

    fn subscribe_local(&mut self, kind: Kind, name: &Bytes, local: u32) -> bool {
        self.set_local_subscription(kind, name, local, true)
    }

    fn unsubscribe_local(&mut self, kind: Kind, name: &Bytes, local: u32) -> bool {
        self.set_local_subscription(kind, name, local, false)
    }

    /// Adds or removes a local subscriber; the owner hears only of the first and the last.
    fn set_local_subscription(&mut self, kind: Kind, name: &Bytes, local: u32, on: bool) -> bool {
        let list = &mut self.conn_side.local[kind as usize];
        let change = if on {
            list.add(name, local)
        } else {
            list.remove(name, local)
        };
        match change {
            Change::Unchanged => return false,
            Change::Edge => {
                let owner = self.owner(name);
                // A subscriber's ack waits until a remote owner knows of the subscription, so
                // an emit made after the ack always reaches it.
                let confirm = match self.conn_side.held_replies.collecting {
                    // In a cluster, the owner may also wait for the bus to route the name here.
                    Some(token) if on && (owner != self.id || self.bus.on) => {
                        self.conn_side.held_replies.expect_confirmation(token);
                        Some(token)
                    }
                    _ => None,
                };
                let interest = ShardMsg::Interest {
                    kind,
                    name: name.clone(),
                    shard: self.id as u16,
                    on,
                    confirm,
                };
                self.route(owner, interest);
            }
            Change::Changed => {}
        }
        if let Some(conn) = self.conn_side.conns.get_mut(&local) {
            if on {
                conn.extras().subscriptions[kind as usize].insert(crate::core::detach(name));
            } else if let Some(extras) = conn.extras.as_mut() {
                extras.subscriptions[kind as usize].remove(name);
            }
        }
        true
    }
}

impl Shard {
    /// Parked sockets that have bytes: their connections run again.
    pub fn sockets_readable(&self, locals: &[u32]) {
        for local in locals {
            if let Some(conn) = self.conn_side.conns.get(local) {
                conn.outbox.mark_readable();
            }
        }
    }

    /// Server shutdown: every connection is closed after what is queued for it.
    pub fn close_all(&self, code: u16, reason: &'static str) {
        for conn in self.conn_side.conns.values() {
            conn.outbox.close(code, reason);
        }
    }

    /// The client sent more than maxMessageSize: tell it why before the 1009 close.
    pub fn on_oversize(&mut self, local: u32) {
        let reply = Message::new(
            topic::PARSER,
            crate::protocol::message::parser_action::MAXIMUM_MESSAGE_SIZE_EXCEEDED,
        );
        self.send_local(local, &reply);
    }
}

#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;
