//! The `admin` section (corestream's admin API and dashboard).

use serde_yaml::Value;

/// The `admin` section of config.yml.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminConfig {
    /// The bearer token the admin API asks for; no token, no admin API.
    pub token: Option<String>,
    /// Where the admin API answers (default `/admin`).
    pub path: String,
    /// Where the live dashboard page is served; `None`: not served.
    pub dashboard: Option<String>,
    /// Where login and logout notifications are posted; `None`: not sent.
    pub session_webhook: Option<super::HttpAuth>,
}

impl AdminConfig {
    /// Reads the section: `token`, `path`, `dashboard`, `sessionWebhook` (`endpointUrl`,
    /// `requestTimeout`, `retryAttempts`, `retryInterval`, as the http auth strategy takes them).
    pub fn parse(value: &Value) -> Result<AdminConfig, String> {
        let known = ["token", "path", "dashboard", "sessionWebhook"];
        if let Some(map) = value.as_mapping() {
            for key in map.keys() {
                let key = key.as_str().unwrap_or_default();
                if !known.contains(&key) {
                    return Err(format!("admin: unknown key '{key}' ({})", known.join(", ")));
                }
            }
        }
        let text = |key: &str| -> Result<Option<String>, String> {
            match value.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(format!("admin.{key} must be a string")),
            }
        };
        // `token: ${ADMIN_TOKEN}` with the variable unset reads as empty: an error, not an
        // admin API silently absent.
        let empty = match value.get("token") {
            Some(Value::Null) => true,
            Some(Value::String(t)) => t.trim().is_empty(),
            _ => false,
        };
        if empty {
            return Err(
                "admin.token is empty (is the environment variable it names set?); remove the \
                 key to run without the admin API"
                    .into(),
            );
        }
        let token = text("token")?;
        if token.as_ref().is_some_and(|t| t.len() < 16) {
            return Err("admin.token must be at least 16 characters".into());
        }
        let path = text("path")?.unwrap_or_else(|| "/admin".into());
        let dashboard = text("dashboard")?;
        for p in std::iter::once(&path).chain(dashboard.iter()) {
            if !p.starts_with('/') || p.len() < 2 {
                return Err(format!("admin: '{p}' must be a path such as /admin"));
            }
        }
        let session_webhook = match value.get("sessionWebhook") {
            None | Some(Value::Null) => None,
            Some(options) => Some(
                super::HttpAuth::from_options(options)
                    .map_err(|e| format!("admin.sessionWebhook: {e}"))?,
            ),
        };
        Ok(AdminConfig {
            token,
            path,
            dashboard,
            session_webhook,
        })
    }
}
