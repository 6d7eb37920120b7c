//! The `monitoring` section: deepstream's `http` and `log` outputs and corestream's
//! `prometheus`, each with the path it answers on and who may read it.

use serde_yaml::Value;

/// One configured monitoring output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Monitor {
    /// deepstream's `http` monitoring: GET `path` answers the stats since the last read.
    Http {
        path: String,
        /// The header (lower-case name, value) a request must carry; `None` with
        /// `allowOpenPermissions`.
        header: Option<(String, String)>,
    },
    /// deepstream's `log` monitoring: the stats every `interval_ms`, under `key`.
    Log { interval_ms: u64, key: String },
    /// Prometheus' text format at `path` (corestream's), optionally behind a header.
    Prometheus {
        path: String,
        header: Option<(String, String)>,
    },
}

impl Monitor {
    /// The GET path this output answers on, if any.
    pub fn path(&self) -> Option<&str> {
        match self {
            Monitor::Http { path, .. } | Monitor::Prometheus { path, .. } => Some(path),
            Monitor::Log { .. } => None,
        }
    }

    /// Whether a request with these headers may read this output.
    pub fn admits(&self, header_value: impl Fn(&str) -> Option<String>) -> bool {
        let header = match self {
            Monitor::Http { header, .. } | Monitor::Prometheus { header, .. } => header,
            Monitor::Log { .. } => return false,
        };
        match header {
            None => true,
            Some((name, value)) => header_value(name).as_deref() == Some(value.as_str()),
        }
    }
}

fn text(options: Option<&Value>, key: &str) -> Option<String> {
    options
        .and_then(|o| o.get(key))
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn header(
    options: Option<&Value>,
    kind: &str,
    required: bool,
) -> Result<Option<(String, String)>, String> {
    let open = options
        .and_then(|o| o.get("allowOpenPermissions"))
        .and_then(Value::as_bool)
        == Some(true);
    match (text(options, "headerKey"), text(options, "headerValue")) {
        (Some(k), Some(v)) if !k.is_empty() && !v.is_empty() => {
            Ok(Some((k.to_ascii_lowercase(), v)))
        }
        _ if open || !required => Ok(None),
        _ => Err(format!(
            "monitoring {kind}: headerKey and headerValue are required (or allowOpenPermissions: \
             true, which lets anyone read the stats)"
        )),
    }
}

/// Reads the `monitoring` section: one entry or a list, each `{type, options}`.
pub fn parse(value: &Value) -> Result<Vec<Monitor>, String> {
    let entries: Vec<&Value> = match value {
        Value::Null => return Ok(Vec::new()),
        Value::Sequence(items) => items.iter().collect(),
        other => vec![other],
    };
    let mut monitors = Vec::new();
    for entry in entries {
        if entry.get("path").is_some() || entry.get("name").is_some() {
            return Err("monitoring: custom plugins (name, path) are not supported".into());
        }
        let options = entry.get("options");
        let kind = entry.get("type").and_then(Value::as_str).unwrap_or("none");
        match kind {
            "none" | "default" => {}
            "http" => {
                let path = text(options, "url").filter(|p| p.starts_with('/')).ok_or(
                    "monitoring http: options.url (a path such as /monitoring) is required",
                )?;
                monitors.push(Monitor::Http {
                    path,
                    header: header(options, "http", true)?,
                });
            }
            "log" => {
                let interval_ms = match options.and_then(|o| o.get("logInterval")) {
                    None => 15_000,
                    Some(v) => v
                        .as_u64()
                        .filter(|n| *n >= 100)
                        .ok_or("monitoring log: options.logInterval must be at least 100 (ms)")?,
                };
                monitors.push(Monitor::Log {
                    interval_ms,
                    key: text(options, "monitoringKey").unwrap_or_else(|| "LOG_MONITORING".into()),
                });
            }
            "prometheus" => {
                let path = text(options, "path").unwrap_or_else(|| "/metrics".into());
                if !path.starts_with('/') {
                    return Err("monitoring prometheus: options.path must start with /".into());
                }
                monitors.push(Monitor::Prometheus {
                    path,
                    header: header(options, "prometheus", false)?,
                });
            }
            other => {
                return Err(format!(
                    "monitoring: unknown type '{other}' (none, http, log or prometheus)"
                ))
            }
        }
    }
    Ok(monitors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Value {
        serde_yaml::from_str(text).unwrap()
    }

    #[test]
    fn one_entry_or_a_list() {
        assert_eq!(parse(&yaml("type: none")).unwrap(), vec![]);
        let list = parse(&yaml(
            "- type: http\n  options: {url: /monitoring, headerKey: X-Key, headerValue: s}\n- type: log\n  options: {logInterval: 500}\n- type: prometheus\n",
        ))
        .unwrap();
        assert_eq!(
            list,
            vec![
                Monitor::Http {
                    path: "/monitoring".into(),
                    header: Some(("x-key".into(), "s".into()))
                },
                Monitor::Log {
                    interval_ms: 500,
                    key: "LOG_MONITORING".into()
                },
                Monitor::Prometheus {
                    path: "/metrics".into(),
                    header: None
                },
            ]
        );
        assert!(list[0].admits(|h| (h == "x-key").then(|| "s".to_string())));
        assert!(!list[0].admits(|_| None));
        assert!(list[2].admits(|_| None));
    }

    #[test]
    fn refusals() {
        assert!(parse(&yaml("type: http\noptions: {url: /m}"))
            .unwrap_err()
            .contains("headerKey"));
        assert!(parse(&yaml(
            "type: http\noptions: {url: /m, allowOpenPermissions: true}"
        ))
        .is_ok());
        assert!(parse(&yaml("type: http")).unwrap_err().contains("url"));
        assert!(parse(&yaml("type: statsd")).unwrap_err().contains("statsd"));
        assert!(parse(&yaml("type: log\noptions: {logInterval: 0}")).is_err());
        assert!(parse(&yaml("name: x")).is_err());
    }
}
