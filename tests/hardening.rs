//! Attacks on the release binary with raw frames, one test per hazard: each of these crashed,
//! stalled, bloated or fooled the server before it was fixed.

mod common;

use bytes::Bytes;
use common::{RawClient, Server};
use corestream::protocol::message::{
    connection_action, event_action as ea, record_action as ra, topic, Message,
};
use std::path::Path;
use std::time::{Duration, Instant};

fn hardening_server(cores: &str) -> Server {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hardening/config.yml");
    Server::start(&["--cores", cores, "-c", config.to_str().unwrap()])
}

fn bytes(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

/// A record write with a write ack; returns the answer.
fn write(
    client: &mut RawClient,
    action: i32,
    name: &str,
    path: Option<&str>,
    data: &str,
) -> Message {
    client.send(&Message {
        name: Some(bytes(name)),
        path: path.map(bytes),
        data: Some(bytes(data)),
        version: Some(-1),
        is_write_ack: Some(true),
        correlation_id: Some(bytes("w")),
        ..Message::new(topic::RECORD, action)
    });
    client.expect_message()
}

fn read(client: &mut RawClient, name: &str) -> Message {
    client.send(&Message {
        name: Some(bytes(name)),
        ..Message::new(topic::RECORD, ra::READ)
    });
    client.expect_message()
}

/// The server still answers a ping, promptly.
fn assert_alive(client: &mut RawClient) {
    let started = Instant::now();
    client.send(&Message::new(topic::CONNECTION, connection_action::PING));
    assert_eq!(client.expect_message().action, connection_action::PONG);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

fn assert_refused(reply: &Message, what: &str) {
    assert_eq!(
        (reply.topic, reply.action),
        (topic::RECORD, ra::INVALID_MESSAGE_DATA),
        "{what}: {reply:?}"
    );
    assert_eq!(
        reply.is_write_ack,
        Some(true),
        "{what}: the writer matches it to its write"
    );
}

#[test]
fn a_deep_patch_path_is_refused_and_the_server_lives() {
    let server = hardening_server("2");
    let mut other = RawClient::login(server.port, "other");
    let mut attacker = RawClient::login(server.port, "attacker");
    let deep = "a.".repeat(17_000) + "a";
    for name in ["h/deep", "locked/deep"] {
        let reply = write(&mut attacker, ra::PATCH, name, Some(&deep), "1");
        assert_refused(&reply, name);
    }
    // As deep as a record may be is still fine, and it can be patched again.
    let allowed = "a.".repeat(99) + "a";
    assert_eq!(
        write(&mut attacker, ra::PATCH, "h/deep", Some(&allowed), "1").action,
        ra::WRITE_ACKNOWLEDGEMENT
    );
    assert_eq!(
        write(&mut attacker, ra::PATCH, "h/deep", Some(&allowed), "2").action,
        ra::WRITE_ACKNOWLEDGEMENT
    );
    assert_alive(&mut other);
}

#[test]
fn patches_that_would_allocate_gigabytes_are_refused_quickly() {
    let server = hardening_server("1");
    let mut other = RawClient::login(server.port, "other");
    let mut attacker = RawClient::login(server.port, "attacker");
    for (name, k) in [("h/bomb", 100), ("h/bomb", 1500), ("locked/bomb", 1500)] {
        let started = Instant::now();
        let reply = write(
            &mut attacker,
            ra::PATCH,
            name,
            Some(&"[65536]".repeat(k)),
            "1",
        );
        assert!(
            matches!(reply.action, ra::INVALID_MESSAGE_DATA | ra::MESSAGE_DENIED),
            "{reply:?}"
        );
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{name} x{k}"
        );
    }
    assert_eq!(read(&mut attacker, "h/bomb").action, ra::RECORD_NOT_FOUND);
    assert_alive(&mut other);
}

#[test]
fn record_data_must_be_an_object_or_an_array() {
    let server = hardening_server("2");
    let mut client = RawClient::login(server.port, "writer");
    assert_eq!(
        write(&mut client, ra::UPDATE, "h/valid", None, r#"{"ok":1}"#).action,
        ra::WRITE_ACKNOWLEDGEMENT
    );
    for bad in ["not json at all", r#"{"a":"#, "5", "null", r#""text""#] {
        assert_refused(&write(&mut client, ra::UPDATE, "h/valid", None, bad), bad);
        assert_refused(
            &write(&mut client, ra::CREATEANDUPDATE, "h/valid", None, bad),
            bad,
        );
    }
    assert_refused(
        &write(&mut client, ra::PATCH, "h/valid", Some("a"), "{bad"),
        "a patch value that is not JSON",
    );
    let stored = read(&mut client, "h/valid");
    assert_eq!(stored.data.as_deref(), Some(&br#"{"ok":1}"#[..]));
    assert_eq!(stored.version, Some(1));
}

#[test]
fn paths_mean_to_the_server_what_they_mean_to_the_clients() {
    let server = hardening_server("2");
    let mut client = RawClient::login(server.port, "writer");
    write(
        &mut client,
        ra::UPDATE,
        "h/paths",
        None,
        r#"{"o":{},"a":[0]}"#,
    );
    // Number() reads the bracket: on an object the key is the number it prints.
    for (path, value) in [("o[0x10]", "1"), ("o[1e1]", "2"), ("a[ 1 ]", "3")] {
        let reply = write(&mut client, ra::PATCH, "h/paths", Some(path), value);
        assert_eq!(reply.action, ra::WRITE_ACKNOWLEDGEMENT, "{path}");
    }
    let stored = read(&mut client, "h/paths");
    let doc: serde_json::Value = serde_json::from_slice(stored.data.as_deref().unwrap()).unwrap();
    assert_eq!(doc, serde_json::json!({"o":{"16":1,"10":2},"a":[0,3]}));
    // Paths that would throw in, pollute or bloat every subscriber are refused, not relayed.
    for path in [
        "a[-1]",
        "a[1e7]",
        "o.b[Infinity]",
        "o[NaN]",
        "__proto__.polluted",
        "a.length",
        "",
        ".",
    ] {
        assert_refused(
            &write(&mut client, ra::PATCH, "h/paths", Some(path), "1"),
            path,
        );
    }
    assert_eq!(read(&mut client, "h/paths").version, Some(4));
}

#[test]
fn rules_read_data_as_javascript_does_or_deny() {
    let server = hardening_server("2");
    let mut subscriber = RawClient::login(server.port, "subscriber");
    let mut publisher = RawClient::login(server.port, "publisher");
    subscriber.send(&Message {
        correlation_id: Some(bytes("s")),
        names: vec![bytes("secret/e")],
        ..Message::new(topic::EVENT, ea::SUBSCRIBE)
    });
    assert_eq!(subscriber.expect_message().is_ack, Some(true));
    let emit = |client: &mut RawClient, data: &str| {
        client.send(&Message {
            name: Some(bytes("secret/e")),
            data: Some(bytes(data)),
            ..Message::new(topic::EVENT, ea::EMIT)
        });
    };
    let deep = format!("{}true{}", "[".repeat(200), "]".repeat(200));
    for denied in [
        r#"{"secret":false,"secret":true}"#,
        r#"{"secret":true,"pad":1e400}"#,
        r#"{"secret":true,"pad":"\ud800"}"#,
        &format!(r#"{{"secret":true,"deep":{deep}}}"#),
        "not json",
    ] {
        emit(&mut publisher, denied);
        let reply = publisher.expect_message();
        assert_eq!(reply.action, ea::MESSAGE_DENIED, "{denied}");
    }
    emit(&mut publisher, r#"{"secret":true,"secret":false}"#);
    let delivered = subscriber.expect_message();
    assert_eq!(delivered.action, ea::EMIT);
    assert_eq!(
        delivered.data.as_deref(),
        Some(&br#"{"secret":true,"secret":false}"#[..]),
        "the first event the subscriber sees is the allowed one"
    );
    // Record write rules: the same reading.
    let mut writer = RawClient::login(server.port, "writer");
    for (action, path, data, expected) in [
        (
            ra::UPDATE,
            None,
            r#"{"role":"user","role":"admin"}"#,
            ra::MESSAGE_DENIED,
        ),
        (
            ra::UPDATE,
            None,
            r#"{"role":"admin","role":"user"}"#,
            ra::WRITE_ACKNOWLEDGEMENT,
        ),
        // The rule sees the record as patched.
        (ra::PATCH, Some("role"), r#""admin""#, ra::MESSAGE_DENIED),
    ] {
        let reply = write(&mut writer, action, "guarded/r", path, data);
        assert_eq!(reply.action, expected, "{data}");
    }
}

fn limits_server() -> Server {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hardening/limits.yml");
    Server::start(&["--cores", "1", "-c", config.to_str().unwrap()])
}

#[test]
fn a_request_head_dripped_byte_by_byte_is_cut_at_the_handshake_deadline() {
    use std::io::{Read, Write};
    let server = limits_server();
    let mut socket = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let started = Instant::now();
    let head = b"GET /deepstream HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    let mut closed = false;
    for byte in head.iter().chain(std::iter::repeat(&b'a')).take(200) {
        if socket.write_all(&[*byte]).is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 64];
        match socket.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still open after 5 s"
        );
    }
    assert!(closed, "the server kept a head that never ended");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[test]
fn a_frame_sent_with_the_upgrade_head_is_answered_at_once() {
    use std::io::{Read, Write};
    let server = limits_server();
    let mut socket = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut bytes = b"GET /deepstream HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".to_vec();
    let challenge = Message::new(topic::CONNECTION, connection_action::CHALLENGE).encode();
    bytes.extend(corestream::protocol::ws::client_frame(
        corestream::protocol::ws::OP_BINARY,
        true,
        &challenge,
        [9, 8, 7, 6],
    ));
    socket.write_all(&bytes).unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 1024];
    let answered = loop {
        match socket.read(&mut buf) {
            Ok(0) | Err(_) => break false,
            Ok(n) => received.extend_from_slice(&buf[..n]),
        }
        let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let frame = &received[end + 4..];
        if frame.len() >= 2 && frame.len() >= 2 + usize::from(frame[1] & 0x7f) {
            let reply = Message::parse(&Bytes::copy_from_slice(&frame[2..])).unwrap();
            break reply.action == connection_action::ACCEPT;
        }
    };
    assert!(answered, "no ACCEPT for the challenge sent with the head");
}

#[test]
fn before_login_frames_are_small_and_waiting_connections_are_capped_per_shard() {
    let server = limits_server();
    // A frame bigger than unauthenticatedMaxMessageSize before login: told, then closed 1009.
    let mut big = RawClient::connect(server.port);
    big.send_raw_lenient(corestream::protocol::ws::OP_BINARY, &vec![0u8; 8192]);
    let reply = big.expect_message();
    assert_eq!(reply.topic, topic::PARSER);
    assert_eq!(big.expect_close(), 1009);
    // After login the full maxMessageSize applies.
    let mut user = RawClient::login(server.port, "user");
    let data = format!("\"{}\"", "x".repeat(8192));
    user.send(&Message {
        name: Some(bytes("h/big")),
        data: Some(bytes(&data)),
        ..Message::new(topic::EVENT, ea::EMIT)
    });
    assert_alive(&mut user);
    // Three sockets may wait to log in on this shard; a fourth is refused with 503.
    let waiting: Vec<RawClient> = (0..3).map(|_| RawClient::connect(server.port)).collect();
    let status = upgrade_status(server.port);
    assert!(status.starts_with("HTTP/1.1 503"), "{status}");
    drop(waiting);
    let deadline = Instant::now() + Duration::from_secs(3);
    while !upgrade_status(server.port).starts_with("HTTP/1.1 101") {
        assert!(
            Instant::now() < deadline,
            "closed connections still counted as waiting"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The status line the server answers an upgrade with.
fn upgrade_status(port: u16) -> String {
    use std::io::{Read, Write};
    let mut socket = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    socket.write_all(b"GET /deepstream HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").unwrap();
    let mut buf = [0u8; 256];
    let n = socket.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

#[test]
fn a_close_frame_with_an_invalid_code_is_answered_1002() {
    let server = limits_server();
    let mut client = RawClient::login(server.port, "closer");
    client.send_raw(corestream::protocol::ws::OP_CLOSE, &999u16.to_be_bytes());
    assert_eq!(client.expect_close(), 1002);
}

#[test]
fn a_second_server_on_a_port_in_use_refuses_to_start() {
    let first = limits_server();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_corestream"))
        .args([
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            &first.port.to_string(),
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("already in use"), "{stderr}");
    assert!(!String::from_utf8_lossy(&output.stdout).contains("listening"));
    for args in [&["--cores", "64"][..], &["--cpus", "0,0"]] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_corestream"))
            .arg("start")
            .args(args)
            .args(["--port", "0"])
            .output()
            .unwrap();
        assert!(!output.status.success(), "{args:?}");
    }
}

#[test]
fn shutting_down_two_shards_never_panics() {
    use std::io::{BufRead, BufReader, Read};
    for round in 0..12 {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_corestream"))
            .args([
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--cores",
                "2",
                "--park-after-ms",
                "1",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line.trim().rsplit(':').next().unwrap().parse().unwrap();
        // Parked sockets keep a blocking-pool thread busy, which is what used to panic.
        let _client = RawClient::login(port, "parker");
        std::thread::sleep(Duration::from_millis(150 + 20 * round));
        std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        let status = child.wait().unwrap();
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert!(status.success(), "round {round}: {status} {stderr}");
        assert!(!stderr.contains("panicked"), "round {round}: {stderr}");
    }
}

fn listen(client: &mut RawClient, action: i32, pattern: &str) -> Message {
    client.send(&Message {
        name: Some(bytes(pattern)),
        correlation_id: Some(bytes("l")),
        ..Message::new(topic::EVENT, action)
    });
    client.expect_message()
}

#[test]
fn listen_patterns_and_subscriptions_have_budgets() {
    let server = limits_server();
    let mut a = RawClient::login(server.port, "a");
    let mut b = RawClient::login(server.port, "b");
    for i in 0..3 {
        assert_eq!(
            listen(&mut a, ea::LISTEN, &format!("^a{i}/")).is_ack,
            Some(true)
        );
    }
    let over = listen(&mut a, ea::LISTEN, "^a3/");
    assert_eq!(over.action, ea::MESSAGE_DENIED, "per connection: {over:?}");
    assert_eq!(
        listen(&mut a, ea::LISTEN, "^a0/").is_ack,
        Some(true),
        "held already"
    );
    for i in 0..2 {
        assert_eq!(
            listen(&mut b, ea::LISTEN, &format!("^b{i}/")).is_ack,
            Some(true)
        );
    }
    let over = listen(&mut b, ea::LISTEN, "^b2/");
    assert_eq!(over.action, ea::MESSAGE_DENIED, "per server: {over:?}");
    assert_eq!(listen(&mut a, ea::UNLISTEN, "^a1/").is_ack, Some(true));
    // The unlisten reaches every shard's listening state before the next listen is judged.
    assert_alive(&mut b);
    assert_eq!(listen(&mut b, ea::LISTEN, "^b2/").is_ack, Some(true));

    let names: Vec<Bytes> = (0..12).map(|i| bytes(&format!("h/s{i}"))).collect();
    a.send(&Message {
        correlation_id: Some(bytes("s")),
        names,
        ..Message::new(topic::EVENT, ea::SUBSCRIBE)
    });
    let mut denied = 0;
    let mut acked = false;
    while !acked || denied < 2 {
        let reply = a.expect_message();
        match reply.action {
            ea::MESSAGE_DENIED => denied += 1,
            ea::SUBSCRIBE if reply.is_ack == Some(true) => acked = true,
            other => panic!("unexpected {other}: {reply:?}"),
        }
    }
    assert_alive(&mut a);
}

/// A server with file auth under pbkdf2-sha512; `alice`'s password is "right".
fn hashing_server(iterations: u32) -> (Server, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("corestream-hash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.yml");
    let auth = format!(
        "auth:\n  - type: file\n    options:\n      users: fileLoad(users.yml)\n      hash: sha512\n      iterations: {iterations}\n      keyLength: 64\n"
    );
    std::fs::write(&config, &auth).unwrap();
    std::fs::write(dir.join("users.yml"), "{}\n").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_corestream"))
        .args(["hash", "right", "-c", config.to_str().unwrap()])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&output.stdout);
    let hash = printed.trim().rsplit(' ').next().unwrap().to_string();
    std::fs::write(
        dir.join("users.yml"),
        format!("alice:\n  password: \"{hash}\"\n"),
    )
    .unwrap();
    let server = Server::start(&["--cores", "1", "-c", config.to_str().unwrap()]);
    (server, dir)
}

fn timed_login(port: u16, user: &str, password: &str) -> (Duration, i32) {
    let started = Instant::now();
    let reply = RawClient::auth(
        port,
        &format!(r#"{{"username":"{user}","password":"{password}"}}"#),
    );
    (started.elapsed(), reply.action)
}

#[test]
fn password_hashing_stalls_no_one_and_does_not_tell_which_users_exist() {
    use corestream::protocol::message::auth_action;
    let (server, dir) = hashing_server(5_000);
    let (one, action) = timed_login(server.port, "alice", "right");
    assert_eq!(action, auth_action::AUTH_SUCCESSFUL);
    // Known and unknown users take the same time to be refused.
    let known: Duration = (0..3)
        .map(|_| timed_login(server.port, "alice", "wrong").0)
        .sum();
    let unknown: Duration = (0..3)
        .map(|_| timed_login(server.port, "mallory", "x").0)
        .sum();
    let ratio = unknown.as_secs_f64() / known.as_secs_f64();
    assert!(
        (0.5..2.0).contains(&ratio),
        "unknown {unknown:?} vs known {known:?}"
    );
    // Ten bad logins at once: a logged-in client's pings are not held behind them.
    let mut watcher =
        RawClient::login_with(server.port, r#"{"username":"alice","password":"right"}"#);
    let attackers: Vec<_> = (0..10)
        .map(|i| {
            let port = server.port;
            std::thread::spawn(move || timed_login(port, "alice", &format!("bad{i}")))
        })
        .collect();
    let mut worst = Duration::ZERO;
    let until = Instant::now() + one * 10;
    while Instant::now() < until {
        let started = Instant::now();
        watcher.send(&Message::new(topic::CONNECTION, connection_action::PING));
        assert_eq!(watcher.expect_message().action, connection_action::PONG);
        worst = worst.max(started.elapsed());
        std::thread::sleep(Duration::from_millis(2));
    }
    for attacker in attackers {
        assert_eq!(attacker.join().unwrap().1, auth_action::AUTH_UNSUCCESSFUL);
    }
    eprintln!("one login {one:?}, worst ping {worst:?}");
    assert!(
        worst < one * 2,
        "a ping waited {worst:?}; one login takes {one:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn partial_frames_from_connections_not_logged_in_have_a_shard_budget() {
    let server = limits_server();
    // Each holds a read buffer (16 KiB) for a frame it never finishes; the budget is 40,000.
    let frame = corestream::protocol::ws::client_frame(
        corestream::protocol::ws::OP_BINARY,
        true,
        &[0u8; 4000],
        [1, 2, 3, 4],
    );
    let mut holders: Vec<RawClient> = (0..2).map(|_| RawClient::connect(server.port)).collect();
    for holder in &mut holders {
        holder.send_raw_bytes(&frame[..200]);
    }
    std::thread::sleep(Duration::from_millis(200));
    let mut third = RawClient::connect(server.port);
    third.send_raw_bytes(&frame[..200]);
    assert_eq!(third.expect_close(), 1008);
    // Once one of them is gone, there is room again (as soon as the server has seen it go:
    // on a loaded machine that can take a while, so a refused attempt is tried again).
    drop(holders.pop());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let mut fourth = RawClient::connect(server.port);
        fourth.send_raw_bytes(&frame[..200]);
        fourth.send_raw_bytes(&frame[200..]);
        match fourth.receive() {
            common::Received::Message(reply) => {
                assert_eq!(
                    reply.topic,
                    topic::PARSER,
                    "the whole frame was read: {reply:?}"
                );
                break;
            }
            common::Received::Close(1008) if std::time::Instant::now() < deadline => continue,
            other => panic!("the freed budget was not reused: {other:?}"),
        }
    }
}

/// Issue 28, defect 1: a misspelt `auth:` (or `permission:`) left the server open with one
/// warning. A near miss of a known key stops the start and `check-config`, naming the key, its
/// line and what was meant; an unrelated unknown key stays a warning.
#[test]
fn a_misspelt_security_key_stops_the_start() {
    let dir = std::env::temp_dir().join(format!("corestream-typo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    for (typo, meant) in [("auht", "auth"), ("permissions", "permission")] {
        let config = dir.join(format!("{typo}.yml"));
        std::fs::write(
            &config,
            format!("serverName: x\n{typo}:\n  type: file\n  options: {{}}\n"),
        )
        .expect("config");
        for args in [
            vec!["check-config".to_string(), config.display().to_string()],
            vec![
                "start".into(),
                "--port".into(),
                "0".into(),
                "-c".into(),
                config.display().to_string(),
            ],
        ] {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_corestream"))
                .args(&args)
                .output()
                .expect("run corestream");
            let said = String::from_utf8_lossy(&out.stderr).to_string()
                + &String::from_utf8_lossy(&out.stdout);
            assert!(!out.status.success(), "{args:?} accepted '{typo}': {said}");
            assert!(
                said.contains(&format!("'{typo}' (line 2): did you mean '{meant}'")),
                "{args:?}: {said}"
            );
        }
    }
    let config = dir.join("unrelated.yml");
    std::fs::write(&config, "myCompanySettings: 1\n").expect("config");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_corestream"))
        .args(["check-config"])
        .arg(&config)
        .output()
        .expect("run corestream");
    assert!(out.status.success(), "an unrelated key stays a warning");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 28, defect 2: the config deepstream 7 would read is the one read, the start and
/// `check-config` say which (or that there was none: built-in defaults, open auth), and an
/// admin token whose variable is unset is an error, not a silently absent admin API.
#[test]
fn the_config_read_is_named_and_an_unset_admin_token_is_an_error() {
    let dir = std::env::temp_dir().join(format!("corestream-lookup-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let check = |cwd: &Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_corestream"))
            .arg("check-config")
            .current_dir(cwd)
            .env_remove("DEEPSTREAM_CONFIG_DIRECTORY")
            .output()
            .expect("run corestream");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).to_string()
                + &String::from_utf8_lossy(&out.stdout),
        )
    };
    let system_wide = [
        "/etc/deepstream/config.yml",
        "/etc/deepstream/conf/config.yml",
        "/usr/local/etc/deepstream/config.yml",
        "/usr/local/etc/deepstream/conf/config.yml",
    ]
    .iter()
    .any(|p| Path::new(p).exists());
    if !system_wide {
        let (ok, said) = check(&dir);
        assert!(ok, "{said}");
        assert!(
            said.contains("no config file found: built-in defaults (open auth"),
            "{said}"
        );
        assert!(said.contains("auth none (open"), "{said}");
    }
    std::fs::create_dir_all(dir.join("conf")).expect("conf");
    std::fs::write(dir.join("conf/config.yml"), "serverName: found\n").expect("config");
    let (ok, said) = check(&dir);
    assert!(ok, "{said}");
    assert!(said.contains("config: conf/config.yml"), "{said}");
    assert!(said.contains("ok: found"), "{said}");
    std::fs::write(
        dir.join("conf/config.yml"),
        "admin:\n  token: ${CORESTREAM_TEST_TOKEN_NOBODY_SETS}\n",
    )
    .expect("config");
    let (ok, said) = check(&dir);
    assert!(!ok, "{said}");
    assert!(said.contains("admin.token is empty"), "{said}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 28, defect 5 (in part): the MQTT listener has the budgets every listener has. A drip
/// of one byte at a time no longer extends the CONNECT deadline (it restarted on every read),
/// and a CONNECT declared larger than what a connection not logged in may send is refused at
/// once instead of being held (300 such sockets held 303 MiB).
#[test]
fn mqtt_logins_have_an_absolute_deadline_and_a_size_bound() {
    use std::io::{Read, Write};
    let port = common::free_port();
    let dir = std::env::temp_dir().join(format!("corestream-mqtt-limits-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("config.yml");
    std::fs::write(
        &config,
        format!(
            "connectionEndpoints:\n  - type: ws-binary\n  - type: mqtt\n    options:\n      \
             host: 127.0.0.1\n      port: {port}\nlimits:\n  handshakeTimeout: 1000\n"
        ),
    )
    .expect("config");
    let _server = Server::start(&["--cores", "1", "-c", config.to_str().expect("path")]);
    let closed_within = |socket: &mut std::net::TcpStream, limit: Duration| -> Option<Duration> {
        let started = Instant::now();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let mut byte = [0u8; 64];
        while started.elapsed() < limit {
            match socket.read(&mut byte) {
                Ok(0) => return Some(started.elapsed()),
                Err(e)
                    if e.kind() != std::io::ErrorKind::WouldBlock
                        && e.kind() != std::io::ErrorKind::TimedOut =>
                {
                    return Some(started.elapsed())
                }
                _ => {}
            }
        }
        None
    };
    // A CONNECT dripped a byte every 200 ms: closed about 1 s after accept.
    let mut drip = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let started = Instant::now();
    let connect = b"\x10\x7f\x00\x04MQTT\x04\x02\x00\x3c";
    let mut closed = false;
    for byte in connect.iter().cycle().take(30) {
        if drip.write_all(&[*byte]).is_err() {
            closed = true;
            break;
        }
        if closed_within(&mut drip, Duration::from_millis(200)).is_some() {
            closed = true;
            break;
        }
    }
    assert!(closed, "the dripping socket was never closed");
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "closed after {:?}",
        started.elapsed()
    );
    // A CONNECT declaring 1 MiB, nearly all sent: refused at once.
    let mut large = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let _ = large.write_all(&[0x10, 0x80, 0x80, 0x40]);
    let _ = large.write_all(&vec![0u8; 64 * 1024]);
    assert!(
        closed_within(&mut large, Duration::from_millis(900)).is_some(),
        "a CONNECT past the size allowed before login is refused before the deadline"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 28: MQTT goes through the admission every listener has, so its logins in progress
/// count among the shard's handshakes (`limits.handshakesPerShard`): past it a socket is
/// closed at once instead of being held until the handshake deadline.
#[test]
fn mqtt_logins_in_progress_count_among_the_handshakes() {
    use std::io::Read;
    let port = common::free_port();
    let dir = std::env::temp_dir().join(format!("corestream-mqtt-admit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("config.yml");
    std::fs::write(
        &config,
        format!(
            "connectionEndpoints:\n  - type: ws-binary\n  - type: mqtt\n    options:\n      \
             host: 127.0.0.1\n      port: {port}\nlimits:\n  handshakeTimeout: 8000\n  \
             handshakesPerShard: 2\n"
        ),
    )
    .expect("config");
    let _server = Server::start(&["--cores", "1", "-c", config.to_str().expect("path")]);
    let silent: Vec<std::net::TcpStream> = (0..2)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut third = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    third
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let started = Instant::now();
    let mut byte = [0u8; 1];
    let closed = matches!(third.read(&mut byte), Ok(0) | Err(_));
    assert!(
        closed && started.elapsed() < Duration::from_secs(2),
        "a third login in progress was held ({:?})",
        started.elapsed()
    );
    drop(silent);
    let _ = std::fs::remove_dir_all(&dir);
}
