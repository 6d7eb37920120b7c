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
