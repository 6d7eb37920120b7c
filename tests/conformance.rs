//! The shared conformance suite (the real @deepstream/client 7.0.5) against corestream, on one
//! shard and on two.

mod common;

use common::{shared_dir, Server};
use std::process::Command;

/// run.sh shares one install folder between runs (it copies the tests there): one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run_suite(cores: &str) {
    run_suite_with(&["--cores", cores]);
}

fn run_suite_with(args: &[&str]) {
    let cores = args.join(" ");
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let server = Server::start(args);
    let output = Command::new("bash")
        .arg(shared_dir().join("conformance/run.sh"))
        .arg(server.url())
        .output()
        .expect("run the conformance suite");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("# ") || l.starts_with("not ok"))
        .collect();
    println!("conformance with {cores}:\n{}", summary.join("\n"));
    assert!(
        output.status.success(),
        "conformance failed with {cores}:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("# fail 0"), "{stdout}");
    assert!(
        server.stop().success(),
        "server did not exit cleanly on SIGTERM"
    );
}

#[test]
fn conformance_on_one_shard() {
    run_suite("1");
}

#[test]
fn conformance_on_two_shards() {
    run_suite("2");
}

/// Every connection quiet for a sweep (100 ms) parks its socket, so the suite runs through
/// parking and unparking all the time: sends while parked, reads that wake it, closes.
#[test]
fn conformance_with_sockets_parked_at_every_pause() {
    run_suite_with(&["--cores", "2", "--park-after-ms", "1"]);
}
