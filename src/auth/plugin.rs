//! Authentication written in Rust: deepstream's authentication plugin (`isValidUser(headers,
//! authData)`) as a trait. A server built with `Server::builder(..).authentication(..)` asks it
//! for every login; config.yml's `auth` strategies are then not used.
//!
//! The plugin runs on the connector thread (a tokio runtime, where the Redis, PostgreSQL and NATS
//! clients run), never on a shard: a slow plugin delays only the logins waiting for it, and its
//! future may use tokio's I/O and timers. An answer slower than [`PLUGIN_ANSWER_TIMEOUT`]
//! refuses the login.

use std::future::Future;
use std::pin::Pin;

/// A future the server can run on another thread.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// How long a login waits for a plugin's answer before it is refused.
pub const PLUGIN_ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// One login to decide.
#[derive(Debug, Clone, PartialEq)]
pub struct LoginRequest {
    /// What the client passed to `login(...)`: any JSON value.
    pub auth_data: serde_json::Value,
}

/// An accepted login.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Login {
    /// The user's id: what presence shows and permission rules read as `user.id`.
    pub id: String,
    /// Sent to the client with its login (`client.login` callback's data).
    pub client_data: Option<serde_json::Value>,
    /// Read by permission rules as `user.data`, never sent to the client.
    pub server_data: Option<serde_json::Value>,
    /// Answered by `POST /api/auth` as `token`, for later HTTP API requests.
    pub token: Option<String>,
}

/// A refused login; `client_data` reaches the client with the refusal.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Refusal {
    pub client_data: Option<serde_json::Value>,
}

/// Decides who may log in.
///
/// ```
/// use corestream::{Authentication, BoxFuture, Login, LoginRequest, Refusal};
///
/// /// Admits whoever presents the one token it was made with.
/// struct OneToken(String);
///
/// impl Authentication for OneToken {
///     fn is_valid_user(&self, request: LoginRequest) -> BoxFuture<Result<Login, Refusal>> {
///         let admitted = request.auth_data["token"].as_str() == Some(self.0.as_str());
///         Box::pin(async move {
///             if admitted {
///                 Ok(Login { id: "holder".into(), ..Login::default() })
///             } else {
///                 Err(Refusal::default())
///             }
///         })
///     }
/// }
/// ```
pub trait Authentication: Send + Sync + 'static {
    /// Named in the start line and in `check-config`.
    fn description(&self) -> String {
        "a custom authentication plugin".into()
    }

    /// Accepts or refuses one login.
    fn is_valid_user(&self, request: LoginRequest) -> BoxFuture<Result<Login, Refusal>>;
}

/// An authentication plugin as an auth strategy of the config (compared by identity).
#[derive(Clone)]
pub struct PluginAuth(pub std::sync::Arc<dyn Authentication>);

impl PartialEq for PluginAuth {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl std::fmt::Debug for PluginAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.description())
    }
}

impl PluginAuth {
    /// Asks the plugin about one login; `request` is the webhook body the shard made for it
    /// (`{"connectionData": .., "authData": ..}`). The verdict is as the shard takes it (client
    /// data as JSON text).
    pub async fn ask(&self, request: &str) -> Result<super::LoginOk, Option<String>> {
        let auth_data = serde_json::from_str::<serde_json::Value>(request)
            .ok()
            .and_then(|mut body| body.get_mut("authData").map(serde_json::Value::take))
            .unwrap_or(serde_json::Value::Null);
        let answer = self.0.is_valid_user(LoginRequest { auth_data });
        let text = |value: Option<serde_json::Value>| value.map(|v| v.to_string());
        match tokio::time::timeout(PLUGIN_ANSWER_TIMEOUT, answer).await {
            Ok(Ok(login)) => Ok(super::LoginOk {
                id: login.id,
                client_data: text(login.client_data),
                server_data: text(login.server_data),
                token: login
                    .token
                    .map(|t| serde_json::Value::String(t).to_string()),
            }),
            Ok(Err(refusal)) => Err(text(refusal.client_data)),
            Err(_) => Err(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Admits `{"user": name}` as `name` with a token; refuses anything else, saying why.
    struct ByName;

    impl Authentication for ByName {
        fn is_valid_user(&self, request: LoginRequest) -> BoxFuture<Result<Login, Refusal>> {
            let name = request.auth_data["user"].as_str().map(str::to_string);
            Box::pin(async move {
                match name {
                    Some(id) => Ok(Login {
                        token: Some(format!("t-{id}")),
                        server_data: Some(serde_json::json!({"role": "user"})),
                        id,
                        ..Login::default()
                    }),
                    None => Err(Refusal {
                        client_data: Some(serde_json::json!({"error": "no user"})),
                    }),
                }
            })
        }
    }

    fn ask(body: &str) -> Result<super::super::LoginOk, Option<String>> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime");
        runtime.block_on(PluginAuth(std::sync::Arc::new(ByName)).ask(body))
    }

    #[test]
    fn the_plugin_reads_the_auth_data_and_its_answer_reaches_the_shard_as_json_text() {
        let login = ask(r#"{"connectionData":{},"authData":{"user":"ann"}}"#).expect("admitted");
        assert_eq!(login.id, "ann");
        assert_eq!(login.token.as_deref(), Some(r#""t-ann""#));
        assert_eq!(login.server_data.as_deref(), Some(r#"{"role":"user"}"#));
        assert_eq!(login.client_data, None);
        let refused = ask(r#"{"connectionData":{},"authData":{"password":"x"}}"#);
        assert_eq!(refused, Err(Some(r#"{"error":"no user"}"#.to_string())));
        // A body that is not JSON reaches the plugin as null auth data.
        assert!(ask("not json").is_err());
    }
}
