//! TLS on the server port: the real @deepstream/client over `wss://` with a test certificate,
//! the HTTP API and health check over `https://`, plain requests refused, and bad key
//! material stopping the start with its reason.

mod common;

use common::{read_response, run_client_tests_with, Server};
use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

/// A certificate authority and a server certificate for 127.0.0.1 and localhost it signed,
/// written as PEM files; returns the folder and the CA's PEM.
fn certificates(name: &str) -> (PathBuf, String) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&dir).expect("dir");
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "corestream test CA");
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    let cert = params.signed_by(&key, &ca, &ca_key).expect("cert");
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("write");
    std::fs::write(dir.join("cert.pem"), cert.pem()).expect("write");
    std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write");
    std::fs::write(
        dir.join("config.yml"),
        "httpServer:\n  options:\n    ssl:\n      key: fileLoad(key.pem)\n      cert: fileLoad(cert.pem)\nmonitoring:\n  type: prometheus\n",
    )
    .expect("config");
    (dir, ca.pem())
}

fn tls_client(ca_pem: &str, port: u16) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("pem")).expect("root");
    }
    let provider = Arc::new(corestream::tls::provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let conn = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
    let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    rustls::StreamOwned::new(conn, tcp)
}

#[test]
fn wss_and_https_on_one_port() {
    let (dir, ca_pem) = certificates("tls-port");
    let config = dir.join("config.yml");
    let server = Server::start(&["--cores", "2", "-c", config.to_str().unwrap()]);
    let port = server.port;

    // The HTTP API and the metrics over https, two requests on one TLS connection.
    let mut tls = tls_client(&ca_pem, port);
    let body = r#"{"body":[{"topic":"record","action":"write","recordName":"tls/r","data":{"ok":true}},{"topic":"record","action":"read","recordName":"tls/r"}]}"#;
    write!(
        tls,
        "POST /api HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    tls.flush().expect("flush");
    let mut reader = BufReader::new(tls);
    let response = read_response(&mut reader).expect("response");
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        response.json()["body"][1]["data"],
        serde_json::json!({"ok": true})
    );
    let mut tls = reader.into_inner();
    write!(
        tls,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    tls.flush().expect("flush");
    let metrics = read_response(&mut BufReader::new(tls)).expect("metrics");
    assert_eq!(metrics.status, 200);
    assert!(metrics
        .text()
        .contains("corestream_http_api_requests_total 1"));

    // A plain request gets no plain answer.
    let mut plain = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    plain
        .write_all(b"GET /health-check HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(
        !answer.starts_with(b"HTTP/1.1 200"),
        "served plain: {}",
        String::from_utf8_lossy(&answer)
    );

    // The real client's suite over wss://, trusting the test CA.
    let ca_file = dir.join("ca.pem");
    let url = format!("wss://localhost:{port}/deepstream");
    let stdout = run_client_tests_with(
        &url,
        &[
            "client/record.test.mjs",
            "client/event.test.mjs",
            "client/rpc.test.mjs",
        ],
        &[("NODE_EXTRA_CA_CERTS", ca_file.to_str().unwrap())],
    );
    assert!(stdout.contains("# fail 0"), "{stdout}");
    assert_eq!(server.stop().code(), Some(0));
}

#[test]
fn bad_key_material_stops_the_start() {
    let (dir, _) = certificates("tls-bad");
    std::fs::write(
        dir.join("key.pem"),
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_corestream"))
        .args(["start", "--port", "0", "-c"])
        .arg(dir.join("config.yml"))
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("httpServer.options.ssl"), "{stderr}");
    let check = Command::new(env!("CARGO_BIN_EXE_corestream"))
        .arg("check-config")
        .arg(dir.join("config.yml"))
        .output()
        .expect("run");
    assert!(!check.status.success(), "check-config sees it too");
}
