//! `clusterNode` as deepstream writes it, for corestream's NATS cluster:
//! `clusterNode: {name: nats, options: {servers: [...], prefix, nodeTimeout, ...}}`.
//! Without it, or with deepstream's inert `type: default`, the node runs alone.

use serde_yaml::Value;

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
        }
    }
}

/// Reads `clusterNode`; `Ok(None)` when it asks for no cluster.
pub fn parse(value: Option<&Value>) -> Result<Option<ClusterConfig>, String> {
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
    for (key, value) in options {
        let key = key.as_str().unwrap_or_default();
        let place = format!("clusterNode.options.{key}");
        match key {
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
    if config.heartbeat_interval_ms >= config.node_timeout_ms {
        return Err("clusterNode.options: heartbeatInterval must be less than nodeTimeout".into());
    }
    Ok(Some(config))
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
        parse(value.get("clusterNode"))
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
        ] {
            let err = read(text).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
