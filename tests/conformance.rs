//! The real @deepstream/client 7.0.5 against corestream, on one shard and on two: the project's
//! own suite (tests/node, pinned in its package-lock.json) always, and the shared conformance
//! suite (../shared/conformance) as well when it is beside the repository (CI always has it).

mod common;

use common::{run_client_tests, shared_dir, Server};
use std::process::Command;

/// The suites share install folders between runs: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run_suite(cores: &str) {
    run_suite_with(&["--cores", cores]);
}

fn summary(stdout: &str) -> String {
    stdout
        .lines()
        .filter(|l| l.starts_with("# ") || l.starts_with("not ok"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn run_suite_with(args: &[&str]) {
    let cores = args.join(" ");
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let server = Server::start(args);
    let own = run_client_tests(&server.url(), &[]);
    println!("own client tests with {cores}:\n{}", summary(&own));
    if let Some(shared) = shared_dir() {
        let output = Command::new("bash")
            .arg(shared.join("conformance/run.sh"))
            .arg(server.url())
            .output()
            .expect("run the conformance suite");
        let stdout = String::from_utf8_lossy(&output.stdout);
        println!("shared conformance with {cores}:\n{}", summary(&stdout));
        assert!(
            output.status.success(),
            "conformance failed with {cores}:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(stdout.contains("# fail 0"), "{stdout}");
    }
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
