//! The bus over NATS, on a connector thread of its own (`bridge::Bridge`): one NATS connection
//! per node (`no_echo`, so a node never hears its own publishes), one task per shard that
//! carries out the shard's `BusOut` in order, and one task per name this node wants, which
//! hands what arrives to the name's owner shard. NATS routes by interest: a publish reaches
//! only the nodes subscribed to its subject. After a reconnect the client subscribes again by
//! itself, so interest survives a NATS restart; what was published meanwhile is lost, and
//! the disconnect and any dropped messages are logged.

use super::bus::{decode_barrier, encode_barrier};
use super::bus::{
    decode_change, decode_direct, decode_frames, decode_listener, decode_node, decode_presence,
    decode_provider, decode_published, decode_value, direct_subject, encode_change, encode_direct,
    encode_listener, encode_node, encode_presence, encode_provider, encode_published, encode_value,
    name_subject, node_subject, push_token, Direct,
};
use super::gate::Gate;
use super::{BusIn, BusOut, CasResult, KvRecord, RecordChange};
use crate::bridge::Bridge;
use crate::config::cluster::{ClusterConfig, NatsAuth};
use crate::core::ids::{ConnId, NodeId};
use crate::core::Kind;
use crate::store::StoredRecord;
use ahash::AHashMap;
use async_nats::jetstream::kv::UpdateErrorKind;
use bytes::Bytes;
use futures_lite::StreamExt;
use std::time::Duration;

/// Batches of bus requests one shard may have waiting for the connector thread.
const OUT_QUEUE: usize = 1024;
/// Batches of arrivals a shard may have waiting; past this the name's task waits (and NATS
/// buffers up to `SUBSCRIPTION_BUFFER` messages per name before it reports a slow consumer).
const IN_QUEUE: usize = 4096;
const SUBSCRIPTION_BUFFER: usize = 65_536;
/// How long a starting node listens for the others' heartbeats before it serves clients.
const STARTUP_LISTEN: Duration = Duration::from_millis(250);
/// How long names that moved wait for their providers' claims after a node said it left:
/// every node hears the leave at once, so a claim is one bus hop away, not a heartbeat.
const LEAVE_SETTLE: Duration = Duration::from_millis(200);
/// Arrivals for one name handed over in one batch at most.
const IN_BATCH: usize = 256;
/// How often a shard's bus loop, idle, tries again the subscriptions NATS could not take.
const RETRY_EVERY: Duration = Duration::from_millis(250);
/// How long a stopping node waits for NATS to take its leave message.
const LEAVE_WAIT: Duration = Duration::from_secs(1);
/// Nodes that said they left, remembered so that a heartbeat of theirs still on its way does
/// not bring them back (a restarted node has a new id).
const LEFT_REMEMBERED: usize = 64;

/// One shard's ends of the bus.
pub struct ShardLink {
    pub out: async_channel::Sender<Vec<BusOut>>,
    pub inbound: async_channel::Receiver<Vec<BusIn>>,
}

/// The node's connection to the cluster; dropping it stops the connector thread.
pub struct NatsBus {
    links: Vec<Option<ShardLink>>,
    node: NodeId,
    client: async_nats::Client,
    prefix: String,
    // Dropped last: the tasks run on it.
    bridge: Bridge,
}

impl NatsBus {
    /// Connects to NATS (failing the start if no server answers within the request timeout)
    /// and starts one task per shard.
    pub fn start(config: &ClusterConfig, node: &str, shards: usize) -> Result<NatsBus, String> {
        let bridge =
            Bridge::start().map_err(|e| format!("cannot start the cluster thread: {e}"))?;
        let (connected, connecting) = std::sync::mpsc::channel();
        let reconnected = std::sync::Arc::new(tokio::sync::Notify::new());
        let on_event = reconnected.clone();
        let options = async_nats::ConnectOptions::new()
            .name(format!("corestream {node}"))
            .no_echo()
            .subscription_capacity(SUBSCRIPTION_BUFFER)
            // Reconnect for ever: a cluster outlives a NATS restart.
            .max_reconnects(None)
            .event_callback(move |event| {
                let on_event = on_event.clone();
                async move {
                    report(&event);
                    if matches!(event, async_nats::Event::Connected) {
                        on_event.notify_one();
                    }
                }
            });
        let options = with_auth_and_tls(options, config)?;
        // Nodes tell each other apart by this; a restarted node is a new node.
        let node_id = fastrand::u32(1..);
        let servers = config.servers.clone();
        let bucket = format!("{}_records", config.prefix);
        let replicas = config.replicas;
        bridge.spawn_service(async move {
            let joined = async {
                let client = options.connect(servers).await.map_err(|e| e.to_string())?;
                let records = open_bucket(&client, &bucket, replicas).await?;
                Ok::<_, String>((client, records))
            };
            let _ = connected.send(joined.await);
        });
        let timeout = Duration::from_millis(config.request_timeout_ms);
        let (client, records) = match connecting.recv_timeout(timeout) {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => {
                return Err(format!(
                    "clusterNode: cannot connect to NATS at {:?}: {e}",
                    config.servers
                ))
            }
            Err(_) => {
                return Err(format!(
                    "clusterNode: no NATS server at {:?} answered within {timeout:?}",
                    config.servers
                ))
            }
        };
        let mut links = Vec::with_capacity(shards);
        let mut all_arrivals = Vec::with_capacity(shards);
        let live_nodes = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for shard in 0..shards {
            let (out, requests) = async_channel::bounded(OUT_QUEUE);
            let (arrivals, inbound) = async_channel::bounded(IN_QUEUE);
            all_arrivals.push(arrivals.clone());
            let served = ShardBus {
                node: node_id,
                live_nodes: live_nodes.clone(),
                client: client.clone(),
                records: records.clone(),
                prefix: config.prefix.clone(),
                arrivals,
                request_timeout: timeout,
                subscriptions: AHashMap::new(),
                unsubscribed: Vec::new(),
                gate: Gate::new(client.clone()),
            };
            bridge.spawn_service(served.run(requests));
            links.push(Some(ShardLink { out, inbound }));
            crate::log!(
                crate::log::Level::Debug,
                "CLUSTER_SHARD",
                "shard {shard} joined the bus"
            );
        }
        let members = Membership {
            node: node_id,
            live_nodes,
            client: client.clone(),
            prefix: config.prefix.clone(),
            arrivals: all_arrivals,
            heartbeat: Duration::from_millis(config.heartbeat_interval_ms),
            timeout: Duration::from_millis(config.node_timeout_ms),
            reconnected,
        };
        let (subscribed, subscribing) = std::sync::mpsc::channel();
        bridge.spawn_service(members.run(subscribed));
        // The node hears the others before it serves anyone.
        match subscribing.recv_timeout(timeout) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("clusterNode: {e}")),
            Err(_) => return Err("clusterNode: NATS did not take the node's subscriptions".into()),
        }
        crate::log!(
            crate::log::Level::Info,
            "CLUSTER_JOINED",
            "node \"{node}\" joined the cluster on NATS {:?} (prefix {})",
            config.servers,
            config.prefix
        );
        Ok(NatsBus {
            links,
            node: node_id,
            client,
            prefix: config.prefix.clone(),
            bridge,
        })
    }

    /// Tells the other nodes this node leaves (a stop): they drop what it held at once. Waits
    /// until NATS has the message, at most `LEAVE_WAIT`; a node that cannot say it is noticed
    /// after the node timeout, as one that was killed.
    pub fn leave(&self) {
        let (done, finished) = std::sync::mpsc::channel();
        let client = self.client.clone();
        let subject = node_subject(&self.prefix, "leave");
        let payload = encode_node(self.node);
        self.bridge.spawn_service(async move {
            let said = client.publish(subject, payload).await.is_ok();
            let _ = done.send(said && client.flush().await.is_ok());
        });
        let said = matches!(finished.recv_timeout(LEAVE_WAIT), Ok(true));
        crate::log!(
            crate::log::Level::Info,
            "CLUSTER_LEAVE",
            "node {:08x} {}",
            self.node,
            if said {
                "told the cluster it leaves"
            } else {
                "could not tell the cluster it leaves: the others notice after their node timeout"
            }
        );
    }

    /// Shard `shard`'s ends of the bus (once).
    pub fn link(&mut self, shard: usize) -> Option<ShardLink> {
        self.links.get_mut(shard).and_then(Option::take)
    }
}

/// Opens the records bucket, creating it if it is missing. It is created with a plain
/// JetStream request: async-nats's `create_key_value` cannot read NATS 2.9's answer to it
/// (which Debian 12 ships), while reading the bucket's info works on every version.
/// NATS's own authentication and TLS, as `clusterNode.options` asks.
fn with_auth_and_tls(
    options: async_nats::ConnectOptions,
    config: &ClusterConfig,
) -> Result<async_nats::ConnectOptions, String> {
    let mut options = match &config.auth {
        NatsAuth::None => options,
        NatsAuth::UserPassword { user, password } => {
            options.user_and_password(user.clone(), password.clone())
        }
        NatsAuth::Token(token) => options.token(token.clone()),
        NatsAuth::Credentials(path) => {
            let place = "clusterNode.options.credentials";
            let creds = std::fs::read_to_string(path)
                .map_err(|e| format!("{place}: cannot read {}: {e}", path.display()))?;
            options.credentials(&creds).map_err(|e| {
                format!(
                    "{place}: {} is not a NATS credentials file: {e}",
                    path.display()
                )
            })?
        }
    };
    if let Some(tls) = &config.tls {
        options = options.require_tls(true);
        if let Some(ca) = &tls.ca {
            options = options.add_root_certificates(ca.clone());
        }
        if let Some((cert, key)) = &tls.cert_and_key {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
    }
    Ok(options)
}

async fn open_bucket(
    client: &async_nats::Client,
    bucket: &str,
    replicas: usize,
) -> Result<async_nats::jetstream::kv::Store, String> {
    let jetstream = async_nats::jetstream::new(client.clone());
    if let Ok(store) = jetstream.get_key_value(bucket).await {
        return Ok(store);
    }
    // A key-value bucket is a stream with these settings; one message per key is kept (no
    // history: a node that misses a change takes the whole record).
    let stream = serde_json::json!({
        "name": format!("KV_{bucket}"),
        "description": "corestream records: the cluster's authoritative versions",
        "subjects": [format!("$KV.{bucket}.>")],
        "max_msgs_per_subject": 1,
        "discard": "new",
        "deny_delete": true,
        "deny_purge": false,
        "allow_rollup_hdrs": true,
        "allow_direct": true,
        "storage": "file",
        "num_replicas": replicas,
    });
    let answer = client
        .request(
            format!("$JS.API.STREAM.CREATE.KV_{bucket}"),
            Bytes::from(stream.to_string()),
        )
        .await
        .map_err(|e| format!("cannot create the records bucket (is JetStream on?): {e}"))?;
    let answer: serde_json::Value = serde_json::from_slice(&answer.payload).unwrap_or_default();
    if let Some(error) = answer.get("error") {
        // Another node may have created it at the same moment: reading it again tells.
        if let Ok(store) = jetstream.get_key_value(bucket).await {
            return Ok(store);
        }
        return Err(format!("cannot create the records bucket: {error}"));
    }
    jetstream
        .get_key_value(bucket)
        .await
        .map_err(|e| format!("cannot open the records bucket: {e}"))
}

/// What a message from another node brings, into `batch` (nothing if it is not one of ours).
fn read_arrival(kind: Kind, message: &async_nats::Message, batch: &mut Vec<BusIn>) {
    if kind == Kind::Record {
        if let Some((name, change)) = decode_change(&message.payload) {
            batch.push(BusIn::RecordChanged { name, change });
        }
        return;
    }
    let Some((name, rest)) = decode_published(&message.payload) else {
        return;
    };
    for frame in decode_frames(rest).unwrap_or_default() {
        let name = name.clone();
        batch.push(BusIn::Published { kind, name, frame });
    }
}

/// Emits of one shard's batch, gathered per name in order: one bus message per name.
#[derive(Default)]
struct Gathered {
    names: Vec<(Kind, Bytes, Vec<Bytes>, usize)>,
    index: AHashMap<(Kind, Bytes), usize>,
}

impl Gathered {
    /// A publish larger than this goes on in a second message (NATS's default limit is 1 MiB).
    const MAX_BYTES: usize = 256 * 1024;

    fn add(&mut self, kind: Kind, name: Bytes, frame: Bytes) {
        if let Some(&at) = self.index.get(&(kind, name.clone())) {
            if let Some(entry) = self.names.get_mut(at) {
                if entry.3 + frame.len() <= Self::MAX_BYTES {
                    entry.3 += frame.len() + 4;
                    entry.2.push(frame);
                    return;
                }
            }
        }
        self.index.insert((kind, name.clone()), self.names.len());
        let size = frame.len() + 4;
        self.names.push((kind, name, vec![frame], size));
    }

    fn take(&mut self) -> Vec<(Kind, Bytes, Vec<Bytes>, usize)> {
        self.index.clear();
        std::mem::take(&mut self.names)
    }
}

/// Room a record's change message needs beside the record and its name (revisions, lengths):
/// a record is refused unless it fits in one NATS message with it.
const CHANGE_ROOM: usize = 64;

/// A record's key in the bucket: its subject token.
fn key(name: &[u8]) -> String {
    let mut key = String::new();
    push_token(&mut key, name);
    key
}

fn kv_record(entry: Option<async_nats::jetstream::kv::Entry>) -> Result<KvRecord, String> {
    let Some(entry) = entry else {
        return Ok(KvRecord {
            revision: 0,
            record: None,
            in_bucket: false,
        });
    };
    // Deletes are written as empty values; a key removed some other way reads as deleted.
    let record = match entry.operation {
        async_nats::jetstream::kv::Operation::Put => decode_value(&entry.value).map_err(|_| {
            "cluster: the bucket holds a value corestream did not write".to_string()
        })?,
        _ => None,
    };
    Ok(KvRecord {
        revision: entry.revision,
        record,
        in_bucket: true,
    })
}

fn report(event: &async_nats::Event) {
    use async_nats::Event;
    let level = match event {
        Event::Connected => crate::log::Level::Info,
        _ => crate::log::Level::Warn,
    };
    let what = match event {
        Event::SlowConsumer(_) => {
            "messages for this node were dropped (it fell behind); subscribers missed them"
        }
        Event::Disconnected => "lost NATS; reconnecting (what is published meanwhile is lost)",
        Event::Connected => "connected to NATS",
        _ => "NATS",
    };
    crate::log!(level, "CLUSTER_BUS", "{what}: {event}");
}

/// One shard's side of the connection: its subscriptions, by name.
struct ShardBus {
    node: NodeId,
    /// Other nodes heard from recently (kept by `Membership`).
    live_nodes: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    client: async_nats::Client,
    records: async_nats::jetstream::kv::Store,
    prefix: String,
    arrivals: async_channel::Sender<Vec<BusIn>>,
    request_timeout: Duration,
    subscriptions: AHashMap<(u8, Bytes), tokio::task::AbortHandle>,
    /// Names wanted while NATS could not take the subscription: subscribed once it can.
    unsubscribed: Vec<(Kind, Bytes)>,
    gate: Gate,
}

impl ShardBus {
    async fn run(mut self, requests: async_channel::Receiver<Vec<BusOut>>) {
        let mut gathered = Gathered::default();
        loop {
            let batch = match tokio::time::timeout(RETRY_EVERY, requests.recv()).await {
                Ok(Ok(batch)) => batch,
                Ok(Err(_)) => return,
                Err(_) => {
                    self.subscribe_again().await;
                    continue;
                }
            };
            self.subscribe_again().await;
            let mut confirms = Vec::new();
            for request in batch {
                if let BusOut::Publish { kind, name, frame } = request {
                    gathered.add(kind, name, frame);
                    continue;
                }
                // Anything else keeps its place after the emits before it.
                self.publish_gathered(&mut gathered).await;
                match request {
                    BusOut::Interest {
                        kind,
                        name,
                        on,
                        confirm,
                    } => {
                        if on {
                            self.subscribe(kind, name).await;
                        } else {
                            self.unsubscribed
                                .retain(|(k, n)| !(*k == kind && *n == name));
                            if let Some(task) = self.subscriptions.remove(&(kind as u8, name)) {
                                // The task's subscriber unsubscribes as it drops.
                                task.abort();
                            }
                        }
                        confirms.extend(confirm);
                    }
                    BusOut::Publish { .. } => {}
                    BusOut::PublishRecord { name, change } => {
                        let mut payload = encode_change(&name, &change);
                        if payload.len() > self.client.max_payload() && !change.frames.is_empty() {
                            // Too large with the writers' frames: the record alone, which
                            // nodes send their subscribers whole (it fits: see `CHANGE_ROOM`).
                            let whole = RecordChange {
                                frames: Vec::new(),
                                ..change
                            };
                            payload = encode_change(&name, &whole);
                        }
                        self.publish(Kind::Record, &name, payload).await;
                    }
                    BusOut::Presence {
                        user,
                        online,
                        confirm,
                    } => self.publish_presence(user, online, confirm).await,
                    BusOut::RpcProvider { name, conn, on } => {
                        let subject = node_subject(&self.prefix, "rpc");
                        let payload = encode_provider(self.node, on, conn.shard, conn.local, &name);
                        self.send(subject, payload, "an RPC provider change").await;
                    }
                    BusOut::ToConn {
                        conn,
                        frame,
                        rpc_call,
                    } => {
                        let direct = Direct::ToConn {
                            shard: conn.shard,
                            local: conn.local,
                            frame,
                            rpc_call,
                        };
                        let subject = direct_subject(&self.prefix, conn.node);
                        let payload = encode_direct(self.node, &direct);
                        self.send(subject, payload, "a message for another node")
                            .await;
                    }
                    BusOut::RpcAnswer { node, msg, from } => {
                        let direct = Direct::RpcAnswer {
                            shard: from.shard,
                            local: from.local,
                            msg: msg.encode(),
                        };
                        let subject = direct_subject(&self.prefix, node);
                        let payload = encode_direct(self.node, &direct);
                        self.send(subject, payload, "an RPC answer for another node")
                            .await;
                    }
                    BusOut::Barrier {
                        shard,
                        token,
                        names,
                    } => self.barrier(shard, token, names).await,
                    BusOut::Answer { reply } => {
                        self.send(reply, Bytes::new(), "an answer to another node")
                            .await
                    }
                    BusOut::Listener {
                        kind,
                        pattern,
                        conn,
                        on,
                    } => {
                        let subject = node_subject(&self.prefix, "listen");
                        let payload = encode_listener(self.node, on, conn, kind, &pattern);
                        self.send(subject, payload, "a listener change").await;
                    }
                    BusOut::Listen {
                        node,
                        kind,
                        name,
                        op,
                    } => {
                        let subject = direct_subject(&self.prefix, node);
                        let payload = encode_direct(self.node, &Direct::Listen { kind, name, op });
                        self.send(subject, payload, "listening news for another node")
                            .await;
                    }
                    BusOut::Read { name } => self.read(name, false),
                    BusOut::Recheck { name } => self.read(name, true),
                    BusOut::Cas {
                        name,
                        expected,
                        record,
                    } => self.compare_and_set(name, expected, record),
                }
            }
            self.publish_gathered(&mut gathered).await;
            if !confirms.is_empty() {
                self.confirm_subscriptions(confirms);
            }
        }
    }

    /// Acknowledges subscriptions once the server has every one asked for so far (it answers
    /// a ping after them), off the loop. If NATS is away they are made on reconnect; the acks
    /// wait at most the request timeout for that.
    fn confirm_subscriptions(&self, confirms: Vec<u64>) {
        let (client, arrivals, timeout) = (
            self.client.clone(),
            self.arrivals.clone(),
            self.request_timeout,
        );
        let reachable = self.gate.open();
        tokio::spawn(async move {
            let flushed = if reachable {
                matches!(
                    tokio::time::timeout(timeout, client.flush()).await,
                    Ok(Ok(()))
                )
            } else {
                false
            };
            if !flushed {
                crate::log!(
                    crate::log::Level::Warn,
                    "CLUSTER_INTEREST",
                    "NATS did not confirm new subscriptions in time; they take effect on reconnect"
                );
            }
            let confirmed = confirms
                .into_iter()
                .map(|token| BusIn::Confirmed { token })
                .collect();
            let _ = arrivals.send(confirmed).await;
        });
    }

    /// Subscribes to the names NATS could not take a subscription for, once it can.
    async fn subscribe_again(&mut self) {
        if self.unsubscribed.is_empty() || !self.gate.open() {
            return;
        }
        for (kind, name) in std::mem::take(&mut self.unsubscribed) {
            self.subscribe(kind, name).await;
        }
    }

    async fn publish_gathered(&self, gathered: &mut Gathered) {
        for (kind, name, frames, _) in gathered.take() {
            let payload = encode_published(&name, &frames);
            self.publish(kind, &name, payload).await;
        }
    }

    async fn send(&self, subject: String, payload: Bytes, what: &str) {
        if let Err(e) = self.gate.send(self.client.publish(subject, payload)).await {
            crate::log!(
                crate::log::Level::Warn,
                "CLUSTER_PUBLISH",
                "{what} was lost: {e}"
            );
        }
    }

    async fn publish(&self, kind: Kind, name: &[u8], payload: Bytes) {
        let subject = name_subject(&self.prefix, kind, name);
        if let Err(e) = self.gate.send(self.client.publish(subject, payload)).await {
            crate::log!(
                crate::log::Level::Warn,
                "CLUSTER_PUBLISH",
                "a publish to other nodes was lost: {e}"
            );
        }
    }

    /// Tells every node of a presence change. With `confirm`, waits (off the request loop)
    /// for every node known to be alive to say it has it, at most the request timeout.
    async fn publish_presence(&self, user: Bytes, online: bool, confirm: Option<ConnId>) {
        let subject = node_subject(&self.prefix, "presence");
        let payload = encode_presence(self.node, &user, online);
        let Some(login) = confirm else {
            if let Err(e) = self.gate.send(self.client.publish(subject, payload)).await {
                crate::log!(
                    crate::log::Level::Warn,
                    "CLUSTER_PUBLISH",
                    "a presence change was not sent to other nodes: {e}"
                );
            }
            return;
        };
        let late = "not every node confirmed a login in time; answering it anyway";
        let done = BusIn::PresenceConfirmed { login };
        self.ask_every_node(subject, vec![payload], done, late)
            .await;
    }

    /// Publishes `payloads` on `subject`, each asking every live node for an answer, and hands
    /// the shard `done` once all have answered (or the request timeout passed: `late` is
    /// logged).
    async fn ask_every_node(
        &self,
        subject: String,
        payloads: Vec<Bytes>,
        done: BusIn,
        late: &'static str,
    ) {
        let expected = self.live_nodes.load(std::sync::atomic::Ordering::Relaxed) * payloads.len();
        let inbox = self.client.new_inbox();
        let answers = self
            .gate
            .send(self.client.subscribe(inbox.clone()))
            .await
            .ok();
        let mut sent = Ok(());
        for payload in payloads {
            let reply = inbox.clone();
            let publish = self
                .client
                .publish_with_reply(subject.clone(), reply, payload);
            sent = sent.and(self.gate.send(publish).await.map(|_| ()).map_err(|_| ()));
        }
        let (arrivals, timeout) = (self.arrivals.clone(), self.request_timeout);
        tokio::spawn(async move {
            if let (Some(mut answers), Ok(())) = (answers, sent) {
                let all = async {
                    for _ in 0..expected {
                        if answers.next().await.is_none() {
                            break;
                        }
                    }
                };
                if tokio::time::timeout(timeout, all).await.is_err() {
                    crate::log!(crate::log::Level::Warn, "CLUSTER_CONFIRM", "{late}");
                }
            }
            let _ = arrivals.send(vec![done]).await;
        });
    }

    /// A barrier behind the provider changes this node sent for `names` before it: every live
    /// node's owner of each name answers once it has applied them (NATS keeps one publisher's
    /// order on a subject, and the owner's queue keeps it from there).
    async fn barrier(&self, shard: u16, token: u64, names: Vec<Bytes>) {
        let subject = node_subject(&self.prefix, "rpc");
        let payloads = names
            .iter()
            .map(|name| encode_barrier(self.node, name))
            .collect();
        let late = "not every node confirmed a provider in time; acknowledging it anyway";
        let done = BusIn::BarrierPassed { shard, token };
        self.ask_every_node(subject, payloads, done, late).await;
    }

    /// Reads a record from the bucket, off the request loop (reads of many records overlap).
    /// Started after any subscription asked for before it, so a write published after the
    /// read's answer reaches this node.
    fn read(&self, name: Bytes, recheck: bool) {
        let (records, arrivals, timeout) = (
            self.records.clone(),
            self.arrivals.clone(),
            self.request_timeout,
        );
        tokio::spawn(async move {
            let result = match tokio::time::timeout(timeout, records.entry(key(&name))).await {
                Ok(Ok(entry)) => kv_record(entry),
                Ok(Err(e)) => Err(format!("cluster: cannot read the record: {e}")),
                Err(_) => Err("cluster: reading the record timed out".to_string()),
            };
            let answer = if recheck {
                BusIn::Rechecked { name, result }
            } else {
                BusIn::Read { name, result }
            };
            let _ = arrivals.send(vec![answer]).await;
        });
    }

    /// Writes a record if the bucket holds `expected`; on a conflict, answers what it holds.
    /// The shard has one of these in flight per record at most.
    fn compare_and_set(&self, name: Bytes, expected: u64, record: Option<StoredRecord>) {
        let value = encode_value(record.as_ref());
        let max = self.client.max_payload();
        if value.len() + name.len() + CHANGE_ROOM > max {
            // The bucket might take it, but the change could not reach the other nodes.
            let error = format!(
                "cluster: a record of {} bytes does not fit in a NATS message (the server's \
                 max_payload is {max} bytes)",
                value.len()
            );
            let result = CasResult::Failed(error);
            let arrivals = self.arrivals.clone();
            tokio::spawn(async move {
                let _ = arrivals.send(vec![BusIn::Cas { name, result }]).await;
            });
            return;
        }
        let (records, arrivals, timeout) = (
            self.records.clone(),
            self.arrivals.clone(),
            self.request_timeout,
        );
        tokio::spawn(async move {
            let key = key(&name);
            let written =
                tokio::time::timeout(timeout, records.update(&key, value, expected)).await;
            let result = match written {
                Ok(Ok(revision)) => CasResult::Written(revision),
                Ok(Err(e)) if e.kind() == UpdateErrorKind::WrongLastRevision => {
                    match tokio::time::timeout(timeout, records.entry(key)).await {
                        Ok(Ok(entry)) => match kv_record(entry) {
                            Ok(current) => CasResult::Conflict(current),
                            Err(e) => CasResult::Unreachable(e),
                        },
                        Ok(Err(e)) => CasResult::Unreachable(format!("cluster: {e}")),
                        Err(_) => {
                            CasResult::Unreachable("cluster: reading the record timed out".into())
                        }
                    }
                }
                Ok(Err(e)) => {
                    CasResult::Unreachable(format!("cluster: the write was not taken: {e}"))
                }
                Err(_) => CasResult::Unreachable("cluster: the write timed out".into()),
            };
            let _ = arrivals.send(vec![BusIn::Cas { name, result }]).await;
        });
    }

    async fn subscribe(&mut self, kind: Kind, name: Bytes) {
        let key = (kind as u8, name);
        if self.subscriptions.contains_key(&key) {
            return;
        }
        let subject = name_subject(&self.prefix, kind, &key.1);
        let mut subscriber = match self.gate.send(self.client.subscribe(subject)).await {
            Ok(subscriber) => subscriber,
            Err(e) => {
                crate::log!(
                    crate::log::Level::Warn,
                    "CLUSTER_INTEREST",
                    "cannot subscribe to a name on the bus yet ({e}); trying again"
                );
                self.unsubscribed.push((kind, key.1));
                return;
            }
        };
        let arrivals = self.arrivals.clone();
        let task = tokio::spawn(async move {
            while let Some(first) = subscriber.next().await {
                let mut batch: Vec<BusIn> = Vec::new();
                read_arrival(kind, &first, &mut batch);
                // What else has arrived goes in the same batch.
                while batch.len() < IN_BATCH {
                    match futures_lite::future::poll_once(subscriber.next()).await {
                        Some(Some(message)) => read_arrival(kind, &message, &mut batch),
                        _ => break,
                    }
                }
                if !batch.is_empty() && arrivals.send(batch).await.is_err() {
                    return;
                }
            }
        });
        self.subscriptions.insert(key, task.abort_handle());
    }
}

/// Who is in the cluster: every node says it is alive every `heartbeat`; one not heard from
/// within `timeout` is gone, and every shard drops what it held (its users leave presence).
/// A node that joins, comes back, or reconnects to NATS asks every node to say again who is
/// online (`sync`), since presence changes published meanwhile may be lost.
struct Membership {
    node: NodeId,
    live_nodes: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    client: async_nats::Client,
    prefix: String,
    arrivals: Vec<async_channel::Sender<Vec<BusIn>>>,
    heartbeat: Duration,
    timeout: Duration,
    reconnected: std::sync::Arc<tokio::sync::Notify>,
}

impl Membership {
    async fn run(self, subscribed: std::sync::mpsc::Sender<Result<(), String>>) {
        let subscribe = |what: &str| {
            let subscribing = self.client.subscribe(node_subject(&self.prefix, what));
            async move { subscribing.await.map_err(|e| e.to_string()) }
        };
        let subscriptions = async {
            let presence = subscribe("presence").await?;
            let heartbeats = subscribe("heartbeat").await?;
            let leaves = subscribe("leave").await?;
            let syncs = subscribe("sync").await?;
            let providers = subscribe("rpc").await?;
            let listeners = subscribe("listen").await?;
            let direct = self
                .client
                .subscribe(direct_subject(&self.prefix, self.node))
                .await
                .map_err(|e| e.to_string())?;
            self.client.flush().await.map_err(|e| e.to_string())?;
            Ok::<_, String>((
                presence, heartbeats, leaves, syncs, providers, listeners, direct,
            ))
        };
        let (
            mut presence,
            mut heartbeats,
            mut leaves,
            mut syncs,
            mut providers,
            mut listeners,
            mut direct,
        ) = match subscriptions.await {
            Ok(subscriptions) => subscriptions,
            Err(e) => {
                let _ = subscribed.send(Err(format!(
                    "cannot subscribe to the cluster's subjects: {e}"
                )));
                return;
            }
        };
        self.ask_for_sync().await;
        let mut seen: AHashMap<NodeId, tokio::time::Instant> = AHashMap::new();
        let mut gone: ahash::AHashSet<NodeId> = ahash::AHashSet::new();
        let mut left: std::collections::VecDeque<NodeId> = std::collections::VecDeque::new();
        let mut ticks = tokio::time::interval(self.heartbeat);
        // Every node answers the sync with a heartbeat: the node is ready once it has heard
        // them (logins wait for every node it knows of).
        let mut ready = Some(subscribed);
        let ready_at = tokio::time::Instant::now() + STARTUP_LISTEN;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(ready_at), if ready.is_some() => {
                    self.tell_members(&seen).await;
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(Ok(()));
                    }
                }
                _ = ticks.tick() => {
                    self.beat().await;
                    let now = tokio::time::Instant::now();
                    let dead: Vec<NodeId> = seen
                        .iter()
                        .filter(|(_, at)| now.duration_since(**at) > self.timeout)
                        .map(|(node, _)| *node)
                        .collect();
                    for node in dead {
                        seen.remove(&node);
                        self.live_nodes.store(seen.len(), std::sync::atomic::Ordering::Relaxed);
                        gone.insert(node);
                        crate::log!(
                            crate::log::Level::Warn,
                            "CLUSTER_NODE_GONE",
                            "node {node:08x} has not been heard from in {:?}: its users leave",
                            self.timeout
                        );
                        self.to_every_shard(BusIn::NodeGone { node }).await;
                        self.tell_members(&seen).await;
                    }
                }
                Some(message) = leaves.next() => {
                    let Some(node) = decode_node(&message.payload) else { continue };
                    if node == self.node || left.contains(&node) {
                        continue;
                    }
                    if left.len() == LEFT_REMEMBERED {
                        left.pop_front();
                    }
                    left.push_back(node);
                    if seen.remove(&node).is_some() {
                        self.live_nodes.store(seen.len(), std::sync::atomic::Ordering::Relaxed);
                    }
                    gone.remove(&node);
                    crate::log!(
                        crate::log::Level::Info,
                        "CLUSTER_NODE_LEFT",
                        "node {node:08x} stopped and left the cluster: its users leave"
                    );
                    self.to_every_shard(BusIn::NodeGone { node }).await;
                    self.tell_members_settling(&seen, LEAVE_SETTLE).await;
                }
                Some(message) = heartbeats.next() => {
                    let Some(node) = decode_node(&message.payload) else { continue };
                    if left.contains(&node) {
                        continue;
                    }
                    if seen.insert(node, tokio::time::Instant::now()).is_none() {
                        self.live_nodes.store(seen.len(), std::sync::atomic::Ordering::Relaxed);
                        crate::log!(crate::log::Level::Info, "CLUSTER_NODE", "node {node:08x} is in the cluster");
                        if gone.remove(&node) {
                            // Back after being taken for dead: what it had was dropped here.
                            self.ask_for_sync().await;
                        }
                        if ready.is_none() {
                            self.tell_members(&seen).await;
                        }
                    }
                }
                Some(message) = presence.next() => {
                    let Some((node, user, online)) = decode_presence(&message.payload) else { continue };
                    self.to_owner(&user.clone(), BusIn::RemotePresence { node, user: user.clone(), online }).await;
                    // The owner answers once it has applied the change (queued behind it).
                    if let Some(reply) = message.reply {
                        let reply = reply.to_string();
                        self.to_owner(&user, BusIn::AnswerOnceApplied { reply }).await;
                    }
                }
                Some(message) = providers.next() => {
                    if let Some(name) = decode_barrier(&message.payload) {
                        // The owner answers once it has applied what came before.
                        if let Some(reply) = message.reply {
                            let reply = reply.to_string();
                            self.to_owner(&name, BusIn::AnswerOnceApplied { reply }).await;
                        }
                        continue;
                    }
                    let Some((conn, on, name)) = decode_provider(&message.payload) else { continue };
                    self.to_owner(&name, BusIn::RemoteProvider { name: name.clone(), conn, on }).await;
                }
                Some(message) = listeners.next() => {
                    let Some((conn, on, kind, pattern)) = decode_listener(&message.payload) else { continue };
                    // Compiled once here for every shard; one that does not compile matches nothing.
                    let regex = if on {
                        std::str::from_utf8(&pattern)
                            .ok()
                            .and_then(|p| crate::core::bounded_regex(p).ok())
                            .map(std::sync::Arc::new)
                    } else {
                        None
                    };
                    self.to_every_shard(BusIn::RemoteListener { kind, pattern, regex, conn, on }).await;
                }
                Some(message) = direct.next() => {
                    let Some((from, direct)) = decode_direct(&message.payload) else { continue };
                    match direct {
                        Direct::ToConn { shard, local, frame, rpc_call } => {
                            let arrival = BusIn::ToConn {
                                local,
                                frame,
                                rpc_call: rpc_call.map(|cid| (from, cid)),
                            };
                            if let Some(arrivals) = self.arrivals.get(usize::from(shard)) {
                                let _ = arrivals.send(vec![arrival]).await;
                            }
                        }
                        Direct::RpcAnswer { shard, local, msg } => {
                            let Ok(msg) = crate::protocol::message::Message::parse_boxed(&msg) else { continue };
                            let Some(name) = msg.name.clone() else { continue };
                            let from = ConnId { node: from, shard, local };
                            self.to_owner(&name, BusIn::RpcAnswer { msg, from }).await;
                        }
                        Direct::Listen { kind, name, op } => {
                            self.to_owner(&name.clone(), BusIn::Listen { from, kind, name, op }).await;
                        }
                    }
                }
                Some(_) = syncs.next() => {
                    self.beat().await;
                    self.to_every_shard(BusIn::SyncRequested).await;
                }
                _ = self.reconnected.notified() => {
                    // Changes published while this node was away never reached it: its shards
                    // read the records they hold again.
                    self.to_every_shard(BusIn::Reconnected).await;
                    self.ask_for_sync().await
                }
            }
        }
    }

    /// Every shard learns who is in the cluster (names are homed by it, see `shard::listen`);
    /// names that moved wait two heartbeats for the claims of their providers: the nodes may
    /// see a join or a death up to a heartbeat apart.
    async fn tell_members(&self, seen: &AHashMap<NodeId, tokio::time::Instant>) {
        let settle = self.heartbeat.saturating_mul(2);
        self.tell_members_settling(seen, settle).await;
    }

    /// `tell_members` with the time names that moved wait for their providers' claims.
    async fn tell_members_settling(
        &self,
        seen: &AHashMap<NodeId, tokio::time::Instant>,
        settle: Duration,
    ) {
        let mut nodes: Vec<NodeId> = seen.keys().copied().collect();
        nodes.push(self.node);
        nodes.sort_unstable();
        nodes.dedup();
        let settle_ms = u64::try_from(settle.as_millis()).unwrap_or(u64::MAX);
        self.to_every_shard(BusIn::Members {
            me: self.node,
            nodes,
            settle_ms,
        })
        .await;
    }

    async fn beat(&self) {
        let _ = self
            .client
            .publish(
                node_subject(&self.prefix, "heartbeat"),
                encode_node(self.node),
            )
            .await;
    }

    async fn ask_for_sync(&self) {
        let _ = self
            .client
            .publish(node_subject(&self.prefix, "sync"), encode_node(self.node))
            .await;
    }

    /// To the shard that owns `name`.
    async fn to_owner(&self, name: &[u8], arrival: BusIn) {
        let owner = crate::core::ids::owner_of(name, self.arrivals.len());
        if let Some(arrivals) = self.arrivals.get(owner) {
            let _ = arrivals.send(vec![arrival]).await;
        }
    }

    async fn to_every_shard(&self, arrival: BusIn) {
        for arrivals in &self.arrivals {
            let _ = arrivals.send(vec![arrival.clone()]).await;
        }
    }
}
