//! Authentication strategies from config.yml's `auth:` list, tried in order.

use crate::config::AuthConfig;
use serde_yaml::Value as Yaml;
use simd_json::prelude::*;
use simd_json::OwnedValue;

/// The id every anonymous login gets (deepstream's OPEN).
pub const OPEN_USER: &str = "open";

#[derive(Debug, Clone, PartialEq)]
pub struct LoginOk {
    pub id: String,
    /// JSON text sent back in AUTH_SUCCESSFUL.
    pub client_data: Option<String>,
    pub server_data: Option<String>,
}

/// Tries each strategy in turn; the first that accepts wins.
pub fn authenticate(strategies: &[AuthConfig], auth_data: &OwnedValue) -> Option<LoginOk> {
    strategies.iter().find_map(|s| match s {
        AuthConfig::Open => Some(LoginOk {
            id: open_id(auth_data),
            client_data: None,
            server_data: None,
        }),
        AuthConfig::File { users } => file_login(users, auth_data),
    })
}

/// `username` as a string (numbers too, as JavaScript's toString), else "open".
fn open_id(auth_data: &OwnedValue) -> String {
    match auth_data.get("username") {
        Some(v) if v.is_str() => v
            .as_str()
            .filter(|s| !s.is_empty())
            .unwrap_or(OPEN_USER)
            .to_string(),
        Some(v) if v.is_number() || v.is_bool() => v.encode(),
        _ => OPEN_USER.to_string(),
    }
}

/// users.yml with cleartext passwords. Hashed passwords need issue 5's hashing and are refused.
fn file_login(users: &Yaml, auth_data: &OwnedValue) -> Option<LoginOk> {
    let username = auth_data.get("username")?.as_str()?;
    let password = auth_data.get("password")?.as_str()?;
    let user = users.get(username)?;
    if user.get("password")?.as_str()? != password {
        return None;
    }
    let json = |key: &str| user.get(key).and_then(serde_yaml_to_json);
    Some(LoginOk {
        id: username.to_string(),
        client_data: json("clientData"),
        server_data: json("serverData"),
    })
}

fn serde_yaml_to_json(value: &Yaml) -> Option<String> {
    let text = simd_json::to_string(value).ok()?;
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> OwnedValue {
        simd_json::to_owned_value(&mut text.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn open_auth_takes_the_username() {
        let open = [AuthConfig::Open];
        assert_eq!(
            authenticate(&open, &json(r#"{"username":"alice"}"#))
                .unwrap()
                .id,
            "alice"
        );
        assert_eq!(
            authenticate(&open, &json(r#"{"username":5}"#)).unwrap().id,
            "5"
        );
        assert_eq!(authenticate(&open, &json("{}")).unwrap().id, OPEN_USER);
    }

    #[test]
    fn file_auth_checks_cleartext_passwords() {
        let users: Yaml =
            serde_yaml::from_str("bob:\n  password: pw\n  clientData:\n    role: admin\n").unwrap();
        let file = [AuthConfig::File { users }];
        let ok = authenticate(&file, &json(r#"{"username":"bob","password":"pw"}"#)).unwrap();
        assert_eq!(ok.client_data.as_deref(), Some(r#"{"role":"admin"}"#));
        assert!(authenticate(&file, &json(r#"{"username":"bob","password":"no"}"#)).is_none());
        assert!(authenticate(&file, &json(r#"{"username":"eve","password":"pw"}"#)).is_none());
    }
}
