//! Every scenario of the load generator against a real corestream (in this process, one shard),
//! briefly and at low rates: the benchmarks' own tool must keep working, and report what the
//! server did (deliveries, responses, logins, memory), not just exit.

use corestream::config::Config;
use corestream::net::{run, ServerOptions};
use serde_json::Value;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Server {
    port: u16,
    stopping: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
}

impl Server {
    fn start() -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let stopping = Arc::new(AtomicBool::new(false));
        let options = ServerOptions {
            cpus: vec![0],
            host: "127.0.0.1".into(),
            port,
        };
        let flag = stopping.clone();
        let thread = std::thread::spawn(move || run(Config::default(), options, flag));
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Server {
            port,
            stopping,
            thread: Some(thread),
        }
    }

    fn load(&self, args: &[&str]) -> Value {
        let out = Command::new(env!("CARGO_BIN_EXE_corestream-load"))
            .args(["--url", &format!("ws://127.0.0.1:{}/deepstream", self.port)])
            .args(["--duration", "1", "--json"])
            .args(args)
            .output()
            .expect("run corestream-load");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout
            .lines()
            .find(|l| l.starts_with('{'))
            .unwrap_or_else(|| {
                panic!(
                    "no JSON from {args:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        serde_json::from_str(line).expect("JSON report")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn number(report: &Value, key: &str) -> f64 {
    report[key]
        .as_f64()
        .unwrap_or_else(|| panic!("no {key:?} in {report}"))
}

#[test]
fn every_scenario_reports_what_the_server_did() {
    let server = Server::start();

    let fanout = server.load(&["fanout", "--rate", "200", "--subscribers", "5"]);
    assert_eq!(number(&fanout, "lost"), 0.0, "{fanout}");
    assert_eq!(number(&fanout, "errors"), 0.0, "{fanout}");
    assert!(
        number(&fanout, "delivered") >= 5.0 * 150.0,
        "5 subscribers of ~200 emits: {fanout}"
    );
    assert!(number(&fanout, "latency p99 (us)") > 0.0, "{fanout}");

    let records = server.load(&["records", "--rate", "100", "--subscribers", "3"]);
    assert_eq!(number(&records, "errors"), 0.0, "{records}");
    assert!(
        number(&records, "update latency p99 (us)") > 0.0,
        "{records}"
    );

    let rpc = server.load(&["rpc", "--callers", "2", "--inflight", "2"]);
    assert_eq!(number(&rpc, "errors"), 0.0, "{rpc}");
    assert!(number(&rpc, "responses") > 100.0, "{rpc}");
    assert_eq!(number(&rpc, "responses"), number(&rpc, "requests"), "{rpc}");

    let connect = server.load(&["connect", "--concurrency", "4", "--count", "200"]);
    assert_eq!(number(&connect, "failures"), 0.0, "{connect}");
    assert_eq!(number(&connect, "logins"), 200.0, "{connect}");

    let pid = std::process::id().to_string();
    let idle = server.load(&[
        "idle",
        "--connections",
        "100",
        "--server-pid",
        &pid,
        "--quiet",
        "1",
    ]);
    assert_eq!(number(&idle, "failures"), 0.0, "{idle}");
    assert!(number(&idle, "bytes per connection") > 0.0, "{idle}");
}
