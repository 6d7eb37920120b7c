//! What every plugin example shares: `--port P` (and other flags) from the command line, and a
//! server that runs until SIGINT or SIGTERM.

use corestream::{Config, ServerBuilder};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// `--name value` from the command line.
pub fn flag(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|at| args.get(at + 1).cloned())
}

/// A server on 127.0.0.1 and `--port` (6020 without it), with the embedded defaults; `Err` is
/// the usage error to print.
pub fn server() -> Result<ServerBuilder, String> {
    let port = match flag("--port") {
        None => 6020,
        Some(port) => port.parse::<u16>().map_err(|e| format!("--port: {e}"))?,
    };
    Ok(corestream::Server::builder(Config::default())
        .host("127.0.0.1")
        .port(port))
}

/// Runs `server` until SIGINT or SIGTERM; it prints `listening on HOST:PORT` once it accepts.
pub fn run(server: Result<ServerBuilder, String>) -> ExitCode {
    let server = match server {
        Ok(server) => server,
        Err(usage) => {
            eprintln!("{usage}");
            return ExitCode::FAILURE;
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(signal, stop.clone()) {
            eprintln!("cannot handle signals: {e}");
            return ExitCode::FAILURE;
        }
    }
    match server.run(stop) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
