//! The auth strategies a config names, as the login code uses them. Defined here, read from
//! config.yml by `config`, so `auth` needs nothing from `config`.

use serde_yaml::Value;

#[derive(Debug, Clone, PartialEq)]
pub enum AuthConfig {
    Open,
    File {
        users: Value,
        hash: Option<HashSettings>,
    },
    Http(HttpAuth),
    /// JWT logins (a corestream addition): see `auth::jwt`.
    Jwt(super::jwt::JwtAuth),
    /// A plugin given to `Server::builder` (`auth::plugin`).
    Plugin(super::plugin::PluginAuth),
}

/// deepstream's http auth: the auth data is POSTed to a webhook, a permitted status allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpAuth {
    pub host: String,
    pub port: u16,
    pub path: String,
    pub permitted_status: Vec<u16>,
    pub retry_status: Vec<u16>,
    pub retry_attempts: u32,
    pub retry_interval_ms: u64,
    pub timeout_ms: u64,
}

/// How users.yml passwords are hashed (deepstream's file auth `hash`, `iterations`, `keyLength`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashSettings {
    pub algorithm: String,
    pub iterations: u32,
    pub key_length: usize,
}
