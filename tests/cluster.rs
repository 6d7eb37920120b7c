//! Clusters of real corestream processes over a real NATS server (the machine's, at
//! 127.0.0.1:4222; each test uses a subject prefix of its own). Without NATS the tests say
//! they skipped; under CI they fail.

mod common;

use bytes::Bytes;
use common::nats::{nats_server_installed, OwnNats};
use common::{eventually, http, RawClient, Server};
use corestream::protocol::message::{
    event_action as ea, presence_action as pa, record_action as ra, rpc_action, topic, Message,
};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const NATS_PORT: u16 = 4222;

/// A config folder of its own with a cluster prefix of its own.
struct ClusterSpec {
    dir: PathBuf,
    prefix: String,
    nats_port: u16,
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
        ClusterSpec {
            dir,
            prefix,
            nats_port,
        }
    }

    /// Nodes are gone 1.5 s after their last heartbeat (every 300 ms), for failure tests.
    fn short_node_timeout(&self) {
        self.add_options("    nodeTimeout: 1500\n    heartbeatInterval: 300\n");
    }

    /// More `clusterNode.options` lines (indented by four).
    fn add_options(&self, lines: &str) {
        let config = std::fs::read_to_string(self.dir.join("config.yml")).expect("config");
        let config = config.replace("    prefix:", &format!("{lines}    prefix:"));
        std::fs::write(self.dir.join("config.yml"), config).expect("config");
    }

    /// `corestream start` with this config, expected to fail: what it printed.
    fn failed_start(&self) -> String {
        let config = self.dir.join("config.yml");
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_corestream"))
            .args(["start", "--host", "127.0.0.1", "--port", "0", "-c"])
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start corestream");
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait().expect("wait").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the node started");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut printed = String::new();
        if let Some(mut stderr) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut stderr, &mut printed);
        }
        printed
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
        // The records bucket the nodes made on the shared NATS.
        let _ = jetstream_delete_stream(self.nats_port, &format!("KV_{}_records", self.prefix));
    }
}

/// Deletes a JetStream stream with NATS's text protocol (a request with a reply inbox).
fn jetstream_delete_stream(port: u16, stream: &str) -> std::io::Result<String> {
    use std::io::{BufRead, BufReader, Write};
    let socket = std::net::TcpStream::connect(("127.0.0.1", port))?;
    socket.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(socket.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?; // INFO
    let mut writer = socket;
    write!(
        writer,
        "CONNECT {{\"verbose\":false}}\r\nSUB _INBOX.cleanup 1\r\nPUB $JS.API.STREAM.DELETE.{stream} _INBOX.cleanup 0\r\n\r\n"
    )?;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(String::new());
        }
        if line.starts_with("MSG") {
            line.clear();
            reader.read_line(&mut line)?;
            return Ok(line.clone());
        }
        if line.starts_with("PING") {
            writer.write_all(b"PONG\r\n")?;
        }
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

fn record_subscribe(client: &mut RawClient, name: &str) -> Message {
    client.send(&Message {
        correlation_id: Some(bytes("s")),
        names: vec![bytes(name)],
        ..Message::new(topic::RECORD, ra::SUBSCRIBECREATEANDREAD)
    });
    // The ack and the read answer, in either order.
    let (first, second) = (client.expect_message(), client.expect_message());
    let (ack, reply) = if first.is_ack == Some(true) {
        (first, second)
    } else {
        (second, first)
    };
    assert_eq!(ack.is_ack, Some(true), "{ack:?}");
    assert_eq!(reply.action, ra::READ_RESPONSE, "{reply:?}");
    reply
}

fn record_read(client: &mut RawClient, name: &str) -> Message {
    client.send(&Message {
        name: Some(bytes(name)),
        ..Message::new(topic::RECORD, ra::READ)
    });
    client.expect_message()
}

/// A write with a write ack at `version`: the answer.
fn record_write(
    client: &mut RawClient,
    name: &str,
    version: i32,
    path: Option<&str>,
    data: &str,
) -> Message {
    client.send(&Message {
        name: Some(bytes(name)),
        version: Some(version),
        path: path.map(bytes),
        data: Some(bytes(data)),
        is_write_ack: Some(true),
        correlation_id: Some(bytes("w")),
        ..Message::new(
            topic::RECORD,
            if path.is_some() {
                ra::PATCH
            } else {
                ra::UPDATE
            },
        )
    });
    client.expect_message()
}

#[test]
fn records_keep_one_sequence_of_versions_across_nodes() {
    if !common::service("NATS", NATS_PORT) {
        return;
    }
    let spec = ClusterSpec::new("records", NATS_PORT, "");
    let nodes: Vec<Server> = (0..3).map(|i| spec.node(1 + i % 2)).collect();
    let mut watchers: Vec<RawClient> = nodes
        .iter()
        .map(|n| RawClient::login(n.port, "watcher"))
        .collect();
    for watcher in &mut watchers {
        let read = record_subscribe(watcher, "shared");
        assert_eq!(read.version, Some(0));
    }
    // A write on one node reaches the others' subscribers, and their reads.
    let mut first = RawClient::login(nodes[0].port, "first");
    let ack = record_write(&mut first, "shared", 1, None, r#"{"start":true}"#);
    assert_eq!(ack.action, ra::WRITE_ACKNOWLEDGEMENT, "{ack:?}");
    for watcher in &mut watchers {
        let update = watcher.expect_message();
        assert_eq!((update.action, update.version), (ra::UPDATE, Some(1)));
    }
    let mut reader = RawClient::login(nodes[2].port, "reader");
    let read = record_read(&mut reader, "shared");
    assert_eq!(read.version, Some(1));
    assert_eq!(read.data.as_deref(), Some(&br#"{"start":true}"#[..]));
    // A stale version on another node: VERSION_EXISTS with the cluster's version and data.
    let mut stale = RawClient::login(nodes[1].port, "stale");
    let refused = record_write(&mut stale, "shared", 1, None, r#"{"late":1}"#);
    assert_eq!(refused.action, ra::VERSION_EXISTS, "{refused:?}");
    assert_eq!(refused.version, Some(1));
    assert_eq!(refused.data.as_deref(), Some(&br#"{"start":true}"#[..]));

    // Writers on every node at once, each patching its own key, each retrying with the
    // version VERSION_EXISTS gives it.
    const WRITES: usize = 40;
    let writers: Vec<_> = nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let port = node.port;
            std::thread::spawn(move || {
                let mut client = RawClient::login(port, &format!("writer{i}"));
                let (mut version, mut accepted, mut conflicts) = (1, 0, 0);
                while accepted < WRITES {
                    let path = format!("w{i}");
                    let answer = record_write(
                        &mut client,
                        "shared",
                        version + 1,
                        Some(&path),
                        &format!("{accepted}"),
                    );
                    match answer.action {
                        ra::WRITE_ACKNOWLEDGEMENT => {
                            accepted += 1;
                            version += 1;
                        }
                        ra::VERSION_EXISTS => {
                            conflicts += 1;
                            version = answer.version.expect("current version");
                        }
                        other => panic!("writer {i}: {other} {answer:?}"),
                    }
                }
                conflicts
            })
        })
        .collect();
    let conflicts: usize = writers.into_iter().map(|w| w.join().expect("writer")).sum();
    let last = 1 + 3 * WRITES as i32;
    // Every node's subscriber saw versions in order up to the last, and every node reads the
    // same final record.
    for (i, watcher) in watchers.iter_mut().enumerate() {
        let mut seen = 1;
        while seen < last {
            let update = watcher.expect_message();
            let version = update.version.expect("version");
            assert!(version > seen, "node {i}: {version} after {seen}");
            seen = version;
        }
    }
    let mut finals = Vec::new();
    for node in &nodes {
        let mut client = RawClient::login(node.port, "final");
        let read = record_read(&mut client, "shared");
        assert_eq!(read.version, Some(last), "no version was accepted twice");
        finals.push(read.data.expect("data"));
    }
    assert!(finals.windows(2).all(|w| w[0] == w[1]), "{finals:?}");
    let data: serde_json::Value = serde_json::from_slice(&finals[0]).expect("json");
    for i in 0..3 {
        assert_eq!(data[format!("w{i}")], WRITES - 1, "{data}");
    }
    println!(
        "{} writes from 3 nodes, {conflicts} conflicts retried",
        3 * WRITES
    );
}

/// The real client's conformance scenarios with each client of a scenario on the next of
/// three nodes (tests/node/client is the shared suite, with helpers that spread clients over
/// the nodes DS_URL lists).
fn conformance_across_three_nodes(cores: [usize; 3], files: &[&str]) {
    if !common::service("NATS", NATS_PORT) {
        return;
    }
    let spec = ClusterSpec::new("conformance", NATS_PORT, "");
    let nodes: Vec<Server> = cores.iter().map(|&c| spec.node(c)).collect();
    let urls: Vec<String> = nodes.iter().map(Server::url).collect();
    let output = std::process::Command::new("bash")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node/run.sh"))
        .arg(urls.join(","))
        .args(files)
        .output()
        .expect("run the client tests");
    let output = String::from_utf8_lossy(&output.stdout).to_string();
    let failed: Vec<&str> = output.lines().filter(|l| l.starts_with("not ok")).collect();
    assert!(
        failed.is_empty(),
        "scenarios failed across nodes: {failed:?}\n{output}"
    );
    assert!(output.contains("# pass 30"), "{output}");
    println!(
        "{}",
        output
            .lines()
            .filter(|l| l.starts_with("# ") || l.starts_with("not ok"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn conformance_across_three_nodes_of_one_and_two_shards() {
    conformance_across_three_nodes(
        [1, 2, 1],
        &[
            "client/event.test.mjs",
            "client/record.test.mjs",
            "client/connection.test.mjs",
            "client/presence.test.mjs",
            "client/rpc.test.mjs",
        ],
    );
}

/// SIGKILL one node of three: within `nodeTimeout` its users leave presence everywhere and its
/// providers are gone (calls find the providers left, then NO_RPC_PROVIDER); what it
/// acknowledged is still there.
#[test]
fn a_killed_node_takes_its_users_and_providers_and_loses_no_acknowledged_write() {
    if !common::service("NATS", NATS_PORT) {
        return;
    }
    let spec = ClusterSpec::new("kill", NATS_PORT, "");
    spec.short_node_timeout();
    let survivor = spec.node(2);
    let doomed = spec.node(1);
    let mut watcher = presence_watcher(survivor.port, "doomed-user");
    let mut victim = RawClient::login(doomed.port, "doomed-user");
    let joined = watcher.expect_message();
    assert_eq!(joined.action, pa::PRESENCE_JOIN, "{joined:?}");
    // A provider on the doomed node; a call from the survivor reaches it.
    provide(&mut victim, "work", rpc_action::PROVIDE);
    let mut caller = RawClient::login(survivor.port, "caller");
    let call = |caller: &mut RawClient, cid: &str| rpc_call(caller, "work", cid);
    // A provide's ack waits until every node knows the provider: a call made on another node
    // right after the ack finds it, every time.
    for i in 0..20 {
        let name = format!("fresh-{i}");
        provide(&mut victim, &name, rpc_action::PROVIDE);
        rpc_call(&mut caller, &name, &name);
        let Some(request) = next_matching(&mut victim, Duration::from_secs(2), |_| true) else {
            let answer = next_matching(&mut caller, Duration::from_secs(1), |_| true);
            panic!("{name}: the provider got no request; the caller got {answer:?}");
        };
        assert_eq!(request.action, rpc_action::REQUEST, "{name}: {request:?}");
        victim.send(&Message {
            action: rpc_action::RESPONSE,
            data: Some(bytes("2")),
            ..request
        });
        let answer = caller.expect_message();
        assert_eq!(answer.action, rpc_action::RESPONSE, "{answer:?}");
        // And an unprovide's ack too: a call right after it finds no provider.
        provide(&mut victim, &name, rpc_action::UNPROVIDE);
        rpc_call(&mut caller, &name, "gone");
        let answer = caller.expect_message();
        assert_eq!(
            answer.action,
            rpc_action::NO_RPC_PROVIDER,
            "{name}: {answer:?}"
        );
    }
    call(&mut caller, "before");
    let request = victim.expect_message();
    assert_eq!(request.action, rpc_action::REQUEST, "{request:?}");
    victim.send(&Message {
        action: rpc_action::RESPONSE,
        data: Some(bytes("2")),
        ..request
    });
    let answer = caller.expect_message();
    assert_eq!(answer.action, rpc_action::RESPONSE, "{answer:?}");
    assert_eq!(answer.data.as_deref(), Some(&b"2"[..]));
    // An acknowledged write on the doomed node.
    let ack = record_write(&mut victim, "kept", -1, None, r#"{"kept":true}"#);
    assert_eq!(ack.action, ra::WRITE_ACKNOWLEDGEMENT, "{ack:?}");
    let killed_at = kill(&doomed);
    let left = watcher.expect_message();
    assert_eq!(left.action, pa::PRESENCE_LEAVE, "{left:?}");
    let took = killed_at.elapsed();
    assert!(took < Duration::from_secs(4), "left after {took:?}");
    call(&mut caller, "after");
    let answer = caller.expect_message();
    assert_eq!(answer.action, rpc_action::NO_RPC_PROVIDER, "{answer:?}");
    let read = record_read(&mut caller, "kept");
    assert_eq!(read.version, Some(1));
    assert_eq!(read.data.as_deref(), Some(&br#"{"kept":true}"#[..]));
    println!("the killed node's user left after {took:?}");
    drop(doomed);
}

/// PROVIDE or UNPROVIDE `name`, and its ack.
fn provide(client: &mut RawClient, name: &str, action: i32) {
    client.send(&Message {
        correlation_id: Some(bytes("r")),
        names: vec![bytes(name)],
        ..Message::new(topic::RPC, action)
    });
    let ack = client.expect_message();
    assert_eq!(ack.is_ack, Some(true), "{name}: {ack:?}");
}

/// A call of `name` with data 1.
fn rpc_call(caller: &mut RawClient, name: &str, cid: &str) {
    caller.send(&Message {
        name: Some(bytes(name)),
        correlation_id: Some(bytes(cid)),
        data: Some(bytes("1")),
        ..Message::new(topic::RPC, rpc_action::REQUEST)
    });
}

/// A client on `port` subscribed to the presence of `user`.
fn presence_watcher(port: u16, user: &str) -> RawClient {
    let mut watcher = RawClient::login(port, "watcher");
    watcher.send(&Message {
        correlation_id: Some(bytes("p")),
        names: vec![bytes(user)],
        ..Message::new(topic::PRESENCE, pa::SUBSCRIBE)
    });
    assert_eq!(watcher.expect_message().is_ack, Some(true));
    watcher
}

/// SIGKILL of a node; when it was sent.
fn kill(node: &Server) -> Instant {
    let at = Instant::now();
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &node.pid().to_string()])
        .status();
    at
}

/// The next message of `client` within `timeout` that `wanted` accepts (others are skipped);
/// `None` if none came.
fn next_matching(
    client: &mut RawClient,
    timeout: Duration,
    wanted: impl Fn(&Message) -> bool,
) -> Option<Message> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        client.set_timeout(left.max(Duration::from_millis(1)));
        let received = client.receive_quietly();
        client.set_timeout(Duration::from_secs(5));
        match received? {
            common::Received::Message(msg) if wanted(&msg) => return Some(*msg),
            _ => {}
        }
    }
}

fn is_action(action: i32) -> impl Fn(&Message) -> bool {
    move |msg| msg.topic == topic::RECORD && msg.action == action
}

fn record_listen(client: &mut RawClient, pattern: &str) {
    client.send(&Message {
        name: Some(bytes(pattern)),
        ..Message::new(topic::RECORD, ra::LISTEN)
    });
    assert_eq!(client.expect_message().is_ack, Some(true));
}

/// Waits for one of `listeners` to be offered `name` and accepts at once (an offer left
/// unanswered moves on after the response timeout); then no other may be offered it.
fn take_offer(listeners: &mut [RawClient], name: &str) -> usize {
    let offer_of = |msg: &Message| {
        is_action(ra::SUBSCRIPTION_FOR_PATTERN_FOUND)(msg)
            && msg.subscription.as_deref() == Some(name.as_bytes())
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    let provider = 'found: loop {
        assert!(
            Instant::now() < deadline,
            "{name} was offered to no listener"
        );
        for (i, listener) in listeners.iter_mut().enumerate() {
            if let Some(offer) = next_matching(listener, Duration::from_millis(20), offer_of) {
                listener.send(&Message {
                    topic: topic::RECORD,
                    action: ra::LISTEN_ACCEPT,
                    ..offer
                });
                break 'found i;
            }
        }
    };
    for (i, listener) in listeners.iter_mut().enumerate() {
        if i != provider {
            let offer = next_matching(listener, Duration::from_millis(800), offer_of);
            assert!(offer.is_none(), "{name} offered to a second listener");
        }
    }
    provider
}

fn record_unsubscribe(client: &mut RawClient, name: &str) {
    client.send(&Message {
        correlation_id: Some(bytes("u")),
        names: vec![bytes(name)],
        ..Message::new(topic::RECORD, ra::UNSUBSCRIBE)
    });
    let ack = next_matching(client, Duration::from_secs(5), |m| m.is_ack == Some(true));
    assert!(ack.is_some(), "unsubscribe ack");
}

/// Listening across three nodes: a name with subscribers on two nodes is offered to one of
/// the listeners on two other nodes, never both; every subscriber hears it has a provider;
/// the provider hears only when the last subscriber anywhere is gone. Then the providing
/// listener's node is killed: the name is offered to the other listener, and the subscriber
/// hears of the new provider.
#[test]
fn listening_offers_a_name_once_cluster_wide_and_again_when_the_provider_node_dies() {
    if !common::service("NATS", NATS_PORT) {
        return;
    }
    let spec = ClusterSpec::new("listen", NATS_PORT, "");
    spec.short_node_timeout();
    let mut nodes: Vec<Option<Server>> = [1, 2, 1, 1].iter().map(|&c| Some(spec.node(c))).collect();
    let port = |nodes: &[Option<Server>], i: usize| nodes[i].as_ref().expect("node").port;
    let mut listeners = [
        RawClient::login(port(&nodes, 0), "listener-0"),
        RawClient::login(port(&nodes, 3), "listener-3"),
    ];
    for listener in &mut listeners {
        record_listen(listener, "feed/.*");
    }
    // Listeners are announced to every node at once; give it a moment to arrive.
    std::thread::sleep(Duration::from_millis(300));
    let mut on_one = RawClient::login(port(&nodes, 1), "subscriber-1");
    let mut on_two = RawClient::login(port(&nodes, 2), "subscriber-2");
    record_subscribe(&mut on_one, "feed/x");
    record_subscribe(&mut on_two, "feed/x");
    let found = is_action(ra::SUBSCRIPTION_FOR_PATTERN_FOUND);
    let provider = take_offer(&mut listeners, "feed/x");
    let has = is_action(ra::SUBSCRIPTION_HAS_PROVIDER);
    for subscriber in [&mut on_one, &mut on_two] {
        let told = next_matching(subscriber, Duration::from_secs(3), &has);
        assert!(told.is_some(), "every subscriber hears of the provider");
    }
    // A subscriber arriving later hears of it with its subscription.
    let mut late = RawClient::login(port(&nodes, 2), "late");
    late.send(&Message {
        correlation_id: Some(bytes("s")),
        names: vec![bytes("feed/x")],
        ..Message::new(topic::RECORD, ra::SUBSCRIBECREATEANDREAD)
    });
    assert!(next_matching(&mut late, Duration::from_secs(3), &has).is_some());
    drop(late);
    let removed = is_action(ra::SUBSCRIPTION_FOR_PATTERN_REMOVED);
    record_unsubscribe(&mut on_one, "feed/x");
    assert!(
        next_matching(
            &mut listeners[provider],
            Duration::from_millis(700),
            &removed
        )
        .is_none(),
        "a subscriber is left on another node"
    );
    record_unsubscribe(&mut on_two, "feed/x");
    let stop = next_matching(&mut listeners[provider], Duration::from_secs(3), &removed);
    assert_eq!(
        stop.and_then(|m| m.subscription),
        Some(bytes("feed/x")),
        "the provider hears when the last subscriber anywhere is gone"
    );
    // Again, then the provider's node dies.
    record_subscribe(&mut on_one, "feed/y");
    let provider = take_offer(&mut listeners, "feed/y");
    assert!(next_matching(&mut on_one, Duration::from_secs(3), &has).is_some());
    let doomed = nodes[if provider == 0 { 0 } else { 3 }]
        .take()
        .expect("node");
    let killed_at = kill(&doomed);
    let other = 1 - provider;
    let offer = next_matching(&mut listeners[other], Duration::from_secs(6), &found);
    let took = killed_at.elapsed();
    assert_eq!(
        offer.and_then(|m| m.subscription),
        Some(bytes("feed/y")),
        "the name is offered again after its provider's node died"
    );
    listeners[other].send(&Message {
        name: Some(bytes("feed/.*")),
        subscription: Some(bytes("feed/y")),
        ..Message::new(topic::RECORD, ra::LISTEN_ACCEPT)
    });
    // 6 s, not 3: one clean-clone CI run (every test binary on 2 busy cores) missed it at 3 s;
    // it takes milliseconds when the machine is quiet.
    assert!(
        next_matching(&mut on_one, Duration::from_secs(6), &has).is_some(),
        "the subscriber hears of the new provider"
    );
    println!("the name was offered again {took:?} after the provider's node was killed");
    drop(doomed);
}

/// A patch of `path` with a write ack; the answer's action (0 if the socket failed).
fn acked_patch(client: &mut RawClient, name: &str, path: &str, value: u64) -> i32 {
    client.send(&Message {
        name: Some(bytes(name)),
        version: Some(-1),
        path: Some(bytes(path)),
        data: Some(bytes(&value.to_string())),
        is_write_ack: Some(true),
        correlation_id: Some(bytes(&value.to_string())),
        ..Message::new(topic::RECORD, ra::PATCH)
    });
    client.expect_message().action
}

/// SIGKILL of a node under load: a publisher and an acknowledged writer on node A, the same on
/// the doomed node C, subscribers on B. Killing C costs A and B nothing: every event A
/// published reaches B, once and in order; every write acknowledged by either node is in the
/// record B reads at the end; C's user leaves presence on B within the node timeout.
#[test]
fn a_node_killed_under_load_loses_nothing_acknowledged_and_disturbs_no_one_else() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    if !common::service("NATS", NATS_PORT) {
        return;
    }
    let spec = ClusterSpec::new("killload", NATS_PORT, "");
    spec.short_node_timeout();
    let (a, b, c) = (spec.node(1), spec.node(2), spec.node(1));
    let mut events = RawClient::login(b.port, "events");
    subscribe(&mut events, "load");
    let mut watcher = presence_watcher(b.port, "doomed-writer");
    // C has subscribers too, so A's publishes cross to it until it dies.
    let mut on_c = RawClient::login(c.port, "c-subscriber");
    subscribe(&mut on_c, "load");
    const EVENTS: u64 = 4000;
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let port = a.port;
        std::thread::spawn(move || {
            let mut publisher = RawClient::login(port, "publisher");
            for n in 1..=EVENTS {
                emit(&mut publisher, "load", &n.to_string());
                if n % 4 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        })
    };
    let writer = |port: u16, user: &'static str, path: &'static str| {
        let (acked, stop) = (Arc::new(AtomicU64::new(0)), stop.clone());
        let last = acked.clone();
        let thread = std::thread::spawn(move || {
            let mut writer = RawClient::login(port, user);
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && n < 100_000 {
                n += 1;
                if acked_patch(&mut writer, "tally", path, n) != ra::WRITE_ACKNOWLEDGEMENT {
                    return;
                }
                last.store(n, Ordering::SeqCst);
            }
        });
        (acked, thread)
    };
    let (acked_a, writer_a) = writer(a.port, "writer-a", "a");
    let (acked_c, writer_c) = writer(c.port, "doomed-writer", "c");
    eventually("C's user is online on B", || {
        watcher.receive_quietly().is_some_and(
            |got| matches!(got, common::Received::Message(m) if m.action == pa::PRESENCE_JOIN),
        )
    });
    std::thread::sleep(Duration::from_millis(700));
    let killed_at = kill(&c);
    let left = next_matching(&mut watcher, Duration::from_secs(5), |m| {
        m.action == pa::PRESENCE_LEAVE
    });
    let left_after = killed_at.elapsed();
    assert!(left.is_some(), "C's user left presence");
    // The writer on C got its socket closed under it: its thread ends on its own.
    let _ = writer_c.join();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    writer_a.join().expect("writer on A");
    publisher.join().expect("publisher on A");
    let mut seen = 0;
    while seen < EVENTS {
        let msg = events.expect_message();
        assert_eq!(msg.action, ea::EMIT, "{msg:?}");
        seen += 1;
        assert_eq!(
            msg.data.as_deref(),
            Some(seen.to_string().as_bytes()),
            "event {seen} from A reached B in order"
        );
    }
    let (acked_a, acked_c) = (
        acked_a.load(Ordering::SeqCst),
        acked_c.load(Ordering::SeqCst),
    );
    let mut reader = RawClient::login(b.port, "reader");
    let read = record_read(&mut reader, "tally");
    let data: serde_json::Value =
        serde_json::from_slice(read.data.as_deref().expect("data")).expect("json");
    assert_eq!(data["a"].as_u64(), Some(acked_a), "{data}");
    assert!(
        data["c"].as_u64().unwrap_or(0) >= acked_c,
        "every write C acknowledged survives it: {data}, {acked_c} acknowledged"
    );
    assert!(
        read.version.unwrap_or(0) as u64 >= acked_a + acked_c,
        "{read:?}"
    );
    assert!(
        acked_c > 10 && acked_a > acked_c,
        "load ran: {acked_a}, {acked_c}"
    );
    println!(
        "under load ({EVENTS} events from A, {acked_a} writes acknowledged on A and {acked_c} on C): \
         C's user left {left_after:?} after the kill, nothing acknowledged lost"
    );
    drop(c);
}

/// Interest routing, counted: with 8 nodes and subscribers on 2 of them, a publish reaches those
/// 2 nodes over the bus, not 8; with no subscribers elsewhere it reaches none.
#[test]
fn with_eight_nodes_a_publish_reaches_only_the_two_that_subscribe() {
    if !common::service("NATS", NATS_PORT) {
        return;
    }
    let spec = ClusterSpec::new("eight", NATS_PORT, "");
    let nodes: Vec<Server> = (0..8).map(|_| spec.node(1)).collect();
    let mut subscribers: Vec<RawClient> = [3, 6]
        .iter()
        .map(|&i| {
            let mut client = RawClient::login(nodes[i].port, "subscriber");
            subscribe(&mut client, "ticker");
            client
        })
        .collect();
    let mut publisher = RawClient::login(nodes[0].port, "publisher");
    let received = |nodes: &[Server]| -> Vec<u64> {
        nodes
            .iter()
            .map(|n| counter(n, "corestream_cluster_received_total"))
            .collect()
    };
    let before = received(&nodes);
    const PUBLISHES: u64 = 100;
    for i in 0..PUBLISHES {
        emit(&mut publisher, "ticker", &format!("{i}"));
    }
    for subscriber in &mut subscribers {
        for _ in 0..PUBLISHES {
            assert_eq!(subscriber.expect_message().action, ea::EMIT);
        }
    }
    let after = received(&nodes);
    let crossed: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    assert_eq!(
        crossed,
        [0, 0, 0, PUBLISHES, 0, 0, PUBLISHES, 0],
        "arrivals per node"
    );
    assert_eq!(
        counter(&nodes[0], "corestream_cluster_published_total"),
        PUBLISHES,
        "one bus message per publish, however many nodes want it"
    );
    // Nobody elsewhere wants this name: it reaches no node.
    let before = received(&nodes);
    for i in 0..PUBLISHES {
        emit(&mut publisher, "lonely", &format!("{i}"));
    }
    emit(&mut publisher, "ticker", "\"marker\"");
    for subscriber in &mut subscribers {
        assert_eq!(
            subscriber.expect_message().data.as_deref(),
            Some(&b"\"marker\""[..])
        );
    }
    let after = received(&nodes);
    let crossed: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    assert_eq!(crossed, [0, 0, 0, 1, 0, 0, 1, 0], "only the marker crossed");
    println!("8 nodes, subscribers on 2: {PUBLISHES} publishes crossed to 2 nodes each");
}

/// NATS restarts under traffic: the nodes reconnect and subscribe again by themselves, the
/// records bucket is still there, and events and records cross again.
#[test]
fn the_cluster_comes_back_after_nats_restarts() {
    if !nats_server_installed() {
        return;
    }
    let port = common::free_port();
    let store = std::env::temp_dir().join(format!("corestream-nats-{}-{port}", std::process::id()));
    let nats = OwnNats::start(port, &store);
    let spec = ClusterSpec::new("restart", port, "");
    let (a, b) = (spec.node(1), spec.node(2));
    let mut publisher = RawClient::login(a.port, "publisher");
    let mut subscriber = RawClient::login(b.port, "subscriber");
    subscribe(&mut subscriber, "feed");
    let read = record_subscribe(&mut subscriber, "state");
    assert_eq!(read.version, Some(0));
    let ack = record_write(&mut publisher, "state", 1, None, r#"{"n":1}"#);
    assert_eq!(ack.action, ra::WRITE_ACKNOWLEDGEMENT);
    assert_eq!(subscriber.expect_message().version, Some(1));
    emit(&mut publisher, "feed", "1");
    assert_eq!(subscriber.expect_message().data.as_deref(), Some(&b"1"[..]));

    // Under load: a publisher emits numbered events every millisecond throughout.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publishing = {
        let (port, stop) = (a.port, stop.clone());
        std::thread::spawn(move || {
            let mut publisher = RawClient::login(port, "load");
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 100_000 {
                n += 1;
                emit(&mut publisher, "feed", &n.to_string());
                std::thread::sleep(Duration::from_millis(1));
            }
            n
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let restarted_at = Instant::now();
    let nats = nats.restart();
    let mut received: Vec<u64> = Vec::new();
    let number =
        |m: &Message| -> Option<u64> { std::str::from_utf8(m.data.as_deref()?).ok()?.parse().ok() };
    // Events published while NATS is away may be lost (the disconnect is logged); once it is
    // back they cross again.
    let mut back_at = None;
    while restarted_at.elapsed() < Duration::from_secs(20) {
        if let Some(common::Received::Message(m)) = subscriber.receive_quietly() {
            received.extend(number(&m));
            if received.len() > 1
                && back_at.is_none()
                && restarted_at.elapsed() > Duration::from_millis(200)
            {
                back_at = Some(restarted_at.elapsed());
            }
        }
        if back_at.is_some_and(|t| restarted_at.elapsed() > t + Duration::from_millis(1500)) {
            break;
        }
    }
    let back_after = back_at.expect("events cross again after NATS restarted");
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let published = publishing.join().expect("publisher");
    while let Some(common::Received::Message(m)) = subscriber.receive_quietly() {
        received.extend(number(&m));
        if received.last() == Some(&published) {
            break;
        }
    }
    assert!(
        received.windows(2).all(|w| w[0] < w[1]),
        "per-publisher order holds across the restart, and nothing arrives twice"
    );
    // Once NATS is back, the stream is whole: the last 500 published all arrived.
    let tail: Vec<u64> = received
        .iter()
        .copied()
        .filter(|n| *n + 500 > published)
        .collect();
    assert_eq!(
        tail,
        ((published.saturating_sub(499))..=published).collect::<Vec<u64>>()
    );
    let lost = published as usize - received.len().min(published as usize);
    // The record bucket kept what was acknowledged, and writes go on.
    let mut reader = RawClient::login(a.port, "reader");
    let read = record_read(&mut reader, "state");
    assert_eq!(read.version, Some(1), "{read:?}");
    let ack = record_write(&mut publisher, "state", 2, None, r#"{"n":2}"#);
    assert_eq!(ack.action, ra::WRITE_ACKNOWLEDGEMENT, "{ack:?}");
    println!(
        "under load: events crossed again {back_after:?} after the restart; {published} \
         published, {lost} lost while NATS was away"
    );
    drop((a, b, spec, nats));
    let _ = std::fs::remove_dir_all(&store);
}

/// A PostgreSQL schema of a test's own for the nodes' storage, dropped after.
struct PgSchema(String);

impl PgSchema {
    fn new(test: &str) -> PgSchema {
        let id = (std::process::id(), fastrand::u32(..));
        PgSchema(format!("cs_cluster_{test}_{}_{}", id.0, id.1))
    }

    /// `storage:` for config.yml, with `extra` options (indented by four).
    fn storage(&self, extra: &str) -> String {
        format!(
            "storage:\n  name: postgres\n  options:\n    host: 127.0.0.1\n    port: 5432\n    \
             user: postgres\n    database: test\n    schema: {}\n{extra}",
            self.0
        )
    }

    /// The version of `id` in `table`, as psql prints it.
    fn version(&self, table: &str, id: &str) -> String {
        common::psql(&format!(
            "SELECT version FROM \"{}\".\"{table}\" WHERE id = '{id}'",
            self.0
        ))
    }

    /// Another program writes `id` in `table`.
    fn set(&self, table: &str, id: &str, version: i32, json: &str) {
        common::psql(&format!(
            "UPDATE \"{}\".\"{table}\" SET version = {version}, val = '{json}' WHERE id = '{id}'",
            self.0
        ));
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        common::psql(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.0));
    }
}

/// A row changed in PostgreSQL behind the cluster's back, and `record.notify` on one node: every
/// node's subscribers hear the new version, and every node reads it after.
#[test]
fn a_notify_on_one_node_reaches_subscribers_on_another() {
    if !common::service("NATS", NATS_PORT) || !common::service("postgres", 5432) {
        return;
    }
    let pg = PgSchema::new("notify");
    let spec = ClusterSpec::new("notify", NATS_PORT, &pg.storage("    writeInterval: 20\n"));
    let nodes = [spec.node(1), spec.node(2)];
    let mut watcher = RawClient::login(nodes[0].port, "watcher");
    assert_eq!(record_subscribe(&mut watcher, "ext/r").version, Some(0));
    let mut writer = RawClient::login(nodes[1].port, "writer");
    let ack = record_write(&mut writer, "ext/r", 1, None, r#"{"from":"writer"}"#);
    assert_eq!(ack.action, ra::WRITE_ACKNOWLEDGEMENT, "{ack:?}");
    assert_eq!(watcher.expect_message().version, Some(1));
    // The write reaches PostgreSQL within the 20 ms write interval.
    eventually("the row in PostgreSQL", || pg.version("ext", "r") == "1");
    pg.set("ext", "r", 5, r#"{"from":"sql"}"#);
    writer.send(&Message {
        correlation_id: Some(bytes("n")),
        names: vec![bytes("ext/r")],
        ..Message::new(topic::RECORD, ra::NOTIFY)
    });
    let notified = writer.expect_message();
    assert_eq!(
        (notified.action, notified.is_ack),
        (ra::NOTIFY, Some(true)),
        "{notified:?}"
    );
    let update = watcher.expect_message();
    assert_eq!(
        (update.action, update.version),
        (ra::UPDATE, Some(5)),
        "{update:?}"
    );
    assert_eq!(update.data.as_deref(), Some(&br#"{"from":"sql"}"#[..]));
    for node in &nodes {
        let mut reader = RawClient::login(node.port, "reader");
        let read = record_read(&mut reader, "ext/r");
        assert_eq!(
            (read.action, read.version),
            (ra::READ_RESPONSE, Some(5)),
            "{read:?}"
        );
    }
}

/// With `followChanges`, every node hears of every node's writes through PostgreSQL: none of
/// them may come back as a change (versions only go up), and a row another program changes
/// reaches every node's subscribers without a notify.
#[test]
fn followed_changes_reach_every_node_and_the_nodes_own_writes_do_not_come_back() {
    if !common::service("NATS", NATS_PORT) || !common::service("postgres", 5432) {
        return;
    }
    let pg = PgSchema::new("follow");
    let storage = pg.storage("    writeInterval: 5\n    followChanges: true\n");
    let spec = ClusterSpec::new("follow", NATS_PORT, &storage);
    let nodes = [spec.node(1), spec.node(2), spec.node(1)];
    let mut watchers: Vec<RawClient> = nodes
        .iter()
        .map(|n| RawClient::login(n.port, "watcher"))
        .collect();
    for watcher in &mut watchers {
        assert_eq!(record_subscribe(watcher, "ext/f").version, Some(0));
    }
    // Writers on two nodes, each write acknowledged before the next.
    const WRITES: i32 = 40;
    let mut writers = [
        RawClient::login(nodes[0].port, "writer"),
        RawClient::login(nodes[1].port, "writer"),
    ];
    for n in 0..WRITES {
        let writer = &mut writers[(n % 2) as usize];
        let ack = record_write(writer, "ext/f", -1, None, &format!(r#"{{"n":{n}}}"#));
        assert_eq!(ack.action, ra::WRITE_ACKNOWLEDGEMENT, "{ack:?}");
    }
    // Each watcher sees versions going up to WRITES, whatever PostgreSQL sends back meanwhile.
    for watcher in &mut watchers {
        let mut last = 0;
        while last < WRITES {
            let update = watcher.expect_message();
            let version = update.version.unwrap_or(0);
            assert!(version > last, "versions go back: {last} then {update:?}");
            last = version;
        }
    }
    eventually("the last write in PostgreSQL", || {
        pg.version("ext", "f") == WRITES.to_string()
    });
    // Nothing more arrives once storage has caught up: no write came back as a change.
    std::thread::sleep(Duration::from_millis(300));
    for watcher in &mut watchers {
        watcher.set_timeout(Duration::from_millis(100));
        assert!(watcher.receive_quietly().is_none(), "an echo of a write");
        watcher.set_timeout(Duration::from_secs(10));
    }
    // Another program's change, a version ahead, reaches every node's subscribers.
    let next = WRITES + 1;
    pg.set("ext", "f", next, r#"{"from":"sql"}"#);
    for watcher in &mut watchers {
        let update = watcher.expect_message();
        assert_eq!(
            (update.action, update.version),
            (ra::UPDATE, Some(next)),
            "{update:?}"
        );
        assert_eq!(update.data.as_deref(), Some(&br#"{"from":"sql"}"#[..]));
    }
}

/// Two nodes and a publish between them over a NATS server of the test's own.
fn events_cross(spec: &ClusterSpec) {
    let (a, b) = (spec.node(1), spec.node(1));
    let mut subscriber = RawClient::login(b.port, "subscriber");
    subscribe(&mut subscriber, "secured");
    let mut publisher = RawClient::login(a.port, "publisher");
    emit(&mut publisher, "secured", "\"hello\"");
    let heard = subscriber.expect_message();
    assert_eq!(heard.data.as_deref(), Some(&b"\"hello\""[..]), "{heard:?}");
}

/// NATS with a password, with a token, and over TLS with a CA of the test's own: nodes that
/// present what the server asks for form the cluster; one that does not stops at start and
/// says why.
#[test]
fn nodes_authenticate_to_nats_and_speak_tls_to_it() {
    if !nats_server_installed() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("corestream-nats-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    // A password.
    let port = common::free_port();
    let _nats = OwnNats::start_with(
        port,
        &dir.join("password"),
        &["--user", "node", "--pass", "s3cret"],
    );
    let spec = ClusterSpec::new("password", port, "");
    spec.add_options("    user: node\n    password: s3cret\n");
    events_cross(&spec);
    let wrong = ClusterSpec::new("wrong", port, "");
    wrong.add_options("    user: node\n    password: guess\n");
    let printed = wrong.failed_start();
    assert!(printed.contains("authorization"), "{printed}");
    println!("a wrong password: {printed}");
    // A token.
    let port = common::free_port();
    let _nats = OwnNats::start_with(port, &dir.join("token"), &["--auth", "t0ken"]);
    let spec = ClusterSpec::new("token", port, "");
    spec.add_options("    token: t0ken\n");
    events_cross(&spec);
    // TLS, the server's certificate signed by a CA only the config names.
    let certs = dir.join("certs");
    make_certificates(&certs);
    let port = common::free_port();
    let (cert, key) = (certs.join("server.pem"), certs.join("server.key"));
    let _nats = OwnNats::start_with(
        port,
        &dir.join("tls"),
        &[
            "--tls",
            "--tlscert",
            cert.to_str().expect("path"),
            "--tlskey",
            key.to_str().expect("path"),
        ],
    );
    let spec = ClusterSpec::new("tls", port, "");
    let ca = certs.join("ca.pem");
    spec.add_options(&format!("    tls: {{ca: {}}}\n", ca.display()));
    events_cross(&spec);
    // Without the CA the server is not trusted.
    let untrusting = ClusterSpec::new("untrusting", port, "");
    untrusting.add_options("    tls: {}\n");
    let printed = untrusting.failed_start();
    assert!(printed.contains("cannot connect to NATS"), "{printed}");
    println!("an untrusted server: {printed}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A CA and a server certificate for 127.0.0.1 it signed, with openssl.
fn make_certificates(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).expect("certs dir");
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").expect("ext");
    let steps: [&[&str]; 3] = [
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=corestream test CA",
        ],
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    ];
    for args in steps {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A NATS server that takes messages of 64 KiB at most: a record whose change would not fit
/// with the writer's frame still reaches the other node (whole), and one that would not fit at
/// all is refused to its writer with the reason, instead of being acked and never crossing.
#[test]
fn records_near_natss_message_limit_cross_whole_or_are_refused() {
    if !nats_server_installed() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("corestream-nats-limit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let conf = dir.join("nats.conf");
    std::fs::write(&conf, "max_payload: 65536\n").expect("nats.conf");
    let port = common::free_port();
    let _nats = OwnNats::start_with(port, &dir.join("js"), &["-c", conf.to_str().expect("path")]);
    let spec = ClusterSpec::new("limit", port, "");
    let (a, b) = (spec.node(1), spec.node(1));
    let mut watcher = RawClient::login(b.port, "watcher");
    assert_eq!(record_subscribe(&mut watcher, "big").version, Some(0));
    let mut writer = RawClient::login(a.port, "writer");
    // 40 KiB: the record fits, the record and the writer's frame together do not.
    let large = format!(r#"{{"pad":"{}"}}"#, "x".repeat(40 * 1024));
    let ack = record_write(&mut writer, "big", 1, None, &large);
    assert_eq!(ack.action, ra::WRITE_ACKNOWLEDGEMENT, "{:?}", ack.action);
    let update = watcher.expect_message();
    assert_eq!((update.action, update.version), (ra::UPDATE, Some(1)));
    assert_eq!(update.data.as_deref(), Some(large.as_bytes()));
    // 64 KiB: it could not cross at all.
    let huge = format!(r#"{{"pad":"{}"}}"#, "x".repeat(64 * 1024));
    let refused = record_write(&mut writer, "big", 2, None, &huge);
    assert_eq!(
        refused.action,
        ra::RECORD_UPDATE_ERROR,
        "{:?}",
        refused.action
    );
    let reason = String::from_utf8_lossy(refused.data.as_deref().unwrap_or_default());
    assert!(reason.contains("max_payload"), "{reason}");
    // The record goes on from version 1 on both nodes.
    let ack = record_write(&mut writer, "big", 2, Some("pad"), r#""small""#);
    assert_eq!(ack.action, ra::WRITE_ACKNOWLEDGEMENT, "{ack:?}");
    let update = watcher.expect_message();
    assert_eq!(update.version, Some(2), "{update:?}");
    let read = record_read(&mut RawClient::login(b.port, "reader"), "big");
    assert_eq!(read.data.as_deref(), Some(&br#"{"pad":"small"}"#[..]));
    drop((a, b));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 29, item 3: a node stopped with SIGTERM says so on the bus. A login on another node
/// waits for every node it knows to confirm it (at most `requestTimeout`, 5 s): it no longer
/// waits for the stopped node, which the others would otherwise take for alive until their
/// `nodeTimeout` (30 s here). Its users leave presence as well.
#[test]
fn a_stopped_node_says_it_leaves() {
    if !common::service("NATS", NATS_PORT) {
        return;
    }
    let spec = ClusterSpec::new("leave", NATS_PORT, "");
    spec.add_options("    nodeTimeout: 30000\n    heartbeatInterval: 1000\n");
    let survivor = spec.node(1);
    // A third node: with only two, NATS itself answers the survivor's confirmation request
    // ("no responders") once the other is gone.
    let _third = spec.node(1);
    let leaving = spec.node(1);
    let mut watcher = presence_watcher(survivor.port, "leaving-user");
    let _user = RawClient::login(leaving.port, "leaving-user");
    let joined = watcher.expect_message();
    assert_eq!(joined.action, pa::PRESENCE_JOIN, "{joined:?}");
    assert!(leaving.stop().success(), "a clean stop");
    let left = next_matching(&mut watcher, Duration::from_secs(10), |m| {
        m.topic == topic::PRESENCE && m.action == pa::PRESENCE_LEAVE
    });
    assert!(left.is_some(), "the stopped node's user left presence");
    let started = Instant::now();
    let _late = RawClient::login(survivor.port, "late-user");
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "a login waited {:?} for the stopped node's confirmation",
        started.elapsed()
    );
}

/// Issue 29, item 2: a record a client only subscribed to (made by the subscribe: version 0,
/// `{}`) exists for every node, as on the reference: `head` answers 0 on another node and a
/// read there gets it, instead of RECORD_NOT_FOUND and -1.
#[test]
fn a_record_made_by_subscribing_is_seen_by_every_node() {
    if !common::service("NATS", NATS_PORT) {
        return;
    }
    let spec = ClusterSpec::new("subcreate", NATS_PORT, "");
    let one = spec.node(1);
    let two = spec.node(2);
    let mut maker = RawClient::login(one.port, "maker");
    let made = record_subscribe(&mut maker, "made-by-subscribe");
    assert_eq!(made.version, Some(0), "{made:?}");
    let mut other = RawClient::login(two.port, "other");
    common::eventually("the record made by subscribing is in the bucket", || {
        other.send(&Message {
            name: Some(bytes("made-by-subscribe")),
            ..Message::new(topic::RECORD, ra::HEAD)
        });
        let head = other.expect_message();
        assert_eq!(head.action, ra::HEAD_RESPONSE, "{head:?}");
        head.version == Some(0)
    });
    let read = record_read(&mut other, "made-by-subscribe");
    assert_eq!(
        (read.action, read.version, read.data.as_deref()),
        (ra::READ_RESPONSE, Some(0), Some(&b"{}"[..])),
        "{read:?}"
    );
    // A write on the other node follows it, and the subscriber hears it.
    let ack = record_write(&mut other, "made-by-subscribe", 1, None, r#"{"n":1}"#);
    assert_eq!(ack.action, ra::WRITE_ACKNOWLEDGEMENT, "{ack:?}");
    let update = maker.expect_message();
    assert_eq!(update.version, Some(1), "{update:?}");
}

/// Issue 29, item 4: as the reference, a name is offered first to the listeners on the node
/// of its subscriber, wherever the name's home is.
#[test]
fn listening_offers_to_the_subscribers_node_first() {
    if !common::service("NATS", NATS_PORT) {
        return;
    }
    let spec = ClusterSpec::new("listenlocal", NATS_PORT, "");
    let nodes = [spec.node(1), spec.node(1), spec.node(1)];
    let mut listeners = [
        RawClient::login(nodes[0].port, "near-listener-0"),
        RawClient::login(nodes[1].port, "near-listener-1"),
    ];
    for listener in &mut listeners {
        record_listen(listener, "near/.*");
    }
    // Offers wait while the members settle (two heartbeats).
    std::thread::sleep(Duration::from_millis(2500));
    // Names homed on each of the three nodes, subscribed on node 1 or node 0.
    for i in 0..8 {
        let near = i % 2;
        let name = format!("near/{i}");
        let mut subscriber = RawClient::login(nodes[near].port, &format!("near-sub-{i}"));
        record_subscribe(&mut subscriber, &name);
        let provider = take_offer(&mut listeners, &name);
        assert_eq!(provider, near, "{name}, subscribed on node {near}");
        record_unsubscribe(&mut subscriber, &name);
    }
}
