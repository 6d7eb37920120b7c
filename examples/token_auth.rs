//! An authentication plugin that admits only a preconfigured token, deepstream's first plugin
//! example, on corestream as a library.
//!
//! `cargo run --example token_auth -- --port 6020 --token s3cret` then, from a client,
//! `client.login({ token: 's3cret' })` logs in (as user `token-holder`) and any other auth data
//! is refused. Prints `listening on HOST:PORT` once it accepts; SIGINT or SIGTERM stops it.

mod common;

use corestream::{Authentication, BoxFuture, Login, LoginRequest, Refusal};

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

fn main() -> std::process::ExitCode {
    common::run(common::server().and_then(|server| {
        let token = common::flag("--token")
            .filter(|t| !t.is_empty())
            .ok_or("usage: token_auth [--port P] --token TOKEN")?;
        Ok(server.authentication(TokenAuth { token }))
    }))
}
