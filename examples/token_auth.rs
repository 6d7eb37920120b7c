//! An authentication plugin that admits only a preconfigured token, deepstream's first plugin
//! example, on corestream as a library.
//!
//! `cargo run --example token_auth -- --port 6020 --token s3cret` then, from a client,
//! `client.login({ token: 's3cret' })` logs in (as user `token-holder`) and any other auth data
//! is refused. Prints `listening on HOST:PORT` once it accepts; SIGINT or SIGTERM stops it.

use corestream::{Authentication, BoxFuture, Config, Login, LoginRequest, Refusal, Server};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Admits the holder of one token.
struct TokenAuth {
    token: String,
}

impl Authentication for TokenAuth {
    fn description(&self) -> String {
        "token_auth (one preconfigured token)".into()
    }

    fn is_valid_user(&self, request: LoginRequest) -> BoxFuture<Result<Login, Refusal>> {
        let presented = request.auth_data.get("token").and_then(|t| t.as_str());
        // Compared in constant time: how long a refusal takes says nothing of the token.
        let admitted = presented.is_some_and(|t| same_secret(t.as_bytes(), self.token.as_bytes()));
        Box::pin(async move {
            if admitted {
                Ok(Login {
                    id: "token-holder".into(),
                    client_data: Some(serde_json::json!({ "admittedBy": "token_auth" })),
                    ..Login::default()
                })
            } else {
                Err(Refusal {
                    client_data: Some(serde_json::json!({ "error": "unknown token" })),
                })
            }
        })
    }
}

fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given.iter().zip(expected).fold(0, |d, (a, b)| d | (a ^ b)) == 0
}

/// `--name value` from the command line.
fn flag(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|at| args.get(at + 1).cloned())
}

fn main() -> std::process::ExitCode {
    let port = match flag("--port").map(|p| p.parse::<u16>()) {
        None => 6020,
        Some(Ok(port)) => port,
        Some(Err(e)) => {
            eprintln!("--port: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let Some(token) = flag("--token").filter(|t| !t.is_empty()) else {
        eprintln!("usage: token_auth [--port P] --token TOKEN");
        return std::process::ExitCode::FAILURE;
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
        .authentication(TokenAuth { token });
    match server.run(stop) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
