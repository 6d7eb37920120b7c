//! deepstream's `config.yml`: the keys and defaults of the reference's default config that
//! corestream acts on, plus warnings for keys of features it does not have yet.

pub mod admin;
pub mod api;
pub mod cluster;
pub mod endpoints;
mod keys;
mod limits;
pub mod monitoring;

pub use limits::Limits;
use serde::Deserialize;
use serde_yaml::Value;
use std::path::{Path, PathBuf};

/// How long a logged-in connection stays quiet before its socket is parked.
pub const DEFAULT_PARK_AFTER_MS: u64 = 5_000;

/// Settings the server runs with, after defaults are applied.
#[derive(Debug, Clone)]
pub struct Config {
    pub server_name: String,
    pub host: String,
    pub port: u16,
    pub url_path: String,
    pub health_check_path: String,
    pub heartbeat_interval_ms: u64,
    /// A logged-in connection quiet this long parks its socket (`None`: never). Not a
    /// deepstream key: set with `corestream start --park-after-ms`.
    pub park_after_ms: Option<u64>,
    pub unauthenticated_client_timeout_ms: Option<u64>,
    pub max_auth_attempts: u32,
    pub max_message_size: usize,
    /// Outgoing bytes a connection may have queued before it is cut off as too slow.
    pub max_outgoing_buffer: usize,
    pub auth: Vec<AuthConfig>,
    pub rpc_ack_timeout_ms: u64,
    pub rpc_response_timeout_ms: u64,
    pub provide_requestor_name: bool,
    pub provide_requestor_data: bool,
    pub listen_shuffle_providers: bool,
    pub listen_response_timeout_ms: u64,
    pub listen_rematch_interval_ms: u64,
    /// Things worth saying once at start-up (ignored keys and the like).
    pub warnings: Vec<String>,
    /// Valve rules from the `permission` section (everything allowed without one).
    pub permissions: std::sync::Arc<crate::permission::rules::Permissions>,
    /// The permissions file the rules came from (`None`: no rules, every action allowed).
    pub permissions_file: Option<PathBuf>,
    /// Budgets per connection and per shard (the `limits` section).
    pub limits: Limits,
    /// Which topics are served (`enabledFeatures`).
    pub enabled_features: EnabledFeatures,
    /// `logLevel`, or the `logger` section's `options.logLevel`, which wins as in deepstream 7.
    pub log_level: crate::log::Level,
    /// `logger: {type: json}` writes JSON lines; `default` writes text.
    pub log_format: crate::log::Format,
    /// The record layer: `cache`, `storage` and the `record` section's store keys.
    pub store: crate::store::StoreConfig,
    /// The `http` endpoint (deepstream's HTTP API) and the origin rules of `httpServer`.
    pub api: api::ApiConfig,
    /// The `monitoring` outputs (deepstream's `http` and `log`, and `prometheus`).
    pub monitoring: Vec<monitoring::Monitor>,
    /// `httpServer.options.ssl`: the port serves `wss://` and `https://` only.
    pub tls: Option<crate::tls::Tls>,
    /// The `admin` section (corestream's): admin API, dashboard, session webhook.
    pub admin: admin::AdminConfig,
    /// The file this config was read from (the admin API reloads rules and users from it).
    pub source: Option<PathBuf>,
    /// `ws-text`, `ws-json`, `ws-frame` and `mqtt` endpoints; a connection's endpoint index is
    /// its place here plus one (0: `ws-binary`).
    pub endpoints: Vec<endpoints::Endpoint>,
    /// `clusterNode` over NATS; `None`: this node runs alone.
    pub cluster: Option<cluster::ClusterConfig>,
}

/// deepstream's `enabledFeatures`: a message of a disabled topic passes the permission check
/// and is then answered PARSER UNKNOWN_TOPIC, as the reference answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnabledFeatures {
    pub record: bool,
    pub event: bool,
    pub rpc: bool,
    pub presence: bool,
}

impl Default for EnabledFeatures {
    fn default() -> Self {
        EnabledFeatures {
            record: true,
            event: true,
            rpc: true,
            presence: true,
        }
    }
}

impl EnabledFeatures {
    /// Whether messages of `topic` are served.
    pub fn serves(&self, topic: i32) -> bool {
        use crate::protocol::message::topic as t;
        match topic {
            t::RECORD => self.record,
            t::EVENT => self.event,
            t::RPC => self.rpc,
            t::PRESENCE => self.presence,
            _ => true,
        }
    }
}

fn enabled_features(
    value: &Value,
    text: &str,
    origin: &str,
) -> Result<EnabledFeatures, ConfigError> {
    let mut features = EnabledFeatures::default();
    let flag = |key: &str| -> Result<Option<bool>, ConfigError> {
        match value.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(ConfigError(format!(
                "{origin}: enabledFeatures.{key} must be true or false{}",
                line_of(text, key)
            ))),
        }
    };
    features.record = flag("record")?.unwrap_or(true);
    features.event = flag("event")?.unwrap_or(true);
    features.rpc = flag("rpc")?.unwrap_or(true);
    features.presence = flag("presence")?.unwrap_or(true);
    if flag("monitoring")? == Some(true) {
        return Err(ConfigError(format!(
            "{origin}: enabledFeatures.monitoring: the monitoring topic is not built yet{}",
            line_of(text, "monitoring")
        )));
    }
    Ok(features)
}

pub use crate::auth::settings::{AuthConfig, HashSettings, HttpAuth};

impl HttpAuth {
    /// Reads the plugin options; only plain `http://` endpoints are supported.
    pub(crate) fn from_options(options: &Value) -> Result<HttpAuth, String> {
        let url = options
            .get("endpointUrl")
            .and_then(Value::as_str)
            .ok_or("options.endpointUrl is required")?;
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("endpointUrl '{url}': only http:// endpoints are supported"))?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse()
                    .map_err(|_| format!("endpointUrl '{url}': bad port"))?,
            ),
            None => (authority, 80),
        };
        let codes = |key: &str, default: &[u16]| -> Vec<u16> {
            match options.get(key).and_then(Value::as_sequence) {
                Some(list) => list
                    .iter()
                    .filter_map(|v| v.as_u64())
                    .map(|v| v as u16)
                    .collect(),
                None => default.to_vec(),
            }
        };
        let number =
            |key: &str, default: u64| options.get(key).and_then(Value::as_u64).unwrap_or(default);
        Ok(HttpAuth {
            host: host.to_string(),
            port,
            path: if path.is_empty() {
                "/".into()
            } else {
                path.to_string()
            },
            permitted_status: codes("permittedStatusCodes", &[200]),
            retry_status: codes("retryStatusCodes", &[]),
            retry_attempts: number("retryAttempts", 0) as u32,
            retry_interval_ms: number("retryInterval", 1000),
            timeout_ms: number("requestTimeout", 2000),
        })
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server_name: "corestream".into(),
            host: "0.0.0.0".into(),
            port: 6020,
            url_path: "/deepstream".into(),
            health_check_path: "/health-check".into(),
            heartbeat_interval_ms: 30_000,
            park_after_ms: Some(DEFAULT_PARK_AFTER_MS),
            unauthenticated_client_timeout_ms: Some(180_000),
            max_auth_attempts: 3,
            max_message_size: 1024 * 1024,
            max_outgoing_buffer: 16 * 1024 * 1024,
            auth: vec![AuthConfig::Open],
            rpc_ack_timeout_ms: 1000,
            rpc_response_timeout_ms: 10_000,
            provide_requestor_name: true,
            provide_requestor_data: false,
            listen_shuffle_providers: true,
            listen_response_timeout_ms: 500,
            listen_rematch_interval_ms: 30_000,
            warnings: Vec::new(),
            permissions: std::sync::Arc::new(crate::permission::rules::Permissions::allow_all()),
            permissions_file: None,
            limits: Limits::default(),
            enabled_features: EnabledFeatures::default(),
            log_level: crate::log::Level::Info,
            log_format: crate::log::Format::Text,
            store: crate::store::StoreConfig::default(),
            api: api::ApiConfig::default(),
            monitoring: Vec::new(),
            tls: None,
            admin: admin::AdminConfig::default(),
            source: None,
            endpoints: Vec::new(),
            cluster: None,
        }
    }
}

#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// The file as written; unknown and unbuilt sections are kept as raw values to warn about.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct RawConfig {
    server_name: Option<String>,
    http_server: Option<Plugin<HttpServerOptions>>,
    connection_endpoints: Option<Vec<Plugin<Value>>>,
    auth: Option<AuthSection>,
    permission: Option<Plugin<PermissionOptions>>,
    rpc: Option<RpcOptions>,
    listen: Option<ListenOptions>,
    limits: Option<Value>,
    enabled_features: Option<Value>,
    record: Option<Value>,
    #[serde(flatten)]
    rest: std::collections::BTreeMap<String, Value>,
}

/// The same file as plain values, to check its keys against what corestream knows.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct RawSections {
    http_server: Option<Value>,
    permission: Option<Value>,
    rpc: Option<Value>,
    listen: Option<Value>,
    enabled_features: Option<Value>,
    record: Option<Value>,
    log_level: Option<Value>,
    logger: Option<Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum AuthSection {
    List(Vec<Plugin<Value>>),
    One(Plugin<Value>),
}

#[derive(Deserialize)]
struct Plugin<T> {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    options: Option<T>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct HttpServerOptions {
    host: Option<String>,
    port: Option<u16>,
    health_check_path: Option<String>,
    max_message_size: Option<usize>,
    allow_all_origins: Option<bool>,
    origins: Option<Vec<String>>,
    headers: Option<Vec<String>>,
    host_url: Option<String>,
    ssl: Option<SslOptions>,
}

/// `httpServer.options.ssl`: PEM text or `fileLoad(path)` each.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct SslOptions {
    key: Option<String>,
    cert: Option<String>,
    ca: Option<String>,
}

/// The `http` connection endpoint's options (deepstream's HTTP API).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct HttpEndpointOptions {
    allow_auth_data: Option<bool>,
    enable_auth_endpoint: Option<bool>,
    auth_path: Option<String>,
    post_path: Option<String>,
    get_path: Option<String>,
    log_invalid_auth_data: Option<bool>,
    request_timeout: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct WsOptions {
    url_path: Option<String>,
    heartbeat_interval: Option<u64>,
    unauthenticated_client_timeout: Option<Value>,
    max_auth_attempts: Option<u32>,
    max_message_size: Option<usize>,
    max_buffer_byte_size: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct PermissionOptions {
    permissions: Option<String>,
    path: Option<String>,
    max_rule_iterations: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct RpcOptions {
    ack_timeout: Option<u64>,
    response_timeout: Option<u64>,
    provide_requestor_name: Option<bool>,
    provide_requestor_data: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ListenOptions {
    shuffle_providers: Option<bool>,
    response_timeout: Option<u64>,
    rematch_interval: Option<u64>,
}

/// A random (version 4) UUID in its usual text form.
fn random_uuid() -> String {
    let mut b = [0u8; 16];
    // Without randomness the name is still unique enough per process for a server name.
    if getrandom::getrandom(&mut b).is_err() {
        b[..8].copy_from_slice(&u64::from(std::process::id()).to_be_bytes());
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// deepstream's `${NAME}` substitution, made on the file's text before it is parsed: the
/// variable's value, or nothing when it is unset.
fn substitute_env(text: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start + 2..].find('}') else {
            break;
        };
        if len == 0 {
            // `${}` names nothing: kept as it is, and the search goes on after it.
            out.push_str(&rest[..start + 2]);
            rest = &rest[start + 2..];
            continue;
        }
        out.push_str(&rest[..start]);
        out.push_str(&lookup(&rest[start + 2..start + 2 + len]).unwrap_or_default());
        rest = &rest[start + 2 + len + 1..];
    }
    out.push_str(rest);
    out
}

/// The line where `needle` first appears in the file, for error messages.
fn line_of(text: &str, needle: &str) -> String {
    text.lines()
        .position(|l| l.contains(needle))
        .map_or_else(String::new, |n| format!(" (line {})", n + 1))
}

/// " (line N)" of the top-level key `key` (a line that starts with it), or "".
fn top_level_line(text: &str, key: &str) -> String {
    text.lines()
        .position(|l| {
            l.strip_prefix(key)
                .is_some_and(|after| after.trim_start().starts_with(':'))
        })
        .map_or_else(String::new, |n| format!(" (line {})", n + 1))
}

/// The extensions deepstream tries, in its order (`.js` it would run; corestream refuses it).
const CONFIG_EXTENSIONS: &[&str] = &["yml", "yaml", "json", "js"];

/// Where deepstream 7 looks for its config when none is given (its js-yaml-loader):
/// `DEEPSTREAM_CONFIG_DIRECTORY` (a file, despite its name), then `./conf/config`,
/// `../conf/config`, `/etc/deepstream/config`, `/usr/local/etc/deepstream/config`,
/// `/usr/local/etc/deepstream/conf/config`, then `conf/config` beside and above the program,
/// each with the extensions above; corestream adds `/etc/deepstream/conf/config`, where its
/// container and systemd unit mount it. `None`: nothing there, and the embedded defaults
/// apply (the start says so).
pub fn default_location(
    from_env: Option<PathBuf>,
    exe: Option<&Path>,
) -> Result<Option<PathBuf>, String> {
    if let Some(path) = from_env {
        if !path.is_file() {
            return Err(format!(
                "DEEPSTREAM_CONFIG_DIRECTORY: configuration file not found at {}",
                path.display()
            ));
        }
        return Ok(Some(path));
    }
    let mut stems = vec![
        PathBuf::from("conf/config"),
        PathBuf::from("../conf/config"),
        PathBuf::from("/etc/deepstream/config"),
        PathBuf::from("/etc/deepstream/conf/config"),
        PathBuf::from("/usr/local/etc/deepstream/config"),
        PathBuf::from("/usr/local/etc/deepstream/conf/config"),
    ];
    if let Some(dir) = exe.and_then(Path::parent) {
        stems.push(dir.join("conf/config"));
        stems.push(dir.join("../conf/config"));
    }
    for stem in stems {
        for ext in CONFIG_EXTENSIONS {
            let path = stem.with_extension(ext);
            if path.is_file() {
                return Ok(Some(path));
            }
        }
    }
    Ok(None)
}

impl Config {
    /// Reads a config file (YAML, or JSON, which the same parser reads), with `${NAME}`
    /// replaced by the environment variable `NAME` first, as deepstream does.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        if path.extension().is_some_and(|e| e == "js") {
            return Err(ConfigError(format!(
                "{}: JavaScript config files are not supported; write it as YAML or JSON",
                path.display()
            )));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read config {}: {e}", path.display())))?;
        let text = substitute_env(&text, |name| std::env::var(name).ok());
        let mut config = Config::parse(
            &text,
            path.parent().unwrap_or(Path::new(".")),
            &path.display().to_string(),
        )?;
        config.source = Some(path.to_path_buf());
        Ok(config)
    }

    /// Parses config text; `dir` resolves relative file references such as users files.
    pub fn parse(text: &str, dir: &Path, origin: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig =
            serde_yaml::from_str(text).map_err(|e| ConfigError(format!("{origin}: {e}")))?;
        let sections: RawSections =
            serde_yaml::from_str(text).map_err(|e| ConfigError(format!("{origin}: {e}")))?;
        let mut config = Config::default();
        config.read_logging(&sections, text, origin)?;
        if let Some(name) = raw.server_name {
            // deepstream's shipped config says `serverName: UUID`: a fresh one per start.
            config.server_name = if name == "UUID" { random_uuid() } else { name };
        }
        let section = |value: Option<Value>, place: &str| -> Result<Option<Value>, ConfigError> {
            match value {
                None | Some(Value::Null) => Ok(None),
                Some(v @ Value::Mapping(_)) => Ok(Some(v)),
                Some(_) => Err(ConfigError(format!(
                    "{origin}: {place} must be a mapping{}",
                    line_of(text, place)
                ))),
            }
        };
        keys::refuse_unbuilt(&raw.rest).map_err(|e| ConfigError(format!("{origin}: {e}")))?;
        keys::refuse_near_misses(&raw.rest, |key| top_level_line(text, key))
            .map_err(|e| ConfigError(format!("{origin}: {e}")))?;
        let top = |key: &str| raw.rest.get(key).and_then(Value::as_str);
        match (top("sslKey"), top("sslCert")) {
            (Some(key), Some(cert)) => {
                let tls =
                    crate::tls::Tls::from_config(key, cert, top("sslCa"), dir, "sslKey/sslCert")
                        .map_err(|e| ConfigError(format!("{origin}: {e}")))?;
                config.tls = Some(tls);
            }
            (None, None) => {}
            _ => {
                return Err(ConfigError(format!(
                    "{origin}: sslKey and sslCert go together{}",
                    line_of(text, "ssl")
                )))
            }
        }
        config.cluster = cluster::parse(raw.rest.get("clusterNode"), dir)
            .map_err(|e| ConfigError(format!("{origin}: {e}")))?;
        if let Some(admin) = raw.rest.get("admin") {
            config.admin = admin::AdminConfig::parse(admin)
                .map_err(|e| ConfigError(format!("{origin}: {e}{}", line_of(text, "admin"))))?;
        }
        if let Some(monitoring) = raw.rest.get("monitoring") {
            config.monitoring = monitoring::parse(monitoring).map_err(|e| {
                ConfigError(format!("{origin}: {e}{}", line_of(text, "monitoring")))
            })?;
        }
        if let Some(http) = section(sections.http_server, "httpServer")? {
            keys::warn_unknown(
                Some(&http),
                keys::PLUGIN_KEYS,
                "httpServer",
                &mut config.warnings,
            );
            keys::warn_unknown(
                http.get("options"),
                keys::HTTP_SERVER_OPTIONS,
                "httpServer.options",
                &mut config.warnings,
            );
        }
        if let Some(http) = raw.http_server.and_then(|p| p.options) {
            config.host = http.host.unwrap_or(config.host);
            config.port = http.port.unwrap_or(config.port);
            config.health_check_path = http.health_check_path.unwrap_or(config.health_check_path);
            config.max_message_size = http.max_message_size.unwrap_or(config.max_message_size);
            if let Some(ssl) = http.ssl {
                let (Some(key), Some(cert)) = (&ssl.key, &ssl.cert) else {
                    return Err(ConfigError(format!(
                        "{origin}: httpServer.options.ssl needs both key and cert{}",
                        line_of(text, "ssl")
                    )));
                };
                let tls = crate::tls::Tls::from_config(
                    key,
                    cert,
                    ssl.ca.as_deref(),
                    dir,
                    "httpServer.options.ssl",
                )
                .map_err(|e| ConfigError(format!("{origin}: {e}")))?;
                config.tls = Some(tls);
            }
            let api = &mut config.api;
            api.allow_all_origins = http.allow_all_origins.unwrap_or(api.allow_all_origins);
            api.origins = http.origins.unwrap_or_default();
            api.headers = http.headers.unwrap_or_default();
            api.host_url = http.host_url.filter(|h| !h.is_empty());
            if !api.allow_all_origins && api.origins.is_empty() {
                return Err(ConfigError(format!(
                    "{origin}: httpServer.options: allowAllOrigins is false but no origins are \
                     given; every request would be refused{}",
                    line_of(text, "allowAllOrigins")
                )));
            }
        }
        // Listing endpoints without `http` turns the HTTP API off, as in deepstream.
        if raw.connection_endpoints.is_some() {
            config.api.enabled = false;
        }
        if let Some(features) = section(sections.enabled_features, "enabledFeatures")? {
            config.enabled_features = enabled_features(&features, text, origin)?;
            keys::warn_unknown(
                Some(&features),
                &["record", "event", "rpc", "presence", "monitoring"],
                "enabledFeatures",
                &mut config.warnings,
            );
        }
        if let Some(record) = section(sections.record, "record")? {
            keys::warn_unknown(
                Some(&record),
                keys::RECORD_OPTIONS,
                "record",
                &mut config.warnings,
            );
            config
                .store
                .read_record(&record)
                .map_err(|e| ConfigError(format!("{origin}: {e}")))?;
        }
        config
            .store
            .read_plugins(raw.rest.get("cache"), raw.rest.get("storage"), dir)
            .map_err(|e| ConfigError(format!("{origin}: {e}")))?;
        for endpoint in raw.connection_endpoints.unwrap_or_default() {
            match endpoint.kind.as_deref() {
                Some("ws-binary") => {
                    keys::warn_unknown(
                        endpoint.options.as_ref(),
                        keys::WS_OPTIONS,
                        "connectionEndpoints ws-binary options",
                        &mut config.warnings,
                    );
                    let options: WsOptions = match endpoint.options {
                        Some(v) => serde_yaml::from_value(v).map_err(|e| {
                            ConfigError(format!(
                                "{origin}: connectionEndpoints ws-binary options{}: {e}",
                                line_of(text, "ws-binary")
                            ))
                        })?,
                        None => WsOptions::default(),
                    };
                    config.apply_ws(options);
                }
                Some("http") => {
                    keys::warn_unknown(
                        endpoint.options.as_ref(),
                        keys::HTTP_ENDPOINT_OPTIONS,
                        "connectionEndpoints http options",
                        &mut config.warnings,
                    );
                    let options: HttpEndpointOptions = match endpoint.options {
                        Some(v) => serde_yaml::from_value(v).map_err(|e| {
                            ConfigError(format!(
                                "{origin}: connectionEndpoints http options{}: {e}",
                                line_of(text, "type: http")
                            ))
                        })?,
                        None => HttpEndpointOptions::default(),
                    };
                    config.apply_http_endpoint(options);
                }
                Some(kind @ ("ws-text" | "ws-json" | "ws-frame" | "mqtt")) => {
                    use endpoints::Protocol;
                    let protocol = match kind {
                        "ws-text" => Protocol::Text,
                        "ws-json" => Protocol::Json,
                        "ws-frame" => Protocol::Frame,
                        _ => Protocol::Mqtt,
                    };
                    let known = if protocol == Protocol::Mqtt {
                        endpoints::MQTT_KEYS
                    } else {
                        keys::WS_OPTIONS
                    };
                    let section = format!("connectionEndpoints {kind} options");
                    keys::warn_unknown(
                        endpoint.options.as_ref(),
                        known,
                        &section,
                        &mut config.warnings,
                    );
                    let read = endpoints::read(protocol, endpoint.options).map_err(|e| {
                        ConfigError(format!(
                            "{origin}: {section}{}: {e}",
                            line_of(text, &format!("type: {kind}"))
                        ))
                    })?;
                    config.endpoints.push(read);
                }
                Some(other) => {
                    return Err(ConfigError(format!(
                        "{origin}: connectionEndpoints: unknown endpoint type '{other}'{}",
                        line_of(text, other)
                    )))
                }
                None => {
                    return Err(ConfigError(format!(
                        "{origin}: connectionEndpoints: an endpoint without a type"
                    )))
                }
            }
        }
        if let Some(auth) = raw.auth {
            let plugins = match auth {
                AuthSection::List(list) => list,
                AuthSection::One(one) => vec![one],
            };
            config.auth = plugins
                .into_iter()
                .map(|p| auth_plugin(p, text, dir, origin))
                .collect::<Result<_, _>>()?;
        }
        if let Some(permission) = section(sections.permission, "permission")? {
            keys::warn_unknown(
                Some(&permission),
                keys::PLUGIN_KEYS,
                "permission",
                &mut config.warnings,
            );
            keys::warn_unknown(
                permission.get("options"),
                keys::PERMISSION_OPTIONS,
                "permission.options",
                &mut config.warnings,
            );
        }
        if let Some(permission) = raw.permission {
            let (permissions, file) = permission_plugin(permission, text, dir, origin)?;
            config.permissions_file = file;
            config
                .warnings
                .extend(permissions.warnings().iter().cloned());
            config.permissions = std::sync::Arc::new(permissions);
        }
        if let Some(rpc) = section(sections.rpc, "rpc")? {
            keys::warn_unknown(Some(&rpc), keys::RPC_OPTIONS, "rpc", &mut config.warnings);
        }
        if let Some(rpc) = raw.rpc {
            config.rpc_ack_timeout_ms = rpc.ack_timeout.unwrap_or(config.rpc_ack_timeout_ms);
            config.rpc_response_timeout_ms = rpc
                .response_timeout
                .unwrap_or(config.rpc_response_timeout_ms);
            config.provide_requestor_name = rpc
                .provide_requestor_name
                .unwrap_or(config.provide_requestor_name);
            config.provide_requestor_data = rpc
                .provide_requestor_data
                .unwrap_or(config.provide_requestor_data);
        }
        if let Some(listen) = section(sections.listen, "listen")? {
            keys::warn_unknown(
                Some(&listen),
                keys::LISTEN_OPTIONS,
                "listen",
                &mut config.warnings,
            );
        }
        if let Some(listen) = raw.listen {
            config.listen_shuffle_providers = listen
                .shuffle_providers
                .unwrap_or(config.listen_shuffle_providers);
            config.listen_response_timeout_ms = listen
                .response_timeout
                .unwrap_or(config.listen_response_timeout_ms);
            config.listen_rematch_interval_ms = listen
                .rematch_interval
                .unwrap_or(config.listen_rematch_interval_ms);
        }
        if let Some(limits) = raw.limits {
            let options: limits::LimitsOptions = serde_yaml::from_value(limits).map_err(|e| {
                ConfigError(format!("{origin}: limits{}: {e}", line_of(text, "limits:")))
            })?;
            config.limits = options
                .apply(config.limits)
                .map_err(|e| ConfigError(format!("{origin}: {e}")))?;
        }
        keys::warn_top_level(&raw.rest, &mut config.warnings);
        config
            .check_endpoints()
            .map_err(|e| ConfigError(format!("{origin}: connectionEndpoints: {e}")))?;
        Ok(config)
    }

    /// Who may connect and do what, in one line for the start: the auth types, the
    /// permissions file (or that every action is allowed), and whether TLS is on.
    pub fn security_summary(&self) -> String {
        use crate::auth::settings::AuthConfig;
        let auth: Vec<&str> = self
            .auth
            .iter()
            .map(|a| match a {
                AuthConfig::Open => "none (open: anyone may log in)",
                AuthConfig::File { .. } => "file",
                AuthConfig::Http(_) => "http",
                AuthConfig::Jwt(_) => "jwt",
                AuthConfig::Plugin(_) => "a plugin given in code",
            })
            .collect();
        let auth = if auth.is_empty() {
            "none (open: anyone may log in)".to_string()
        } else {
            auth.join(" + ")
        };
        let permissions = match (&self.permissions_file, self.permissions.plugin()) {
            (_, Some(plugin)) => format!("{plugin:?}"),
            (Some(file), None) => file.display().to_string(),
            (None, None) => "none (every action allowed)".to_string(),
        };
        let tls = if self.tls.is_some() { "on" } else { "off" };
        format!("auth {auth}, permissions {permissions}, TLS {tls}")
    }

    /// Every WebSocket endpoint needs a path of its own; MQTT endpoints need ports of their own.
    fn check_endpoints(&self) -> Result<(), String> {
        use endpoints::Protocol;
        if self.endpoints.len() >= usize::from(u8::MAX) {
            return Err("too many endpoints".into());
        }
        let mut paths = vec![self.url_path.as_str()];
        let mut ports = Vec::new();
        for endpoint in &self.endpoints {
            if endpoint.protocol == Protocol::Mqtt {
                let port = endpoint.port.unwrap_or(1883);
                if port == 0 {
                    return Err(
                        "an mqtt endpoint needs a port (0 would give each shard its own)".into(),
                    );
                }
                if ports.contains(&port) || port == self.port && port != 0 {
                    return Err(format!("port {port} is used twice"));
                }
                ports.push(port);
                continue;
            }
            if paths.contains(&endpoint.url_path.as_str()) {
                return Err(format!("urlPath {} is used twice", endpoint.url_path));
            }
            paths.push(&endpoint.url_path);
        }
        Ok(())
    }

    /// The settings of endpoint `index` (0: `ws-binary`, else `endpoints[index - 1]`).
    pub fn endpoint(&self, index: u8) -> Option<&endpoints::Endpoint> {
        self.endpoints.get(usize::from(index).checked_sub(1)?)
    }

    /// The WebSocket endpoint serving `path`: its index and protocol.
    pub fn endpoint_at_path(&self, path: &str) -> Option<(u8, endpoints::Protocol)> {
        if path == self.url_path {
            return Some((0, endpoints::Protocol::Binary));
        }
        let (i, endpoint) = self
            .endpoints
            .iter()
            .enumerate()
            .find(|(_, e)| e.protocol != endpoints::Protocol::Mqtt && e.url_path == path)?;
        Some((u8::try_from(i + 1).ok()?, endpoint.protocol))
    }

    /// An endpoint's own setting, else ws-binary's.
    fn setting_of<T>(
        &self,
        index: u8,
        own: impl Fn(&endpoints::Endpoint) -> Option<T>,
        top: T,
    ) -> T {
        self.endpoint(index).and_then(own).unwrap_or(top)
    }

    pub fn max_auth_attempts_of(&self, index: u8) -> u32 {
        self.setting_of(index, |e| e.max_auth_attempts, self.max_auth_attempts)
    }

    pub fn heartbeat_interval_of(&self, index: u8) -> u64 {
        self.setting_of(
            index,
            |e| e.heartbeat_interval_ms,
            self.heartbeat_interval_ms,
        )
    }

    pub fn unauthenticated_timeout_of(&self, index: u8) -> Option<u64> {
        let top = self.unauthenticated_client_timeout_ms;
        self.setting_of(index, |e| e.unauthenticated_client_timeout_ms, top)
    }

    pub fn max_message_size_of(&self, index: u8) -> usize {
        self.setting_of(index, |e| e.max_message_size, self.max_message_size)
    }

    fn read_logging(
        &mut self,
        sections: &RawSections,
        text: &str,
        origin: &str,
    ) -> Result<(), ConfigError> {
        let level = |value: &Value, place: &str| -> Result<crate::log::Level, ConfigError> {
            let text_value = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => String::new(),
            };
            crate::log::Level::parse(&text_value).ok_or_else(|| {
                ConfigError(format!(
                    "{origin}: {place} must be DEBUG, INFO, WARN, ERROR or OFF{}",
                    line_of(text, place)
                ))
            })
        };
        if let Some(value) = &sections.log_level {
            self.log_level = level(value, "logLevel")?;
        }
        if let Some(logger) = &sections.logger {
            if let Some(value) = logger.get("options").and_then(|o| o.get("logLevel")) {
                self.log_level = level(value, "logLevel")?;
            }
            if logger.get("type").and_then(Value::as_str) == Some("json") {
                self.log_format = crate::log::Format::Json;
            }
        }
        Ok(())
    }

    fn apply_http_endpoint(&mut self, options: HttpEndpointOptions) {
        let api = &mut self.api;
        api.enabled = true;
        api.allow_auth_data = options.allow_auth_data.unwrap_or(api.allow_auth_data);
        api.enable_auth_endpoint = options
            .enable_auth_endpoint
            .unwrap_or(api.enable_auth_endpoint);
        api.auth_path = options.auth_path.unwrap_or(api.auth_path.clone());
        api.post_path = options.post_path.unwrap_or(api.post_path.clone());
        api.get_path = options.get_path.unwrap_or(api.get_path.clone());
        api.log_invalid_auth_data = options
            .log_invalid_auth_data
            .unwrap_or(api.log_invalid_auth_data);
        api.request_timeout_ms = options.request_timeout.unwrap_or(api.request_timeout_ms);
    }

    fn apply_ws(&mut self, options: WsOptions) {
        self.url_path = options.url_path.unwrap_or(self.url_path.clone());
        self.heartbeat_interval_ms = options
            .heartbeat_interval
            .unwrap_or(self.heartbeat_interval_ms);
        self.max_auth_attempts = options.max_auth_attempts.unwrap_or(self.max_auth_attempts);
        self.max_message_size = options.max_message_size.unwrap_or(self.max_message_size);
        if let Some(limit) = options.max_buffer_byte_size {
            // deepstream flushes at this size; we cut off far beyond it, never below 1 MiB.
            self.max_outgoing_buffer = self.max_outgoing_buffer.max(limit.saturating_mul(16));
        }
        match options.unauthenticated_client_timeout {
            Some(Value::Number(n)) => self.unauthenticated_client_timeout_ms = n.as_u64(),
            Some(Value::Bool(false)) | Some(Value::Null) => {
                self.unauthenticated_client_timeout_ms = None
            }
            _ => {}
        }
    }
}

fn permission_plugin(
    plugin: Plugin<PermissionOptions>,
    text: &str,
    dir: &Path,
    origin: &str,
) -> Result<(crate::permission::rules::Permissions, Option<PathBuf>), ConfigError> {
    use crate::permission::rules::Permissions;
    match plugin.kind.as_deref() {
        Some("none") => Ok((Permissions::allow_all(), None)),
        Some("config") | None => {
            let options = plugin.options.unwrap_or_default();
            let Some(reference) = options.permissions.or(options.path) else {
                return Ok((Permissions::allow_all(), None));
            };
            let path = dir.join(strip_file_load(&reference));
            let rules = read_loaded_file(&path).map_err(|e| {
                ConfigError(format!(
                    "{origin}: permission: cannot read {}: {e}",
                    path.display()
                ))
            })?;
            let permissions = Permissions::parse(
                &rules,
                &path.display().to_string(),
                options.max_rule_iterations.unwrap_or(3),
            )
            .map_err(ConfigError)?;
            Ok((permissions, Some(path)))
        }
        Some(other) => Err(ConfigError(format!(
            "{origin}: permission: unknown type '{other}'{}",
            line_of(text, other)
        ))),
    }
}

fn strip_file_load(reference: &str) -> &str {
    reference
        .strip_prefix("fileLoad(")
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or(reference)
}

fn auth_plugin(
    plugin: Plugin<Value>,
    text: &str,
    dir: &Path,
    origin: &str,
) -> Result<AuthConfig, ConfigError> {
    match plugin.kind.as_deref() {
        Some("none") => Ok(AuthConfig::Open),
        Some("file") => {
            let options = plugin.options.unwrap_or(Value::Null);
            let users = match options.get("users").or_else(|| options.get("path")) {
                Some(Value::String(reference)) => load_users(reference, dir, origin)?,
                Some(inline @ Value::Mapping(_)) => inline.clone(),
                _ => {
                    return Err(ConfigError(format!(
                        "{origin}: auth file: options.users (or path) is required{}",
                        line_of(text, "file")
                    )))
                }
            };
            let hash = match options.get("hash") {
                Some(Value::String(algorithm)) => {
                    if !matches!(algorithm.as_str(), "md5" | "sha1" | "sha256" | "sha512") {
                        return Err(ConfigError(format!(
                            "{origin}: auth file: unsupported hash '{algorithm}'{}",
                            line_of(text, algorithm)
                        )));
                    }
                    let number = |key: &str, default: u64| {
                        options.get(key).and_then(Value::as_u64).unwrap_or(default)
                    };
                    Some(HashSettings {
                        algorithm: algorithm.clone(),
                        iterations: number("iterations", 100) as u32,
                        key_length: number("keyLength", 32) as usize,
                    })
                }
                _ => None,
            };
            Ok(AuthConfig::File { users, hash })
        }
        Some("jwt") => {
            let options = plugin.options.unwrap_or(Value::Null);
            crate::auth::jwt::JwtAuth::from_options(&options, dir)
                .map(AuthConfig::Jwt)
                .map_err(|e| {
                    ConfigError(format!("{origin}: auth jwt{}: {e}", line_of(text, "jwt")))
                })
        }
        Some("http") => {
            let options = plugin.options.unwrap_or(Value::Null);
            HttpAuth::from_options(&options)
                .map(AuthConfig::Http)
                .map_err(|e| {
                    ConfigError(format!("{origin}: auth http{}: {e}", line_of(text, "http")))
                })
        }
        Some(other) => Err(ConfigError(format!(
            "{origin}: auth: unknown or unsupported auth type '{other}'{}",
            line_of(text, other)
        ))),
        None => Err(ConfigError(format!(
            "{origin}: auth: a strategy without a type"
        ))),
    }
}

/// A file the config names (`fileLoad(...)`), with `${NAME}` replaced as in the config
/// itself: deepstream does so in every file it loads, even inside a rule's template literal.
fn read_loaded_file(path: &Path) -> std::io::Result<String> {
    let text = std::fs::read_to_string(path)?;
    Ok(substitute_env(&text, |name| std::env::var(name).ok()))
}

/// `fileLoad(users.yml)` or a plain path, relative to the config file.
fn load_users(reference: &str, dir: &Path, origin: &str) -> Result<Value, ConfigError> {
    let path: PathBuf = dir.join(strip_file_load(reference));
    let text = read_loaded_file(&path).map_err(|e| {
        ConfigError(format!(
            "{origin}: auth file: cannot read {}: {e}",
            path.display()
        ))
    })?;
    serde_yaml::from_str(&text).map_err(|e| ConfigError(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    #[test]
    fn server_name_uuid_is_a_fresh_uuid() {
        let dir = std::path::Path::new(".");
        let a = Config::parse("serverName: UUID", dir, "t")
            .unwrap()
            .server_name;
        let b = Config::parse("serverName: UUID", dir, "t")
            .unwrap()
            .server_name;
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert_ne!(a, b);
        assert_eq!(
            Config::parse("serverName: edge-1", dir, "t")
                .unwrap()
                .server_name,
            "edge-1"
        );
    }

    #[test]
    fn environment_variables_are_substituted_as_deepstream_does() {
        let env = |name: &str| match name {
            "HOST" => Some("10.0.0.1".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        assert_eq!(
            super::substitute_env("host: ${HOST}\nport: ${PORT}\nx: ${EMPTY}", env),
            "host: 10.0.0.1\nport: \nx: "
        );
        assert_eq!(
            super::substitute_env("a ${} ${HOST} ${open", env),
            "a ${} 10.0.0.1 ${open"
        );
        assert_eq!(super::substitute_env("$HOST {HOST}", env), "$HOST {HOST}");
    }

    use super::*;

    #[test]
    fn reads_the_reference_peer_config() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reference/config.yml");
        let config = Config::load(&path).unwrap();
        assert_eq!(config.port, 6020);
        assert_eq!(config.host, "127.0.0.1");
        assert_eq!(config.url_path, "/deepstream");
        assert_eq!(config.max_auth_attempts, 3);
        assert_eq!(config.unauthenticated_client_timeout_ms, Some(180_000));
        assert_eq!(config.auth, vec![AuthConfig::Open]);
        assert!(!config.permissions.is_open(), "permissions.yml was loaded");
        assert!(config.api.enabled, "the http endpoint is configured");
        assert_eq!(
            config.warnings,
            Vec::<String>::new(),
            "every key is acted on or has no effect"
        );
    }

    #[test]
    fn errors_name_the_key_and_line() {
        let err = Config::parse("auth:\n  - type: ldap\n", Path::new("."), "c.yml").unwrap_err();
        assert!(
            err.0.contains("'ldap'") && err.0.contains("line 2"),
            "{err}"
        );
        let err = Config::parse("rpc:\n  ackTimeout: soon\n", Path::new("."), "c.yml").unwrap_err();
        assert!(err.0.contains("line 2"), "{err}");
        let err = Config::parse(
            "connectionEndpoints:\n  - type: carrier-pigeon\n",
            Path::new("."),
            "c.yml",
        )
        .unwrap_err();
        assert!(err.0.contains("carrier-pigeon"), "{err}");
    }

    #[test]
    fn empty_file_gives_defaults() {
        let config = Config::parse("", Path::new("."), "c.yml").unwrap();
        assert_eq!(config.port, 6020);
        assert_eq!(config.heartbeat_interval_ms, 30_000);
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("."), "c.yml")
    }

    #[test]
    fn keys_that_would_change_security_or_data_refuse_to_start() {
        for (text, needle) in [
            ("cache:\n  name: memcached\n", "cache"),
            ("storage:\n  name: mongodb\n  options: {}\n", "storage"),
            ("storage:\n  path: ./my-storage.js\n", "storage.path"),
            (
                "storage:\n  name: embedded\n  options: {path: [1]}\n",
                "storage.options.path",
            ),
            (
                "cache:\n  name: redis\n  options: {nodes: [{host: a}]}\n",
                "nodes",
            ),
            (
                "record:\n  storageExclusionPrefixes: tmp/\n",
                "storageExclusionPrefixes",
            ),
            ("clusterNode:\n  name: redis\n", "clusterNode"),
            ("clusterNode:\n  name: nats\n  options: {servers: 4}\n", "servers"),
            ("monitoring:\n  type: http\n", "monitoring"),
            (
                "monitoring:\n  - type: none\n  - type: statsd\n",
                "monitoring",
            ),
            ("plugins:\n  custom:\n    path: ./x\n", "plugins"),
            ("sslKey: fileLoad(key.pem)\n", "sslKey"),
            (
                "httpServer:\n  options:\n    ssl:\n      key: fileLoad(k.pem)\n",
                "httpServer.options.ssl",
            ),
            (
                "httpServer:\n  options:\n    ssl:\n      key: fileLoad(k.pem)\n      cert: fileLoad(c.pem)\n",
                "k.pem",
            ),
            (
                "httpServer:\n  options:\n    allowAllOrigins: false\n",
                "allowAllOrigins",
            ),
            ("enabledFeatures:\n  monitoring: true\n", "monitoring"),
            (
                "enabledFeatures:\n  record: sometimes\n",
                "enabledFeatures.record",
            ),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.0.contains(needle), "{text:?}: {err}");
        }
        // What asks for nothing beyond what corestream does anyway loads.
        for text in [
            "cache:\n  type: default\n",
            "storage: null\n",
            "clusterNode:\n  type: default\n",
            "monitoring:\n  type: none\n",
            "plugins: {}\n",
            "httpServer:\n  options:\n    allowAllOrigins: true\n    origins: ['https://a.example']\n",
            "httpServer:\n  options:\n    allowAllOrigins: false\n    origins: ['https://a.example']\n",
        ] {
            let config = parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert!(config.warnings.is_empty(), "{text:?}: {:?}", config.warnings);
        }
    }

    #[test]
    fn typos_inside_sections_are_warnings_naming_them() {
        let config = parse(
            "connectionEndpoints:\n  - type: ws-binary\n    options:\n      urlPat: /x\nrpc:\n  ackTimeot: 5\nlisten:\n  matchCooldown: 10\nrecord:\n  cacheRetrievalTimeout: 30000\n  storageHotPath: []\nhttpServer:\n  options:\n    prot: 1\nfoo: 1\nshowLogo: true\nlocks: {}\n",
        )
        .unwrap();
        let all = config.warnings.join("\n");
        for needle in [
            "'urlPat'",
            "'ackTimeot'",
            "'storageHotPath'",
            "'prot'",
            "unknown config keys, ignored: foo",
            "not built yet, ignored: locks",
        ] {
            assert!(all.contains(needle), "{needle} in {all}");
        }
        assert!(
            !all.contains("matchCooldown") && !all.contains("showLogo"),
            "{all}"
        );
        assert_eq!(config.url_path, "/deepstream", "the typo changed nothing");
    }

    #[test]
    fn enabled_features_are_read() {
        let config = parse(
            "enabledFeatures:\n  record: true\n  event: false\n  rpc: false\n  presence: true\n",
        )
        .unwrap();
        use crate::protocol::message::topic;
        assert!(config.enabled_features.serves(topic::RECORD));
        assert!(!config.enabled_features.serves(topic::EVENT));
        assert!(!config.enabled_features.serves(topic::RPC));
        assert!(config.enabled_features.serves(topic::PRESENCE));
        assert!(config.enabled_features.serves(topic::CONNECTION));
    }

    #[test]
    fn json_config_files_and_default_locations() {
        let dir = std::env::temp_dir().join(format!("corestream-config-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("conf")).unwrap();
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        let json = dir.join("conf/config.json");
        std::fs::write(
            &json,
            r#"{"serverName": "from-json", "httpServer": {"options": {"port": 7001}}}"#,
        )
        .unwrap();
        let config = Config::load(&json).unwrap();
        assert_eq!(
            (config.server_name.as_str(), config.port),
            ("from-json", 7001)
        );
        let exe = dir.join("bin/corestream");
        assert_eq!(
            default_location(None, Some(&exe)).unwrap(),
            Some(dir.join("bin/../conf/config.json")),
            "conf/config above the program"
        );
        std::fs::write(dir.join("conf/config.yml"), "serverName: yml\n").unwrap();
        assert_eq!(
            default_location(None, Some(&exe)).unwrap(),
            Some(dir.join("bin/../conf/config.yml")),
            ".yml before .json"
        );
        assert!(default_location(Some(dir.join("missing.yml")), None).is_err());
        assert!(Config::load(&dir.join("conf/config.js"))
            .unwrap_err()
            .0
            .contains("JavaScript"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn log_level_and_format_are_read_as_deepstream_names_them() {
        use crate::log::{Format, Level};
        let config = parse("logLevel: WARN\n").unwrap();
        assert_eq!(
            (config.log_level, config.log_format),
            (Level::Warn, Format::Text)
        );
        let config =
            parse("logLevel: INFO\nlogger:\n  type: json\n  options:\n    logLevel: 3\n").unwrap();
        assert_eq!(
            (config.log_level, config.log_format),
            (Level::Error, Format::Json)
        );
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
        assert!(parse("logLevel: LOUD\n")
            .unwrap_err()
            .0
            .contains("logLevel"));
    }
}
