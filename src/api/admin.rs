//! The admin API (corestream's; deepstream has none), sans I/O: its config, which request is
//! which, the bearer-token check, and the JSON of its answers. Off unless a token is set.

use crate::config::Config;
use crate::protocol::http::RequestHead;
use crate::shard::admin::{AdminAnswer, ConnInfo};
use std::fmt::Write as _;

pub use crate::config::admin::AdminConfig;

/// An admin request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminRoute {
    Connections,
    Users,
    CloseUser(String),
    Reload,
    Settings,
    ChangeSettings,
    /// Not allowed: the status and the text.
    Refused(u16, &'static str),
}

/// Compares without stopping at the first difference, so the time taken tells nothing.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = u8::from(given.len() != expected.len());
    for (i, e) in expected.iter().enumerate() {
        diff |= e ^ given.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

/// A percent-decoded path segment (a user name may hold any character).
fn decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Which admin request `head` is, if its path is under the admin path and a token is set.
pub fn route(config: &AdminConfig, head: &RequestHead) -> Option<AdminRoute> {
    let token = config.token.as_deref()?;
    let rest = head.path.strip_prefix(config.path.as_str())?;
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    let given = head
        .authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !same_secret(given.trim().as_bytes(), token.as_bytes()) {
        return Some(AdminRoute::Refused(
            401,
            "A valid bearer token is required.",
        ));
    }
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let method = head.method.as_str();
    Some(match (method, segments.as_slice()) {
        ("GET", ["connections"]) => AdminRoute::Connections,
        ("GET", ["users"]) => AdminRoute::Users,
        ("POST", ["users", user, "close"]) => match decode(user) {
            Some(user) => AdminRoute::CloseUser(user),
            None => AdminRoute::Refused(400, "The user name is not valid percent-encoded UTF-8."),
        },
        ("POST", ["reload"]) => AdminRoute::Reload,
        ("GET", ["settings"]) => AdminRoute::Settings,
        ("POST", ["settings"]) => AdminRoute::ChangeSettings,
        (_, ["connections"] | ["users"] | ["users", _, "close"] | ["reload"] | ["settings"]) => {
            AdminRoute::Refused(405, "Method not allowed here.")
        }
        _ => AdminRoute::Refused(404, "No such admin endpoint."),
    })
}

fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}

/// The connections every shard listed, as JSON.
pub fn connections_json(answers: &[AdminAnswer]) -> String {
    let mut all: Vec<&ConnInfo> = Vec::new();
    let mut more = 0;
    for answer in answers {
        if let AdminAnswer::Connections { listed, more: m } = answer {
            all.extend(listed);
            more += m;
        }
    }
    all.sort_by_key(|c| (c.shard, c.id));
    let mut out = format!(
        "{{\"count\":{},\"notListed\":{more},\"connections\":[",
        all.len() + more
    );
    for (i, c) in all.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            "{{\"shard\":{},\"id\":{},\"user\":{},\"endpoint\":\"{}\",\"loggedIn\":{},\"openedAtMs\":{},\"queuedBytes\":{}}}",
            c.shard,
            c.id,
            quoted(&c.user),
            c.endpoint,
            c.logged_in,
            c.opened_at_ms,
            c.queued_bytes
        );
    }
    out.push_str("]}");
    out
}

/// Settings an operator may change while the server runs, as JSON.
pub fn settings_json(config: &Config) -> String {
    format!(
        "{{\"rpcAckTimeout\":{},\"rpcResponseTimeout\":{},\"heartbeatInterval\":{},\"unauthenticatedClientTimeout\":{},\"maxAuthAttempts\":{},\"logLevel\":\"{}\"}}",
        config.rpc_ack_timeout_ms,
        config.rpc_response_timeout_ms,
        config.heartbeat_interval_ms,
        config
            .unauthenticated_client_timeout_ms
            .map_or_else(|| "null".to_string(), |t| t.to_string()),
        config.max_auth_attempts,
        config.log_level.name()
    )
}

/// `config` with the settings in `body` (a JSON object of `settings_json`'s keys) changed.
pub fn change_settings(config: &Config, body: &[u8]) -> Result<Config, String> {
    let changes: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(body).map_err(|e| format!("the body must be a JSON object: {e}"))?;
    let mut next = config.clone();
    for (key, value) in &changes {
        let millis = || {
            value
                .as_u64()
                .filter(|v| (1..=86_400_000).contains(v))
                .ok_or_else(|| format!("{key} must be milliseconds from 1 to 86400000"))
        };
        match key.as_str() {
            "rpcAckTimeout" => next.rpc_ack_timeout_ms = millis()?,
            "rpcResponseTimeout" => next.rpc_response_timeout_ms = millis()?,
            "heartbeatInterval" => next.heartbeat_interval_ms = millis()?,
            "unauthenticatedClientTimeout" => {
                next.unauthenticated_client_timeout_ms = if value.is_null() {
                    None
                } else {
                    Some(millis()?)
                }
            }
            "maxAuthAttempts" => {
                next.max_auth_attempts = value
                    .as_u64()
                    .and_then(|v| u32::try_from(v).ok())
                    .filter(|v| *v >= 1)
                    .ok_or("maxAuthAttempts must be a whole number of at least 1")?
            }
            "logLevel" => {
                next.log_level = value
                    .as_str()
                    .and_then(crate::log::Level::parse)
                    .ok_or("logLevel must be DEBUG, INFO, WARN, ERROR or OFF")?
            }
            other => return Err(format!("'{other}' cannot be changed while the server runs")),
        }
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::http::parse_head;

    fn head(text: &str) -> RequestHead {
        parse_head(text.as_bytes()).unwrap().unwrap().0
    }

    fn config() -> AdminConfig {
        AdminConfig::parse(&serde_yaml::from_str("token: 0123456789abcdef").unwrap()).unwrap()
    }

    #[test]
    fn routes_and_the_token() {
        let c = config();
        let auth = "Authorization: Bearer 0123456789abcdef\r\n";
        let r = |text: String| route(&c, &head(&text));
        assert_eq!(
            r(format!("GET /admin/connections HTTP/1.1\r\n{auth}\r\n")),
            Some(AdminRoute::Connections)
        );
        assert_eq!(
            r(format!(
                "POST /admin/users/a%20b/close HTTP/1.1\r\n{auth}\r\n"
            )),
            Some(AdminRoute::CloseUser("a b".into()))
        );
        assert_eq!(
            r(format!("POST /admin/reload HTTP/1.1\r\n{auth}\r\n")),
            Some(AdminRoute::Reload)
        );
        assert_eq!(
            r(format!("PUT /admin/reload HTTP/1.1\r\n{auth}\r\n")),
            Some(AdminRoute::Refused(405, "Method not allowed here."))
        );
        assert!(matches!(
            r(format!("GET /admin/x HTTP/1.1\r\n{auth}\r\n")),
            Some(AdminRoute::Refused(404, _))
        ));
        assert!(matches!(
            r("GET /admin/connections HTTP/1.1\r\n\r\n".into()),
            Some(AdminRoute::Refused(401, _))
        ));
        assert!(matches!(
            r(
                "GET /admin/connections HTTP/1.1\r\nAuthorization: Bearer 0123456789abcdeX\r\n\r\n"
                    .into()
            ),
            Some(AdminRoute::Refused(401, _))
        ));
        assert_eq!(
            r(format!("GET /administrator HTTP/1.1\r\n{auth}\r\n")),
            None
        );
        let off = AdminConfig::default();
        assert_eq!(
            route(
                &off,
                &head(&format!("GET /admin/users HTTP/1.1\r\n{auth}\r\n"))
            ),
            None
        );
    }

    #[test]
    fn config_refusals() {
        let parse = |t: &str| AdminConfig::parse(&serde_yaml::from_str(t).unwrap());
        assert!(parse("token: short").unwrap_err().contains("16"));
        assert!(parse("tokn: 0123456789abcdef")
            .unwrap_err()
            .contains("tokn"));
        assert!(parse("path: admin").is_err());
        assert!(parse("sessionWebhook: {endpointUrl: 'https://x'}").is_err());
        let ok = parse("dashboard: /dash\nsessionWebhook: {endpointUrl: 'http://127.0.0.1:9/s'}")
            .unwrap();
        assert_eq!(ok.token, None);
        assert_eq!(ok.dashboard.as_deref(), Some("/dash"));
        assert_eq!(ok.session_webhook.unwrap().port, 9);
    }

    #[test]
    fn settings_change_only_what_may_change() {
        let c = Config::default();
        let next = change_settings(&c, br#"{"rpcAckTimeout":250,"logLevel":"warn"}"#).unwrap();
        assert_eq!(next.rpc_ack_timeout_ms, 250);
        assert_eq!(next.log_level, crate::log::Level::Warn);
        assert!(change_settings(&c, br#"{"port":1}"#)
            .unwrap_err()
            .contains("port"));
        assert!(change_settings(&c, br#"{"rpcAckTimeout":0}"#).is_err());
        let json: serde_json::Value = serde_json::from_str(&settings_json(&next)).unwrap();
        assert_eq!(json["rpcAckTimeout"], 250);
        assert_eq!(json["logLevel"], "WARN");
    }
}
