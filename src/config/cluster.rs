//! `clusterNode` as deepstream writes it, for corestream's NATS cluster:
//! `clusterNode: {name: nats, options: {servers: [...], prefix, nodeTimeout, ...}}`.
//! Without it, or with deepstream's inert `type: default`, the node runs alone.

use serde_yaml::Value;
use std::path::{Path, PathBuf};

/// How this node joins the cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    /// NATS server addresses (`nats://host:port` or `host:port`).
    pub servers: Vec<String>,
    /// The first token of every subject and the bucket names: clusters sharing one NATS keep
    /// apart by prefix.
    pub prefix: String,
    /// A node silent this long is taken for dead: its users leave presence, its providers and
    /// listeners are dropped.
    pub node_timeout_ms: u64,
    /// How often a node says it is alive.
    pub heartbeat_interval_ms: u64,
    /// How long a bus request (a record's compare-and-set, a read) may take before the client
    /// gets the store's error.
    pub request_timeout_ms: u64,
    /// JetStream replicas of the records bucket (1 on a single NATS server).
    pub replicas: usize,
    /// How the node proves itself to NATS.
    pub auth: NatsAuth,
    /// TLS to NATS (also on for `tls://` servers, with the system's roots).
    pub tls: Option<NatsTls>,
}

/// NATS's own ways to authenticate a client, one at a time.
#[derive(Clone, PartialEq, Default)]
pub enum NatsAuth {
    #[default]
    None,
    UserPassword {
        user: String,
        password: String,
    },
    Token(String),
    /// A `.creds` file (a user JWT and its NKey seed), as `nsc` writes them.
    Credentials(PathBuf),
}

/// Secrets stay out of logs and panics.
impl std::fmt::Debug for NatsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NatsAuth::None => f.write_str("None"),
            NatsAuth::UserPassword { user, .. } => write!(f, "UserPassword({user}, ***)"),
            NatsAuth::Token(_) => f.write_str("Token(***)"),
            NatsAuth::Credentials(path) => write!(f, "Credentials({})", path.display()),
        }
    }
}

/// `tls: {ca, cert, key}`: roots to trust beside the system's, and a client certificate for
/// servers that ask for one.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NatsTls {
    pub ca: Option<PathBuf>,
    pub cert_and_key: Option<(PathBuf, PathBuf)>,
}

pub const DEFAULT_PREFIX: &str = "corestream";

impl Default for ClusterConfig {
    fn default() -> ClusterConfig {
        ClusterConfig {
            servers: vec!["nats://127.0.0.1:4222".into()],
            prefix: DEFAULT_PREFIX.into(),
            node_timeout_ms: 5_000,
            heartbeat_interval_ms: 1_000,
            request_timeout_ms: 5_000,
            replicas: 1,
            auth: NatsAuth::None,
            tls: None,
        }
    }
}

/// Reads `clusterNode`; `Ok(None)` when it asks for no cluster. Files are found from `dir`,
/// the config file's folder.
pub fn parse(value: Option<&Value>, dir: &Path) -> Result<Option<ClusterConfig>, String> {
    let Some(value) = value else { return Ok(None) };
    let section = match value {
        Value::Null => return Ok(None),
        Value::Mapping(_) => value,
        _ => return Err("clusterNode must be a mapping".into()),
    };
    let name = section.get("name").and_then(Value::as_str);
    let kind = section.get("type").and_then(Value::as_str);
    match (name, kind) {
        (None, None | Some("default")) if section.get("path").is_none() => return Ok(None),
        (Some("nats"), _) => {}
        (Some(other), _) => {
            return Err(format!(
                "clusterNode: '{other}' is not supported; corestream clusters over NATS \
                 (name: nats, options: {{servers: [nats://host:4222]}})"
            ))
        }
        _ => {
            return Err(
                "clusterNode: corestream clusters over NATS (name: nats, options: {servers: \
                 [nats://host:4222]})"
                    .into(),
            )
        }
    }
    let mut config = ClusterConfig::default();
    let Some(options) = section.get("options") else {
        return Ok(Some(config));
    };
    let Some(options) = options.as_mapping() else {
        return Err("clusterNode.options must be a mapping".into());
    };
    let (mut user, mut password) = (None, None);
    let mut ways = Vec::new();
    for (key, value) in options {
        let key = key.as_str().unwrap_or_default();
        let place = format!("clusterNode.options.{key}");
        let text = || {
            value
                .as_str()
                .filter(|v| !v.is_empty())
                .map(str::to_string)
                .ok_or_else(|| format!("{place} must be a non-empty string"))
        };
        match key {
            "user" => user = Some(text()?),
            "password" => password = Some(text()?),
            "token" => {
                ways.push(key);
                config.auth = NatsAuth::Token(text()?);
            }
            "credentials" => {
                ways.push(key);
                config.auth = NatsAuth::Credentials(existing_file(dir, &text()?, &place)?);
            }
            "tls" => config.tls = Some(tls(value, dir, &place)?),
            "servers" => {
                let list = match value {
                    Value::String(one) => vec![one.clone()],
                    Value::Sequence(items) => items
                        .iter()
                        .map(|v| {
                            v.as_str()
                                .map(str::to_string)
                                .ok_or_else(|| format!("{place}: each server must be a string"))
                        })
                        .collect::<Result<_, _>>()?,
                    _ => return Err(format!("{place} must be a list of nats:// addresses")),
                };
                if list.is_empty() {
                    return Err(format!("{place} is empty"));
                }
                config.servers = list;
            }
            "prefix" => {
                let prefix = value
                    .as_str()
                    .ok_or_else(|| format!("{place} must be a string"))?;
                if prefix.is_empty()
                    || !prefix
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    return Err(format!(
                        "{place}: '{prefix}' must be letters, digits, '-' or '_' (it names \
                         subjects and buckets)"
                    ));
                }
                config.prefix = prefix.to_string();
            }
            "nodeTimeout" => config.node_timeout_ms = millis(value, &place)?,
            "heartbeatInterval" => config.heartbeat_interval_ms = millis(value, &place)?,
            "requestTimeout" => config.request_timeout_ms = millis(value, &place)?,
            "replicas" => {
                config.replicas = value
                    .as_u64()
                    .filter(|n| (1..=5).contains(n))
                    .ok_or_else(|| format!("{place} must be 1 to 5"))?
                    as usize;
            }
            _ => return Err(format!("{place}: unknown option")),
        }
    }
    match (user, password) {
        (Some(user), Some(password)) => {
            ways.push("user");
            config.auth = NatsAuth::UserPassword { user, password };
        }
        (None, None) => {}
        _ => return Err("clusterNode.options: user and password go together".into()),
    }
    if ways.len() > 1 {
        return Err(format!(
            "clusterNode.options: {} are ways to authenticate to NATS; choose one",
            ways.join(" and ")
        ));
    }
    if config.heartbeat_interval_ms >= config.node_timeout_ms {
        return Err("clusterNode.options: heartbeatInterval must be less than nodeTimeout".into());
    }
    Ok(Some(config))
}

fn tls(value: &Value, dir: &Path, place: &str) -> Result<NatsTls, String> {
    let Some(options) = value.as_mapping() else {
        return Err(format!("{place} must be a mapping (ca, cert, key)"));
    };
    let file = |key: &str| -> Result<Option<PathBuf>, String> {
        match options.get(key) {
            None => Ok(None),
            Some(Value::String(path)) => {
                existing_file(dir, path, &format!("{place}.{key}")).map(Some)
            }
            Some(_) => Err(format!("{place}.{key} must be a file path")),
        }
    };
    let (ca, cert, key) = (file("ca")?, file("cert")?, file("key")?);
    if let Some(other) = options
        .keys()
        .filter_map(Value::as_str)
        .find(|k| !matches!(*k, "ca" | "cert" | "key"))
    {
        return Err(format!("{place}.{other}: unknown option"));
    }
    let cert_and_key = match (cert, key) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => return Err(format!("{place}: cert and key go together")),
    };
    Ok(NatsTls { ca, cert_and_key })
}

/// A file the node reads at start, relative to the config's folder.
fn existing_file(dir: &Path, path: &str, place: &str) -> Result<PathBuf, String> {
    let path = dir.join(path);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!("{place}: no file at {}", path.display()))
    }
}

fn millis(value: &Value, place: &str) -> Result<u64, String> {
    value
        .as_u64()
        .filter(|n| (1..=3_600_000).contains(n))
        .ok_or_else(|| format!("{place} must be a number of milliseconds (1 to 3600000)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Option<ClusterConfig>, String> {
        let value: Value = serde_yaml::from_str(text).unwrap();
        parse(value.get("clusterNode"), Path::new("."))
    }

    #[test]
    fn nats_with_options_and_the_inert_forms() {
        let config = read(
            "clusterNode:\n  name: nats\n  options:\n    servers: [nats://10.0.0.1:4222, 10.0.0.2:4222]\n    prefix: prod_1\n    nodeTimeout: 3000\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(config.servers.len(), 2);
        assert_eq!(config.prefix, "prod_1");
        assert_eq!(config.node_timeout_ms, 3000);
        assert_eq!(
            read("clusterNode:\n  name: nats\n").unwrap(),
            Some(ClusterConfig::default())
        );
        assert_eq!(read("clusterNode:\n  type: default\n").unwrap(), None);
        assert_eq!(read("clusterNode: null\n").unwrap(), None);
        assert_eq!(read("other: 1\n").unwrap(), None);
    }

    #[test]
    fn nats_authentication_and_tls() {
        let config = read(
            "clusterNode:\n  name: nats\n  options:\n    user: node\n    password: s3cret\n    tls: {ca: Cargo.toml, cert: Cargo.toml, key: Cargo.lock}\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            config.auth,
            NatsAuth::UserPassword {
                user: "node".into(),
                password: "s3cret".into()
            }
        );
        let tls = config.tls.unwrap();
        assert_eq!(tls.ca, Some(Path::new("./Cargo.toml").to_path_buf()));
        assert!(tls.cert_and_key.is_some());
        // Secrets stay out of anything printed.
        let printed = format!("{:?}", config.auth);
        assert!(!printed.contains("s3cret"), "{printed}");
        let token = read("clusterNode:\n  name: nats\n  options: {token: t0ken}\n");
        let token = token.unwrap().unwrap().auth;
        assert_eq!(token, NatsAuth::Token("t0ken".into()));
        assert!(!format!("{token:?}").contains("t0ken"));
        let creds = read("clusterNode:\n  name: nats\n  options: {credentials: Cargo.toml}\n");
        assert!(matches!(
            creds.unwrap().unwrap().auth,
            NatsAuth::Credentials(_)
        ));
    }

    #[test]
    fn what_cannot_work_stops_the_start() {
        for (text, needle) in [
            ("clusterNode:\n  name: redis\n", "'redis' is not supported"),
            ("clusterNode:\n  path: ./x.js\n", "NATS"),
            ("clusterNode:\n  name: nats\n  options: {servers: []}\n", "empty"),
            ("clusterNode:\n  name: nats\n  options: {prefix: 'a.b'}\n", "prefix"),
            ("clusterNode:\n  name: nats\n  options: {nodeTimeout: -1}\n", "nodeTimeout"),
            ("clusterNode:\n  name: nats\n  options: {colour: red}\n", "unknown option"),
            (
                "clusterNode:\n  name: nats\n  options: {nodeTimeout: 500, heartbeatInterval: 900}\n",
                "less than",
            ),
            ("clusterNode:\n  name: nats\n  options: {user: a}\n", "go together"),
            (
                "clusterNode:\n  name: nats\n  options: {user: a, password: b, token: c}\n",
                "choose one",
            ),
            ("clusterNode:\n  name: nats\n  options: {token: ''}\n", "non-empty"),
            (
                "clusterNode:\n  name: nats\n  options: {credentials: /nowhere/x.creds}\n",
                "no file at /nowhere/x.creds",
            ),
            ("clusterNode:\n  name: nats\n  options: {tls: yes}\n", "mapping"),
            ("clusterNode:\n  name: nats\n  options: {tls: {ca: /nowhere}}\n", "tls.ca"),
            ("clusterNode:\n  name: nats\n  options: {tls: {cert: Cargo.toml}}\n", "go together"),
            ("clusterNode:\n  name: nats\n  options: {tls: {verify: no}}\n", "tls.verify"),
        ] {
            let err = read(text).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
