//! The cache and the storage going away and coming back while writers and readers run: a TCP
//! fault proxy (tests/common) sits in front of the machine's Redis and PostgreSQL and is cut
//! (connections reset, new ones refused) or stalled (bytes held), one layer, the other, then
//! both. Every request must be answered within the retrieval timeouts (an ack or the
//! reference's error action, never silence), the connectors must reconnect by themselves, no
//! acknowledged write may be lost, and the server's memory must stay bounded.

mod common;

use bytes::Bytes;
use common::fault_proxy::{Fault, FaultProxy};
use common::{service, RawClient, Server};
use corestream::protocol::message::{record_action as ra, topic, Message};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PASS: Fault = Fault::Pass;
const CUT: Fault = Fault::Cut;
const STALL: Fault = Fault::Stall;

/// What the clients saw: the last acknowledged value per record, answers by action, and the
/// slowest answer.
#[derive(Default)]
struct Seen {
    acked: HashMap<String, u64>,
    answers: HashMap<i32, usize>,
    slowest: Duration,
    acks_since_mark: usize,
}

/// One writer: CREATEANDUPDATE with write acks on 8 records in turn, each waiting for its
/// answer; the data carries a counter.
fn writer(port: u16, prefix: String, seen: Arc<Mutex<Seen>>, stop: Arc<AtomicBool>) {
    let mut client = RawClient::login_with(port, "{}");
    let mut n: u64 = 0;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let name = format!("{prefix}/{}", n % 8);
        let started = Instant::now();
        client.send(&Message {
            name: Some(Bytes::from(name.clone())),
            version: Some(-1),
            data: Some(Bytes::from(format!(r#"{{"n":{n}}}"#))),
            correlation_id: Some(Bytes::from(n.to_string())),
            is_write_ack: Some(true),
            ..Message::new(topic::RECORD, ra::CREATEANDUPDATE)
        });
        // The raw client's read timeout (5 s) fails the test on silence.
        let reply = client.expect_message();
        let took = started.elapsed();
        assert_eq!(
            reply.correlation_id.as_deref(),
            Some(n.to_string().as_bytes()),
            "{reply:?}"
        );
        let mut seen = seen.lock().expect("lock");
        seen.slowest = seen.slowest.max(took);
        *seen.answers.entry(reply.action).or_default() += 1;
        if reply.action == ra::WRITE_ACKNOWLEDGEMENT {
            seen.acked.insert(name, n);
            seen.acks_since_mark += 1;
        }
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

#[test]
fn cache_and_storage_outages_are_answered_within_the_timeouts_and_lose_no_acknowledged_write() {
    if !service("redis", 6379) || !service("postgres", 5432) {
        return;
    }
    let tag = format!("cs_faults_{}_{}", std::process::id(), fastrand::u32(..));
    let _cleanup = common::Scratch(tag.clone());
    let (cache, storage) = (FaultProxy::start(6379), FaultProxy::start(5432));
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(&tag);
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("config.yml");
    std::fs::write(
        &config,
        format!(
            "connectionEndpoints:\n  - type: ws-binary\nrecord:\n  cacheRetrievalTimeout: 500\n  \
             storageRetrievalTimeout: 500\ncache:\n  name: redis\n  options:\n    host: 127.0.0.1\n    \
             port: {}\n    keyPrefix: '{tag}:'\nstorage:\n  name: postgres\n  options:\n    \
             host: 127.0.0.1\n    port: {}\n    user: postgres\n    database: test\n    \
             schema: {tag}\n    writeInterval: 20\n",
            cache.port, storage.port
        ),
    )
    .expect("config");
    let server = Server::start(&["--cores", "2", "-c", config.to_str().expect("path")]);
    let (seen, stop) = (
        Arc::new(Mutex::new(Seen::default())),
        Arc::new(AtomicBool::new(false)),
    );
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (port, seen, stop) = (server.port, seen.clone(), stop.clone());
            let prefix = format!("w{w}");
            std::thread::spawn(move || writer(port, prefix, seen, stop))
        })
        .collect();
    let phase = |what: &str, cache_mode: Fault, storage_mode: Fault| {
        cache.set(cache_mode);
        storage.set(storage_mode);
        std::thread::sleep(Duration::from_millis(1500));
        let mut seen = seen.lock().expect("lock");
        let acks = std::mem::take(&mut seen.acks_since_mark);
        println!("{what}: {acks} acks; answers so far {:?}", seen.answers);
        acks
    };
    let healthy = |what: &str| {
        // Reconnecting may take the connectors' backoff: the last of these must ack.
        phase(what, PASS, PASS);
        let acks = phase(what, PASS, PASS);
        assert!(
            acks > 0,
            "{what}: no write acknowledged after the layers came back"
        );
    };
    // A write a layer had taken just before it went away may still be acknowledged: at most
    // one per writer.
    let down = |what: &str, cache_mode: Fault, storage_mode: Fault| {
        let acks = phase(what, cache_mode, storage_mode);
        assert!(
            acks <= 4,
            "{what}: {acks} writes acknowledged during the outage"
        );
    };
    healthy("both up");
    down("cache cut", CUT, PASS);
    healthy("cache back");
    down("storage cut", PASS, CUT);
    healthy("storage back");
    down("cache stalled", STALL, PASS);
    healthy("cache unstalled");
    down("storage stalled", PASS, STALL);
    healthy("storage unstalled");
    down("both cut", CUT, CUT);
    healthy("both back");
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.join().expect("writer");
    }
    let seen = seen.lock().expect("lock");
    // The timeouts are 500 ms; an answer waits for at most one of them, plus scheduling.
    assert!(
        seen.slowest < Duration::from_millis(1500),
        "an answer took {:?}",
        seen.slowest
    );
    let errors: usize = seen
        .answers
        .iter()
        .filter(|(a, _)| **a != ra::WRITE_ACKNOWLEDGEMENT)
        .map(|(_, n)| n)
        .sum();
    assert!(errors > 0, "the outages were seen as errors");
    let rss = rss_kib(server.pid());
    assert!(rss < 300 * 1024, "the server holds {rss} KiB");
    // Every acknowledged write is there (or a later one), read through a fresh server.
    drop(server);
    let server = Server::start(&["--cores", "2", "-c", config.to_str().expect("path")]);
    let mut reader = RawClient::login_with(server.port, "{}");
    for (name, n) in &seen.acked {
        reader.send(&Message {
            name: Some(Bytes::from(name.clone())),
            ..Message::new(topic::RECORD, ra::READ)
        });
        let got = reader.expect_message();
        assert_eq!(got.action, ra::READ_RESPONSE, "{name}: {got:?}");
        let data: serde_json::Value =
            serde_json::from_slice(got.data.as_deref().unwrap_or(b"null")).expect("json");
        let stored = data["n"].as_u64().unwrap_or(0);
        assert!(
            stored >= *n,
            "{name}: write {n} was acknowledged, {stored} is stored"
        );
    }
    println!(
        "{} records, answers {:?}, slowest {:?}, rss {rss} KiB",
        seen.acked.len(),
        seen.answers,
        seen.slowest
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
