//! The config files deepstream 7.0.2 ships (conf/ of `npm pack @deepstream/server@7.0.2`,
//! fetched into target/ on first use): they load, every key is acted on or has no effect, and a
//! server started with them behaves as the reference does for the real client.

mod common;

use common::{run_client_tests, RawClient, Server};
use corestream::config::{AuthConfig, Config};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The tests of this file fetch the package once between them.
static FETCH: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// conf/ of the published package, unpacked once into target/ (into a scratch folder first,
/// then renamed, so no reader ever sees half of it).
fn shipped_conf() -> PathBuf {
    let _one_at_a_time = FETCH.lock().unwrap_or_else(|e| e.into_inner());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/deepstream-server-7.0.2");
    let conf = root.join("package/conf");
    if conf.join("config.yml").is_file() {
        return conf;
    }
    let scratch = root.join(format!("unpacking-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).expect("target dir");
    let pack = Command::new("npm")
        .args([
            "pack",
            "@deepstream/server@7.0.2",
            "--silent",
            "--pack-destination",
        ])
        .arg(&scratch)
        .output()
        .expect("npm runs (the project's real-client tests need it too)");
    assert!(
        pack.status.success(),
        "npm pack: {}",
        String::from_utf8_lossy(&pack.stderr)
    );
    let untar = Command::new("tar")
        .arg("xzf")
        .arg(scratch.join("deepstream-server-7.0.2.tgz"))
        .arg("-C")
        .arg(&scratch)
        .arg("package/conf")
        .status()
        .expect("tar");
    assert!(untar.success());
    // Another process may have finished first: then its copy stands.
    let _ = std::fs::rename(scratch.join("package"), root.join("package"));
    let _ = std::fs::remove_dir_all(&scratch);
    assert!(conf.join("config.yml").is_file(), "unpacked");
    conf
}

#[test]
fn the_shipped_config_loads_with_nothing_ignored() {
    let conf = shipped_conf();
    let config = Config::load(&conf.join("config.yml")).expect("loads");
    assert_eq!(config.warnings, Vec::<String>::new());
    assert!(config.api.enabled, "its http endpoint is served");
    assert_eq!(config.api.post_path, "/api");
    assert_eq!(
        config.server_name.len(),
        36,
        "serverName: UUID is a fresh UUID"
    );
    assert_eq!(config.url_path, "/deepstream");
    assert_eq!(config.health_check_path, "/health-check");
    assert_eq!(config.unauthenticated_client_timeout_ms, Some(180_000));
    assert_eq!(config.rpc_response_timeout_ms, 10_000);
    assert!(!config.provide_requestor_name);
    assert_eq!(config.listen_rematch_interval_ms, 60_000);
    assert_eq!(config.auth, vec![AuthConfig::Open]);
    assert!(!config.permissions.is_open(), "permissions.yml was loaded");

    // `check-config --strict` passes: nothing in it is ignored.
    let strict = Command::new(env!("CARGO_BIN_EXE_corestream"))
        .args(["check-config", "--strict"])
        .arg(conf.join("config.yml"))
        .output()
        .expect("check-config");
    assert!(
        strict.status.success(),
        "{}",
        String::from_utf8_lossy(&strict.stderr)
    );
}

#[test]
fn the_shipped_users_file_logs_in_its_user() {
    let conf = shipped_conf();
    let dir = std::env::temp_dir().join(format!("corestream-shipped-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(
        dir.join("config.yml"),
        format!(
            "auth:\n  - type: file\n    options:\n      users: fileLoad({})\n      hash: md5\n      iterations: 100\n      keyLength: 32\n",
            conf.join("users.yml").display()
        ),
    )
    .expect("write");
    let server = Server::start(&[
        "--cores",
        "1",
        "-c",
        dir.join("config.yml").to_str().unwrap(),
    ]);
    // The file says its hash is of "password" with the options its config shows commented out.
    let reply = RawClient::auth(server.port, r#"{"username":"userA","password":"password"}"#);
    assert_eq!(
        reply.action,
        corestream::protocol::message::auth_action::AUTH_SUCCESSFUL,
        "{reply:?}"
    );
    assert_eq!(
        reply.data.as_deref(),
        Some(br#"{"favouriteColor":"red"}"#.as_slice())
    );
    let reply = RawClient::auth(server.port, r#"{"username":"userA","password":"wrong"}"#);
    assert_ne!(
        reply.action,
        corestream::protocol::message::auth_action::AUTH_SUCCESSFUL
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_server_on_the_shipped_config_passes_the_real_client_suite() {
    let conf = shipped_conf();
    let server = Server::start(&[
        "--cores",
        "2",
        "-c",
        conf.join("config.yml").to_str().unwrap(),
    ]);
    let stdout = run_client_tests(&server.url(), &[]);
    assert!(stdout.contains("# fail 0"), "{stdout}");
}
