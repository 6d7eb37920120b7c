//! The connection endpoints besides `ws-binary` and `http`: `ws-text` (deepstream's V3 text
//! protocol), `ws-json`, `mqtt`, and corestream's `ws-frame` (the binary framing of deepstream's
//! 4.0 notes). Each may set its own login and heartbeat settings; unset ones follow the
//! top-level (`ws-binary`) values, which the admin API can change at run time.

use serde::Deserialize;
use serde_yaml::Value;

/// Which codec a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// deepstream's protobuf messages in binary WebSocket frames (the shard's own format).
    Binary,
    /// The V3 text protocol of `deepstream.io-client-js` 2.x.
    Text,
    /// `Message`s as JSON objects in text frames.
    Json,
    /// The 4.0 binary framing (6-byte header, JSON meta, payload) in binary frames.
    Frame,
    /// MQTT 3.1.1 on its own TCP port.
    Mqtt,
    /// Every text and binary message sent back as it came, through the same WebSocket path
    /// as every endpoint's: for the `ws_echo` example that Autobahn|Testsuite checks. No
    /// config file can name it.
    Echo,
}

impl Protocol {
    /// deepstream's endpoint type.
    pub fn type_name(self) -> &'static str {
        match self {
            Protocol::Binary => "ws-binary",
            Protocol::Text => "ws-text",
            Protocol::Json => "ws-json",
            Protocol::Frame => "ws-frame",
            Protocol::Mqtt => "mqtt",
            Protocol::Echo => "echo",
        }
    }

    /// Whether the server sends pings (the V3 protocol: its clients answer them and drop a
    /// connection that stays silent for two of their own heartbeat intervals).
    pub fn server_pings(self) -> bool {
        self == Protocol::Text
    }
}

/// One configured endpoint other than `ws-binary` and `http`.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub protocol: Protocol,
    /// The WebSocket path (not used by MQTT).
    pub url_path: String,
    pub heartbeat_interval_ms: Option<u64>,
    /// `Some(None)`: no login deadline.
    pub unauthenticated_client_timeout_ms: Option<Option<u64>>,
    pub max_auth_attempts: Option<u32>,
    pub max_message_size: Option<usize>,
    /// MQTT: where it listens.
    pub host: Option<String>,
    pub port: Option<u16>,
    /// MQTT: a connection silent this long is closed (when its keep-alive does not say
    /// otherwise).
    pub idle_timeout_ms: u64,
}

impl Endpoint {
    pub fn new(protocol: Protocol) -> Self {
        let url_path = match protocol {
            Protocol::Text => "/deepstream-v3",
            Protocol::Json => "/deepstream-json",
            Protocol::Frame => "/deepstream-frame",
            Protocol::Binary => "/deepstream",
            Protocol::Mqtt => "",
            Protocol::Echo => "/",
        };
        Endpoint {
            protocol,
            url_path: url_path.into(),
            heartbeat_interval_ms: None,
            unauthenticated_client_timeout_ms: None,
            max_auth_attempts: None,
            max_message_size: None,
            host: None,
            port: None,
            idle_timeout_ms: 180_000,
        }
    }
}

/// Option keys the MQTT endpoint reads (others are warned about); WebSocket endpoints read
/// ws-binary's (`keys::WS_OPTIONS`).
pub const MQTT_KEYS: &[&str] = &[
    "port",
    "host",
    "idleTimeout",
    "unauthenticatedClientTimeout",
    "maxAuthAttempts",
    "maxMessageSize",
    "logInvalidAuthData",
];

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Options {
    url_path: Option<String>,
    heartbeat_interval: Option<u64>,
    unauthenticated_client_timeout: Option<Value>,
    max_auth_attempts: Option<u32>,
    max_message_size: Option<usize>,
    port: Option<u16>,
    host: Option<String>,
    idle_timeout: Option<u64>,
}

/// Reads one endpoint's options.
pub fn read(protocol: Protocol, options: Option<Value>) -> Result<Endpoint, String> {
    let mut endpoint = Endpoint::new(protocol);
    // Serving MQTT in the clear to devices configured for TLS would be a silent downgrade.
    if protocol == Protocol::Mqtt && options.as_ref().and_then(|o| o.get("ssl")).is_some() {
        return Err(
            "ssl: MQTT over TLS is not built yet; remove it to serve MQTT in the \
                    clear, or put a TLS proxy in front"
                .into(),
        );
    }
    let options: Options = match options {
        Some(v) => serde_yaml::from_value(v).map_err(|e| e.to_string())?,
        None => Options::default(),
    };
    if let Some(path) = options.url_path {
        if !path.starts_with('/') {
            return Err(format!("urlPath '{path}' must start with '/'"));
        }
        endpoint.url_path = path;
    }
    endpoint.heartbeat_interval_ms = options.heartbeat_interval;
    endpoint.max_auth_attempts = options.max_auth_attempts;
    endpoint.max_message_size = options.max_message_size;
    endpoint.unauthenticated_client_timeout_ms = match options.unauthenticated_client_timeout {
        Some(Value::Number(n)) => Some(n.as_u64()),
        Some(Value::Bool(false)) | Some(Value::Null) => Some(None),
        Some(other) => {
            return Err(format!(
                "unauthenticatedClientTimeout must be a number or false, not {other:?}"
            ))
        }
        None => None,
    };
    if protocol == Protocol::Mqtt {
        endpoint.port = Some(options.port.unwrap_or(1883));
        endpoint.host = options.host;
        endpoint.idle_timeout_ms = options.idle_timeout.unwrap_or(endpoint.idle_timeout_ms);
    }
    Ok(endpoint)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Option<Value> {
        Some(serde_yaml::from_str(text).expect("yaml"))
    }

    #[test]
    fn defaults_follow_the_reference() {
        let text = read(Protocol::Text, None).expect("text");
        assert_eq!(text.url_path, "/deepstream-v3");
        assert_eq!(text.heartbeat_interval_ms, None);
        let json = read(Protocol::Json, None).expect("json");
        assert_eq!(json.url_path, "/deepstream-json");
        let mqtt = read(Protocol::Mqtt, None).expect("mqtt");
        assert_eq!(mqtt.port, Some(1883));
    }

    #[test]
    fn options_are_read_and_bad_ones_refused() {
        let e = read(
            Protocol::Text,
            yaml("urlPath: /v3\nheartbeatInterval: 2000\nmaxAuthAttempts: 5\nunauthenticatedClientTimeout: false"),
        )
        .expect("read");
        assert_eq!(e.url_path, "/v3");
        assert_eq!(e.heartbeat_interval_ms, Some(2000));
        assert_eq!(e.max_auth_attempts, Some(5));
        assert_eq!(e.unauthenticated_client_timeout_ms, Some(None));
        assert!(read(Protocol::Text, yaml("urlPath: v3")).is_err());
        assert!(read(Protocol::Mqtt, yaml("port: 99999")).is_err());
        assert!(read(Protocol::Json, yaml("unauthenticatedClientTimeout: soon")).is_err());
        assert!(read(Protocol::Mqtt, yaml("ssl: {key: k, cert: c}")).is_err());
    }
}
