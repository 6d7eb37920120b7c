//! A permission plugin under which a user may act only on names that contain its user id,
//! deepstream's permission plugin example, on corestream as a library.
//!
//! `cargo run --example user_id_permissions -- --port 6020`; log in with any username (open
//! auth): `alice` may write the record `alice/profile` and emit on `chat/alice`, and is denied
//! `bob/profile` (MESSAGE_DENIED). Prints `listening on HOST:PORT` once it accepts.

use corestream::{Config, Permission, PermissionRequest, Server};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Users act only on names that contain their id; anonymous logins act on nothing.
struct OwnNamesOnly;

impl Permission for OwnNamesOnly {
    fn description(&self) -> String {
        "user_id_permissions (names must contain the user id)".into()
    }

    fn can_perform_action(&self, request: &PermissionRequest<'_>) -> bool {
        request.authenticated && !request.user.is_empty() && request.name.contains(request.user)
    }
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let port = match args
        .iter()
        .position(|a| a == "--port")
        .map(|at| args.get(at + 1))
    {
        None => 6020,
        Some(Some(port)) => match port.parse::<u16>() {
            Ok(port) => port,
            Err(e) => {
                eprintln!("--port: {e}");
                return std::process::ExitCode::FAILURE;
            }
        },
        Some(None) => {
            eprintln!("usage: user_id_permissions [--port P]");
            return std::process::ExitCode::FAILURE;
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(signal, stop.clone()) {
            eprintln!("cannot handle signals: {e}");
            return std::process::ExitCode::FAILURE;
        }
    }
    let server = Server::builder(Config::default())
        .host("127.0.0.1")
        .port(port)
        .permissions(OwnNamesOnly);
    match server.run(stop) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
