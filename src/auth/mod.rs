//! Authentication strategies from config.yml's `auth:` list, tried in order.

pub mod jwt;
pub mod plugin;
pub mod settings;

use serde_yaml::Value as Yaml;
use settings::{AuthConfig, HashSettings};
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
    /// JSON text of the token `POST /api/auth` answers with: a webhook's `token` field, or the
    /// JWT that logged in (deepstream's auth endpoint passes its strategy's `token` through).
    pub token: Option<String>,
}

/// What deepstream's auth endpoint (`POST /api/auth`) answers for `login`: `{token,
/// clientData}`, each left out when the strategy gave none (users.yml and open auth give no
/// token, and the reference then answers `{clientData}` or `{}`).
pub fn endpoint_answer(login: &LoginOk) -> String {
    let fields = [("token", &login.token), ("clientData", &login.client_data)];
    let parts: Vec<String> = fields
        .iter()
        .filter_map(|(key, value)| Some(format!("\"{key}\":{}", value.as_deref()?)))
        .collect();
    format!("{{{}}}", parts.join(","))
}

/// Where a login stands after the strategies that can answer at once have been tried.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Accept(LoginOk),
    Reject,
    /// Strategy number `n` is a webhook or a plugin: ask it, then go on from `n + 1` if it
    /// says no.
    Ask(usize),
    /// Strategy number `n` needs a password hash checked, which takes milliseconds: run the
    /// check off the shard, then go on from `n + 1` if it fails.
    Verify(usize, PasswordCheck),
}

/// A users.yml password check under pbkdf2, to run where it cannot stall a shard. An unknown
/// user gets a check of the same cost against a dummy hash, so the answer's timing does not
/// tell which user names exist.
#[derive(Debug, Clone, PartialEq)]
pub struct PasswordCheck {
    password: String,
    salt: String,
    expected: String,
    settings: HashSettings,
    /// `None` for an unknown user: the check runs and fails.
    login: Option<LoginOk>,
}

impl PasswordCheck {
    /// The login if the password matches.
    pub fn run(self) -> Option<LoginOk> {
        let actual = pbkdf2_base64(&self.password, &self.salt, &self.settings)?;
        let matches = constant_time_eq(self.expected.as_bytes(), actual.as_bytes());
        self.login.filter(|_| matches)
    }
}

/// Tries the strategies from `start` on, in order; the first that accepts wins.
pub fn run_from(strategies: &[AuthConfig], start: usize, auth_data: &OwnedValue) -> Verdict {
    for (index, strategy) in strategies.iter().enumerate().skip(start) {
        let login = match strategy {
            AuthConfig::Open => Some(LoginOk {
                id: open_id(auth_data),
                client_data: None,
                server_data: None,
                token: None,
            }),
            AuthConfig::File { users, hash } => match file_login(users, hash.as_ref(), auth_data) {
                FileLogin::Done(login) => login,
                FileLogin::Verify(check) => return Verdict::Verify(index, check),
            },
            AuthConfig::Jwt(jwt) => jwt.login(auth_data),
            AuthConfig::Http(_) | AuthConfig::Plugin(_) => return Verdict::Ask(index),
        };
        if let Some(login) = login {
            return Verdict::Accept(login);
        }
    }
    Verdict::Reject
}

/// Tries every strategy but webhooks, checking password hashes right here (tests and tools;
/// the server uses `run_from` and checks hashes off the shard).
pub fn authenticate(strategies: &[AuthConfig], auth_data: &OwnedValue) -> Option<LoginOk> {
    let mut start = 0;
    loop {
        match run_from(strategies, start, auth_data) {
            Verdict::Accept(login) => return Some(login),
            Verdict::Reject | Verdict::Ask(_) => return None,
            Verdict::Verify(index, check) => match check.run() {
                Some(login) => return Some(login),
                None => start = index + 1,
            },
        }
    }
}

/// The webhook's answer, as the reference reads it: a permitted status allows, with `id`,
/// `serverData`, `clientData` from a JSON body (or the id as a plain-text body); any other
/// status denies, passing the body's clientData (or the text as `{"error": text}`) back.
pub fn webhook_verdict(
    status: u16,
    body: &[u8],
    permitted: &[u16],
) -> Result<LoginOk, Option<String>> {
    let json = simd_json::to_owned_value(&mut body.to_vec())
        .ok()
        .filter(|v| v.is_object());
    let text = String::from_utf8_lossy(body).trim().to_string();
    let field = |key: &str| {
        json.as_ref()
            .and_then(|j| j.get(key))
            .filter(|v| !v.is_null())
            .map(|v| v.encode())
    };
    if !permitted.contains(&status) {
        return Err(match &json {
            Some(_) => field("clientData"),
            None if !text.is_empty() => Some(format!(
                "{{\"error\":{}}}",
                simd_json::to_string(&text).unwrap_or_default()
            )),
            None => None,
        });
    }
    let id = match &json {
        Some(j) => j
            .get("id")
            .or_else(|| j.get("username"))
            .map(|v| v.as_str().map_or_else(|| v.encode(), str::to_string))
            .unwrap_or_else(|| OPEN_USER.to_string()),
        None if !text.is_empty() => text,
        None => OPEN_USER.to_string(),
    };
    Ok(LoginOk {
        id,
        client_data: field("clientData"),
        server_data: field("serverData"),
        token: field("token"),
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

/// What file auth can say at once: a verdict, or a hash to check.
enum FileLogin {
    Done(Option<LoginOk>),
    Verify(PasswordCheck),
}

/// users.yml: cleartext passwords, or with `hash` set, deepstream's
/// `base64(pbkdf2(password, salt)) + salt` where the salt is the text after the hash.
fn file_login(users: &Yaml, hash: Option<&HashSettings>, auth_data: &OwnedValue) -> FileLogin {
    let field = |key: &str| auth_data.get(key).and_then(|v| v.as_str());
    let (Some(username), Some(password)) = (field("username"), field("password")) else {
        return FileLogin::Done(None);
    };
    let user = users.get(username);
    let login = || {
        let json = |key: &str| user.and_then(|u| u.get(key)).and_then(serde_yaml_to_json);
        LoginOk {
            id: username.to_string(),
            client_data: json("clientData"),
            server_data: json("serverData"),
            token: None,
        }
    };
    let stored = user.and_then(|u| u.get("password")).and_then(Yaml::as_str);
    let Some(settings) = hash else {
        let matches = stored.is_some_and(|s| constant_time_eq(s.as_bytes(), password.as_bytes()));
        return FileLogin::Done(matches.then(login));
    };
    let encoded_len = 4 * settings.key_length.div_ceil(3);
    let split = stored.and_then(|s| Some((s.get(..encoded_len)?, s.get(encoded_len..)?)));
    let (expected, salt, login) = match split {
        Some((expected, salt)) => (expected.to_string(), salt.to_string(), Some(login())),
        // Unknown user (or an unusable entry): the same work against a hash nothing matches.
        None => ("!".repeat(encoded_len), DUMMY_SALT.to_string(), None),
    };
    FileLogin::Verify(PasswordCheck {
        password: password.to_string(),
        salt,
        expected,
        settings: settings.clone(),
        login,
    })
}

/// The salt of a check for a user that does not exist: as long as `hash_password`'s salts.
const DUMMY_SALT: &str = "AAAAAAAAAAAAAAAAAAAAAA==";

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// base64 of pbkdf2 with the configured digest; `None` for an unknown digest.
pub fn pbkdf2_base64(password: &str, salt: &str, settings: &HashSettings) -> Option<String> {
    use base64::Engine;
    let mut out = vec![0u8; settings.key_length];
    let (p, s, n) = (password.as_bytes(), salt.as_bytes(), settings.iterations);
    match settings.algorithm.as_str() {
        "md5" => pbkdf2::pbkdf2_hmac::<md5::Md5>(p, s, n, &mut out),
        "sha1" => pbkdf2::pbkdf2_hmac::<sha1::Sha1>(p, s, n, &mut out),
        "sha256" => pbkdf2::pbkdf2_hmac::<sha2::Sha256>(p, s, n, &mut out),
        "sha512" => pbkdf2::pbkdf2_hmac::<sha2::Sha512>(p, s, n, &mut out),
        _ => return None,
    }
    Some(base64::engine::general_purpose::STANDARD.encode(out))
}

/// A users.yml password entry for `password`, as `deepstream hash` prints it: a fresh random
/// 16-byte salt in base64 after the hash.
pub fn hash_password(password: &str, settings: &HashSettings) -> Result<String, String> {
    use base64::Engine;
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt).map_err(|e| format!("no randomness for a salt: {e}"))?;
    let salt = base64::engine::general_purpose::STANDARD.encode(salt);
    let hash = pbkdf2_base64(password, &salt, settings)
        .ok_or_else(|| format!("unsupported hash '{}'", settings.algorithm))?;
    Ok(format!("{hash}{salt}"))
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
        let file = [AuthConfig::File { users, hash: None }];
        let ok = authenticate(&file, &json(r#"{"username":"bob","password":"pw"}"#)).unwrap();
        assert_eq!(ok.client_data.as_deref(), Some(r#"{"role":"admin"}"#));
        assert!(authenticate(&file, &json(r#"{"username":"bob","password":"no"}"#)).is_none());
        assert!(authenticate(&file, &json(r#"{"username":"eve","password":"pw"}"#)).is_none());
    }

    #[test]
    fn hashed_passwords_in_deepstreams_format() {
        let settings = HashSettings {
            algorithm: "md5".into(),
            iterations: 100,
            key_length: 32,
        };
        // Printed by the reference's `deepstream hash secret` under md5 / 100 / 32.
        let reference = "6mlqNJJI9HZCNSivk/SzIvsc4O9NqyTer1fi5pfNCQo=P6H9ANW9Vgrj0fcUqm8//w==";
        let users: Yaml =
            serde_yaml::from_str(&format!("dave:\n  password: \"{reference}\"\n")).unwrap();
        let file = [AuthConfig::File {
            users,
            hash: Some(settings.clone()),
        }];
        assert!(authenticate(&file, &json(r#"{"username":"dave","password":"secret"}"#)).is_some());
        // deepstream's shipped users.yml: userA / "password" under the default settings
        let shipped = "rCOSZxJrgze2AZdVQh12c6ErDMOG0M+Rx5Yu7S5d91c=GS4SbTQYmoaGwjm2shEobg==";
        let users: Yaml =
            serde_yaml::from_str(&format!("userA:\n  password: \"{shipped}\"\n")).unwrap();
        let file = [AuthConfig::File {
            users,
            hash: Some(settings.clone()),
        }];
        assert!(authenticate(
            &file,
            &json(r#"{"username":"userA","password":"password"}"#)
        )
        .is_some());
        // and ours round-trips the same way
        let stored = hash_password("secret", &settings).unwrap();
        assert_eq!(stored.len(), 44 + 24);
        let users: Yaml =
            serde_yaml::from_str(&format!("carol:\n  password: \"{stored}\"\n")).unwrap();
        let file = [AuthConfig::File {
            users,
            hash: Some(settings.clone()),
        }];
        assert!(
            authenticate(&file, &json(r#"{"username":"carol","password":"secret"}"#)).is_some()
        );
        assert!(
            authenticate(&file, &json(r#"{"username":"carol","password":"Secret"}"#)).is_none()
        );
        // pbkdf2-hmac-sha256, RFC 7914 test vector (P="passwd", S="salt", c=1, dkLen=64)
        let rfc = HashSettings {
            algorithm: "sha256".into(),
            iterations: 1,
            key_length: 64,
        };
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(pbkdf2_base64("passwd", "salt", &rfc).unwrap())
            .unwrap();
        assert_eq!(bytes[..8], [0x55, 0xac, 0x04, 0x6e, 0x56, 0xe3, 0x08, 0x9f]);
    }

    #[test]
    fn webhook_answers_as_the_reference_reads_them() {
        let ok = webhook_verdict(
            200,
            br#"{"id":"w1","clientData":{"a":1},"serverData":{"role":"x"}}"#,
            &[200],
        )
        .unwrap();
        assert_eq!(
            (
                ok.id.as_str(),
                ok.client_data.as_deref(),
                ok.server_data.as_deref()
            ),
            ("w1", Some(r#"{"a":1}"#), Some(r#"{"role":"x"}"#))
        );
        assert_eq!(
            webhook_verdict(200, b"plain-id", &[200]).unwrap().id,
            "plain-id"
        );
        assert_eq!(
            webhook_verdict(201, b"{}", &[200, 201]).unwrap().id,
            OPEN_USER
        );
        assert_eq!(
            webhook_verdict(401, br#"{"clientData":{"why":"no"}}"#, &[200]),
            Err(Some(r#"{"why":"no"}"#.to_string()))
        );
        assert_eq!(
            webhook_verdict(403, b"go away", &[200]),
            Err(Some(r#"{"error":"go away"}"#.to_string()))
        );
        assert_eq!(webhook_verdict(500, b"", &[200]), Err(None));
    }

    #[test]
    fn strategies_run_in_order_and_stop_at_a_webhook() {
        let users: Yaml = serde_yaml::from_str("bob:\n  password: pw\n").unwrap();
        let http = AuthConfig::Http(settings::HttpAuth {
            host: "127.0.0.1".into(),
            port: 1,
            path: "/".into(),
            permitted_status: vec![200],
            retry_status: vec![],
            retry_attempts: 0,
            retry_interval_ms: 0,
            timeout_ms: 100,
        });
        let chain = [
            AuthConfig::File { users, hash: None },
            http,
            AuthConfig::Open,
        ];
        assert!(matches!(
            run_from(&chain, 0, &json(r#"{"username":"bob","password":"pw"}"#)),
            Verdict::Accept(_)
        ));
        assert_eq!(
            run_from(&chain, 0, &json(r#"{"username":"eve"}"#)),
            Verdict::Ask(1)
        );
        assert!(
            matches!(run_from(&chain, 2, &json(r#"{"username":"eve"}"#)), Verdict::Accept(l) if l.id == "eve")
        );
    }
}
