//! Bad input reaches only the client that sent it: garbage, text and oversize frames, bad logins.

mod common;

use bytes::Bytes;
use common::{RawClient, Server};
use corestream::protocol::message::{
    auth_action, connection_action, event_action, parser_action, topic, Message,
};
use corestream::protocol::ws;
use std::io::{Read, Write};

fn subscribe(client: &mut RawClient, name: &str) {
    client.send(&Message {
        correlation_id: Some(Bytes::from_static(b"1")),
        names: vec![Bytes::copy_from_slice(name.as_bytes())],
        ..Message::new(topic::EVENT, event_action::SUBSCRIBE)
    });
    assert_eq!(client.expect_message().is_ack, Some(true));
}

fn emit(client: &mut RawClient, name: &str, data: &str) {
    client.send(&Message {
        name: Some(Bytes::copy_from_slice(name.as_bytes())),
        data: Some(Bytes::copy_from_slice(data.as_bytes())),
        ..Message::new(topic::EVENT, event_action::EMIT)
    });
}

fn assert_event(client: &mut RawClient, data: &str) {
    let msg = client.expect_message();
    assert_eq!((msg.topic, msg.action), (topic::EVENT, event_action::EMIT));
    assert_eq!(msg.data.as_deref(), Some(data.as_bytes()));
}

#[test]
fn garbage_text_and_oversize_frames_leave_other_clients_working() {
    let server = Server::start(&["--cores", "2"]);
    let mut watcher = RawClient::login(server.port, "watcher");
    let mut publisher = RawClient::login(server.port, "publisher");
    subscribe(&mut watcher, "robust/e");
    let mut bad = RawClient::login(server.port, "bad");

    bad.send_raw(ws::OP_BINARY, &[0xff, 0xff, 0xff, 0x01, 0x02]);
    let reply = bad.expect_message();
    assert_eq!(
        (reply.topic, reply.action),
        (topic::PARSER, parser_action::MESSAGE_PARSE_ERROR)
    );
    emit(&mut publisher, "robust/e", "1");
    assert_event(&mut watcher, "1");

    bad.send_raw(ws::OP_TEXT, b"E|S|robust/e+");
    let reply = bad.expect_message();
    assert_eq!(
        (reply.topic, reply.action),
        (topic::PARSER, parser_action::INVALID_MESSAGE)
    );
    // still usable after both
    bad.send(&Message::new(topic::CONNECTION, connection_action::PING));
    assert_eq!(bad.expect_message().action, connection_action::PONG);

    bad.send_raw_lenient(ws::OP_BINARY, &vec![0u8; 2 * 1024 * 1024]);
    assert_eq!(bad.expect_close(), ws::CLOSE_TOO_BIG);

    emit(&mut publisher, "robust/e", "2");
    assert_event(&mut watcher, "2");
    let mut late = RawClient::login(server.port, "late");
    subscribe(&mut late, "robust/e");
    emit(&mut publisher, "robust/e", "3");
    assert_event(&mut watcher, "3");
    assert_event(&mut late, "3");
}

#[test]
fn messages_before_login_are_refused_and_unmasked_frames_close() {
    let server = Server::start(&["--cores", "1"]);
    let mut client = RawClient::connect(server.port);
    client.send(&Message {
        names: vec![Bytes::from_static(b"x")],
        ..Message::new(topic::EVENT, event_action::SUBSCRIBE)
    });
    let reply = client.expect_message();
    assert_eq!(
        (reply.topic, reply.action),
        (topic::CONNECTION, connection_action::INVALID_MESSAGE)
    );
    client.send(&Message::new(
        topic::CONNECTION,
        connection_action::CHALLENGE,
    ));
    assert_eq!(client.expect_message().action, connection_action::ACCEPT);
    client.send(&Message {
        names: vec![Bytes::from_static(b"x")],
        ..Message::new(topic::EVENT, event_action::SUBSCRIBE)
    });
    let reply = client.expect_message();
    assert_eq!(
        (reply.topic, reply.action),
        (topic::AUTH, auth_action::INVALID_MESSAGE)
    );

    let mut unmasked = RawClient::connect(server.port);
    let payload = Message::new(topic::CONNECTION, connection_action::CHALLENGE).encode();
    let mut frame = vec![0x82, payload.len() as u8];
    frame.extend_from_slice(&payload);
    unmasked.send_raw_bytes(&frame);
    assert_eq!(unmasked.expect_close(), ws::CLOSE_PROTOCOL_ERROR);
}

#[test]
fn too_many_failed_logins_close_the_connection() {
    let dir = std::env::temp_dir().join(format!("corestream-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("users.yml"),
        "alice:\n  password: secret\n  clientData:\n    colour: red\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("config.yml"),
        "auth:\n  - type: file\n    options:\n      users: fileLoad(users.yml)\nconnectionEndpoints:\n  - type: ws-binary\n    options:\n      maxAuthAttempts: 2\n",
    )
    .unwrap();
    let config = dir.join("config.yml");
    let server = Server::start(&["--cores", "1", "-c", config.to_str().unwrap()]);
    let login = |client: &mut RawClient, password: &str| {
        client.send(&Message {
            data: Some(Bytes::from(format!(
                r#"{{"username":"alice","password":"{password}"}}"#
            ))),
            ..Message::new(topic::AUTH, auth_action::REQUEST)
        });
        client.expect_message()
    };
    let mut good = RawClient::connect(server.port);
    good.send(&Message::new(
        topic::CONNECTION,
        connection_action::CHALLENGE,
    ));
    good.expect_message();
    let ok = login(&mut good, "secret");
    assert_eq!(ok.action, auth_action::AUTH_SUCCESSFUL);
    assert_eq!(ok.data.as_deref(), Some(&br#"{"colour":"red"}"#[..]));

    let mut bad = RawClient::connect(server.port);
    bad.send(&Message::new(
        topic::CONNECTION,
        connection_action::CHALLENGE,
    ));
    bad.expect_message();
    assert_eq!(
        login(&mut bad, "wrong").action,
        auth_action::AUTH_UNSUCCESSFUL
    );
    assert_eq!(
        login(&mut bad, "wrong").action,
        auth_action::AUTH_UNSUCCESSFUL
    );
    assert_eq!(
        bad.expect_message().action,
        auth_action::TOO_MANY_AUTH_ATTEMPTS
    );
    assert_eq!(bad.expect_close(), ws::CLOSE_POLICY);
}

#[test]
fn health_check_and_unknown_paths() {
    let server = Server::start(&["--cores", "1"]);
    let get = |path: &str| {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        stream
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    };
    assert!(get("/health-check").starts_with("HTTP/1.1 200"));
    assert!(get("/nope").starts_with("HTTP/1.1 404"));
    // Answered requests are not counted as open connections: shutdown does not wait for them.
    let stopping = std::time::Instant::now();
    assert!(server.stop().success());
    assert!(
        stopping.elapsed() < std::time::Duration::from_millis(1500),
        "shutdown took {:?}",
        stopping.elapsed()
    );
}

#[test]
fn unauthenticated_and_silent_connections_are_dropped() {
    let dir = std::env::temp_dir().join(format!("corestream-timeouts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.yml");
    std::fs::write(
        &config,
        "connectionEndpoints:\n  - type: ws-binary\n    options:\n      unauthenticatedClientTimeout: 300\n      heartbeatInterval: 250\n",
    )
    .unwrap();
    let server = Server::start(&["--cores", "1", "-c", config.to_str().unwrap()]);
    let mut lingering = RawClient::connect(server.port);
    let started = std::time::Instant::now();
    let reply = lingering.expect_message();
    assert_eq!(
        (reply.topic, reply.action),
        (topic::CONNECTION, connection_action::AUTHENTICATION_TIMEOUT)
    );
    assert_eq!(lingering.expect_close(), ws::CLOSE_POLICY);
    assert!(started.elapsed() < std::time::Duration::from_secs(2));

    let mut silent = RawClient::login(server.port, "quiet");
    let started = std::time::Instant::now();
    assert_eq!(
        silent.expect_close(),
        ws::CLOSE_GOING_AWAY,
        "silence past two heartbeats closes"
    );
    assert!(started.elapsed() >= std::time::Duration::from_millis(400));
    let mut chatty = RawClient::login(server.port, "chatty");
    for _ in 0..6 {
        std::thread::sleep(std::time::Duration::from_millis(150));
        chatty.send(&Message::new(topic::CONNECTION, connection_action::PING));
        assert_eq!(
            chatty.expect_message().action,
            connection_action::PONG,
            "pinging keeps it open"
        );
    }
}

/// With `--park-after-ms 1` every connection quiet for a sweep (100 ms) parks its socket: a
/// parked connection still receives what is sent to it, wakes for what it sends, and gets its
/// close frame when the server closes it.
#[test]
fn parked_connections_receive_wake_and_close() {
    let server = Server::start(&["--cores", "1", "--park-after-ms", "1"]);
    let mut parked = RawClient::login(server.port, "parked");
    let mut publisher = RawClient::login(server.port, "publisher");
    subscribe(&mut parked, "park/e");
    let pause = std::time::Duration::from_millis(400);
    for round in 0..3 {
        std::thread::sleep(pause);
        assert_eq!(
            server.sockets_in_epoll(),
            2,
            "both quiet sockets are parked"
        );
        let data = format!("\"{round}\"");
        emit(&mut publisher, "park/e", &data);
        assert_event(&mut parked, &data);
        std::thread::sleep(pause);
        parked.send(&Message::new(topic::CONNECTION, connection_action::PING));
        assert_eq!(parked.expect_message().action, connection_action::PONG);
    }
    std::thread::sleep(pause);
    assert!(server.stop().success(), "clean exit with parked sockets");
    assert_eq!(parked.expect_close(), ws::CLOSE_GOING_AWAY);
}
