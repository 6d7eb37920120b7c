//! File auth and Valve permissions with the real @deepstream/client: corestream started with
//! tests/node/permissions/config.yml (the same files load in the reference server and give the
//! same answers; see perf/RESULTS.md for the side-by-side check).

mod common;

use common::{shared_dir, Server};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where run.sh installs @deepstream/client (its own default).
fn client_home() -> PathBuf {
    if let Ok(home) = std::env::var("CONFORMANCE_HOME") {
        return PathBuf::from(home);
    }
    let cache = std::env::var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache")
        });
    cache.join("deepstream-conformance")
}

#[test]
fn file_auth_and_permissions_with_the_real_client() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node/permissions");
    let config = dir.join("config.yml");
    let server = Server::start(&["--cores", "2", "-c", config.to_str().unwrap()]);
    let output = Command::new("bash")
        .arg(shared_dir().join("conformance/run.sh"))
        .arg(server.url())
        .arg(dir.join("permissions.test.mjs"))
        .env("DS_CLIENT_HOME", client_home())
        .output()
        .expect("run the permission tests");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("# pass 7") && stdout.contains("# fail 0"),
        "{stdout}"
    );
}
