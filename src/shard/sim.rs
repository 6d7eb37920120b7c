//! A deterministic simulation of a cluster (issue 27). Several nodes' shards run in one thread
//! against a simulated NATS: a bus that delivers with seeded delays (in order per sender and
//! receiver, as one NATS connection does), a key-value bucket that compares and sets on
//! revisions, and a clock that only the simulation moves. The seed also picks the faults: links
//! cut (requests unanswered until the timeout, replies lost after the bucket applied them,
//! publishes lost), nodes crashed and restarted, and delays long enough to reorder a bucket's
//! answer behind another node's change. Clients write (acknowledged patches), subscribe and
//! read; the checker holds the promises of the fault suite: nothing acknowledged lost, one
//! content per version, no version going back at a subscriber, every node and the bucket
//! agree at the end, every write answered within its bound. A failing seed prints itself and
//! replays exactly (`SIM_SEED=n cargo test --lib sim::one_seed`).

use super::outbox::Outbox;
use super::Shard;
use crate::cluster::{BusIn, BusOut, CasResult, KvRecord};
use crate::config::Config;
use crate::protocol::message::{
    auth_action, connection_action, record_action as ra, topic, Message,
};
use crate::store::{MemoryStore, StoredRecord};
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The bucket's request timeout (the cluster's `requestTimeout`) in simulated ms.
const REQUEST_TIMEOUT: u64 = 1000;
/// A write answered later than this (simulated ms) breaks a promise: the write it waited
/// behind times out (or keeps losing to other nodes' writes for the request timeout), then its
/// own does, plus the ticks that check deadlines; beside that, `CONFLICT_ROUNDS` bucket round
/// trips (a write in flight when the streak of losses ends).
const ANSWER_BOUND: u64 = 2 * REQUEST_TIMEOUT + 200;
const CONFLICT_ROUNDS: u64 = 2;
const TICK_MS: u64 = 50;
/// How long after a node's death the others take it for dead (`nodeTimeout`).
const NODE_TIMEOUT: u64 = 1500;
const RECORDS: [&str; 3] = ["sim/a", "sim/b", "sim/c"];

/// splitmix64: small, fast, and the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// In `low..=high`.
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// What the seed chose.
#[derive(Debug, Clone)]
struct Plan {
    nodes: usize,
    writers_per_node: usize,
    /// Bus and bucket delays (ms) are drawn from `1..=max_delay`.
    max_delay: u64,
    /// Link outages: (node, from, to).
    outages: Vec<(usize, u64, u64)>,
    /// Crashes: (node, at, restarted at).
    crashes: Vec<(usize, u64, u64)>,
    /// How long clients run (simulated ms).
    run_for: u64,
}

impl Plan {
    fn of(rng: &mut Rng) -> Plan {
        let nodes = rng.between(2, 4) as usize;
        let run_for = rng.between(3_000, 8_000);
        let mut outages = Vec::new();
        for _ in 0..rng.between(0, 2) {
            let from = rng.between(200, run_for);
            outages.push((
                rng.between(0, nodes as u64 - 1) as usize,
                from,
                from + rng.between(50, 3_000),
            ));
        }
        let mut crashes = Vec::new();
        if rng.chance(40) {
            let at = rng.between(200, run_for);
            crashes.push((
                rng.between(0, nodes as u64 - 1) as usize,
                at,
                at + rng.between(100, 2_000),
            ));
        }
        Plan {
            nodes,
            writers_per_node: rng.between(1, 3) as usize,
            max_delay: [2, 5, 20, 200][rng.between(0, 3) as usize],
            outages,
            crashes,
            run_for,
        }
    }
}

enum Event {
    /// A bus message reaches node `node` (lost if the node died since: `life` differs).
    Deliver {
        node: usize,
        life: u32,
        msg: BusIn,
    },
    /// A compare-and-set reaches the bucket.
    Cas {
        node: usize,
        life: u32,
        name: Bytes,
        expected: u64,
        record: Option<StoredRecord>,
        sent: u64,
    },
    /// A read (or a recheck) reaches the bucket.
    Read {
        node: usize,
        life: u32,
        name: Bytes,
        sent: u64,
        recheck: bool,
    },
    Client(usize),
    Tick(usize),
    LinkDown(usize),
    LinkUp(usize),
    Crash(usize),
    Restart(usize),
    /// Every live node learns who is alive.
    Members,
}

struct Node {
    shard: Option<Shard>,
    store: MemoryStore,
    life: u32,
    link_up: bool,
    /// Record names this node's shard subscribed to on the bus.
    interest: BTreeSet<Bytes>,
    /// When the last bus message to it (per sender) is delivered: NATS keeps one sender's
    /// order to one receiver.
    last_delivery: BTreeMap<usize, u64>,
}

impl Node {
    fn id(&self, index: usize) -> u32 {
        index as u32 + 1 + 16 * self.life
    }
}

enum Role {
    Writer {
        id: usize,
        n: u64,
        pending: Option<(Bytes, u64, String, u64)>,
    },
    Subscriber,
    Reader {
        answers: BTreeMap<String, (i32, serde_json::Value)>,
    },
}

struct Client {
    node: usize,
    local: u32,
    outbox: Outbox,
    role: Role,
    logged_in: bool,
    gone: bool,
    /// Per record: the version and content the client holds (subscribers).
    contents: BTreeMap<String, (i32, Option<serde_json::Value>)>,
}

#[derive(Default)]
struct Checks {
    broken: Vec<String>,
    /// (record, version) → content, from every subscriber and reader.
    contents: BTreeMap<(String, i32), String>,
    /// Per writer and record: the highest number acknowledged.
    acked: BTreeMap<(usize, String), u64>,
    acks: usize,
    refused: usize,
}

impl Checks {
    fn one_content(&mut self, record: &str, version: i32, content: &serde_json::Value, who: &str) {
        let text = content.to_string();
        match self.contents.get(&(record.to_string(), version)) {
            Some(known) if *known != text => self.broken.push(format!(
                "{record} v{version}: {who} has {text}, elsewhere {known}"
            )),
            Some(_) => {}
            None => {
                self.contents.insert((record.to_string(), version), text);
            }
        }
    }
}

struct Sim {
    rng: Rng,
    now: u64,
    seq: u64,
    queue: BTreeMap<(u64, u64), Event>,
    nodes: Vec<Node>,
    clients: Vec<Client>,
    bucket: Bucket,
    config: Arc<Config>,
    checks: Checks,
    plan: Plan,
    /// Whether clients still start writes.
    running: bool,
}

fn brief(msg: &BusIn) -> String {
    let text = format!("{msg:?}");
    text.chars().take(160).collect()
}

/// A simulated records bucket: one revision counter for every key and a compare-and-set on
/// a key's revision, as a JetStream key-value bucket has.
#[derive(Default)]
pub(super) struct Bucket {
    pub entries: BTreeMap<Bytes, (u64, Option<StoredRecord>)>,
    pub revision: u64,
}

impl Bucket {
    /// What a read of `name` answers.
    pub fn kv(&self, name: &Bytes) -> KvRecord {
        match self.entries.get(name) {
            Some((revision, record)) => KvRecord {
                revision: *revision,
                record: record.clone(),
                in_bucket: true,
            },
            None => KvRecord {
                revision: 0,
                record: None,
                in_bucket: false,
            },
        }
    }

    /// Writes `record` if `name` is still at `expected`; else what it holds.
    pub fn cas(&mut self, name: &Bytes, expected: u64, record: Option<StoredRecord>) -> CasResult {
        let current = self.kv(name);
        if current.revision != expected {
            return CasResult::Conflict(current);
        }
        self.revision += 1;
        self.entries.insert(name.clone(), (self.revision, record));
        CasResult::Written(self.revision)
    }
}

fn read_answer(name: Bytes, result: Result<KvRecord, String>, recheck: bool) -> BusIn {
    if recheck {
        BusIn::Rechecked { name, result }
    } else {
        BusIn::Read { name, result }
    }
}

fn frame_payload(frame: &Bytes) -> Bytes {
    let header = match frame.get(1).map(|b| b & 0x7f) {
        Some(126) => 4,
        Some(127) => 10,
        _ => 2,
    };
    frame.slice(header.min(frame.len())..)
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut rng = Rng(seed);
        let plan = Plan::of(&mut rng);
        let config = Arc::new(Config {
            cluster: Some(crate::config::cluster::ClusterConfig {
                request_timeout_ms: REQUEST_TIMEOUT,
                ..Default::default()
            }),
            ..Config::default()
        });
        let nodes = (0..plan.nodes)
            .map(|_| Node {
                shard: Some(Shard::new(0, 1, config.clone())),
                store: MemoryStore::default(),
                life: 0,
                link_up: true,
                interest: BTreeSet::new(),
                last_delivery: BTreeMap::new(),
            })
            .collect();
        let mut sim = Sim {
            rng,
            now: 0,
            seq: 0,
            queue: BTreeMap::new(),
            nodes,
            clients: Vec::new(),
            bucket: Bucket::default(),
            config,
            checks: Checks::default(),
            plan,
            running: true,
        };
        sim.tell_members();
        for node in 0..sim.plan.nodes {
            sim.at(TICK_MS, Event::Tick(node));
            sim.connect(node, Role::Subscriber);
            for _ in 0..sim.plan.writers_per_node {
                let id = sim.writer_count();
                sim.connect(
                    node,
                    Role::Writer {
                        id,
                        n: 0,
                        pending: None,
                    },
                );
            }
        }
        for (node, from, to) in sim.plan.outages.clone() {
            sim.at(from, Event::LinkDown(node));
            sim.at(to, Event::LinkUp(node));
        }
        for (node, at, back) in sim.plan.crashes.clone() {
            sim.at(at, Event::Crash(node));
            sim.at(back, Event::Restart(node));
        }
        sim
    }

    fn writer_count(&self) -> usize {
        self.clients
            .iter()
            .filter(|c| matches!(c.role, Role::Writer { .. }))
            .count()
    }

    fn at(&mut self, time: u64, event: Event) {
        self.seq += 1;
        self.queue.insert((time, self.seq), event);
    }

    fn delay(&mut self) -> u64 {
        self.rng.between(1, self.plan.max_delay)
    }

    /// A bus message from `from` (`None`: the bucket) to `node`, after a delay, in order per
    /// sender.
    fn deliver(&mut self, from: Option<usize>, node: usize, msg: BusIn) {
        let life = self.nodes[node].life;
        let sender = from.unwrap_or(usize::MAX);
        let mut time = self.now + self.delay();
        if let Some(last) = self.nodes[node].last_delivery.get(&sender) {
            time = time.max(*last);
        }
        self.nodes[node].last_delivery.insert(sender, time);
        self.at(time, Event::Deliver { node, life, msg });
    }

    fn tell_members(&mut self) {
        let alive: Vec<u32> = (0..self.nodes.len())
            .filter(|i| self.nodes[*i].shard.is_some())
            .map(|i| self.nodes[i].id(i))
            .collect();
        for i in 0..self.nodes.len() {
            if self.nodes[i].shard.is_some() {
                let me = self.nodes[i].id(i);
                let nodes = alive.clone();
                self.with_shard(i, |shard, now| {
                    shard.on_bus(
                        BusIn::Members {
                            me,
                            nodes,
                            settle_ms: 0,
                        },
                        now,
                    )
                });
            }
        }
    }

    fn connect(&mut self, node: usize, role: Role) {
        let outbox = Outbox::new(1 << 24, self.now);
        let now = self.now;
        let Some(shard) = self.nodes[node].shard.as_mut() else {
            return;
        };
        let local = shard.open_conn(outbox.clone(), now);
        let client = self.clients.len();
        self.clients.push(Client {
            node,
            local,
            outbox,
            role,
            logged_in: false,
            gone: false,
            contents: BTreeMap::new(),
        });
        let user = format!("user-{client}");
        self.send(
            client,
            &Message::new(topic::CONNECTION, connection_action::CHALLENGE),
        );
        self.send(
            client,
            &Message {
                data: Some(Bytes::from(format!(r#"{{"username":"{user}"}}"#))),
                ..Message::new(topic::AUTH, auth_action::REQUEST)
            },
        );
    }

    fn send(&mut self, client: usize, msg: &Message) {
        let (node, local) = (self.clients[client].node, self.clients[client].local);
        let frame = msg.encode();
        self.with_shard(node, |shard, now| shard.on_client_frame(local, &frame, now));
    }

    /// Runs `f` on a live node's shard, then carries out what it asked of the store and the
    /// bus.
    fn with_shard(&mut self, node: usize, f: impl FnOnce(&mut Shard, u64)) {
        let now = self.now;
        let Some(shard) = self.nodes[node].shard.as_mut() else {
            return;
        };
        f(shard, now);
        self.drain(node);
    }

    fn drain(&mut self, node: usize) {
        let now = self.now;
        loop {
            let Node { shard, store, .. } = &mut self.nodes[node];
            let Some(shard) = shard.as_mut() else {
                return;
            };
            shard.run_store_jobs_inline(store, now);
            let requests = shard.take_bus_out();
            if requests.is_empty() {
                return;
            }
            for request in requests {
                self.carry(node, request);
            }
        }
    }

    /// One bus request of `node`, as NATS would carry it.
    fn carry(&mut self, node: usize, request: BusOut) {
        let life = self.nodes[node].life;
        let up = self.nodes[node].link_up;
        let sent = self.now;
        match request {
            BusOut::Interest {
                name, on, confirm, ..
            } => {
                // async-nats keeps the subscription and makes it again on reconnect.
                if on {
                    self.nodes[node].interest.insert(name);
                } else {
                    self.nodes[node].interest.remove(&name);
                }
                if let Some(token) = confirm {
                    self.confirm(node, BusIn::Confirmed { token });
                }
            }
            BusOut::Presence {
                confirm: Some(login),
                ..
            } => self.confirm(node, BusIn::PresenceConfirmed { login }),
            BusOut::Barrier { shard, token, .. } => {
                self.deliver(None, node, BusIn::BarrierPassed { shard, token });
            }
            BusOut::Cas {
                name,
                expected,
                record,
            } => {
                if up {
                    let time = self.now + self.delay();
                    self.at(
                        time,
                        Event::Cas {
                            node,
                            life,
                            name,
                            expected,
                            record,
                            sent,
                        },
                    );
                } else {
                    self.unanswered(
                        node,
                        life,
                        sent,
                        BusIn::Cas {
                            name,
                            result: CasResult::Unreachable("simulated: link down".into()),
                        },
                    );
                }
            }
            BusOut::Read { name } => self.read(node, name, false),
            BusOut::Recheck { name } => self.read(node, name, true),
            BusOut::PublishRecord { name, change } => {
                if !up {
                    return;
                }
                for other in 0..self.nodes.len() {
                    if other != node && self.nodes[other].interest.contains(&name) {
                        let msg = BusIn::RecordChanged {
                            name: name.clone(),
                            change: change.clone(),
                        };
                        self.deliver(Some(node), other, msg);
                    }
                }
            }
            _ => {}
        }
    }

    fn read(&mut self, node: usize, name: Bytes, recheck: bool) {
        let (life, sent) = (self.nodes[node].life, self.now);
        if self.nodes[node].link_up {
            let time = self.now + self.delay();
            self.at(
                time,
                Event::Read {
                    node,
                    life,
                    name,
                    sent,
                    recheck,
                },
            );
        } else {
            let msg = read_answer(name, Err("simulated: link down".into()), recheck);
            self.unanswered(node, life, sent, msg);
        }
    }

    /// A confirmation the bus sends back to `node` (at once, or after the timeout while its
    /// link is down).
    fn confirm(&mut self, node: usize, msg: BusIn) {
        let life = self.nodes[node].life;
        let wait = if self.nodes[node].link_up {
            0
        } else {
            REQUEST_TIMEOUT
        };
        let time = self.now + wait + self.delay();
        self.at(time, Event::Deliver { node, life, msg });
    }

    /// The answer a request gets when it never reaches the bucket, or its reply is lost: the
    /// timeout's.
    fn unanswered(&mut self, node: usize, life: u32, sent: u64, msg: BusIn) {
        self.at(sent + REQUEST_TIMEOUT, Event::Deliver { node, life, msg });
    }

    /// The bucket answers `node`, unless its link is down by then (the reply is lost and the
    /// request times out).
    fn reply(&mut self, node: usize, life: u32, sent: u64, msg: BusIn, lost: BusIn) {
        let time = self.now + self.delay();
        if self.nodes[node].link_up && self.nodes[node].life == life {
            self.at(time, Event::Deliver { node, life, msg });
        } else {
            self.unanswered(node, life, sent, lost);
        }
    }

    fn kv(&self, name: &Bytes) -> KvRecord {
        self.bucket.kv(name)
    }

    fn step(&mut self, event: Event) {
        if std::env::var_os("SIM_TRACE").is_some() {
            match &event {
                Event::Deliver { node, msg, .. } => {
                    println!("{} deliver to {node}: {}", self.now, brief(msg))
                }
                Event::Cas {
                    node,
                    name,
                    expected,
                    ..
                } => println!(
                    "{} bucket cas from {node} {name:?} expected {expected} (bucket {})",
                    self.now,
                    self.kv(name).revision
                ),
                Event::Client(c) => println!("{} client {c} acts", self.now),
                _ => {}
            }
        }
        match event {
            Event::Deliver { node, life, msg } => {
                if self.nodes[node].life == life {
                    self.with_shard(node, |shard, now| shard.on_bus(msg, now));
                }
            }
            Event::Cas {
                node,
                life,
                name,
                expected,
                record,
                sent,
            } => {
                let result = self.bucket.cas(&name, expected, record);
                let lost = BusIn::Cas {
                    name: name.clone(),
                    result: CasResult::Unreachable("simulated: reply lost".into()),
                };
                self.reply(node, life, sent, BusIn::Cas { name, result }, lost);
            }
            Event::Read {
                node,
                life,
                name,
                sent,
                recheck,
            } => {
                let result = Ok(self.kv(&name));
                let lost = read_answer(name.clone(), Err("simulated: reply lost".into()), recheck);
                self.reply(node, life, sent, read_answer(name, result, recheck), lost);
            }
            Event::Client(client) => self.client_acts(client),
            Event::Tick(node) => {
                self.with_shard(node, |shard, now| shard.tick(now));
                self.at(self.now + TICK_MS, Event::Tick(node));
            }
            Event::LinkDown(node) => self.nodes[node].link_up = false,
            Event::LinkUp(node) => {
                self.nodes[node].link_up = true;
                // What the NATS bus does on reconnect: its shards hear of it, and the other
                // nodes are asked to say again what they hold.
                self.deliver(None, node, BusIn::Reconnected);
                for other in 0..self.nodes.len() {
                    if other != node {
                        self.deliver(Some(node), other, BusIn::SyncRequested);
                    }
                }
            }
            Event::Crash(node) => {
                self.nodes[node].shard = None;
                self.nodes[node].interest.clear();
                self.nodes[node].last_delivery.clear();
                self.nodes[node].life += 1;
                for client in &mut self.clients {
                    if client.node == node {
                        client.gone = true;
                    }
                }
                // The others take it for dead once its heartbeats have been missing for the
                // node timeout (its requests still in flight land before that).
                let gone = self.nodes[node].id(node) - 16;
                for other in 0..self.nodes.len() {
                    if other != node {
                        let life = self.nodes[other].life;
                        let msg = BusIn::NodeGone { node: gone };
                        self.at(
                            self.now + NODE_TIMEOUT,
                            Event::Deliver {
                                node: other,
                                life,
                                msg,
                            },
                        );
                    }
                }
                self.at(self.now + NODE_TIMEOUT, Event::Members);
            }
            Event::Members => self.tell_members(),
            // Already restarted (the final phase restarts every node that is down).
            Event::Restart(node) if self.nodes[node].shard.is_some() => {}
            Event::Restart(node) => {
                self.nodes[node].shard = Some(Shard::new(0, 1, self.config.clone()));
                self.nodes[node].store = MemoryStore::default();
                self.nodes[node].link_up = true;
                self.tell_members();
                self.connect(node, Role::Subscriber);
                let id = self.writer_count();
                self.connect(
                    node,
                    Role::Writer {
                        id,
                        n: 0,
                        pending: None,
                    },
                );
            }
        }
        self.read_clients();
    }

    /// A writer's next write.
    fn client_acts(&mut self, client: usize) {
        if !self.running || self.clients[client].gone || !self.clients[client].logged_in {
            return;
        }
        let record = RECORDS[self.rng.between(0, RECORDS.len() as u64 - 1) as usize].to_string();
        let now = self.now;
        let Role::Writer { id, n, pending } = &mut self.clients[client].role else {
            return;
        };
        if pending.is_some() {
            return;
        }
        *n += 1;
        let cid = Bytes::from(n.to_string());
        let msg = Message {
            name: Some(Bytes::from(record.clone())),
            version: Some(-1),
            path: Some(Bytes::from(format!("w{id}"))),
            data: Some(cid.clone()),
            is_write_ack: Some(true),
            correlation_id: Some(cid.clone()),
            ..Message::new(topic::RECORD, ra::CREATEANDPATCH)
        };
        *pending = Some((cid, now, record, *n));
        self.send(client, &msg);
    }

    /// Every client reads what its outbox holds.
    fn read_clients(&mut self) {
        for client in 0..self.clients.len() {
            if self.clients[client].gone {
                continue;
            }
            for frame in self.clients[client].outbox.take_all() {
                let Ok(msg) = Message::parse(&frame_payload(&frame)) else {
                    self.checks
                        .broken
                        .push(format!("client {client}: an unreadable frame"));
                    continue;
                };
                self.on_client_message(client, msg);
            }
        }
    }

    fn on_client_message(&mut self, client: usize, msg: Message) {
        let now = self.now;
        if msg.topic == topic::AUTH && msg.action == auth_action::AUTH_SUCCESSFUL {
            self.clients[client].logged_in = true;
            match self.clients[client].role {
                Role::Subscriber => {
                    let subscribe = Message {
                        correlation_id: Some(Bytes::from_static(b"s")),
                        names: RECORDS
                            .iter()
                            .map(|r| Bytes::from_static(r.as_bytes()))
                            .collect(),
                        ..Message::new(topic::RECORD, ra::SUBSCRIBECREATEANDREAD)
                    };
                    self.send(client, &subscribe);
                }
                Role::Writer { .. } => {
                    let time = now + self.rng.between(0, 20);
                    self.at(time, Event::Client(client));
                }
                Role::Reader { .. } => {
                    for record in RECORDS {
                        let read = Message {
                            name: Some(Bytes::from_static(record.as_bytes())),
                            ..Message::new(topic::RECORD, ra::READ)
                        };
                        self.send(client, &read);
                    }
                }
            }
            return;
        }
        if msg.topic != topic::RECORD {
            return;
        }
        let node = self.clients[client].node;
        match &mut self.clients[client].role {
            Role::Writer { id, pending, .. } => {
                let Some((cid, sent, record, n)) = pending.clone() else {
                    return;
                };
                if msg.correlation_id.as_ref() != Some(&cid) {
                    return;
                }
                let id = *id;
                *pending = None;
                let bound = ANSWER_BOUND + CONFLICT_ROUNDS * 2 * self.plan.max_delay;
                if now - sent > bound {
                    self.checks.broken.push(format!(
                        "writer {id} on node {node}: write {n} answered after {} ms",
                        now - sent
                    ));
                }
                if msg.action == ra::WRITE_ACKNOWLEDGEMENT {
                    self.checks.acks += 1;
                    let best = self.checks.acked.entry((id, record)).or_default();
                    *best = (*best).max(n);
                } else {
                    self.checks.refused += 1;
                }
                let time = now + self.rng.between(0, 20);
                self.at(time, Event::Client(client));
            }
            Role::Reader { answers } => {
                if msg.action == ra::READ_RESPONSE {
                    let name = String::from_utf8_lossy(msg.name.as_deref().unwrap_or_default())
                        .into_owned();
                    let data = msg
                        .data
                        .as_deref()
                        .and_then(|d| serde_json::from_slice(d).ok())
                        .unwrap_or(serde_json::Value::Null);
                    answers.insert(name, (msg.version.unwrap_or(-1), data));
                }
            }
            Role::Subscriber => self.subscriber_saw(client, msg),
        }
    }

    /// A subscriber's record message: versions never go back, patches follow the version
    /// before them, one content per version.
    fn subscriber_saw(&mut self, client: usize, msg: Message) {
        let (Some(name), Some(version)) = (msg.name.as_deref(), msg.version) else {
            return;
        };
        let name = String::from_utf8_lossy(name).into_owned();
        let node = self.clients[client].node;
        let contents = &mut self.clients[client].contents;
        if msg.action != ra::READ_RESPONSE && !contents.contains_key(&name) {
            // Not ready until its read is answered (the read holds what came before).
            return;
        }
        let data = msg
            .data
            .as_deref()
            .and_then(|d| serde_json::from_slice::<serde_json::Value>(d).ok());
        let entry = contents.entry(name.clone()).or_insert((-1, None));
        let who = format!("subscriber {client} on node {node}");
        if version < entry.0 {
            self.checks.broken.push(format!(
                "{who}: {name} went from v{} to v{version} (action {})",
                entry.0, msg.action
            ));
        }
        let content = match msg.action {
            ra::READ_RESPONSE | ra::UPDATE => data,
            ra::PATCH => match (&mut entry.1, msg.path.as_deref(), data) {
                (Some(serde_json::Value::Object(fields)), Some(path), Some(value))
                    if version == entry.0 + 1 =>
                {
                    fields.insert(String::from_utf8_lossy(path).into_owned(), value);
                    Some(serde_json::Value::Object(fields.clone()))
                }
                _ => {
                    self.checks.broken.push(format!(
                        "{who}: {name}: a patch to v{version} after v{}",
                        entry.0
                    ));
                    None
                }
            },
            _ => return,
        };
        *entry = (version, content.clone());
        if let Some(content) = content {
            self.checks.one_content(&name, version, &content, &who);
        }
    }

    fn run_until(&mut self, end: u64) {
        while let Some(entry) = self.queue.first_entry() {
            let (time, _) = *entry.key();
            if time > end {
                break;
            }
            let event = entry.remove();
            self.now = time;
            self.step(event);
        }
        self.now = end;
    }

    /// Runs the plan, heals every fault, lets the cluster settle, and checks the history.
    fn run(mut self) -> Result<String, String> {
        let run_for = self.plan.run_for;
        self.run_until(run_for);
        self.running = false;
        for node in 0..self.nodes.len() {
            self.nodes[node].link_up = true;
            if self.nodes[node].shard.is_none() {
                self.step(Event::Restart(node));
            }
        }
        // Everything in flight lands; writes still waiting are answered.
        self.run_until(run_for + 3 * REQUEST_TIMEOUT);
        for client in 0..self.clients.len() {
            let c = &self.clients[client];
            if let (
                Role::Writer {
                    id,
                    pending: Some((_, sent, _, n)),
                    ..
                },
                false,
            ) = (&c.role, c.gone)
            {
                self.checks.broken.push(format!(
                    "writer {id} on node {}: write {n} sent at {sent} ms never answered",
                    c.node
                ));
            }
        }
        // Every node reads every record; every node and the bucket must agree.
        let readers: Vec<usize> = (0..self.nodes.len())
            .map(|node| {
                self.connect(
                    node,
                    Role::Reader {
                        answers: BTreeMap::new(),
                    },
                );
                self.clients.len() - 1
            })
            .collect();
        self.run_until(self.now + 3 * REQUEST_TIMEOUT);
        for record in RECORDS {
            let stored = self
                .bucket
                .entries
                .get(&Bytes::from_static(record.as_bytes()))
                .cloned();
            let bucket = stored.and_then(|(_, r)| r).map(|r| {
                let data: serde_json::Value =
                    serde_json::from_slice(&r.data).unwrap_or(serde_json::Value::Null);
                (r.version, data)
            });
            for reader in &readers {
                let Role::Reader { answers } = &self.clients[*reader].role else {
                    continue;
                };
                let node = self.clients[*reader].node;
                let read = answers.get(record).cloned();
                if read != bucket {
                    self.checks.broken.push(format!(
                        "node {node} reads {record} as {read:?}, the bucket holds {bucket:?}"
                    ));
                }
            }
            if let Some((version, data)) = &bucket {
                self.checks
                    .one_content(record, *version, data, "the bucket");
                // Nothing acknowledged lost: each writer's field holds at least its number.
                for ((writer, name), acked) in &self.checks.acked {
                    if name == record {
                        let kept = data
                            .get(format!("w{writer}"))
                            .and_then(|v| v.as_u64())
                            .unwrap_or(0);
                        if kept < *acked {
                            self.checks.broken.push(format!(
                                "{record}: writer {writer} had {acked} acknowledged, the bucket holds {kept}"
                            ));
                        }
                    }
                }
            } else if self.checks.acked.keys().any(|(_, name)| name == record) {
                self.checks
                    .broken
                    .push(format!("{record}: acknowledged writes, not in the bucket"));
            }
        }
        let summary = format!(
            "{:?}: {} acknowledged, {} refused",
            self.plan, self.checks.acks, self.checks.refused
        );
        if self.checks.broken.is_empty() {
            Ok(summary)
        } else {
            let mut broken = self.checks.broken.clone();
            broken.truncate(20);
            Err(format!("{summary}\n{}", broken.join("\n")))
        }
    }
}

/// Runs `seed`; the history's violations if any.
fn simulate(seed: u64) -> Result<String, String> {
    Sim::new(seed).run()
}

fn run_seeds(seeds: impl Iterator<Item = u64>) {
    let mut failed = Vec::new();
    let mut ran = 0;
    for seed in seeds {
        ran += 1;
        if let Err(e) = simulate(seed) {
            failed.push(format!("seed {seed}: {e}"));
            if failed.len() >= 3 {
                break;
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {ran} seeds failed (replay one: SIM_SEED=<seed> cargo test --lib sim::one_seed -- --nocapture):\n{}",
        failed.len(),
        failed.join("\n\n")
    );
}

#[test]
fn a_fixed_set_of_seeds_keeps_every_promise() {
    // And seeds that once failed (each a defect fixed since; see the closing notes of issue 27).
    run_seeds((0..100).chain([1278, 1301, 1383, 8523, 9238]));
}

/// `SIM_SEED=n`: one seed, replayed exactly, with what it planned and saw.
#[test]
fn one_seed() {
    let Some(seed) = std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok()) else {
        return;
    };
    match simulate(seed) {
        Ok(summary) => println!("seed {seed}: {summary}"),
        Err(e) => panic!("seed {seed}: {e}"),
    }
}

/// The long run: `SIM_SEEDS` seeds (10,000 by default) from `SIM_FROM` (0).
#[test]
#[ignore]
fn many_seeds_keep_every_promise() {
    let count: u64 = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let from: u64 = std::env::var("SIM_FROM")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    run_seeds(from..from + count);
}

#[test]
fn a_seed_replays_exactly() {
    let first = simulate(7);
    assert_eq!(first, simulate(7));
}
