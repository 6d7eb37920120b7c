//! The live dashboard in a real browser: headless Chromium (Debian's, driven by playwright-core
//! from tests/browser) loads the page from a running server under load, the numbers it shows
//! move, and the screenshot it saves is not blank.
//!
//! Needs Node.js and /usr/bin/chromium (`.ci/run` installs both); says it skipped without
//! Chromium, and fails instead under CI.

mod common;

use bytes::Bytes;
use common::{RawClient, Server};
use corestream::protocol::message::{event_action, topic, Message};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn chromium() -> Option<String> {
    let path = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let found = Path::new(&path).exists();
    common::found_or_skipped(found, &format!("no Chromium at {path}")).then_some(path)
}

/// Distinct colours in a PNG (a blank page has one or two).
fn colours(png_path: &Path) -> usize {
    let decoder = png::Decoder::new(std::fs::File::open(png_path).expect("screenshot"));
    let mut reader = decoder.read_info().expect("png");
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels).expect("frame");
    let step = info.color_type.samples();
    let mut seen = std::collections::HashSet::new();
    for px in pixels[..info.buffer_size()].chunks(step) {
        seen.insert(px.get(..3).unwrap_or(px).to_vec());
    }
    seen.len()
}

#[test]
fn the_dashboard_shows_live_numbers_in_chromium() {
    let Some(chromium) = chromium() else { return };
    let home = common::npm_home("tests/browser", "playwright-core");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-browser");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.yml");
    std::fs::write(&config, "admin:\n  dashboard: /dashboard\n").unwrap();
    let server = Server::start(&["--cores", "2", "-c", config.to_str().unwrap()]);
    let port = server.port;

    // Load for the page to show: a publisher emitting to three subscribers.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut subscribers: Vec<RawClient> = (0..3)
                .map(|i| {
                    let mut c = RawClient::login(port, &format!("sub{i}"));
                    c.send(&Message {
                        names: vec![Bytes::from_static(b"dash/ticks")],
                        correlation_id: Some(Bytes::from_static(b"1")),
                        ..Message::new(topic::EVENT, event_action::SUBSCRIBE)
                    });
                    c.expect_message();
                    c
                })
                .collect();
            let mut readers: Vec<_> = subscribers
                .iter_mut()
                .map(|c| {
                    let mut copy = c.try_clone();
                    std::thread::spawn(move || while copy.receive_quietly().is_some() {})
                })
                .collect();
            let mut publisher = RawClient::login(port, "publisher");
            let started = Instant::now();
            while !stop.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(40) {
                for _ in 0..20 {
                    publisher.send(&Message {
                        name: Some(Bytes::from_static(b"dash/ticks")),
                        data: Some(Bytes::from_static(b"1")),
                        ..Message::new(topic::EVENT, event_action::EMIT)
                    });
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            drop(subscribers);
            for r in readers.drain(..) {
                let _ = r.join();
            }
        })
    };

    let screenshot = dir.join("dashboard.png");
    let _ = std::fs::remove_file(&screenshot);
    let output = Command::new("timeout")
        .arg("60")
        .arg("node")
        .arg(home.join("dashboard.mjs"))
        .arg(format!("http://127.0.0.1:{port}/dashboard"))
        .arg(&screenshot)
        .env("CHROMIUM", &chromium)
        .current_dir(&home)
        .output()
        .expect("node");
    stop.store(true, Ordering::SeqCst);
    load.join().expect("load");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: Value = serde_json::from_str(stdout.trim().lines().last().unwrap_or("{}"))
        .unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(seen["ok"], true, "{seen}");
    let samples = seen["samples"].as_array().expect("samples");
    let deliveries: Vec<&str> = samples
        .iter()
        .filter_map(|s| s["deliveries"].as_str())
        .filter(|d| *d != "-" && *d != "0")
        .collect();
    assert!(deliveries.len() >= 3, "deliveries/s never moved: {seen}");
    assert!(samples.iter().all(|s| s["shards"] == "2"), "{seen}");
    assert!(
        samples
            .last()
            .and_then(|s| s["drawn"].as_u64())
            .unwrap_or(0)
            > 50,
        "the deliveries chart is drawn: {seen}"
    );
    assert!(colours(&screenshot) > 20, "the screenshot is blank");
}
