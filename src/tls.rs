//! TLS for the server port (`httpServer.options.ssl`): the key, certificate chain and extra CA
//! certificates as deepstream takes them (PEM text, or `fileLoad(path)`), made into one rustls
//! server config at start-up, so a bad key or certificate stops the start with its reason.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

/// The accepted TLS settings, ready for every shard to use.
#[derive(Clone)]
pub struct Tls(pub Arc<rustls::ServerConfig>);

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls(..)")
    }
}

/// A PEM value of the config: the text itself, or `fileLoad(path)` (relative to `dir`).
fn pem_text(value: &str, dir: &Path, key: &str) -> Result<Vec<u8>, String> {
    match value
        .trim()
        .strip_prefix("fileLoad(")
        .and_then(|r| r.strip_suffix(')'))
    {
        Some(path) => {
            let path = dir.join(path.trim());
            std::fs::read(&path).map_err(|e| format!("{key}: cannot read {}: {e}", path.display()))
        }
        None => Ok(value.as_bytes().to_vec()),
    }
}

fn certificates(pem: &[u8], key: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{key}: not a PEM certificate: {e:?}"))?;
    if certs.is_empty() {
        return Err(format!("{key}: no PEM certificate in it"));
    }
    Ok(certs)
}

/// rustls with aws-lc-rs: a server-side TLS 1.3 handshake (ECDSA P-256 certificate, X25519)
/// costs 255 µs of CPU against *ring*'s 805 µs on this machine (perf/RESULTS.md, issue 28),
/// and it offers the post-quantum hybrid X25519MLKEM768 that current browsers send first,
/// beside the classical X25519, P-256 and P-384. It builds with the C compiler alone.
pub fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::aws_lc_rs::default_provider()
}

/// Makes `provider()` the process's default (once; later calls change nothing).
pub fn install_default_provider() {
    let _ = rustls::crypto::CryptoProvider::install_default(provider());
}

impl Tls {
    /// Builds the config from `key`, `cert` and the optional `ca` (certificates sent after the
    /// server's own, completing its chain).
    pub fn from_config(
        key: &str,
        cert: &str,
        ca: Option<&str>,
        dir: &Path,
        place: &str,
    ) -> Result<Tls, String> {
        let key_pem = pem_text(key, dir, &format!("{place}.key"))?;
        let private_key = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| format!("{place}.key: not a PEM private key: {e:?}"))?;
        let mut chain = certificates(
            &pem_text(cert, dir, &format!("{place}.cert"))?,
            &format!("{place}.cert"),
        )?;
        if let Some(ca) = ca {
            chain.extend(certificates(
                &pem_text(ca, dir, &format!("{place}.ca"))?,
                &format!("{place}.ca"),
            )?);
        }
        let provider = Arc::new(provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("{place}: {e}"))?
            .with_no_client_auth()
            .with_single_cert(chain, private_key)
            .map_err(|e| {
                format!("{place}: the key and certificate do not make a TLS identity: {e}")
            })?;
        // WebSocket and HTTP/1.1 only.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls(Arc::new(config)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_material_is_refused_with_its_key() {
        let dir = Path::new(".");
        let err = Tls::from_config("nonsense", "nonsense", None, dir, "ssl").unwrap_err();
        assert!(err.starts_with("ssl.key"), "{err}");
        let err = Tls::from_config("fileLoad(/no/such.pem)", "x", None, dir, "ssl").unwrap_err();
        assert!(err.contains("cannot read /no/such.pem"), "{err}");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let ok = Tls::from_config(&key.serialize_pem(), &cert.pem(), None, dir, "ssl");
        assert!(ok.is_ok());
        let other = rcgen::KeyPair::generate().unwrap();
        let err =
            Tls::from_config(&other.serialize_pem(), &cert.pem(), None, dir, "ssl").unwrap_err();
        assert!(err.contains("do not make a TLS identity"), "{err}");
        let err = Tls::from_config(
            &key.serialize_pem(),
            "-----BEGIN X-----\n-----END X-----\n",
            None,
            dir,
            "ssl",
        )
        .unwrap_err();
        assert!(err.starts_with("ssl.cert"), "{err}");
    }
}
