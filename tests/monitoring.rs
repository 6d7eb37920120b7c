//! Monitoring outputs of a running server under traffic: deepstream's `http` stats (behind
//! its header, reset on every read), `log` stats on a timer, and the Prometheus endpoint.

mod common;

use bytes::Bytes;
use common::{http, post_json, RawClient, Server};
use corestream::protocol::message::{event_action, topic, Message};
use std::path::Path;
use std::time::{Duration, Instant};

fn config(name: &str, text: &str) -> std::path::PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("config.yml");
    std::fs::write(&path, text).expect("config");
    path
}

/// The value of the first sample of `name` whose labels contain `labels`.
fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']) && l.contains(labels)
        })
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
}

fn traffic(port: u16, emits: usize) -> (RawClient, RawClient) {
    let mut subscriber = RawClient::login(port, "watcher");
    subscriber.send(&Message {
        names: vec![Bytes::from_static(b"m/news")],
        correlation_id: Some(Bytes::from_static(b"1")),
        ..Message::new(topic::EVENT, event_action::SUBSCRIBE)
    });
    subscriber.expect_message();
    let mut publisher = RawClient::login(port, "publisher");
    for i in 0..emits {
        publisher.send(&Message {
            name: Some(Bytes::from_static(b"m/news")),
            data: Some(Bytes::from(i.to_string())),
            ..Message::new(topic::EVENT, event_action::EMIT)
        });
    }
    for _ in 0..emits {
        assert_eq!(subscriber.expect_message().action, event_action::EMIT);
    }
    (subscriber, publisher)
}

#[test]
fn prometheus_http_stats_and_log_stats_under_traffic() {
    let path = config(
        "monitoring-all",
        "monitoring:\n  - type: http\n    options:\n      url: /monitoring\n      headerKey: x-monitor\n      headerValue: s3cret\n  - type: log\n    options:\n      logInterval: 300\n      monitoringKey: MON\n  - type: prometheus\n",
    );
    let (server, lines) = Server::start_logging(&["--cores", "2", "-c", path.to_str().unwrap()]);
    let port = server.port;
    let _clients = traffic(port, 25);
    let api = post_json(
        port,
        "/api",
        r#"{"body":[{"topic":"record","action":"write","recordName":"m/r","data":{"a":1}}]}"#,
    );
    assert_eq!(api.status, 200);

    let scrape = http(port, "GET", "/metrics", &[], b"");
    assert_eq!(scrape.status, 200);
    assert!(scrape
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = scrape.text();
    assert_eq!(sample(&text, "corestream_shards", ""), Some(2.0));
    assert_eq!(
        sample(
            &text,
            "corestream_messages_received_total",
            "action=\"EMIT\""
        ),
        Some(25.0),
        "{text}"
    );
    assert_eq!(sample(&text, "corestream_deliveries_total", ""), Some(25.0));
    assert_eq!(
        sample(
            &text,
            "corestream_logins_total",
            "endpoint=\"websocket\",result=\"accepted\""
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &text,
            "corestream_logins_total",
            "endpoint=\"http\",result=\"accepted\""
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "corestream_http_api_requests_total", ""),
        Some(1.0)
    );
    let per_shard: f64 = ["0", "1"]
        .iter()
        .filter_map(|s| sample(&text, "corestream_connections", &format!("shard=\"{s}\"")))
        .sum();
    assert!(per_shard >= 2.0, "the two sockets are open: {per_shard}");
    assert!(
        sample(
            &text,
            "corestream_store_operation_duration_seconds_count",
            ""
        )
        .unwrap()
            >= 1.0
    );
    assert!(text.contains("corestream_build_info{version="));

    // deepstream's http stats: hidden without the header, reset on every read.
    assert_eq!(http(port, "GET", "/monitoring", &[], b"").status, 404);
    let stats = http(port, "GET", "/monitoring", &[("X-Monitor", "s3cret")], b"");
    assert_eq!(stats.status, 200);
    let stats = stats.json();
    assert_eq!(stats["received"]["EVENT"]["EMIT"], 25, "{stats}");
    assert_eq!(stats["logins"]["websocket"]["allowed"], 2);
    assert_eq!(stats["logins"]["http"]["allowed"], 1);
    assert!(stats["to"].as_u64() >= stats["from"].as_u64());
    let again = http(port, "GET", "/monitoring", &[("X-Monitor", "s3cret")], b"").json();
    assert_eq!(again["received"], serde_json::json!({}), "{again}");

    // The log output: a line under its key with the stats every 300 ms.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = None;
    while Instant::now() < deadline {
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(200)) {
            if line.contains("LOG_MONITORING MON {") {
                seen = Some(line);
                break;
            }
        }
    }
    let line = seen.expect("a monitoring log line");
    let json = &line[line.find("MON {").unwrap() + 4..];
    let value: serde_json::Value = serde_json::from_str(json).expect("stats JSON");
    assert!(value.get("received").is_some() && value.get("logins").is_some());
    assert_eq!(server.stop().code(), Some(0));
}

#[test]
fn scrapes_under_load_do_not_stall_the_shards() {
    let path = config(
        "monitoring-load",
        "monitoring:\n  type: prometheus\n  options:\n    path: /prom\n",
    );
    let server = Server::start(&["--cores", "2", "-c", path.to_str().unwrap()]);
    let port = server.port;
    let loader = std::thread::spawn(move || drop(traffic(port, 2000)));
    let started = Instant::now();
    let mut scrapes = 0;
    while !loader.is_finished() && started.elapsed() < Duration::from_secs(20) {
        let scrape = http(port, "GET", "/prom", &[], b"");
        assert_eq!(scrape.status, 200);
        scrapes += 1;
    }
    loader.join().expect("traffic");
    assert!(scrapes >= 1);
    let text = http(port, "GET", "/prom", &[], b"").text();
    assert_eq!(
        sample(&text, "corestream_deliveries_total", ""),
        Some(2000.0)
    );
    assert_eq!(
        http(port, "GET", "/metrics", &[], b"").status,
        404,
        "the path is configured"
    );
}
