//! Behaviours of deepstream 7 that corestream had differently, each checked with raw frames on
//! one shard and on two (the real client's suites cover the rest).

mod common;

use bytes::Bytes;
use common::{RawClient, Server};
use corestream::protocol::message::{
    auth_action, connection_action, presence_action as pa, rpc_action, topic, Message,
};
use std::path::Path;
use std::time::Duration;

fn server(cores: &str) -> Server {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity/config.yml");
    Server::start(&["--cores", cores, "-c", config.to_str().unwrap()])
}

fn login(port: u16, user: &str) -> RawClient {
    RawClient::login_with(
        port,
        &format!(r#"{{"username":"{user}","password":"{user}-pw"}}"#),
    )
}

fn b(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

fn each_shard_count(test: impl Fn(Server)) {
    for cores in ["1", "2"] {
        test(server(cores));
    }
}

#[test]
fn a_client_may_answer_its_own_rpc() {
    each_shard_count(|server| {
        let mut client = login(server.port, "alice");
        client.send(&Message {
            names: vec![b("self/add")],
            correlation_id: Some(b("p")),
            ..Message::new(topic::RPC, rpc_action::PROVIDE)
        });
        assert_eq!(client.expect_message().is_ack, Some(true));
        client.send(&Message {
            name: Some(b("self/add")),
            data: Some(b("[1,2]")),
            correlation_id: Some(b("c1")),
            ..Message::new(topic::RPC, rpc_action::REQUEST)
        });
        let request = client.expect_message();
        assert_eq!(request.action, rpc_action::REQUEST, "{request:?}");
        for (action, data) in [
            (rpc_action::ACCEPT, None),
            (rpc_action::RESPONSE, Some(b("3"))),
        ] {
            client.send(&Message {
                name: request.name.clone(),
                correlation_id: request.correlation_id.clone(),
                data,
                ..Message::new(topic::RPC, action)
            });
        }
        assert_eq!(client.expect_message().action, rpc_action::ACCEPT);
        let response = client.expect_message();
        assert_eq!(response.action, rpc_action::RESPONSE);
        assert_eq!(response.data.as_deref(), Some(&b"3"[..]));
    });
}

#[test]
fn a_failed_login_clears_the_login_deadline() {
    each_shard_count(|server| {
        let mut client = RawClient::connect(server.port);
        client.send(&Message::new(
            topic::CONNECTION,
            connection_action::CHALLENGE,
        ));
        assert_eq!(client.expect_message().action, connection_action::ACCEPT);
        let attempt = |client: &mut RawClient, password: &str| {
            client.send(&Message {
                data: Some(b(&format!(
                    r#"{{"username":"bob","password":"{password}"}}"#
                ))),
                ..Message::new(topic::AUTH, auth_action::REQUEST)
            });
            client.expect_message().action
        };
        assert_eq!(
            attempt(&mut client, "wrong"),
            auth_action::AUTH_UNSUCCESSFUL
        );
        // Past the 1 s deadline, the client tries again and gets in.
        std::thread::sleep(Duration::from_millis(1800));
        assert_eq!(attempt(&mut client, "bob-pw"), auth_action::AUTH_SUCCESSFUL);
        // Without a failed login the deadline holds.
        let mut idle = RawClient::connect(server.port);
        idle.send(&Message::new(
            topic::CONNECTION,
            connection_action::CHALLENGE,
        ));
        assert_eq!(idle.expect_message().action, connection_action::ACCEPT);
        let timeout = idle.expect_message();
        assert_eq!(timeout.action, connection_action::AUTHENTICATION_TIMEOUT);
    });
}

#[test]
fn presence_lists_users_in_the_order_they_came_online() {
    each_shard_count(|server| {
        let order = ["dave", "bob", "carol"];
        let _online: Vec<RawClient> = order.iter().map(|u| login(server.port, u)).collect();
        let mut asker = login(server.port, "alice");
        asker.send(&Message {
            correlation_id: Some(b("q")),
            ..Message::new(topic::PRESENCE, pa::QUERY_ALL)
        });
        let reply = asker.expect_message();
        assert_eq!(reply.action, pa::QUERY_ALL_RESPONSE);
        assert_eq!(reply.names, order.map(b).to_vec());
    });
}

/// The real client against tests/node/parity (the same files give the same answers in the
/// reference server): Valve rules with each JavaScript construct, a rule that throws, the own
/// RPC provider, the login deadline after a failed login, the presence order.
#[test]
fn the_real_client_sees_the_references_behaviour() {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node/parity/config.yml");
    for cores in ["1", "2"] {
        let server = Server::start(&["--cores", cores, "-c", config.to_str().unwrap()]);
        let stdout = common::run_client_tests(&server.url(), &["parity/parity.test.mjs"]);
        assert!(stdout.contains("# pass 17"), "{cores} shards:\n{stdout}");
    }
}

/// `enabledFeatures`: RPC and presence off, with the real client and with raw frames.
#[test]
fn disabled_features_are_unknown_topics() {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node/parity/features.yml");
    for cores in ["1", "2"] {
        let server = Server::start(&["--cores", cores, "-c", config.to_str().unwrap()]);
        common::run_client_tests(&server.url(), &["parity/features.test.mjs"]);
        let mut raw = RawClient::login_with(server.port, "{}");
        for (t, action) in [
            (topic::RPC, rpc_action::REQUEST),
            (topic::PRESENCE, pa::QUERY_ALL),
        ] {
            raw.send(&Message {
                name: Some(b("x")),
                correlation_id: Some(b("1")),
                data: Some(b("1")),
                ..Message::new(t, action)
            });
            let reply = raw.expect_message();
            assert_eq!(
                (reply.topic, reply.action, reply.original_topic),
                (
                    topic::PARSER,
                    corestream::protocol::message::parser_action::UNKNOWN_TOPIC,
                    Some(t)
                ),
                "{cores} shards: {reply:?}"
            );
        }
    }
}
