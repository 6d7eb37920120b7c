//! The bus over NATS, on a connector thread of its own (`bridge::Bridge`): one NATS connection
//! per node (`no_echo`, so a node never hears its own publishes), one task per shard that
//! carries out the shard's `BusOut` in order, and one task per name this node wants, which
//! hands what arrives to the name's owner shard. NATS routes by interest: a publish reaches
//! only the nodes subscribed to its subject. After a reconnect the client subscribes again by
//! itself, so interest survives a NATS restart; what was published meanwhile is lost, and
//! the disconnect and any dropped messages are logged.

use super::bus::{decode_published, encode_published, name_subject};
use super::{BusIn, BusOut};
use crate::bridge::Bridge;
use crate::config::cluster::ClusterConfig;
use crate::shard::msg::Kind;
use ahash::AHashMap;
use bytes::Bytes;
use futures_lite::StreamExt;
use std::time::Duration;

/// Batches of bus requests one shard may have waiting for the connector thread.
const OUT_QUEUE: usize = 1024;
/// Batches of arrivals a shard may have waiting; past this the name's task waits (and NATS
/// buffers up to `SUBSCRIPTION_BUFFER` messages per name before it reports a slow consumer).
const IN_QUEUE: usize = 4096;
const SUBSCRIPTION_BUFFER: usize = 65_536;
/// Arrivals for one name handed over in one batch at most.
const IN_BATCH: usize = 256;

/// One shard's ends of the bus.
pub struct ShardLink {
    pub out: async_channel::Sender<Vec<BusOut>>,
    pub inbound: async_channel::Receiver<Vec<BusIn>>,
}

/// The node's connection to the cluster; dropping it stops the connector thread.
pub struct NatsBus {
    links: Vec<Option<ShardLink>>,
    // Dropped last: the tasks run on it.
    _bridge: Bridge,
}

impl NatsBus {
    /// Connects to NATS (failing the start if no server answers within the request timeout)
    /// and starts one task per shard.
    pub fn start(config: &ClusterConfig, node: &str, shards: usize) -> Result<NatsBus, String> {
        let bridge =
            Bridge::start().map_err(|e| format!("cannot start the cluster thread: {e}"))?;
        let (connected, connecting) = std::sync::mpsc::channel();
        let options = async_nats::ConnectOptions::new()
            .name(format!("corestream {node}"))
            .no_echo()
            .subscription_capacity(SUBSCRIPTION_BUFFER)
            // Reconnect for ever: a cluster outlives a NATS restart.
            .max_reconnects(None)
            .event_callback(|event| async move { report(&event) });
        let servers = config.servers.clone();
        bridge.spawn_service(async move {
            let _ = connected.send(options.connect(servers).await);
        });
        let timeout = Duration::from_millis(config.request_timeout_ms);
        let client = match connecting.recv_timeout(timeout) {
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
        for shard in 0..shards {
            let (out, requests) = async_channel::bounded(OUT_QUEUE);
            let (arrivals, inbound) = async_channel::bounded(IN_QUEUE);
            let served = ShardBus {
                client: client.clone(),
                prefix: config.prefix.clone(),
                arrivals,
                flush_timeout: timeout,
                subscriptions: AHashMap::new(),
            };
            bridge.spawn_service(served.run(requests));
            links.push(Some(ShardLink { out, inbound }));
            crate::log!(
                crate::log::Level::Debug,
                "CLUSTER_SHARD",
                "shard {shard} joined the bus"
            );
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
            _bridge: bridge,
        })
    }

    /// Shard `shard`'s ends of the bus (once).
    pub fn link(&mut self, shard: usize) -> Option<ShardLink> {
        self.links.get_mut(shard).and_then(Option::take)
    }
}

/// A message from another node, unless it is not one of ours.
fn arrival(kind: Kind, message: &async_nats::Message) -> Option<BusIn> {
    let (name, frame) = decode_published(&message.payload)?;
    Some(BusIn::Published { kind, name, frame })
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
    client: async_nats::Client,
    prefix: String,
    arrivals: async_channel::Sender<Vec<BusIn>>,
    flush_timeout: Duration,
    subscriptions: AHashMap<(u8, Bytes), tokio::task::AbortHandle>,
}

impl ShardBus {
    async fn run(mut self, requests: async_channel::Receiver<Vec<BusOut>>) {
        while let Ok(batch) = requests.recv().await {
            let mut confirms = Vec::new();
            for request in batch {
                match request {
                    BusOut::Interest {
                        kind,
                        name,
                        on,
                        confirm,
                    } => {
                        if on {
                            self.subscribe(kind, name).await;
                        } else if let Some(task) = self.subscriptions.remove(&(kind as u8, name)) {
                            // The task's subscriber unsubscribes as it drops.
                            task.abort();
                        }
                        confirms.extend(confirm);
                    }
                    BusOut::Publish { kind, name, frame } => {
                        let subject = name_subject(&self.prefix, kind, &name);
                        let payload = encode_published(&name, &frame);
                        if let Err(e) = self.client.publish(subject, payload).await {
                            crate::log!(
                                crate::log::Level::Warn,
                                "CLUSTER_PUBLISH",
                                "a publish to other nodes was lost: {e}"
                            );
                        }
                    }
                }
            }
            if !confirms.is_empty() {
                // The server has every subscription of the batch once it answers the ping. If
                // NATS is away, the subscriptions are made again on reconnect; the acks do not
                // wait for that.
                let flushed = tokio::time::timeout(self.flush_timeout, self.client.flush()).await;
                if !matches!(flushed, Ok(Ok(()))) {
                    crate::log!(
                        crate::log::Level::Warn,
                        "CLUSTER_INTEREST",
                        "NATS did not confirm new subscriptions in time; they take effect on \
                         reconnect"
                    );
                }
                let confirmed = confirms
                    .into_iter()
                    .map(|token| BusIn::Confirmed { token })
                    .collect();
                if self.arrivals.send(confirmed).await.is_err() {
                    return;
                }
            }
        }
    }

    async fn subscribe(&mut self, kind: Kind, name: Bytes) {
        let key = (kind as u8, name);
        if self.subscriptions.contains_key(&key) {
            return;
        }
        let subject = name_subject(&self.prefix, kind, &key.1);
        let mut subscriber = match self.client.subscribe(subject).await {
            Ok(subscriber) => subscriber,
            Err(e) => {
                crate::log!(
                    crate::log::Level::Error,
                    "CLUSTER_INTEREST",
                    "cannot subscribe to a name on the bus: {e}"
                );
                return;
            }
        };
        let arrivals = self.arrivals.clone();
        let task = tokio::spawn(async move {
            while let Some(first) = subscriber.next().await {
                let mut batch: Vec<BusIn> = arrival(kind, &first).into_iter().collect();
                // What else has arrived goes in the same batch.
                while batch.len() < IN_BATCH {
                    match futures_lite::future::poll_once(subscriber.next()).await {
                        Some(Some(message)) => batch.extend(arrival(kind, &message)),
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
