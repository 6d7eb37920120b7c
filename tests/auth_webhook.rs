//! http auth: a webhook in the test decides logins; slow and unreachable webhooks deny.

mod common;

use common::{RawClient, Server};
use corestream::protocol::message::auth_action;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

/// A webhook that answers by username: good → 200 with id and data, slow → never, else 401.
fn start_webhook() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(64) {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut request = Vec::new();
                let mut chunk = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") || !body_complete(&request) {
                    match stream.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&chunk[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&request).to_string();
                let (status, body) = if text.contains(r#""username":"good""#)
                    && text.contains(r#""authData""#)
                {
                    (
                        "200 OK",
                        r#"{"id":"good-user","token":"tok-123","clientData":{"tier":"gold"},"serverData":{"role":"admin"}}"#,
                    )
                } else if text.contains(r#""token":"tok-123""#) {
                    ("200 OK", r#"{"id":"good-user"}"#)
                } else if text.contains(r#""username":"slow""#) {
                    std::thread::sleep(Duration::from_secs(3));
                    ("200 OK", r#"{"id":"too-late"}"#)
                } else {
                    (
                        "401 Unauthorized",
                        r#"{"clientData":{"reason":"unknown user"}}"#,
                    )
                };
                let response = format!("HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                let _ = stream.write_all(response.as_bytes());
            });
        }
    });
    port
}

fn body_complete(request: &[u8]) -> bool {
    let text = String::from_utf8_lossy(request);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let len = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
        })
        .unwrap_or(0);
    body.len() >= len
}

fn config_with(endpoint: &str, name: &str) -> std::path::PathBuf {
    let dir =
        std::env::temp_dir().join(format!("corestream-webhook-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.yml");
    std::fs::write(
        &config,
        format!("auth:\n  - type: http\n    options:\n      endpointUrl: {endpoint}\n      permittedStatusCodes: [200]\n      requestTimeout: 500\n"),
    )
    .unwrap();
    config
}

#[test]
fn the_webhook_decides_and_its_data_reaches_the_client() {
    let hook = start_webhook();
    let config = config_with(&format!("http://127.0.0.1:{hook}/auth"), "ok");
    let server = Server::start(&["--cores", "2", "-c", config.to_str().unwrap()]);
    let ok = RawClient::auth(server.port, r#"{"username":"good"}"#);
    assert_eq!(ok.action, auth_action::AUTH_SUCCESSFUL);
    assert_eq!(ok.data.as_deref(), Some(&br#"{"tier":"gold"}"#[..]));
    let denied = RawClient::auth(server.port, r#"{"username":"mallory"}"#);
    assert_eq!(denied.action, auth_action::AUTH_UNSUCCESSFUL);
    assert_eq!(
        denied.data.as_deref(),
        Some(&br#"{"reason":"unknown user"}"#[..])
    );
    let started = std::time::Instant::now();
    let slow = RawClient::auth(server.port, r#"{"username":"slow"}"#);
    assert_eq!(
        slow.action,
        auth_action::AUTH_UNSUCCESSFUL,
        "a webhook past its timeout denies"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the timeout was not applied"
    );
}

#[test]
fn an_unreachable_webhook_denies() {
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = config_with(&format!("http://127.0.0.1:{closed}/auth"), "closed");
    let server = Server::start(&["--cores", "1", "-c", config.to_str().unwrap()]);
    assert_eq!(
        RawClient::auth(server.port, r#"{"username":"good"}"#).action,
        auth_action::AUTH_UNSUCCESSFUL
    );
}

/// Issue 29, item 1: `POST /api/auth` answers the token the webhook gave (deepstream passes the
/// `token` field of the webhook's answer through), and a later `POST /api` logs in with it.
#[test]
fn the_http_auth_endpoint_passes_the_webhooks_token_through() {
    let hook = start_webhook();
    let config = config_with(&format!("http://127.0.0.1:{hook}/auth"), "token");
    let server = Server::start(&["--cores", "1", "-c", config.to_str().unwrap()]);
    let answer = common::post_json(server.port, "/api/auth", r#"{"username":"good"}"#);
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(
        answer.json(),
        serde_json::json!({"token": "tok-123", "clientData": {"tier": "gold"}})
    );
    let body = r#"{"token":"tok-123","body":[{"topic":"event","action":"emit","eventName":"e"}]}"#;
    let used = common::post_json(server.port, "/api", body);
    assert_eq!(used.status, 200, "{}", used.text());
    assert_eq!(used.json()["result"], "SUCCESS");
    let refused = common::post_json(server.port, "/api/auth", r#"{"username":"mallory"}"#);
    assert_eq!(refused.status, 401);
}
