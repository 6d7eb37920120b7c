//! The library's examples, each started as a program and driven with the real
//! `@deepstream/client` (tests/node/examples).

mod common;

#[test]
fn token_auth_admits_only_its_token() {
    let token = "s3cret-token-for-the-test";
    let example = common::Example::start("token_auth", &["--token", token]);
    let url = format!("ws://127.0.0.1:{}/deepstream", example.port);
    let output =
        common::run_client_tests_with(&url, &["examples/token_auth.test.mjs"], &[("TOKEN", token)]);
    assert!(output.contains("# pass 3"), "{output}");
}

#[test]
fn user_id_permissions_lets_users_act_only_on_their_own_names() {
    let example = common::Example::start("user_id_permissions", &[]);
    let url = format!("ws://127.0.0.1:{}/deepstream", example.port);
    let output = common::run_client_tests(&url, &["examples/user_id_permissions.test.mjs"]);
    assert!(output.contains("# pass 3"), "{output}");
}

#[test]
fn memory_cache_keeps_records_no_one_holds() {
    let example = common::Example::start("memory_cache", &[]);
    let url = format!("ws://127.0.0.1:{}/deepstream", example.port);
    let output = common::run_client_tests(&url, &["examples/memory_cache.test.mjs"]);
    assert!(output.contains("# pass 2"), "{output}");
}

#[test]
fn file_storage_keeps_records_across_a_restart() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("file_storage_example");
    let _ = std::fs::remove_dir_all(&dir);
    let dir_arg = dir.to_str().unwrap_or_default().to_string();
    let test = ["examples/file_storage.test.mjs"];
    {
        let example = common::Example::start("file_storage", &["--dir", &dir_arg]);
        let url = format!("ws://127.0.0.1:{}/deepstream", example.port);
        let output = common::run_client_tests_with(&url, &test, &[("PHASE", "write")]);
        assert!(output.contains("# pass 1"), "{output}");
    }
    let files = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
    assert_eq!(files, 3, "one file per record in {}", dir.display());
    let example = common::Example::start("file_storage", &["--dir", &dir_arg]);
    let url = format!("ws://127.0.0.1:{}/deepstream", example.port);
    let output = common::run_client_tests_with(&url, &test, &[("PHASE", "read")]);
    assert!(output.contains("# pass 1"), "{output}");
    let _ = std::fs::remove_dir_all(&dir);
}
