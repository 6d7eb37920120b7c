//! What the TLS benches (`connect_tls`, `tls_flood`) share: their flags, and a server config
//! with a fresh ECDSA P-256 certificate (its signature is the server's main handshake cost)
//! beside a client config that trusts it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The value after `name` on the command line, or `default`.
pub fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

/// Writes a key, a certificate and a config serving TLS into `dir`: the config's path and a
/// client config that trusts the certificate.
pub fn certificate_and_client(dir: &Path) -> (PathBuf, Arc<rustls::ClientConfig>) {
    std::fs::create_dir_all(dir).expect("dir");
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("write");
    std::fs::write(dir.join("cert.pem"), cert.pem()).expect("write");
    let config = dir.join("config.yml");
    std::fs::write(
        &config,
        "logLevel: WARN\nhttpServer:\n  options:\n    ssl: {key: fileLoad(key.pem), cert: fileLoad(cert.pem)}\n",
    )
    .expect("write");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).expect("root");
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(corestream::tls::provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    (config, Arc::new(client))
}
