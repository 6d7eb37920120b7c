//! Clusters of real corestream processes over a real NATS server (the machine's, at
//! 127.0.0.1:4222; each test uses a subject prefix of its own). Without NATS the tests say
//! they skipped; under CI they fail.

mod common;

use bytes::Bytes;
use common::{http, RawClient, Server};
use corestream::protocol::message::{event_action as ea, topic, Message};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const NATS_PORT: u16 = 4222;

/// A config folder of its own with a cluster prefix of its own.
struct ClusterSpec {
    dir: PathBuf,
    #[allow(dead_code)]
    prefix: String,
}

impl ClusterSpec {
    fn new(test: &str, nats_port: u16, extra: &str) -> ClusterSpec {
        let prefix = format!("t{}_{}_{test}", std::process::id(), fastrand::u32(..));
        let dir = std::env::temp_dir().join(format!("corestream-cluster-{prefix}"));
        std::fs::create_dir_all(&dir).expect("config dir");
        let config = format!(
            "clusterNode:\n  name: nats\n  options:\n    servers: [nats://127.0.0.1:{nats_port}]\n    prefix: {prefix}\nmonitoring:\n  type: prometheus\n{extra}"
        );
        std::fs::write(dir.join("config.yml"), config).expect("config");
        ClusterSpec { dir, prefix }
    }

    /// One node with `cores` shards.
    fn node(&self, cores: usize) -> Server {
        let config = self.dir.join("config.yml");
        Server::start(&[
            "--cores",
            &cores.to_string(),
            "-c",
            config.to_str().expect("path"),
        ])
    }
}

impl Drop for ClusterSpec {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn bytes(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

fn subscribe(client: &mut RawClient, name: &str) {
    client.send(&Message {
        correlation_id: Some(bytes("s")),
        names: vec![bytes(name)],
        ..Message::new(topic::EVENT, ea::SUBSCRIBE)
    });
    let ack = client.expect_message();
    assert_eq!(ack.is_ack, Some(true), "{ack:?}");
}

fn emit(client: &mut RawClient, name: &str, data: &str) {
    client.send(&Message {
        name: Some(bytes(name)),
        data: Some(bytes(data)),
        ..Message::new(topic::EVENT, ea::EMIT)
    });
}

/// A Prometheus counter of a node.
fn counter(server: &Server, metric: &str) -> u64 {
    let scrape = http(server.port, "GET", "/metrics", &[], b"").text();
    scrape
        .lines()
        .find_map(|line| line.strip_prefix(metric)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{metric} not in {scrape}"))
}

/// Waits until `check` holds (at most 5 s).
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn events_cross_nodes_and_only_to_the_nodes_that_want_them() {
    if !common::service("NATS", NATS_PORT) {
        return;
    }
    let spec = ClusterSpec::new("events", NATS_PORT, "");
    let nodes: Vec<Server> = (0..3).map(|i| spec.node(1 + i % 2)).collect();
    let mut publisher = RawClient::login(nodes[0].port, "publisher");
    let mut near = RawClient::login(nodes[0].port, "near");
    let mut far = RawClient::login(nodes[1].port, "far");
    subscribe(&mut near, "news");
    subscribe(&mut far, "news");
    // The ack means the bus routes the name to the subscriber's node: the next emit arrives.
    for i in 0..50 {
        emit(&mut publisher, "news", &format!("{i}"));
    }
    for client in [&mut near, &mut far] {
        for i in 0..50 {
            let got = client.expect_message();
            assert_eq!(got.action, ea::EMIT);
            assert_eq!(
                got.data.as_deref(),
                Some(format!("{i}").as_bytes()),
                "in order"
            );
        }
    }
    // A subscriber on the third node, then a publisher there: both directions.
    let mut third = RawClient::login(nodes[2].port, "third");
    subscribe(&mut third, "news");
    emit(&mut third, "news", "\"from the third\"");
    for client in [&mut near, &mut far] {
        assert_eq!(
            client.expect_message().data.as_deref(),
            Some(&b"\"from the third\""[..])
        );
    }
    // Interest: the third node unsubscribes; what node 0 publishes then reaches node 1 only.
    third.send(&Message {
        correlation_id: Some(bytes("u")),
        names: vec![bytes("news")],
        ..Message::new(topic::EVENT, ea::UNSUBSCRIBE)
    });
    assert_eq!(third.expect_message().is_ack, Some(true));
    let before: Vec<u64> = nodes
        .iter()
        .map(|n| counter(n, "corestream_cluster_received_total"))
        .collect();
    for i in 0..20 {
        emit(&mut publisher, "news", &format!("{i}"));
    }
    for _ in 0..20 {
        far.expect_message();
    }
    eventually("node 1 counted 20 arrivals", || {
        counter(&nodes[1], "corestream_cluster_received_total") == before[1] + 20
    });
    assert_eq!(
        counter(&nodes[2], "corestream_cluster_received_total"),
        before[2],
        "the node without subscribers heard nothing"
    );
    assert_eq!(
        counter(&nodes[0], "corestream_cluster_received_total"),
        before[0],
        "the publishing node does not hear itself"
    );
    // A name nobody else wants crosses to no node.
    let before: Vec<u64> = nodes
        .iter()
        .map(|n| counter(n, "corestream_cluster_received_total"))
        .collect();
    emit(&mut publisher, "nobody-else", "1");
    emit(&mut publisher, "news", "\"marker\"");
    assert_eq!(
        far.expect_message().data.as_deref(),
        Some(&b"\"marker\""[..])
    );
    let after: Vec<u64> = nodes
        .iter()
        .map(|n| counter(n, "corestream_cluster_received_total"))
        .collect();
    assert_eq!(after[0], before[0]);
    assert_eq!(after[1], before[1] + 1, "only the marker");
    assert_eq!(after[2], before[2]);
    drop(spec);
}
