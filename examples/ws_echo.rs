//! A WebSocket echo server on corestream's own WebSocket path (the server's handshake,
//! framing, fragmentation, UTF-8 checks, close handshake and limits), for Autobahn|Testsuite:
//! every text and binary message comes back as it was sent.
//!
//! `cargo run --release --example ws_echo -- --port 9001` prints `listening on HOST:PORT`.

use corestream::config::endpoints::{Endpoint, Protocol};
use corestream::config::Config;
use corestream::net::ServerOptions;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Autobahn's largest messages (cases 9.x) are 16 MiB; a little room above that.
const LARGEST_MESSAGE: usize = 20 * 1024 * 1024;

fn main() {
    let mut port = 9001;
    let mut host = "127.0.0.1".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next();
        match (arg.as_str(), value) {
            ("--port", Some(v)) => match v.parse() {
                Ok(p) => port = p,
                Err(_) => exit(&format!("--port {v}: not a port")),
            },
            ("--host", Some(v)) => host = v,
            _ => exit("usage: ws_echo [--host HOST] [--port PORT]"),
        }
    }
    let mut config = Config::default();
    let mut echo = Endpoint::new(Protocol::Echo);
    echo.max_message_size = Some(LARGEST_MESSAGE);
    // No login on an echo connection: its messages are all "before login".
    echo.unauthenticated_client_timeout_ms = Some(None);
    config.endpoints = vec![echo];
    config.max_outgoing_buffer = 4 * LARGEST_MESSAGE;
    config.limits.unauthenticated_max_message_size = LARGEST_MESSAGE;
    config.limits.unauthenticated_bytes_per_shard = 8 * LARGEST_MESSAGE;
    config.park_after_ms = None;
    let options = ServerOptions {
        cpus: vec![0],
        host,
        port,
    };
    let stopping = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(signal, stopping.clone()) {
            exit(&format!("cannot handle signals: {e}"));
        }
    }
    if let Err(e) = corestream::net::run(config, options, stopping) {
        exit(&e);
    }
}

fn exit(why: &str) -> ! {
    eprintln!("ws_echo: {why}");
    std::process::exit(2);
}
