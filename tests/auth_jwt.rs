//! JWT logins through the real binary: a signed token logs in with its claims; others fail.

mod common;

use common::{RawClient, Server};
use corestream::protocol::message::auth_action;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};

#[test]
fn a_signed_token_logs_in_with_its_claims() {
    let dir = std::env::temp_dir().join(format!("corestream-jwt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.yml");
    std::fs::write(
        &config,
        "auth:\n  - type: jwt\n    options:\n      secret: integration-secret\n",
    )
    .unwrap();
    let server = Server::start(&["--cores", "1", "-c", config.to_str().unwrap()]);
    let claims = serde_json::json!({"sub": "carol", "clientData": {"theme": "dark"}});
    let token = encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(b"integration-secret"),
    )
    .unwrap();
    let ok = RawClient::auth(server.port, &format!(r#"{{"token":"{token}"}}"#));
    assert_eq!(ok.action, auth_action::AUTH_SUCCESSFUL);
    assert_eq!(ok.data.as_deref(), Some(&br#"{"theme":"dark"}"#[..]));
    let forged = encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(b"wrong"),
    )
    .unwrap();
    assert_eq!(
        RawClient::auth(server.port, &format!(r#"{{"token":"{forged}"}}"#)).action,
        auth_action::AUTH_UNSUCCESSFUL
    );
    assert_eq!(
        RawClient::auth(server.port, r#"{"username":"carol"}"#).action,
        auth_action::AUTH_UNSUCCESSFUL
    );
}
