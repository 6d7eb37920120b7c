//! The `http` connection endpoint's options and the `httpServer.options` that shape every plain
//! HTTP answer.

/// deepstream's `http` connection endpoint and the `httpServer.options` that shape every plain
/// HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// The `http` endpoint is configured (it is in deepstream's defaults).
    pub enabled: bool,
    pub allow_auth_data: bool,
    pub enable_auth_endpoint: bool,
    pub auth_path: String,
    pub post_path: String,
    pub get_path: String,
    pub log_invalid_auth_data: bool,
    pub request_timeout_ms: u64,
    pub allow_all_origins: bool,
    pub origins: Vec<String>,
    /// Request headers a preflight may name beyond the reference's four.
    pub headers: Vec<String>,
    /// When set, the `Host` every request must name.
    pub host_url: Option<String>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            enabled: true,
            allow_auth_data: true,
            enable_auth_endpoint: true,
            auth_path: "/api/auth".into(),
            post_path: "/api".into(),
            get_path: "/api".into(),
            log_invalid_auth_data: false,
            request_timeout_ms: 20_000,
            allow_all_origins: true,
            origins: Vec::new(),
            headers: Vec::new(),
            host_url: None,
        }
    }
}
