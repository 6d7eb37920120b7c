//! File auth and Valve permissions with the real @deepstream/client: corestream started with
//! tests/node/permissions/config.yml (the same files load in the reference server and give the
//! same answers; see perf/RESULTS.md for the side-by-side check).

mod common;

use common::{run_client_tests, Server};
use std::path::Path;

#[test]
fn file_auth_and_permissions_with_the_real_client() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node/permissions");
    let config = dir.join("config.yml");
    let server = Server::start(&["--cores", "2", "-c", config.to_str().unwrap()]);
    let stdout = run_client_tests(&server.url(), &["permissions/permissions.test.mjs"]);
    assert!(stdout.contains("# pass 7"), "{stdout}");
}
