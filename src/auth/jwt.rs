//! JWT logins (beyond deepstream): the client sends `{"token": "<jwt>"}`; the token is checked
//! with a shared secret (HS*), a public key (RS*/ES*) or a JWKS file, and its claims become the
//! user id, clientData and serverData.

use super::LoginOk;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde_yaml::Value as Yaml;
use simd_json::prelude::*;
use simd_json::OwnedValue;
use std::path::Path;
use std::sync::Arc;

#[derive(Clone)]
pub struct JwtAuth {
    keys: Arc<Vec<(Option<String>, DecodingKey)>>,
    algorithms: Vec<Algorithm>,
    id_claim: String,
    client_data_claim: String,
    server_data_claim: String,
    issuer: Option<String>,
    audience: Option<String>,
}

impl std::fmt::Debug for JwtAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuth")
            .field("keys", &self.keys.len())
            .field("algorithms", &self.algorithms)
            .finish()
    }
}

impl PartialEq for JwtAuth {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.keys, &other.keys)
            && self.algorithms == other.algorithms
            && self.id_claim == other.id_claim
    }
}

/// `fileLoad(x)` or a path: the file's text, relative to the config's folder.
fn load_file(reference: &str, dir: &Path) -> Result<String, String> {
    let file = reference
        .strip_prefix("fileLoad(")
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or(reference);
    std::fs::read_to_string(dir.join(file)).map_err(|e| format!("cannot read {file}: {e}"))
}

fn text_or_file(value: &str, dir: &Path) -> Result<String, String> {
    if value.starts_with("fileLoad(")
        || (!value.contains("-----BEGIN") && dir.join(value).is_file())
    {
        load_file(value, dir)
    } else {
        Ok(value.to_string())
    }
}

fn public_key(pem: &str) -> Result<DecodingKey, String> {
    DecodingKey::from_rsa_pem(pem.as_bytes())
        .or_else(|_| DecodingKey::from_ec_pem(pem.as_bytes()))
        .or_else(|_| DecodingKey::from_ed_pem(pem.as_bytes()))
        .map_err(|e| format!("publicKey is not an RSA, EC or Ed25519 PEM key: {e}"))
}

impl JwtAuth {
    pub fn from_options(options: &Yaml, dir: &Path) -> Result<JwtAuth, String> {
        let string = |key: &str| options.get(key).and_then(Yaml::as_str).map(str::to_string);
        let (keys, default_algorithm) = if let Some(secret) = string("secret") {
            (
                vec![(None, DecodingKey::from_secret(secret.as_bytes()))],
                Algorithm::HS256,
            )
        } else if let Some(key) = string("publicKey") {
            (
                vec![(None, public_key(&text_or_file(&key, dir)?)?)],
                Algorithm::RS256,
            )
        } else if let Some(jwks) = string("jwks") {
            let set: jsonwebtoken::jwk::JwkSet =
                serde_yaml::from_str(&load_file(&jwks, dir)?).map_err(|e| format!("jwks: {e}"))?;
            let keys = set
                .keys
                .iter()
                .map(|jwk| {
                    DecodingKey::from_jwk(jwk)
                        .map(|k| (jwk.common.key_id.clone(), k))
                        .map_err(|e| format!("jwks: {e}"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            (keys, Algorithm::RS256)
        } else {
            return Err(
                "one of options.secret, options.publicKey or options.jwks is required".into(),
            );
        };
        let algorithms = match options.get("algorithms").and_then(Yaml::as_sequence) {
            Some(list) => list
                .iter()
                .map(|a| {
                    a.as_str()
                        .unwrap_or_default()
                        .parse::<Algorithm>()
                        .map_err(|_| format!("unknown algorithm {a:?}"))
                })
                .collect::<Result<Vec<_>, _>>()?,
            None => vec![default_algorithm],
        };
        Ok(JwtAuth {
            keys: Arc::new(keys),
            algorithms,
            id_claim: string("idClaim").unwrap_or_else(|| "sub".into()),
            client_data_claim: string("clientDataClaim").unwrap_or_else(|| "clientData".into()),
            server_data_claim: string("serverDataClaim").unwrap_or_else(|| "serverData".into()),
            issuer: string("issuer"),
            audience: string("audience"),
        })
    }

    /// The login a valid token grants; `None` for a missing, forged, expired or foreign token.
    pub fn login(&self, auth_data: &OwnedValue) -> Option<LoginOk> {
        let token = auth_data
            .get("token")
            .or_else(|| auth_data.get("jwt"))?
            .as_str()?;
        let header = decode_header(token).ok()?;
        if !self.algorithms.contains(&header.alg) {
            return None;
        }
        let key = self
            .keys
            .iter()
            .find(|(kid, _)| kid.is_none() || kid.as_deref() == header.kid.as_deref())
            .map(|(_, key)| key)?;
        let mut validation = Validation::new(header.alg);
        validation.algorithms = self.algorithms.clone();
        validation.required_spec_claims.clear();
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
        }
        match &self.audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        let claims = decode::<serde_json_value::Claims>(token, key, &validation)
            .ok()?
            .claims
            .0;
        let claim = |name: &str| claims.get(name).filter(|v| !v.is_null());
        let id = claim(&self.id_claim)?;
        let id = id.as_str().map_or_else(|| id.to_string(), str::to_string);
        let json = |name: &str| claim(name).map(|v| v.to_string());
        Some(LoginOk {
            id,
            client_data: json(&self.client_data_claim),
            server_data: json(&self.server_data_claim),
            token: serde_json::to_string(token).ok(),
        })
    }
}

/// Claims as a free-form map (serde_json is what jsonwebtoken decodes into).
mod serde_json_value {
    #[derive(serde::Deserialize)]
    pub struct Claims(pub serde_json::Map<String, serde_json::Value>);
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};

    fn fixtures() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jwt")
    }

    fn auth(yaml: &str) -> JwtAuth {
        JwtAuth::from_options(&serde_yaml::from_str(yaml).unwrap(), &fixtures()).unwrap()
    }

    fn token_data(token: &str) -> OwnedValue {
        simd_json::to_owned_value(&mut format!(r#"{{"token":"{token}"}}"#).into_bytes()).unwrap()
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn hs256_claims_become_the_login() {
        let jwt = auth("secret: s3cret\nissuer: corestream-tests\n");
        let claims = serde_json::json!({"sub": "alice", "iss": "corestream-tests", "exp": now() + 60, "clientData": {"tier": 2}, "serverData": {"role": "admin"}});
        let token = encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"s3cret"),
        )
        .unwrap();
        let login = jwt.login(&token_data(&token)).unwrap();
        assert_eq!(login.id, "alice");
        assert_eq!(login.client_data.as_deref(), Some(r#"{"tier":2}"#));
        assert_eq!(login.server_data.as_deref(), Some(r#"{"role":"admin"}"#));
        // `POST /api/auth` answers with the JWT that logged in.
        assert_eq!(login.token, Some(format!("\"{token}\"")));
        assert_eq!(
            crate::auth::endpoint_answer(&login),
            format!(r#"{{"token":"{token}","clientData":{{"tier":2}}}}"#)
        );

        let forged = encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"guess"),
        )
        .unwrap();
        assert!(jwt.login(&token_data(&forged)).is_none());
        let expired =
            serde_json::json!({"sub": "alice", "iss": "corestream-tests", "exp": now() - 3600});
        let expired = encode(
            &Header::new(Algorithm::HS256),
            &expired,
            &EncodingKey::from_secret(b"s3cret"),
        )
        .unwrap();
        assert!(jwt.login(&token_data(&expired)).is_none());
        let foreign = serde_json::json!({"sub": "alice", "iss": "someone-else"});
        let foreign = encode(
            &Header::new(Algorithm::HS256),
            &foreign,
            &EncodingKey::from_secret(b"s3cret"),
        )
        .unwrap();
        assert!(jwt.login(&token_data(&foreign)).is_none());
        assert!(jwt.login(&token_data("not.a.token")).is_none());
    }

    #[test]
    fn rs256_with_a_public_key_or_a_jwks_file() {
        let private = std::fs::read(fixtures().join("private.pem")).unwrap();
        let key = EncodingKey::from_rsa_pem(&private).unwrap();
        let claims = serde_json::json!({"sub": "bob", "exp": now() + 60});
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("test-key".into());
        let token = encode(&header, &claims, &key).unwrap();
        assert_eq!(
            auth("publicKey: fileLoad(public.pem)\n")
                .login(&token_data(&token))
                .unwrap()
                .id,
            "bob"
        );
        assert_eq!(
            auth("jwks: fileLoad(jwks.json)\n")
                .login(&token_data(&token))
                .unwrap()
                .id,
            "bob"
        );
        // an HS256 token signed with the public key text must not pass as RS256 (alg confusion)
        let public = std::fs::read(fixtures().join("public.pem")).unwrap();
        let confused = encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&public),
        )
        .unwrap();
        assert!(auth("publicKey: fileLoad(public.pem)\n")
            .login(&token_data(&confused))
            .is_none());
    }

    #[test]
    fn bad_options_are_errors() {
        let err = |yaml: &str| {
            JwtAuth::from_options(&serde_yaml::from_str(yaml).unwrap(), &fixtures()).unwrap_err()
        };
        assert!(err("issuer: x\n").contains("required"));
        assert!(err("publicKey: fileLoad(missing.pem)\n").contains("cannot read"));
        assert!(err("secret: x\nalgorithms: [XX999]\n").contains("unknown algorithm"));
    }
}
