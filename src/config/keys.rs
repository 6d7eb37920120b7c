//! What each key of deepstream's config.yml means to corestream: acted on, documented as
//! having no effect (docs/CONFIG.md), refused until built when ignoring it would change
//! security or data, or unknown (a warning naming it, so a typo is seen).

use serde_yaml::Value;
use std::collections::BTreeMap;

/// Top-level keys that change nothing in corestream (see docs/CONFIG.md for why).
const NO_EFFECT: &[&str] = &[
    "showLogo",
    "libDir",
    "externalUrl",
    "dependencyInitializationTimeout",
    "exitOnFatalError",
];

/// Top-level keys of features not built yet whose absence changes no security or data.
const NOT_BUILT: &[&str] = &["locks", "subscriptions", "clusterRegistry", "clusterStates"];

pub const HTTP_SERVER_OPTIONS: &[&str] = &[
    "host",
    "port",
    "healthCheckPath",
    "maxMessageSize",
    "allowAllOrigins",
    "origins",
    "headers",
    "hostUrl",
    "ssl",
];
pub const WS_OPTIONS: &[&str] = &[
    "urlPath",
    "heartbeatInterval",
    "outgoingBufferTimeout",
    "maxBufferByteSize",
    "logInvalidAuthData",
    "unauthenticatedClientTimeout",
    "maxAuthAttempts",
    "maxMessageSize",
    "headers",
];
pub const HTTP_ENDPOINT_OPTIONS: &[&str] = &[
    "allowAuthData",
    "enableAuthEndpoint",
    "authPath",
    "postPath",
    "getPath",
    "logInvalidAuthData",
    "requestTimeout",
];
pub const RPC_OPTIONS: &[&str] = &[
    "ackTimeout",
    "responseTimeout",
    "provideRequestorName",
    "provideRequestorData",
];
pub const LISTEN_OPTIONS: &[&str] = &[
    "shuffleProviders",
    "responseTimeout",
    "rematchInterval",
    "matchCooldown",
];
pub const PERMISSION_OPTIONS: &[&str] = &[
    "permissions",
    "path",
    "maxRuleIterations",
    "cacheEvacuationInterval",
];
pub const RECORD_OPTIONS: &[&str] = &[
    "cacheRetrievalTimeout",
    "storageRetrievalTimeout",
    "storageExclusionPrefixes",
    "storageHotPathPrefixes",
];
pub const PLUGIN_KEYS: &[&str] = &["type", "name", "path", "options"];

/// A warning for each key of the mapping `value` not in `known`.
pub fn warn_unknown(
    value: Option<&Value>,
    known: &[&str],
    place: &str,
    warnings: &mut Vec<String>,
) {
    let Some(Value::Mapping(map)) = value else {
        return;
    };
    for key in map.keys() {
        let key = key
            .as_str()
            .map_or_else(|| format!("{key:?}"), str::to_string);
        if !known.contains(&key.as_str()) {
            warnings.push(format!("{place}: unknown key '{key}', ignored"));
        }
    }
}

fn text<'v>(value: &'v Value, key: &str) -> Option<&'v str> {
    value.get(key).and_then(Value::as_str)
}

/// A plugin section that asks for nothing beyond what corestream does anyway.
fn plugin_is(value: &Value, inert_types: &[&str]) -> bool {
    match value {
        Value::Null => true,
        Value::Sequence(items) => items.iter().all(|v| plugin_is(v, inert_types)),
        Value::Mapping(_) => {
            value.get("name").is_none()
                && value.get("path").is_none()
                && text(value, "type").is_none_or(|t| inert_types.contains(&t))
        }
        _ => false,
    }
}

/// Sections that would change security or data if ignored: starting with them is an error
/// until corestream builds them. `rest` holds the top-level keys not read elsewhere.
pub fn refuse_unbuilt(rest: &BTreeMap<String, Value>) -> Result<(), String> {
    for (key, value) in rest {
        let refusal = match key.as_str() {
            "plugins"
                if !matches!(value, Value::Null)
                    && value.as_mapping().is_none_or(|m| !m.is_empty()) =>
            {
                "plugins: custom plugins are not supported".to_string()
            }
            _ => continue,
        };
        return Err(refusal);
    }
    Ok(())
}

/// Every top-level key corestream reads or knows to be inert.
const KNOWN_TOP_LEVEL: &[&str] = &[
    "serverName",
    "httpServer",
    "connectionEndpoints",
    "auth",
    "permission",
    "rpc",
    "listen",
    "limits",
    "enabledFeatures",
    "record",
    "logLevel",
    "logger",
    "cache",
    "storage",
    "clusterNode",
    "plugins",
    "monitoring",
    "admin",
    "sslKey",
    "sslCert",
    "sslCa",
    "telemetry",
];

/// The known key `key` is a near miss of (a typo of it, a case or plural slip), if any:
/// ignoring such a key could leave out `auth` or `permission` and open the server, so it is an
/// error, not a warning.
pub fn near_miss(key: &str) -> Option<&'static str> {
    let lower = key.to_ascii_lowercase();
    KNOWN_TOP_LEVEL
        .iter()
        .chain(NO_EFFECT)
        .chain(NOT_BUILT)
        .copied()
        .filter(|known| *known != key)
        .find(|known| {
            let known_lower = known.to_ascii_lowercase();
            let slack = if known.len() >= 8 { 2 } else { 1 };
            lower == known_lower
                || lower.trim_end_matches('s') == known_lower.trim_end_matches('s')
                || strsim::osa_distance(&lower, &known_lower) <= slack
        })
}

/// Refuses top-level keys that are near misses of known ones (see `near_miss`).
pub fn refuse_near_misses(
    rest: &BTreeMap<String, Value>,
    line_of: impl Fn(&str) -> String,
) -> Result<(), String> {
    for key in rest.keys() {
        if KNOWN_TOP_LEVEL.contains(&key.as_str())
            || NO_EFFECT.contains(&key.as_str())
            || NOT_BUILT.contains(&key.as_str())
        {
            continue;
        }
        if let Some(known) = near_miss(key) {
            return Err(format!(
                "unknown key '{key}'{}: did you mean '{known}'? A misspelt key is refused, not \
                 ignored: leaving out a section such as auth or permission would change who may \
                 do what",
                line_of(key)
            ));
        }
    }
    Ok(())
}

/// Warnings for top-level keys that are neither acted on nor documented as inert.
pub fn warn_top_level(rest: &BTreeMap<String, Value>, warnings: &mut Vec<String>) {
    let mut unbuilt = Vec::new();
    let mut unknown = Vec::new();
    for (key, value) in rest {
        match key.as_str() {
            // Read by `Config::read_logging`.
            "logLevel" => {}
            k if NO_EFFECT.contains(&k) => {}
            // Read by `StoreConfig::read_plugins`.
            "cache" | "storage" => {}
            // Read by `config::cluster::parse`.
            "clusterNode" => {}
            // Refused by `refuse_unbuilt` unless it asks for what corestream does anyway.
            "plugins" => {}
            // Read by `monitoring::parse` and `AdminConfig::parse`.
            "monitoring" | "admin" => {}
            // Read by `Config::parse` (deepstream's older TLS keys).
            "sslKey" | "sslCert" | "sslCa" => {}
            "logger" if plugin_is(value, &["default", "json"]) => {}
            "telemetry" => {
                if value.get("options").and_then(|o| o.get("enabled")) == Some(&Value::Bool(true)) {
                    warnings.push("telemetry: corestream sends no telemetry".into());
                }
            }
            k if NOT_BUILT.contains(&k) || k == "logger" => unbuilt.push(k.to_string()),
            k => unknown.push(k.to_string()),
        }
    }
    if !unbuilt.is_empty() {
        warnings.push(format!(
            "config keys for features not built yet, ignored: {}",
            unbuilt.join(", ")
        ));
    }
    if !unknown.is_empty() {
        warnings.push(format!(
            "unknown config keys, ignored: {}",
            unknown.join(", ")
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_misses_of_known_keys_are_found_and_unrelated_keys_are_not() {
        assert_eq!(near_miss("auht"), Some("auth"));
        assert_eq!(near_miss("Auth"), Some("auth"));
        assert_eq!(near_miss("permissions"), Some("permission"));
        assert_eq!(near_miss("permision"), Some("permission"));
        assert_eq!(near_miss("httpserver"), Some("httpServer"));
        assert_eq!(near_miss("conectionEndpoints"), Some("connectionEndpoints"));
        assert_eq!(near_miss("storag"), Some("storage"));
        assert_eq!(near_miss("myCompanySettings"), None);
        assert_eq!(near_miss("x"), None);
        assert_eq!(
            near_miss("auth"),
            None,
            "a known key is no near miss of itself"
        );
    }
}
