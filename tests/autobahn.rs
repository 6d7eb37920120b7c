//! Autobahn|Testsuite's fuzzingclient (cases 1-10: framing, pings, reserved bits, opcodes,
//! fragmentation, UTF-8, close handshake, limits, large messages) against the `ws_echo`
//! example, which serves echo through the server's own WebSocket path. The suite runs under
//! Python 2.7: `.ci/run` installs it with pyenv's 2.7.18 into `~/.cache/corestream-autobahn`
//! (or set `CORESTREAM_WSTEST` to a `wstest`); without it the test says it skipped.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The `wstest` script and the user base its packages live in.
fn wstest() -> Option<(PathBuf, PathBuf)> {
    let script = match std::env::var_os("CORESTREAM_WSTEST") {
        Some(path) => PathBuf::from(path),
        None => {
            PathBuf::from(std::env::var_os("HOME")?).join(".cache/corestream-autobahn/bin/wstest")
        }
    };
    let base = script.parent()?.parent()?.to_path_buf();
    script.is_file().then_some((script, base))
}

#[test]
fn autobahn_cases_1_to_10_pass_through_the_servers_websocket_path() {
    let found = wstest();
    if !common::found_or_skipped(
        found.is_some(),
        "Autobahn|Testsuite's wstest (Python 2.7) is not installed",
    ) {
        return;
    }
    let Some((script, base)) = found else { return };
    let port = common::free_port();
    let mut echo = Command::new(common::example("ws_echo"))
        .args(["--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ws_echo (built by cargo test with the examples)");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "ws_echo did not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("autobahn");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let reports = dir.join("reports");
    let spec = serde_json::json!({
        "outdir": reports,
        "servers": [{"agent": "corestream", "url": format!("ws://127.0.0.1:{port}/")}],
        "cases": ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "8.*", "9.*", "10.*"],
        "exclude-cases": [],
        "exclude-agent-cases": {},
    });
    std::fs::write(dir.join("fuzzingclient.json"), spec.to_string()).expect("spec");
    let run = Command::new(&script)
        .args(["-m", "fuzzingclient", "-s", "fuzzingclient.json"])
        .env("PYTHONUSERBASE", &base)
        .current_dir(&dir)
        .output()
        .expect("wstest");
    let _ = echo.kill();
    let _ = echo.wait();
    assert!(
        run.status.success(),
        "wstest failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(reports.join("index.json")).expect("index.json"))
            .expect("index JSON");
    let cases = index["corestream"].as_object().expect("the agent's cases");
    assert!(cases.len() > 290, "only {} cases ran", cases.len());
    let failed: Vec<String> = cases
        .iter()
        .filter(|(_, result)| {
            !matches!(
                result["behavior"].as_str(),
                Some("OK" | "NON-STRICT" | "INFORMATIONAL")
            ) || !matches!(
                result["behaviorClose"].as_str(),
                Some("OK" | "INFORMATIONAL")
            )
        })
        .map(|(case, result)| {
            format!(
                "{case}: {} / {}",
                result["behavior"], result["behaviorClose"]
            )
        })
        .collect();
    assert!(failed.is_empty(), "Autobahn cases failed: {failed:#?}");
    let _ = std::fs::remove_dir_all(&dir);
}
