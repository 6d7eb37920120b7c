//! Several shards wired together by hand, without a runtime: messages between them are moved
//! explicitly, so routing and fan-out can be checked step by step.

use super::*;
use crate::protocol::message::{auth_action, connection_action, rpc_action};
use crate::protocol::ws;
use crate::store::{StorageError, StoredRecord};

struct Cluster {
    shards: Vec<Shard>,
    stores: Vec<crate::store::MemoryStore>,
}

struct Client {
    shard: usize,
    local: u32,
    outbox: Outbox,
}

/// The message inside a server frame (servers never mask).
fn frame_payload(frame: &Bytes) -> Bytes {
    let header = match frame[1] & 0x7f {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    frame.slice(header..)
}

impl Cluster {
    fn new(n: usize) -> Cluster {
        Cluster::with(
            n,
            Config {
                listen_shuffle_providers: false,
                ..Config::default()
            },
        )
    }

    fn with(n: usize, config: Config) -> Cluster {
        let config = Arc::new(config);
        Cluster {
            shards: (0..n).map(|id| Shard::new(id, n, config.clone())).collect(),
            stores: (0..n).map(|_| Default::default()).collect(),
        }
    }

    /// Delivers queued cross-shard messages until none are left; returns how many moved.
    fn settle(&mut self) -> usize {
        let mut moved = 0;
        loop {
            let mut any = false;
            for (shard, store) in self.shards.iter_mut().zip(&self.stores) {
                any |= shard.run_store_jobs_inline(store, 0) > 0;
            }
            for from in 0..self.shards.len() {
                for to in 0..self.shards.len() {
                    let batch = std::mem::take(&mut self.shards[from].outgoing[to]);
                    for msg in batch {
                        any = true;
                        moved += 1;
                        self.shards[to].on_peer_msg(msg, 0);
                    }
                }
            }
            if !any {
                return moved;
            }
        }
    }

    fn send(&mut self, client: &Client, msg: &Message) {
        self.shards[client.shard].on_client_frame(client.local, &msg.encode(), 0);
        self.settle();
    }

    fn login(&mut self, shard: usize, user: &str) -> Client {
        let outbox = Outbox::new(1 << 20, 0);
        let local = self.shards[shard].open_conn(outbox.clone(), 0);
        let client = Client {
            shard,
            local,
            outbox,
        };
        self.send(
            &client,
            &Message::new(topic::CONNECTION, connection_action::CHALLENGE),
        );
        let auth = Message {
            data: Some(Bytes::from(format!(r#"{{"username":"{user}"}}"#))),
            ..Message::new(topic::AUTH, auth_action::REQUEST)
        };
        self.send(&client, &auth);
        let got = received(&client);
        assert_eq!(
            got.last().map(|m| m.action),
            Some(auth_action::AUTH_SUCCESSFUL)
        );
        client
    }
}

fn received(client: &Client) -> Vec<Message> {
    client
        .outbox
        .take_all()
        .iter()
        .map(|f| Message::parse(&frame_payload(f)).expect("valid frame"))
        .collect()
}

fn name_owned_by(owner: usize, shards: usize, prefix: &str) -> Bytes {
    (0..)
        .map(|i| format!("{prefix}/{i}"))
        .find(|n| owner_of(n.as_bytes(), shards) == owner)
        .map(Bytes::from)
        .unwrap_or_default()
}

fn names(list: &[&Bytes]) -> Vec<Bytes> {
    list.iter().map(|b| (*b).clone()).collect()
}

#[test]
fn an_emit_on_shard_a_is_handled_on_owner_shard_b_and_crosses_back_once() {
    let mut cluster = Cluster::new(2);
    let name = name_owned_by(1, 2, "ev");
    let subscribers: Vec<Client> = (0..3).map(|i| cluster.login(0, &format!("s{i}"))).collect();
    let publisher = cluster.login(0, "p");
    for s in &subscribers {
        let subscribe = Message {
            correlation_id: Some(Bytes::from_static(b"1")),
            names: names(&[&name]),
            ..Message::new(topic::EVENT, event_action::SUBSCRIBE)
        };
        cluster.shards[0].on_client_frame(s.local, &subscribe.encode(), 0);
    }
    // Three local subscribers, one interest message to the owner.
    let interest: Vec<_> = cluster.shards[0].outgoing[1]
        .iter()
        .filter(|m| matches!(m, ShardMsg::Interest { .. }))
        .collect();
    assert_eq!(interest.len(), 1);
    cluster.settle();
    let emit = Message {
        name: Some(name.clone()),
        data: Some(Bytes::from_static(b"42")),
        ..Message::new(topic::EVENT, event_action::EMIT)
    };
    cluster.shards[0].on_client_frame(publisher.local, &emit.encode(), 0);
    assert!(
        matches!(
            cluster.shards[0].outgoing[1].as_slice(),
            [ShardMsg::Emit { .. }]
        ),
        "the emit goes to the owner"
    );
    // owner → one Deliver back to shard 0 for its three subscribers
    assert_eq!(cluster.settle(), 2);
    for s in &subscribers {
        let got = received(s);
        assert_eq!(
            got.last().and_then(|m| m.data.clone()),
            Some(Bytes::from_static(b"42"))
        );
    }
    assert!(
        received(&publisher).is_empty(),
        "the emitter does not hear itself"
    );
}

#[test]
fn a_subscribe_ack_waits_until_a_remote_owner_has_the_interest() {
    let mut cluster = Cluster::new(2);
    let remote = name_owned_by(1, 2, "held");
    let local_name = name_owned_by(0, 2, "held");
    let subscriber = cluster.login(0, "s");
    let subscribe = |names: Vec<Bytes>| Message {
        correlation_id: Some(Bytes::from_static(b"7")),
        names,
        ..Message::new(topic::EVENT, event_action::SUBSCRIBE)
    };
    // Owned here: the ack goes out at once.
    let frame = subscribe(vec![local_name.clone()]).encode();
    cluster.shards[0].on_client_frame(subscriber.local, &frame, 0);
    assert_eq!(received(&subscriber).len(), 1);
    // Owned by shard 1: nothing until shard 1 has applied the interest, then the ack and the
    // duplicate-subscription error, in order.
    let frame = subscribe(vec![remote.clone(), local_name.clone()]).encode();
    cluster.shards[0].on_client_frame(subscriber.local, &frame, 0);
    assert!(received(&subscriber).is_empty());
    cluster.settle();
    let got = received(&subscriber);
    let actions: Vec<i32> = got.iter().map(|m| m.action).collect();
    assert_eq!(
        actions,
        vec![
            event_action::SUBSCRIBE,
            event_action::MULTIPLE_SUBSCRIPTIONS
        ]
    );
}

#[test]
fn record_writes_fan_out_across_shards_and_stale_versions_are_refused() {
    let mut cluster = Cluster::new(3);
    let name = name_owned_by(2, 3, "rec");
    let writer = cluster.login(0, "w");
    let reader = cluster.login(1, "r");
    let subscribe = Message {
        correlation_id: Some(Bytes::from_static(b"1")),
        names: names(&[&name]),
        ..Message::new(topic::RECORD, record_action::SUBSCRIBECREATEANDREAD)
    };
    cluster.send(&reader, &subscribe);
    let got = received(&reader);
    assert_eq!(
        got.iter().map(|m| m.action).collect::<Vec<_>>(),
        vec![
            record_action::SUBSCRIBECREATEANDREAD,
            record_action::READ_RESPONSE
        ]
    );
    assert_eq!(got[1].version, Some(0));
    let update = Message {
        name: Some(name.clone()),
        version: Some(1),
        data: Some(Bytes::from_static(br#"{"a":1}"#)),
        correlation_id: Some(Bytes::from_static(b"9")),
        is_write_ack: Some(true),
        ..Message::new(topic::RECORD, record_action::UPDATE)
    };
    cluster.send(&writer, &update);
    assert_eq!(
        received(&writer)
            .iter()
            .map(|m| m.action)
            .collect::<Vec<_>>(),
        vec![record_action::WRITE_ACKNOWLEDGEMENT]
    );
    let got = received(&reader);
    assert_eq!(
        (got[0].action, got[0].version),
        (record_action::UPDATE, Some(1))
    );
    cluster.send(&writer, &update);
    let got = received(&writer);
    assert_eq!(
        (got[0].action, got[0].version),
        (record_action::VERSION_EXISTS, Some(1))
    );
    assert_eq!(got[0].data.as_deref(), Some(&br#"{"a":1}"#[..]));
    assert!(received(&reader).is_empty());
}

#[test]
fn presence_joins_once_for_a_user_with_connections_on_two_shards() {
    let mut cluster = Cluster::new(2);
    let watcher = cluster.login(0, "watcher");
    let subscribe = Message {
        correlation_id: Some(Bytes::from_static(b"1")),
        names: vec![Bytes::from_static(b"bob")],
        ..Message::new(topic::PRESENCE, presence_action::SUBSCRIBE)
    };
    cluster.send(&watcher, &subscribe);
    received(&watcher);
    let bob1 = cluster.login(0, "bob");
    let bob2 = cluster.login(1, "bob");
    let joins = received(&watcher);
    assert_eq!(
        joins
            .iter()
            .filter(|m| m.action == presence_action::PRESENCE_JOIN)
            .count(),
        1
    );
    cluster.shards[bob1.shard].close_conn(bob1.local);
    cluster.settle();
    assert!(received(&watcher).is_empty());
    cluster.shards[bob2.shard].close_conn(bob2.local);
    cluster.settle();
    assert_eq!(
        received(&watcher)
            .iter()
            .map(|m| m.action)
            .collect::<Vec<_>>(),
        vec![presence_action::PRESENCE_LEAVE]
    );
}

#[test]
fn an_rpc_provider_on_another_shard_disconnecting_fails_the_call_at_once() {
    let mut cluster = Cluster::new(2);
    let name = name_owned_by(0, 2, "rpc");
    let provider = cluster.login(1, "p");
    let caller = cluster.login(0, "c");
    let provide = Message {
        correlation_id: Some(Bytes::from_static(b"1")),
        names: names(&[&name]),
        ..Message::new(topic::RPC, rpc_action::PROVIDE)
    };
    cluster.send(&provider, &provide);
    received(&provider);
    let request = Message {
        name: Some(name.clone()),
        correlation_id: Some(Bytes::from_static(b"r1")),
        data: Some(Bytes::from_static(b"1")),
        ..Message::new(topic::RPC, rpc_action::REQUEST)
    };
    cluster.send(&caller, &request);
    let got = received(&provider);
    assert_eq!(got[0].action, rpc_action::REQUEST);
    assert_eq!(got[0].requestor_name.as_deref(), Some(&b"c"[..]));
    cluster.send(
        &provider,
        &Message {
            action: rpc_action::ACCEPT,
            data: None,
            ..request.clone()
        },
    );
    assert_eq!(received(&caller)[0].action, rpc_action::ACCEPT);
    cluster.shards[1].close_conn(provider.local);
    cluster.settle();
    assert_eq!(received(&caller)[0].action, rpc_action::REQUEST_ERROR);
}

#[test]
fn rpc_deadlines_count_from_the_request_time_on_a_single_shard() {
    let mut cluster = Cluster::new(1);
    let provider = cluster.login(0, "p");
    let caller = cluster.login(0, "c");
    let provide = Message {
        correlation_id: Some(Bytes::from_static(b"1")),
        names: vec![Bytes::from_static(b"slow")],
        ..Message::new(topic::RPC, rpc_action::PROVIDE)
    };
    cluster.send(&provider, &provide);
    let request = Message {
        name: Some(Bytes::from_static(b"slow")),
        correlation_id: Some(Bytes::from_static(b"r")),
        ..Message::new(topic::RPC, rpc_action::REQUEST)
    };
    cluster.shards[0].on_client_frame(caller.local, &request.encode(), 10_000);
    cluster.shards[0].tick(10_999);
    assert!(received(&caller).is_empty(), "timed out early");
    cluster.shards[0].tick(11_000);
    assert_eq!(
        received(&caller)
            .iter()
            .map(|m| m.action)
            .collect::<Vec<_>>(),
        vec![rpc_action::ACCEPT_TIMEOUT]
    );
}

#[test]
fn a_late_record_subscriber_hears_that_the_record_has_a_provider() {
    let mut cluster = Cluster::new(2);
    let name = name_owned_by(1, 2, "feed");
    let provider = cluster.login(0, "p");
    let early = cluster.login(0, "early");
    let listen = Message {
        name: Some(Bytes::from_static(b"feed/.*")),
        ..Message::new(topic::RECORD, record_action::LISTEN)
    };
    cluster.send(&provider, &listen);
    let subscribe = Message {
        correlation_id: Some(Bytes::from_static(b"1")),
        names: names(&[&name]),
        ..Message::new(topic::RECORD, record_action::SUBSCRIBECREATEANDREAD)
    };
    cluster.send(&early, &subscribe);
    let offer = received(&provider)
        .into_iter()
        .find(|m| m.action == record_action::SUBSCRIPTION_FOR_PATTERN_FOUND)
        .expect("offer");
    cluster.send(
        &provider,
        &Message {
            action: record_action::LISTEN_ACCEPT,
            ..offer
        },
    );
    assert!(received(&early)
        .iter()
        .any(|m| m.action == record_action::SUBSCRIPTION_HAS_PROVIDER));
    let late = cluster.login(1, "late");
    cluster.send(&late, &subscribe);
    let got: Vec<i32> = received(&late).iter().map(|m| m.action).collect();
    assert_eq!(
        got,
        vec![
            record_action::SUBSCRIBECREATEANDREAD,
            record_action::READ_RESPONSE,
            record_action::SUBSCRIPTION_HAS_PROVIDER
        ]
    );
}

#[test]
fn cross_record_rules_fetch_from_the_owner_and_stop_after_max_rule_iterations() {
    use crate::permission::rules::Permissions;
    let rules = r#"
record:
  "*": { create: true, write: true, read: true }
event:
  "*": { subscribe: true, publish: "_('flags/' + name).on === true" }
  "chain/*": { publish: "_(_(_(_('c1').next).next).next).ok === true" }
"#;
    let permissions = Permissions::parse(rules, "test.yml", 3).unwrap();
    let mut cluster = Cluster::with(
        2,
        Config {
            permissions: Arc::new(permissions),
            ..Config::default()
        },
    );
    let event = name_owned_by(0, 2, "ev");
    let flag = format!("flags/{}", String::from_utf8_lossy(&event));
    // the flag record must live on the other shard, so its data has to be fetched
    assert_eq!(
        owner_of(flag.as_bytes(), 2),
        1,
        "pick another event name for this test"
    );
    let publisher = cluster.login(0, "p");
    let subscriber = cluster.login(0, "s");
    let subscribe = Message {
        correlation_id: Some(Bytes::from_static(b"1")),
        names: names(&[&event]),
        ..Message::new(topic::EVENT, event_action::SUBSCRIBE)
    };
    cluster.send(&subscriber, &subscribe);
    received(&subscriber);
    let emit = Message {
        name: Some(event.clone()),
        data: Some(Bytes::from_static(b"1")),
        ..Message::new(topic::EVENT, event_action::EMIT)
    };
    cluster.send(&publisher, &emit);
    assert_eq!(
        received(&publisher)
            .iter()
            .map(|m| m.action)
            .collect::<Vec<_>>(),
        vec![event_action::MESSAGE_PERMISSION_ERROR],
        "no flag record yet: `null.on` throws, as in the reference"
    );
    let set = Message {
        name: Some(Bytes::from(flag)),
        version: Some(-1),
        data: Some(Bytes::from_static(br#"{"on":true}"#)),
        ..Message::new(topic::RECORD, record_action::UPDATE)
    };
    cluster.send(&publisher, &set);
    cluster.shards[0].on_client_frame(publisher.local, &emit.encode(), 0);
    assert!(
        received(&subscriber).is_empty(),
        "waits for the flag from shard 1"
    );
    cluster.settle();
    assert_eq!(
        received(&subscriber)
            .iter()
            .map(|m| m.action)
            .collect::<Vec<_>>(),
        vec![event_action::EMIT]
    );

    let chain = Message {
        name: Some(Bytes::from_static(b"chain/x")),
        ..Message::new(topic::EVENT, event_action::EMIT)
    };
    for (name, next) in [("c1", "c2"), ("c2", "c3"), ("c3", "c4")] {
        let record = Message {
            name: Some(Bytes::from(name)),
            version: Some(-1),
            data: Some(Bytes::from(format!(r#"{{"next":"{next}"}}"#))),
            ..Message::new(topic::RECORD, record_action::UPDATE)
        };
        cluster.send(&publisher, &record);
    }
    received(&publisher);
    cluster.send(&publisher, &chain);
    assert_eq!(
        received(&publisher)
            .iter()
            .map(|m| m.action)
            .collect::<Vec<_>>(),
        vec![event_action::MESSAGE_PERMISSION_ERROR],
        "four rounds of reads with maxRuleIterations 3"
    );
}

#[test]
fn a_bulk_subscription_to_many_unloaded_records_completes() {
    let mut cluster = Cluster::new(1);
    let client = cluster.login(0, "bulk");
    let names: Vec<Bytes> = (0..1000)
        .map(|i| Bytes::from(format!("bulk/{i}")))
        .collect();
    let subscribe = Message {
        correlation_id: Some(Bytes::from_static(b"1")),
        names,
        ..Message::new(topic::RECORD, record_action::SUBSCRIBECREATEANDREAD)
    };
    cluster.send(&client, &subscribe);
    let got = received(&client);
    assert_eq!(
        got.iter()
            .filter(|m| m.action == record_action::READ_RESPONSE)
            .count(),
        1000
    );
}

#[test]
fn write_acks_wait_for_the_store_and_idle_records_leave_memory() {
    let mut cluster = Cluster::new(1);
    let writer = cluster.login(0, "w");
    let update = Message {
        name: Some(Bytes::from_static(b"store/a")),
        version: Some(-1),
        data: Some(Bytes::from_static(br#"{"v":1}"#)),
        correlation_id: Some(Bytes::from_static(b"9")),
        is_write_ack: Some(true),
        ..Message::new(topic::RECORD, record_action::CREATEANDUPDATE)
    };
    cluster.shards[0].on_client_frame(writer.local, &update.encode(), 0);
    // the record is loaded from the store, then written to it; the ack waits for both
    assert!(
        received(&writer).is_empty(),
        "no ack before the store has the write"
    );
    cluster.settle();
    assert_eq!(
        received(&writer)
            .iter()
            .map(|m| m.action)
            .collect::<Vec<_>>(),
        vec![record_action::WRITE_ACKNOWLEDGEMENT]
    );
    assert_eq!(
        cluster.shards[0].owner_side.records.loaded_records(),
        0,
        "nobody holds it: only the store keeps it"
    );
    let bulk = Message {
        correlation_id: Some(Bytes::from_static(b"h")),
        names: vec![
            Bytes::from_static(b"store/a"),
            Bytes::from_static(b"store/b"),
            Bytes::from_static(b"store/c"),
        ],
        ..Message::new(topic::RECORD, record_action::HEAD_BULK)
    };
    cluster.send(&writer, &bulk);
    let got = received(&writer);
    assert_eq!(got.len(), 1);
    let versions: Vec<(Bytes, i32)> = got[0].versions.clone();
    assert_eq!(
        versions,
        vec![
            (Bytes::from_static(b"store/a"), 1),
            (Bytes::from_static(b"store/b"), -1),
            (Bytes::from_static(b"store/c"), -1)
        ]
    );
}

/// A store that fails every call.
struct BrokenStore;

impl crate::store::RecordStore for BrokenStore {
    fn get<'a>(
        &'a self,
        _: &'a [u8],
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Option<StoredRecord>, StorageError>> + 'a>,
    > {
        Box::pin(std::future::ready(Err(StorageError::Unavailable(
            "disk on fire".into(),
        ))))
    }
    fn set<'a>(
        &'a self,
        _: &'a [u8],
        _: i32,
        _: Bytes,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), StorageError>> + 'a>> {
        Box::pin(std::future::ready(Err(StorageError::Unavailable(
            "disk on fire".into(),
        ))))
    }
    fn delete<'a>(
        &'a self,
        _: &'a [u8],
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), StorageError>> + 'a>> {
        Box::pin(std::future::ready(Err(StorageError::Unavailable(
            "disk on fire".into(),
        ))))
    }
}

#[test]
fn store_failures_reach_the_client() {
    let mut cluster = Cluster::new(1);
    let client = cluster.login(0, "c");
    let read = Message {
        name: Some(Bytes::from_static(b"broken/x")),
        ..Message::new(topic::RECORD, record_action::READ)
    };
    cluster.shards[0].on_client_frame(client.local, &read.encode(), 0);
    cluster.shards[0].run_store_jobs_inline(&BrokenStore, 0);
    let got = received(&client);
    assert_eq!(
        (got[0].action, got[0].is_error),
        (record_action::RECORD_LOAD_ERROR, Some(true))
    );
    assert_eq!(
        got[0].data.as_deref(),
        Some(&br#""store unavailable: disk on fire""#[..])
    );
}

/// A write queued behind a store write that fails gets the error with it, not after a
/// timeout of its own (two timeouts in a row made the fault suite's bound, seen in CI); its
/// record is still written, so the store catches up.
#[test]
fn writes_queued_behind_a_failed_store_write_get_its_error_at_once() {
    let mut cluster = Cluster::new(1);
    let writer = cluster.login(0, "w");
    let name = Bytes::from_static(b"queued/a");
    let write = |n: u32| Message {
        name: Some(name.clone()),
        version: Some(-1),
        data: Some(Bytes::from(format!(r#"{{"n":{n}}}"#))),
        correlation_id: Some(Bytes::from(n.to_string())),
        is_write_ack: Some(true),
        ..Message::new(topic::RECORD, record_action::CREATEANDUPDATE)
    };
    // In memory (subscribed, so it stays), so both writes are taken at once.
    let subscribe = Message {
        names: vec![name.clone()],
        correlation_id: Some(Bytes::from_static(b"s")),
        ..Message::new(topic::RECORD, record_action::SUBSCRIBECREATEANDREAD)
    };
    cluster.send(&writer, &subscribe);
    received(&writer);
    cluster.send(&writer, &write(1));
    assert_eq!(
        received(&writer)[0].action,
        record_action::WRITE_ACKNOWLEDGEMENT
    );
    cluster.shards[0].on_client_frame(writer.local, &write(2).encode(), 0);
    cluster.shards[0].on_client_frame(writer.local, &write(3).encode(), 0);
    let jobs = cluster.shards[0].take_store_jobs();
    assert_eq!(
        jobs.len(),
        1,
        "one write in flight per record; the next waits"
    );
    let failed = crate::store::StoreResult::Written {
        name: name.clone(),
        result: Err(StorageError::Timeout(crate::store::Layer::Storage)),
    };
    cluster.shards[0].on_store_result(failed, 0);
    let answers: Vec<i32> = received(&writer).iter().map(|m| m.action).collect();
    assert_eq!(
        answers,
        [
            record_action::RECORD_UPDATE_ERROR,
            record_action::RECORD_UPDATE_ERROR
        ],
        "both answered when the first failed"
    );
    let again = cluster.shards[0].take_store_jobs();
    assert!(
        matches!(&again[..], [crate::store::StoreJob::Write { record: Some(r), .. }] if r.data.as_ref() == br#"{"n":3}"#),
        "the queued record is still written: {again:?}"
    );
}

#[test]
fn the_sweep_drops_connections_silent_for_two_heartbeats() {
    let mut cluster = Cluster::new(1);
    let heartbeat = cluster.shards[0].config().heartbeat_interval_ms;
    let silent = cluster.login(0, "silent");
    let chatty = cluster.login(0, "chatty");
    let later = 2 * heartbeat;
    chatty.outbox.heard(later - 10);
    cluster.shards[0].tick(later - 1);
    assert_eq!(silent.outbox.closing(), None, "not yet two intervals");
    cluster.shards[0].tick(later + SWEEP_INTERVAL_MS);
    assert_eq!(
        silent.outbox.closing(),
        Some((ws::CLOSE_GOING_AWAY, "heartbeat timeout"))
    );
    assert_eq!(chatty.outbox.closing(), None);
}

#[test]
fn a_sweep_looks_at_a_bounded_batch_and_the_next_one_goes_on() {
    let mut cluster = Cluster::new(1);
    let heartbeat = cluster.shards[0].config().heartbeat_interval_ms;
    let clients: Vec<_> = (0..SWEEP_BATCH + 10)
        .map(|i| cluster.login(0, &format!("user{i}")))
        .collect();
    let silent = 2 * heartbeat + 1;
    cluster.shards[0].tick(silent);
    let closed = |clients: &[Client]| {
        clients
            .iter()
            .filter(|c| c.outbox.closing().is_some())
            .count()
    };
    assert_eq!(closed(&clients), SWEEP_BATCH, "one sweep visits one batch");
    cluster.shards[0].tick(silent + SWEEP_INTERVAL_MS);
    assert_eq!(closed(&clients), SWEEP_BATCH + 10, "the next sweep goes on");
}

#[test]
fn the_sweep_list_holds_exactly_the_open_connections() {
    let mut cluster = Cluster::new(1);
    let clients: Vec<_> = (0..10)
        .map(|i| cluster.login(0, &format!("u{i}")))
        .collect();
    // Close from the middle, the front and the end; every close moves the last entry.
    for i in [4, 0, 9, 5] {
        cluster.shards[0].close_conn(clients[i].local);
    }
    let shard = &cluster.shards[0];
    let mut listed = shard.conn_side.sweep_order.clone();
    listed.sort_unstable();
    let mut open: Vec<u32> = shard.conn_side.conns.keys().copied().collect();
    open.sort_unstable();
    assert_eq!(listed, open);
    for (slot, local) in shard.conn_side.sweep_order.iter().enumerate() {
        assert_eq!(shard.conn_side.conns[local].sweep_slot as usize, slot);
    }
    // The remaining ones are still swept.
    let heartbeat = shard.config().heartbeat_interval_ms;
    cluster.shards[0].tick(2 * heartbeat + 1);
    for i in [1, 2, 3, 6, 7, 8] {
        assert!(clients[i].outbox.closing().is_some(), "client {i}");
    }
}

#[test]
fn a_connection_entry_stays_small() {
    // One per connection in the shard's map (which also rounds its size up to a power of two).
    assert!(std::mem::size_of::<Conn>() <= 40);
}

/// A peer that takes nothing for a long time: the queue for it grows past the mark and the
/// shard says it is backlogged (the runtime then pauses client input), but no message is lost:
/// every write is applied and every ack asked for comes once the peer catches up.
#[test]
fn a_stalled_peer_backlogs_the_shard_and_loses_nothing() {
    let mut cluster = Cluster::new(2);
    let writer = cluster.login(0, "writer");
    let name = name_owned_by(1, 2, "rec");
    let writes = PEER_BACKLOG + 1000;
    // The record is in memory first (more than 10,000 messages waiting for one record to load
    // are refused with RECORD_LOAD_ERROR, by design).
    let create = Message {
        name: Some(name.clone()),
        names: vec![name.clone()],
        ..Message::new(topic::RECORD, record_action::SUBSCRIBECREATEANDREAD)
    };
    cluster.send(&writer, &create);
    received(&writer);
    for i in 1..=writes {
        let update = Message {
            name: Some(name.clone()),
            data: Some(Bytes::from(format!(r#"{{"n":{i}}}"#))),
            version: Some(-1),
            // Every hundredth asks for an ack (all of them would overflow the outbox).
            is_write_ack: Some(i % 100 == 0),
            correlation_id: Some(Bytes::from(i.to_string())),
            ..Message::new(topic::RECORD, record_action::UPDATE)
        };
        // Not settled: shard 1 takes nothing meanwhile.
        cluster.shards[0].on_client_frame(writer.local, &update.encode(), 0);
        if i == PEER_BACKLOG - 2 {
            assert!(!cluster.shards[0].backlogged());
        }
    }
    assert!(cluster.shards[0].backlogged());
    assert_eq!(
        cluster.shards[0].outgoing[1].len(),
        writes,
        "nothing dropped"
    );
    let batches = cluster.shards[0].take_outgoing();
    assert!(!cluster.shards[0].backlogged());
    for (peer, batch) in batches {
        for msg in batch {
            cluster.shards[peer].on_peer_msg(msg, 0);
        }
    }
    cluster.settle();
    let acks = received(&writer)
        .iter()
        .filter(|m| m.action == record_action::WRITE_ACKNOWLEDGEMENT)
        .count();
    assert_eq!(acks, writes / 100, "every ack asked for came");
    let read = Message {
        name: Some(name.clone()),
        ..Message::new(topic::RECORD, record_action::READ)
    };
    cluster.send(&writer, &read);
    let last = received(&writer).pop().expect("a read response");
    assert_eq!(last.version, Some(writes as i32), "every write was applied");
}

#[test]
fn metrics_are_counted_per_shard_and_summed_over_the_mesh_on_demand() {
    let mut cluster = Cluster::new(2);
    let a = cluster.login(0, "a");
    let b = cluster.login(1, "b");
    let event = name_owned_by(1, 2, "m");
    let subscribe = Message {
        correlation_id: Some(Bytes::from_static(b"1")),
        names: names(&[&event]),
        ..Message::new(topic::EVENT, event_action::SUBSCRIBE)
    };
    cluster.send(&b, &subscribe);
    received(&b);
    let emit = Message {
        name: Some(event.clone()),
        data: Some(Bytes::from_static(b"1")),
        ..Message::new(topic::EVENT, event_action::EMIT)
    };
    for _ in 0..3 {
        cluster.send(&a, &emit);
    }
    assert_eq!(received(&b).len(), 3);
    let write = Message {
        name: Some(Bytes::from_static(b"m/record")),
        version: Some(-1),
        data: Some(Bytes::from_static(b"{}")),
        ..Message::new(topic::RECORD, record_action::UPDATE)
    };
    cluster.send(&a, &write);
    cluster.shards[0].request_metrics(7);
    cluster.settle();
    let gathered = cluster.shards[0].take_metrics();
    let [(7, sum)] = gathered.as_slice() else {
        panic!("{gathered:?}")
    };
    assert_eq!((sum.connections_opened, sum.logins_accepted), (2, 2));
    assert_eq!(sum.messages_in.get(topic::EVENT, event_action::EMIT), 3);
    assert_eq!(
        sum.messages_in.get(topic::EVENT, event_action::SUBSCRIBE),
        1
    );
    assert_eq!(sum.deliveries, 3);
    assert!(
        sum.store_operations >= 1,
        "the write went to the store: {sum:?}"
    );
    assert!(
        sum.messages_out
            .get(topic::AUTH, auth_action::AUTH_SUCCESSFUL)
            == 2
    );
    assert!(
        cluster.shards[1].take_metrics().is_empty(),
        "only the asking shard gets the sum"
    );
    // Each shard's own part.
    assert_eq!(cluster.shards[1].metrics().deliveries, 3);
}

#[test]
fn a_record_a_rule_reads_that_cannot_be_loaded_answers_permission_error_not_silence() {
    use crate::permission::rules::Permissions;
    let rules = "event:\n  \"*\": { subscribe: true, publish: \"_('flags/x').on === true\" }\n";
    let permissions = Permissions::parse(rules, "test.yml", 3).unwrap();
    let mut cluster = Cluster::with(
        1,
        Config {
            permissions: Arc::new(permissions),
            ..Config::default()
        },
    );
    let publisher = cluster.login(0, "p");
    let emit = Message {
        name: Some(Bytes::from_static(b"news")),
        data: Some(Bytes::from_static(b"1")),
        ..Message::new(topic::EVENT, event_action::EMIT)
    };
    cluster.shards[0].on_client_frame(publisher.local, &emit.encode(), 0);
    assert!(received(&publisher).is_empty(), "waits for flags/x");
    cluster.shards[0].run_store_jobs_inline(&BrokenStore, 0);
    assert_eq!(
        received(&publisher)
            .iter()
            .map(|m| m.action)
            .collect::<Vec<_>>(),
        vec![event_action::MESSAGE_PERMISSION_ERROR]
    );
}

#[test]
fn notify_reads_changed_records_again_and_tells_their_subscribers() {
    use crate::store::RecordStore;
    let mut cluster = Cluster::new(3);
    let (changed, gone) = (name_owned_by(1, 3, "n"), name_owned_by(2, 3, "g"));
    let reader = cluster.login(0, "r");
    let notifier = cluster.login(2, "n");
    let subscribe = Message {
        correlation_id: Some(Bytes::from_static(b"1")),
        names: names(&[&changed, &gone]),
        ..Message::new(topic::RECORD, record_action::SUBSCRIBECREATEANDREAD)
    };
    cluster.send(&reader, &subscribe);
    assert_eq!(received(&reader).len(), 3, "an ack and two reads");
    // Another program changes one record and deletes the other, behind the server's back.
    futures_lite::future::block_on(cluster.stores[1].set(
        &changed,
        7,
        Bytes::from_static(br#"{"ext":true}"#),
    ))
    .unwrap();
    futures_lite::future::block_on(cluster.stores[2].delete(&gone)).unwrap();
    let notify = Message {
        correlation_id: Some(Bytes::from_static(b"c")),
        names: names(&[&changed, &gone]),
        ..Message::new(topic::RECORD, record_action::NOTIFY)
    };
    cluster.send(&notifier, &notify);
    let got = received(&notifier);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        (
            got[0].action,
            got[0].is_ack,
            got[0].correlation_id.as_deref()
        ),
        (record_action::NOTIFY, Some(true), Some(&b"c"[..]))
    );
    let mut heard: Vec<(i32, Option<Bytes>, Option<i32>)> = received(&reader)
        .into_iter()
        .map(|m| (m.action, m.name, m.version))
        .collect();
    heard.sort_by_key(|h| h.0);
    assert_eq!(
        heard,
        vec![
            (record_action::DELETED, Some(gone.clone()), None),
            (record_action::UPDATE, Some(changed.clone()), Some(7)),
        ]
    );
    // The next reader sees the new state too.
    let late = cluster.login(1, "l");
    cluster.send(
        &late,
        &Message {
            name: Some(changed.clone()),
            ..Message::new(topic::RECORD, record_action::READ)
        },
    );
    let got = received(&late);
    assert_eq!(got[0].version, Some(7), "{got:?}");
}

#[test]
fn a_notify_that_cannot_read_its_record_gets_the_load_error_and_its_ack() {
    let mut cluster = Cluster::new(1);
    let client = cluster.login(0, "n");
    let notify = Message {
        correlation_id: Some(Bytes::from_static(b"c")),
        names: vec![Bytes::from_static(b"x")],
        ..Message::new(topic::RECORD, record_action::NOTIFY)
    };
    cluster.shards[0].on_client_frame(client.local, &notify.encode(), 0);
    cluster.shards[0].run_store_jobs_inline(&BrokenStore, 0);
    let got = received(&client);
    assert_eq!(
        got.iter().map(|m| m.action).collect::<Vec<_>>(),
        vec![record_action::RECORD_LOAD_ERROR, record_action::NOTIFY]
    );
    assert_eq!(got[0].name.as_deref(), Some(&b"x"[..]));
}

#[test]
fn hot_path_names_take_the_last_write_and_refuse_patches() {
    let mut config = Config::default();
    config.store.hot_paths = vec!["hot/".into()];
    let mut cluster = Cluster::with(1, config);
    let client = cluster.login(0, "w");
    let write = |version: i32, path: Option<&'static str>| Message {
        name: Some(Bytes::from_static(b"hot/1")),
        version: Some(version),
        path: path.map(|p| Bytes::from_static(p.as_bytes())),
        data: Some(Bytes::from_static(br#"{"a":1}"#)),
        correlation_id: Some(Bytes::from_static(b"c")),
        is_write_ack: Some(true),
        ..Message::new(
            topic::RECORD,
            if path.is_some() {
                record_action::CREATEANDPATCH
            } else {
                record_action::CREATEANDUPDATE
            },
        )
    };
    // A stale version is no conflict on the hot path.
    for _ in 0..2 {
        cluster.send(&client, &write(1, None));
        let got = received(&client);
        assert_eq!(
            got[0].action,
            record_action::WRITE_ACKNOWLEDGEMENT,
            "{got:?}"
        );
    }
    cluster.send(&client, &write(5, Some("a")));
    let got = received(&client);
    assert_eq!(
        got[0].action,
        record_action::INVALID_PATCH_ON_HOTPATH,
        "{got:?}"
    );
    assert_eq!(got[0].correlation_id.as_deref(), Some(&b"c"[..]));
}

#[test]
fn heads_of_records_not_in_memory_ask_the_store_for_the_version_alone() {
    let mut cluster = Cluster::new(2);
    let (a, b) = (name_owned_by(1, 2, "h"), name_owned_by(0, 2, "h"));
    let client = cluster.login(0, "h");
    let write = Message {
        name: Some(a.clone()),
        version: Some(3),
        data: Some(Bytes::from_static(br#"{"x":1}"#)),
        ..Message::new(topic::RECORD, record_action::CREATEANDUPDATE)
    };
    cluster.send(&client, &write);
    // Version 3 is refused (a new record's first write is version 1): write 1 instead.
    received(&client);
    cluster.send(
        &client,
        &Message {
            version: Some(1),
            ..write
        },
    );
    assert!(received(&client).is_empty());
    assert!(
        !cluster.shards[1].owner_side.records.is_loaded(&a),
        "evicted"
    );
    cluster.send(
        &client,
        &Message {
            name: Some(a.clone()),
            ..Message::new(topic::RECORD, record_action::HEAD)
        },
    );
    let got = received(&client);
    assert_eq!(
        (got[0].action, got[0].version),
        (record_action::HEAD_RESPONSE, Some(1))
    );
    assert!(
        !cluster.shards[1].owner_side.records.is_loaded(&a),
        "the data was not loaded for a head"
    );
    cluster.send(
        &client,
        &Message {
            names: names(&[&a, &b]),
            correlation_id: Some(Bytes::from_static(b"hb")),
            ..Message::new(topic::RECORD, record_action::HEAD_BULK)
        },
    );
    let got = received(&client);
    let mut versions = got
        .iter()
        .flat_map(|m| m.versions.clone())
        .collect::<Vec<_>>();
    versions.sort();
    let mut want = vec![(a.clone(), 1), (b.clone(), -1)];
    want.sort();
    assert_eq!(versions, want, "{got:?}");
    assert!(
        cluster.shards[1]
            .owner_side
            .records
            .version_of(&a)
            .is_none(),
        "heads answered are forgotten once used"
    );
}

/// Two single-shard nodes and a bucket, wired by hand: what the NATS bus would carry, with a
/// bucket that compares and sets as JetStream's does.
mod nodes {
    use super::*;
    use crate::cluster::{BusIn, BusOut, KvRecord, ListenOp, RecordChange};
    use crate::protocol::message::record_action as ra;

    struct Nodes {
        nodes: Vec<Cluster>,
        bucket: crate::shard::sim::Bucket,
        /// Record changes published, and who wants which record (node, name).
        interest: Vec<(usize, Bytes)>,
        /// Nodes killed: what is addressed to them is lost.
        dead: Vec<bool>,
        /// Compare-and-sets asked of the bucket.
        cas_calls: usize,
    }

    impl Nodes {
        fn new() -> Nodes {
            Nodes::of(2)
        }

        /// `count` single-shard nodes; node `i` has id `i + 1` and knows the others.
        fn of(count: usize) -> Nodes {
            let config = Config {
                cluster: Some(Default::default()),
                ..Config::default()
            };
            let mut nodes = Nodes {
                nodes: (0..count)
                    .map(|_| Cluster::with(1, config.clone()))
                    .collect(),
                bucket: Default::default(),
                interest: Vec::new(),
                dead: vec![false; count],
                cas_calls: 0,
            };
            nodes.members(0, 0);
            nodes
        }

        /// Every live node learns who is alive (`settle_ms` for the new homes to settle).
        fn members(&mut self, settle_ms: u64, now: u64) {
            let alive: Vec<u32> = (0..self.nodes.len())
                .filter(|i| !self.dead[*i])
                .map(|i| i as u32 + 1)
                .collect();
            for &id in &alive {
                let members = BusIn::Members {
                    me: id,
                    nodes: alive.clone(),
                    settle_ms,
                };
                self.nodes[id as usize - 1].shards[0].on_bus(members, now);
            }
            self.settle();
        }

        /// Node `node` dies: the others find it gone and re-home its names.
        fn kill(&mut self, node: usize, settle_ms: u64, now: u64) {
            self.dead[node] = true;
            for other in 0..self.nodes.len() {
                if !self.dead[other] {
                    let gone = BusIn::NodeGone {
                        node: node as u32 + 1,
                    };
                    self.nodes[other].shards[0].on_bus(gone, now);
                }
            }
            self.members(settle_ms, now);
        }

        fn tick(&mut self, now: u64) {
            for node in 0..self.nodes.len() {
                if !self.dead[node] {
                    self.nodes[node].shards[0].tick(now);
                }
            }
            self.settle();
        }

        /// Carries out every node's bus requests until none are left.
        fn settle(&mut self) {
            loop {
                let mut any = false;
                for node in 0..self.nodes.len() {
                    self.nodes[node].settle();
                    if self.dead[node] {
                        continue;
                    }
                    for request in self.nodes[node].shards[0].take_bus_out() {
                        any = true;
                        let answers = self.carry(node, request);
                        for (to, answer) in answers {
                            if !self.dead[to] {
                                self.nodes[to].shards[0].on_bus(answer, 0);
                            }
                        }
                    }
                }
                if !any {
                    return;
                }
            }
        }

        fn carry(&mut self, from: usize, request: BusOut) -> Vec<(usize, BusIn)> {
            match request {
                BusOut::Interest {
                    name, on, confirm, ..
                } => {
                    self.interest.retain(|(n, x)| !(*n == from && *x == name));
                    if on {
                        self.interest.push((from, name));
                    }
                    confirm
                        .map(|token| (from, BusIn::Confirmed { token }))
                        .into_iter()
                        .collect()
                }
                BusOut::Presence {
                    confirm: Some(login),
                    ..
                } => vec![(from, BusIn::PresenceConfirmed { login })],
                BusOut::Read { name } => {
                    let result = Ok(self.kv(&name));
                    vec![(from, BusIn::Read { name, result })]
                }
                BusOut::Cas {
                    name,
                    expected,
                    record,
                } => {
                    self.cas_calls += 1;
                    let result = self.bucket.cas(&name, expected, record);
                    vec![(from, BusIn::Cas { name, result })]
                }
                BusOut::Listener {
                    kind,
                    pattern,
                    conn,
                    on,
                } => {
                    let regex = std::str::from_utf8(&pattern)
                        .ok()
                        .and_then(|p| crate::core::bounded_regex(p).ok())
                        .map(std::sync::Arc::new);
                    let conn = ConnId {
                        node: from as u32 + 1,
                        ..conn
                    };
                    (0..self.nodes.len())
                        .filter(|n| *n != from)
                        .map(|n| {
                            let pattern = pattern.clone();
                            let regex = regex.clone();
                            let listener = BusIn::RemoteListener {
                                kind,
                                pattern,
                                regex,
                                conn,
                                on,
                            };
                            (n, listener)
                        })
                        .collect()
                }
                BusOut::Listen {
                    node,
                    kind,
                    name,
                    op,
                } => {
                    // Connections on the wire are the sender's (see `cluster::bus`).
                    let sender = from as u32 + 1;
                    let op = match op {
                        ListenOp::Response {
                            conn,
                            pattern,
                            accept,
                        } => ListenOp::Response {
                            conn: ConnId {
                                node: sender,
                                ..conn
                            },
                            pattern,
                            accept,
                        },
                        ListenOp::Claim { conn, pattern } => ListenOp::Claim {
                            conn: ConnId {
                                node: sender,
                                ..conn
                            },
                            pattern,
                        },
                        other => other,
                    };
                    let listen = BusIn::Listen {
                        from: sender,
                        kind,
                        name,
                        op,
                    };
                    vec![(node as usize - 1, listen)]
                }
                BusOut::Barrier { shard, token, .. } => {
                    vec![(from, BusIn::BarrierPassed { shard, token })]
                }
                BusOut::ToConn { conn, frame, .. } => vec![(
                    conn.node as usize - 1,
                    BusIn::ToConn {
                        local: conn.local,
                        frame,
                        rpc_call: None,
                    },
                )],
                BusOut::PublishRecord { name, change } => self
                    .interest
                    .iter()
                    .filter(|(node, n)| *node != from && *n == name)
                    .map(|(node, _)| {
                        let change: RecordChange = change.clone();
                        let name = name.clone();
                        (*node, BusIn::RecordChanged { name, change })
                    })
                    .collect(),
                _ => Vec::new(),
            }
        }

        fn kv(&self, name: &Bytes) -> KvRecord {
            self.bucket.kv(name)
        }

        fn login(&mut self, node: usize, user: &str) -> Client {
            let outbox = Outbox::new(1 << 20, 0);
            let local = self.nodes[node].shards[0].open_conn(outbox.clone(), 0);
            let client = Client {
                shard: 0,
                local,
                outbox,
            };
            for msg in [
                Message::new(topic::CONNECTION, connection_action::CHALLENGE),
                Message {
                    data: Some(Bytes::from(format!(r#"{{"username":"{user}"}}"#))),
                    ..Message::new(topic::AUTH, auth_action::REQUEST)
                },
            ] {
                self.send(node, &client, &msg);
            }
            assert_eq!(
                received(&client).last().map(|m| m.action),
                Some(auth_action::AUTH_SUCCESSFUL),
                "answered once the other nodes confirmed"
            );
            client
        }

        fn send(&mut self, node: usize, client: &Client, msg: &Message) {
            self.nodes[node].shards[0].on_client_frame(client.local, &msg.encode(), 0);
            self.settle();
        }
    }

    fn write(version: i32, data: &str) -> Message {
        Message {
            name: Some(Bytes::from_static(b"r")),
            version: Some(version),
            data: Some(Bytes::copy_from_slice(data.as_bytes())),
            is_write_ack: Some(true),
            correlation_id: Some(Bytes::from_static(b"w")),
            ..Message::new(topic::RECORD, ra::UPDATE)
        }
    }

    #[test]
    fn a_stale_node_gets_version_exists_with_the_buckets_record_and_its_subscribers_catch_up() {
        let mut nodes = Nodes::new();
        let a = nodes.login(0, "a");
        let b = nodes.login(1, "b");
        // Node 1 holds the record at revision 0 (read and subscribed).
        nodes.send(
            1,
            &b,
            &Message {
                correlation_id: Some(Bytes::from_static(b"s")),
                names: vec![Bytes::from_static(b"r")],
                ..Message::new(topic::RECORD, ra::SUBSCRIBECREATEANDREAD)
            },
        );
        let got = received(&b);
        assert!(got
            .iter()
            .any(|m| m.action == ra::READ_RESPONSE && m.version == Some(0)));
        // Node 0 writes version 1: the bucket takes it, node 1's subscriber hears it.
        nodes.send(0, &a, &write(1, r#"{"from":"a"}"#));
        assert_eq!(received(&a)[0].action, ra::WRITE_ACKNOWLEDGEMENT);
        let update = &received(&b)[0];
        assert_eq!((update.action, update.version), (ra::UPDATE, Some(1)));
        // Another node's write that node 1 never heard of (a change lost on the bus): node 1 is
        // stale, and a write it bases on its version is refused with the bucket's record.
        nodes.bucket.entries.insert(
            Bytes::from_static(b"r"),
            (
                99,
                Some(StoredRecord {
                    version: 2,
                    data: Bytes::from_static(br#"{"from":"elsewhere"}"#),
                }),
            ),
        );
        nodes.send(1, &b, &write(2, r#"{"from":"b"}"#));
        let got = received(&b);
        let refused = got
            .iter()
            .find(|m| m.action == ra::VERSION_EXISTS)
            .expect("VERSION_EXISTS");
        assert_eq!(refused.version, Some(2));
        assert_eq!(
            refused.data.as_deref(),
            Some(&br#"{"from":"elsewhere"}"#[..])
        );
        // Its subscriber was sent the bucket's record whole.
        assert!(got
            .iter()
            .any(|m| m.action == ra::UPDATE && m.version == Some(2)));
        // A forced write lands on top of it.
        nodes.send(1, &b, &write(-1, r#"{"from":"b"}"#));
        assert_eq!(received(&b)[0].action, ra::WRITE_ACKNOWLEDGEMENT);
        let stored = nodes.bucket.entries.get(&Bytes::from_static(b"r")).cloned();
        assert_eq!(stored.and_then(|(_, r)| r).map(|r| r.version), Some(3));
    }

    fn listen(pattern: &str) -> Message {
        Message {
            name: Some(Bytes::copy_from_slice(pattern.as_bytes())),
            ..Message::new(topic::RECORD, ra::LISTEN)
        }
    }

    fn subscription(action: i32, name: &str) -> Message {
        Message {
            correlation_id: Some(Bytes::from_static(b"s")),
            names: vec![Bytes::copy_from_slice(name.as_bytes())],
            ..Message::new(topic::RECORD, action)
        }
    }

    fn actions(client: &Client) -> Vec<i32> {
        received(client).iter().map(|m| m.action).collect()
    }

    #[test]
    fn a_provider_outlives_the_home_of_its_name_and_is_not_offered_twice() {
        let mut nodes = Nodes::of(3);
        // A name whose home is node id 3 (index 2), with the listener on node 0 and the
        // subscriber on node 1.
        let name = (0..)
            .map(|i| format!("feed/{i}"))
            .find(|n| super::super::cluster_listen::home_among(&[1, 2, 3], n.as_bytes()) == Some(3))
            .expect("a name homed on node 3");
        let provider = nodes.login(0, "provider");
        let other = nodes.login(1, "other-listener");
        let subscriber = nodes.login(1, "subscriber");
        nodes.send(0, &provider, &listen("feed/.*"));
        nodes.send(1, &other, &listen("feed/.*"));
        received(&provider);
        received(&other);
        nodes.send(
            1,
            &subscriber,
            &subscription(ra::SUBSCRIBECREATEANDREAD, &name),
        );
        received(&subscriber);
        // The home offers it to exactly one listener, which accepts.
        let offers = |c: &Client| {
            received(c)
                .iter()
                .filter(|m| m.action == ra::SUBSCRIPTION_FOR_PATTERN_FOUND)
                .count()
        };
        let (to_provider, to_other) = (offers(&provider), offers(&other));
        assert_eq!(to_provider + to_other, 1, "offered once");
        let (chosen, node) = if to_provider == 1 {
            (&provider, 0)
        } else {
            (&other, 1)
        };
        let accept = Message {
            name: Some(Bytes::from_static(b"feed/.*")),
            subscription: Some(Bytes::copy_from_slice(name.as_bytes())),
            ..Message::new(topic::RECORD, ra::LISTEN_ACCEPT)
        };
        nodes.send(node, chosen, &accept);
        assert!(actions(&subscriber).contains(&ra::SUBSCRIPTION_HAS_PROVIDER));
        // The home dies; the listeners and the subscriber live on.
        nodes.kill(2, 1000, 10);
        nodes.tick(500);
        nodes.tick(1500);
        assert!(
            !actions(&provider).contains(&ra::SUBSCRIPTION_FOR_PATTERN_FOUND)
                && !actions(&other).contains(&ra::SUBSCRIPTION_FOR_PATTERN_FOUND),
            "the name still has its provider: no new offer"
        );
        assert!(
            !actions(&subscriber).contains(&ra::SUBSCRIPTION_HAS_NO_PROVIDER),
            "subscribers are not told the provider left"
        );
        // The new home knows the provider: the last subscriber leaving stops it.
        nodes.send(1, &subscriber, &subscription(ra::UNSUBSCRIBE, &name));
        assert!(actions(chosen).contains(&ra::SUBSCRIPTION_FOR_PATTERN_REMOVED));
    }

    #[test]
    fn after_a_node_leaves_names_whose_home_stayed_are_offered_at_once() {
        let mut nodes = Nodes::of(3);
        // A name homed on node id 1 (index 0) whether node id 3 lives or not.
        let name = (0..)
            .map(|i| format!("feed/{i}"))
            .find(|n| {
                super::super::cluster_listen::home_among(&[1, 2, 3], n.as_bytes()) == Some(1)
                    && super::super::cluster_listen::home_among(&[1, 2], n.as_bytes()) == Some(1)
            })
            .expect("a name homed on node 1");
        let listener = nodes.login(0, "listener");
        let subscriber = nodes.login(0, "subscriber");
        nodes.send(0, &listener, &listen("feed/.*"));
        received(&listener);
        // Node id 3 leaves; the others settle for a second.
        nodes.kill(2, 1000, 10);
        nodes.send(
            0,
            &subscriber,
            &subscription(ra::SUBSCRIBECREATEANDREAD, &name),
        );
        assert!(
            actions(&listener).contains(&ra::SUBSCRIPTION_FOR_PATTERN_FOUND),
            "offered without waiting for the cluster to settle"
        );
    }

    #[test]
    fn a_node_that_joins_after_a_leave_has_settled_delays_no_offer_on_the_others() {
        let mut nodes = Nodes::of(4);
        // Node id 4 is not started yet: the cluster is ids 1-3.
        nodes.dead[3] = true;
        nodes.members(0, 0);
        // A name homed on node id 3, which moves to node id 1 when 3 leaves, and stays there
        // when node id 4 joins.
        let name = (0..)
            .map(|i| format!("feed/{i}"))
            .find(|n| {
                let home = |members: &[u32]| {
                    super::super::cluster_listen::home_among(members, n.as_bytes())
                };
                home(&[1, 2, 3]) == Some(3)
                    && home(&[1, 2]) == Some(1)
                    && home(&[1, 2, 4]) == Some(1)
            })
            .expect("such a name");
        let listener = nodes.login(0, "listener");
        let subscriber = nodes.login(0, "subscriber");
        nodes.send(0, &listener, &listen("feed/.*"));
        received(&listener);
        // Node id 3 leaves (a short settle, as after a leave message); 250 ms later, before
        // any tick, node id 4 joins.
        nodes.kill(2, 200, 10);
        nodes.dead[3] = false;
        nodes.members(2000, 260);
        nodes.send(
            0,
            &subscriber,
            &subscription(ra::SUBSCRIBECREATEANDREAD, &name),
        );
        assert!(
            actions(&listener).contains(&ra::SUBSCRIPTION_FOR_PATTERN_FOUND),
            "the leave had settled: offered at once"
        );
    }

    /// Another program changed rows behind the cluster's back; `store` is one node's view of
    /// the shared storage.
    fn change_storage(nodes: &Nodes, node: usize, name: &[u8], version: i32, data: &str) {
        let data = Bytes::copy_from_slice(data.as_bytes());
        let store = &nodes.nodes[node].stores[0];
        let set = crate::store::RecordStore::set(store, name, version, data);
        futures_lite::future::block_on(set).expect("a memory store");
    }

    #[test]
    fn a_notify_brings_storages_newer_row_to_every_node_and_an_older_one_changes_nothing() {
        let mut nodes = Nodes::new();
        let a = nodes.login(0, "a");
        let b = nodes.login(1, "b");
        for (node, client) in [(0, &a), (1, &b)] {
            nodes.send(node, client, &subscription(ra::SUBSCRIBECREATEANDREAD, "r"));
            received(client);
        }
        nodes.send(0, &a, &write(1, r#"{"from":"a"}"#));
        assert_eq!(received(&a)[0].action, ra::WRITE_ACKNOWLEDGEMENT);
        assert_eq!(received(&b)[0].version, Some(1));
        // Another program writes version 5; a client on node 1 says so.
        change_storage(&nodes, 1, b"r", 5, r#"{"from":"sql"}"#);
        let notify = Message {
            correlation_id: Some(Bytes::from_static(b"n")),
            names: vec![Bytes::from_static(b"r")],
            ..Message::new(topic::RECORD, ra::NOTIFY)
        };
        nodes.send(1, &b, &notify);
        let heard_b = received(&b);
        let update = heard_b
            .iter()
            .find(|m| m.action == ra::UPDATE)
            .expect("an update");
        assert_eq!(update.version, Some(5));
        assert!(heard_b
            .iter()
            .any(|m| m.action == ra::NOTIFY && m.is_ack == Some(true)));
        // Node 0's subscriber hears it through the bucket.
        let heard_a = received(&a);
        assert_eq!(heard_a.len(), 1, "{heard_a:?}");
        assert_eq!(
            (heard_a[0].action, heard_a[0].version),
            (ra::UPDATE, Some(5))
        );
        let in_bucket = nodes.bucket.entries.get(&Bytes::from_static(b"r")).cloned();
        assert_eq!(in_bucket.and_then(|(_, r)| r).map(|r| r.version), Some(5));
        // Node 0 follows a change whose row is older than the bucket (its own write, coming
        // back through storage's notifications): nothing is written and nobody hears of it.
        let cas_before = nodes.cas_calls;
        change_storage(&nodes, 0, b"r", 1, r#"{"from":"a"}"#);
        nodes.nodes[0].shards[0].on_external_change(vec![Bytes::from_static(b"r")]);
        nodes.settle();
        assert_eq!(nodes.cas_calls, cas_before);
        assert!(received(&a).is_empty() && received(&b).is_empty());
        // A writer goes on from version 5 on either node.
        nodes.send(0, &a, &write(6, r#"{"from":"a"}"#));
        assert_eq!(received(&a)[0].action, ra::WRITE_ACKNOWLEDGEMENT);
        assert_eq!(received(&b)[0].version, Some(6));
    }

    #[test]
    fn a_followed_change_of_a_record_no_node_holds_reaches_the_bucket_from_its_home_alone() {
        let mut nodes = Nodes::new();
        let name = Bytes::from_static(b"q");
        // A record the bucket never held is read from storage anyway: a row of it (a
        // subscribe-and-create's `{}`, version 0) changes nothing and costs no write.
        for node in 0..2 {
            change_storage(&nodes, node, &name, 0, "{}");
            nodes.nodes[node].shards[0].on_external_change(vec![name.clone()]);
        }
        nodes.settle();
        assert_eq!(nodes.cas_calls, 0);
        assert!(!nodes.bucket.entries.contains_key(&name));
        // The bucket holds version 2; another program writes version 3 to storage.
        let two = StoredRecord {
            version: 2,
            data: Bytes::from_static(b"{}"),
        };
        nodes.bucket.entries.insert(name.clone(), (7, Some(two)));
        nodes.bucket.revision = 7;
        for node in 0..2 {
            change_storage(&nodes, node, &name, 3, r#"{"from":"sql"}"#);
        }
        // Every node hears of the row; the node homing `q` brings it into the bucket.
        for node in 0..2 {
            nodes.nodes[node].shards[0].on_external_change(vec![name.clone()]);
        }
        nodes.settle();
        let in_bucket = nodes.bucket.entries.get(&name).cloned();
        assert_eq!(in_bucket.and_then(|(_, r)| r).map(|r| r.version), Some(3));
        assert_eq!(nodes.cas_calls, 1, "one node wrote it");
        // And a reader on either node now gets it from the bucket.
        let b = nodes.login(1, "b");
        nodes.send(1, &b, &subscription(ra::SUBSCRIBECREATEANDREAD, "q"));
        let read = received(&b);
        let response = read
            .iter()
            .find(|m| m.action == ra::READ_RESPONSE)
            .expect("a read");
        assert_eq!(response.version, Some(3));
    }

    #[test]
    fn writes_that_wait_for_a_records_write_are_gathered_into_one_compare_and_set() {
        let mut nodes = Nodes::new();
        let a = nodes.login(0, "a");
        let b = nodes.login(1, "b");
        nodes.send(1, &b, &subscription(ra::SUBSCRIBECREATEANDREAD, "r"));
        received(&b);
        // Three writes arrive together: the first is proposed alone, the two that wait for it
        // go to the bucket in one compare-and-set.
        for version in 1..=3 {
            let frame = write(version, &format!(r#"{{"n":{version}}}"#)).encode();
            nodes.nodes[0].shards[0].on_client_frame(a.local, &frame, 0);
        }
        nodes.settle();
        // The subscribe made the record in the bucket: one compare-and-set, then two.
        assert_eq!(nodes.cas_calls, 3);
        let acks = received(&a);
        assert_eq!(acks.len(), 3, "{acks:?}");
        assert!(acks.iter().all(|m| m.action == ra::WRITE_ACKNOWLEDGEMENT));
        let seen: Vec<Option<i32>> = received(&b).iter().map(|m| m.version).collect();
        assert_eq!(
            seen,
            [Some(1), Some(2), Some(3)],
            "the other node sees every version"
        );
        // Another node wrote meanwhile: the gathered writes lose the compare-and-set and are
        // handled again on the bucket's record, together.
        nodes.bucket.entries.insert(
            Bytes::from_static(b"r"),
            (
                99,
                Some(StoredRecord {
                    version: 5,
                    data: Bytes::from_static(br#"{"n":5}"#),
                }),
            ),
        );
        nodes.cas_calls = 0;
        for n in 0..3 {
            let frame = write(-1, &format!(r#"{{"forced":{n}}}"#)).encode();
            nodes.nodes[0].shards[0].on_client_frame(a.local, &frame, 0);
        }
        // A versioned write behind them waits for them and is answered on what the bucket took.
        let late = write(4, r#"{"late":true}"#).encode();
        nodes.nodes[0].shards[0].on_client_frame(a.local, &late, 0);
        nodes.settle();
        let got = received(&a);
        let acks = got
            .iter()
            .filter(|m| m.action == ra::WRITE_ACKNOWLEDGEMENT)
            .count();
        assert_eq!(acks, 3, "{got:?}");
        let refused = got.iter().find(|m| m.action == ra::VERSION_EXISTS);
        assert_eq!(refused.and_then(|m| m.version), Some(8), "{got:?}");
        let stored = nodes.bucket.entries.get(&Bytes::from_static(b"r")).cloned();
        let stored = stored.and_then(|(_, r)| r).expect("stored");
        assert_eq!(stored.version, 8);
        assert_eq!(stored.data.as_ref(), br#"{"forced":2}"#);
        assert_eq!(nodes.cas_calls, 2, "one refused, then the three gathered");
    }

    /// Issue 27, defect 2: node 0's write reaches the bucket, but before its answer comes back
    /// another node's newer write arrives over the bus. The older answer must not put the
    /// older record back in memory or send it to node 0's subscribers.
    #[test]
    fn a_pending_write_confirmed_after_a_newer_change_does_not_take_the_record_back() {
        let mut nodes = Nodes::new();
        let a = nodes.login(0, "a");
        let watcher = nodes.login(0, "w");
        let b = nodes.login(1, "b");
        nodes.send(0, &watcher, &subscription(ra::SUBSCRIBECREATEANDREAD, "r"));
        nodes.send(1, &b, &subscription(ra::SUBSCRIBECREATEANDREAD, "r"));
        received(&watcher);
        received(&b);
        // Node 0's write reaches the bucket; its answer is held back.
        let frame = write(1, r#"{"from":"a"}"#).encode();
        nodes.nodes[0].shards[0].on_client_frame(a.local, &frame, 0);
        nodes.nodes[0].settle();
        let mut held = Vec::new();
        for request in nodes.nodes[0].shards[0].take_bus_out() {
            held.extend(nodes.carry(0, request));
        }
        // Node 1 writes on top of it, and node 0 hears of that first.
        nodes.send(1, &b, &write(-1, r#"{"from":"b"}"#));
        for (to, answer) in held {
            nodes.nodes[to].shards[0].on_bus(answer, 0);
        }
        nodes.settle();
        let seen: Vec<i32> = received(&watcher)
            .iter()
            .filter_map(|m| m.version)
            .collect();
        assert!(
            seen.windows(2).all(|w| w[0] < w[1]),
            "versions went back at node 0's subscriber: {seen:?}"
        );
        assert_eq!(seen.last(), Some(&2), "{seen:?}");
        assert_eq!(received(&a)[0].action, ra::WRITE_ACKNOWLEDGEMENT);
        // Node 0 holds the newest record: a write based on it is taken.
        nodes.send(0, &a, &write(3, r#"{"from":"a again"}"#));
        assert_eq!(received(&a)[0].action, ra::WRITE_ACKNOWLEDGEMENT);
        // One more for the record made by the first subscribe.
        assert_eq!(nodes.cas_calls, 5, "no conflict: node 0 knew version 2");
    }
}
