//! The endpoints besides ws-binary, with real clients: the V3 client `deepstream.io-client-js`
//! 2.3.4 on ws-text (against corestream and, with the same tests, the reference), a JSON client
//! on ws-json (its transcript compared with the reference's), MQTT clients (the `mqtt` package
//! and mosquitto_pub/_sub), and all four kinds of client at once.

mod common;

use bytes::Bytes;
use common::{free_port, npm_home, shared_dir, Reference, Server};
use corestream::codec::Inbound;
use corestream::protocol::message::{auth_action, connection_action, event_action, topic, Message};
use corestream::protocol::ws;
use std::path::{Path, PathBuf};
use std::process::Command;

const TEXT_AND_JSON: &str = "  - type: ws-text\n    options:\n      urlPath: /deepstream-v3\n  \
     - type: ws-json\n    options:\n      urlPath: /deepstream-json\n";

/// A config with ws-binary, ws-text, ws-json and (with a port) mqtt; `auth` after them.
fn setup(name: &str, mqtt_port: Option<u16>, file_auth: bool) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&dir).expect("dir");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node/permissions");
    for file in ["users.yml", "permissions.yml"] {
        std::fs::copy(source.join(file), dir.join(file)).expect("copy");
    }
    let mqtt = mqtt_port.map_or(String::new(), |port| {
        format!("  - type: mqtt\n    options:\n      host: 127.0.0.1\n      port: {port}\n")
    });
    let auth = if file_auth {
        "auth:\n  - type: file\n    options:\n      users: fileLoad(users.yml)\n      hash: md5\n      \
         iterations: 100\n      keyLength: 32\npermission:\n  type: config\n  options:\n    \
         permissions: fileLoad(permissions.yml)\n"
    } else {
        ""
    };
    std::fs::write(
        dir.join("config.yml"),
        format!(
            "serverName: endpoints\nshowLogo: false\nlogLevel: WARN\nconnectionEndpoints:\n  \
             - type: ws-binary\n{TEXT_AND_JSON}{mqtt}{auth}"
        ),
    )
    .expect("config");
    dir
}

fn start(dir: &Path, cores: &str) -> Server {
    let config = dir.join("config.yml");
    Server::start(&["--cores", cores, "-c", config.to_str().expect("path")])
}

/// Runs node test files of tests/legacy with `env`; fails with node's output unless all pass.
fn run_node_tests(files: &[&str], env: &[(&str, String)]) -> String {
    let legacy = npm_home("tests/legacy", "mqtt");
    let client_home = npm_home("tests/node", "@deepstream/client");
    let output = Command::new("node")
        .args(["--test", "--test-concurrency=1", "--test-timeout=30000"])
        .args(files)
        .current_dir(&legacy)
        .env("DS_CLIENT_HOME", &client_home)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("node");
    common::node_tests_passed(&output, &format!("node tests {files:?}"))
}

#[test]
fn the_v3_client_suite_passes_on_one_and_two_shards() {
    let dir = setup("endpoints-v3", None, false);
    for cores in ["1", "2"] {
        let server = start(&dir, cores);
        let url = format!("ws://127.0.0.1:{}/deepstream-v3", server.port);
        let out = run_node_tests(
            &["v3.test.mjs", "v3-beyond.test.mjs"],
            &[("DS_V3_URL", url)],
        );
        assert!(out.contains("# pass 16"), "{out}");
    }
}

#[test]
fn the_v3_client_suite_passes_against_the_reference() {
    let Some(shared) = shared_dir() else { return };
    let dir = setup("endpoints-v3-reference", None, false);
    let rest = format!("connectionEndpoints:\n  - type: ws-binary\n{TEXT_AND_JSON}");
    let reference = Reference::start(&shared, None, &dir, &rest);
    let url = format!("ws://127.0.0.1:{}/deepstream-v3", reference.port);
    run_node_tests(&["v3.test.mjs"], &[("DS_V3_URL", url)]);
}

/// What each JSON client received, in its own order (the two clients' lines interleave by
/// timing).
fn transcript(url: &str) -> Vec<Vec<String>> {
    let legacy = npm_home("tests/legacy", "mqtt");
    let output = Command::new("node")
        .args(["json-transcript.mjs", url, "same"])
        .current_dir(&legacy)
        .output()
        .expect("node");
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    ["A <", "B <"]
        .iter()
        .map(|who| {
            text.lines()
                .filter(|l| l.starts_with(who))
                .map(str::to_string)
                .collect()
        })
        .collect()
}

#[test]
fn a_json_client_gets_what_the_reference_sends() {
    let Some(shared) = shared_dir() else { return };
    let dir = setup("endpoints-json", None, false);
    // The reference's own default sends no requestorName; the shipped config (corestream's
    // default) does. Both get the same setting here.
    let rpc = "rpc:\n  provideRequestorName: false\n";
    std::fs::write(
        dir.join("config.yml"),
        format!(
            "showLogo: false\nlogLevel: WARN\nconnectionEndpoints:\n  - type: ws-binary\n\
             {TEXT_AND_JSON}{rpc}"
        ),
    )
    .expect("config");
    let server = start(&dir, "2");
    let ours = transcript(&format!("ws://127.0.0.1:{}/deepstream-json", server.port));
    let rest = format!("connectionEndpoints:\n  - type: ws-binary\n{TEXT_AND_JSON}{rpc}");
    let reference = Reference::start(&shared, None, &dir, &rest);
    let theirs = transcript(&format!(
        "ws://127.0.0.1:{}/deepstream-json",
        reference.port
    ));
    assert!(ours[0].len() > 5 && ours[1].len() > 5, "{ours:?}");
    assert_eq!(ours, theirs);
}

#[test]
fn mqtt_clients_and_every_kind_of_client_at_once() {
    let mqtt_port = free_port();
    let dir = setup("endpoints-mqtt", Some(mqtt_port), true);
    for cores in ["1", "2"] {
        let server = start(&dir, cores);
        let base = format!("ws://127.0.0.1:{}", server.port);
        let env = [
            ("DS_URL", format!("{base}/deepstream")),
            ("DS_V3_URL", format!("{base}/deepstream-v3")),
            ("DS_JSON_URL", format!("{base}/deepstream-json")),
            ("DS_MQTT_PORT", mqtt_port.to_string()),
        ];
        run_node_tests(&["mqtt.test.mjs", "mixed.test.mjs"], &env);
    }
}

/// mosquitto_sub/_pub (Debian's mosquitto-clients); without them the test says it skipped,
/// and under CI it fails.
fn mosquitto() -> bool {
    let found = Command::new("mosquitto_pub").arg("--help").output().is_ok();
    common::found_or_skipped(found, "mosquitto_pub (mosquitto-clients) is not installed")
}

#[test]
fn mosquitto_clients_publish_subscribe_and_retain() {
    if !mosquitto() {
        return;
    }
    let mqtt_port = free_port();
    let dir = setup("endpoints-mosquitto", Some(mqtt_port), true);
    let server = start(&dir, "2");
    let port = mqtt_port.to_string();
    let topic = format!("mosq/{}", std::process::id());
    let login = [
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-u",
        "alice",
        "-P",
        "secret",
    ];
    let sub = Command::new("mosquitto_sub")
        .args(login)
        .args(["-t", &topic, "-C", "3", "-W", "10", "-v"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("mosquitto_sub");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let publish = |args: &[&str]| {
        let status = Command::new("mosquitto_pub")
            .args(login)
            .args(["-t", &topic])
            .args(args)
            .status()
            .expect("mosquitto_pub");
        assert!(status.success(), "mosquitto_pub {args:?}");
    };
    publish(&["-m", "plain", "-q", "1"]);
    publish(&["-m", r#"{"m":8}"#, "-r", "-q", "1"]);
    let out = sub.wait_with_output().expect("sub");
    let lines = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        lines.lines().collect::<Vec<_>>(),
        vec![
            format!("{topic} \"plain\""),
            format!("{topic} {{\"m\":8}}"),
            format!("{topic} \"{{\\\"m\\\":8}}\""),
        ],
        "{lines}"
    );
    // A later subscriber gets the record as a retained message; a bad password is refused.
    let late = Command::new("mosquitto_sub")
        .args(login)
        .args(["-t", &topic, "-C", "1", "-W", "5", "-v"])
        .output()
        .expect("late sub");
    assert_eq!(
        String::from_utf8_lossy(&late.stdout).trim(),
        format!("{topic} {{\"m\":8}}")
    );
    let refused = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port, "-u", "alice", "-P", "wrong"])
        .args(["-t", &topic, "-m", "x"])
        .output()
        .expect("refused pub");
    assert!(!refused.status.success());
    drop(server);
}

/// Sends one message in the 4.0 framing (`ws-frame`) and reads the next message back.
fn frame_send(client: &mut common::RawClient, msg: &Message) {
    let mut out = Vec::new();
    corestream::codec::frame::encode(msg, &mut out);
    client.send_raw(ws::OP_BINARY, &out);
}

fn frame_receive(client: &mut common::RawClient) -> Message {
    loop {
        let (opcode, payload) = client.receive_frame();
        assert_eq!(opcode, ws::OP_BINARY, "{payload:?}");
        let mut out = Vec::new();
        corestream::codec::frame::decode(
            &payload,
            &mut corestream::codec::frame::Partial::default(),
            1 << 20,
            &mut out,
        );
        if let Some(Inbound::Message(msg)) = out.into_iter().next() {
            return *msg;
        }
    }
}

#[test]
fn the_4_0_framing_carries_the_same_messages() {
    let dir = setup("endpoints-frame", None, false);
    std::fs::write(
        dir.join("config.yml"),
        "showLogo: false\nlogLevel: WARN\nconnectionEndpoints:\n  - type: ws-binary\n  \
         - type: ws-frame\n",
    )
    .expect("config");
    let server = start(&dir, "2");
    let mut framed = common::RawClient::connect_path(server.port, "/deepstream-frame");
    frame_send(
        &mut framed,
        &Message::new(topic::CONNECTION, connection_action::CHALLENGE),
    );
    assert_eq!(frame_receive(&mut framed).action, connection_action::ACCEPT);
    frame_send(
        &mut framed,
        &Message {
            data: Some(Bytes::from_static(br#"{"username":"framed"}"#)),
            ..Message::new(topic::AUTH, auth_action::REQUEST)
        },
    );
    assert_eq!(
        frame_receive(&mut framed).action,
        auth_action::AUTH_SUCCESSFUL
    );
    frame_send(
        &mut framed,
        &Message {
            names: vec![Bytes::from_static(b"frame/ev")],
            correlation_id: Some(Bytes::from_static(b"1")),
            ..Message::new(topic::EVENT, event_action::SUBSCRIBE)
        },
    );
    let ack = frame_receive(&mut framed);
    assert_eq!(
        (ack.action, ack.is_ack),
        (event_action::SUBSCRIBE, Some(true))
    );
    // A ws-binary client's emit reaches the framed subscriber, and back.
    let mut binary = common::RawClient::login(server.port, "binary");
    binary.send(&Message {
        names: vec![Bytes::from_static(b"frame/back")],
        correlation_id: Some(Bytes::from_static(b"2")),
        ..Message::new(topic::EVENT, event_action::SUBSCRIBE)
    });
    binary.expect_message();
    binary.send(&Message {
        name: Some(Bytes::from_static(b"frame/ev")),
        data: Some(Bytes::from_static(br#"{"n":1}"#)),
        ..Message::new(topic::EVENT, event_action::EMIT)
    });
    let emit = frame_receive(&mut framed);
    assert_eq!(emit.data.as_deref(), Some(&br#"{"n":1}"#[..]));
    frame_send(
        &mut framed,
        &Message {
            name: Some(Bytes::from_static(b"frame/back")),
            data: Some(Bytes::from_static(b"2")),
            ..Message::new(topic::EVENT, event_action::EMIT)
        },
    );
    assert_eq!(binary.expect_message().data.as_deref(), Some(&b"2"[..]));
    // Garbage gets a PARSER error in the same framing, and the connection lives on.
    framed.send_raw(ws::OP_BINARY, &[0x84, 2, 0, 0, 9, 0, 0, 0]);
    let error = frame_receive(&mut framed);
    assert_eq!(error.topic, topic::PARSER);
    frame_send(
        &mut framed,
        &Message::new(topic::CONNECTION, connection_action::PING),
    );
    assert_eq!(frame_receive(&mut framed).action, connection_action::PONG);
}

/// V3 messages from a raw text client (`|` for the unit separator), and what comes back.
fn v3_send(client: &mut common::RawClient, text: &str) {
    let wire = format!("{}\u{1e}", text.replace('|', "\u{1f}"));
    client.send_raw(ws::OP_TEXT, wire.as_bytes());
}

/// The next V3 messages (one text frame), or the close code.
fn v3_receive(client: &mut common::RawClient) -> Result<Vec<String>, u16> {
    let (opcode, payload) = client.receive_frame();
    if opcode == ws::OP_CLOSE {
        return Err(u16::from_be_bytes([payload[0], payload[1]]));
    }
    Ok(String::from_utf8_lossy(&payload)
        .split('\u{1e}')
        .filter(|m| !m.is_empty() && !m.starts_with("C\u{1f}PI"))
        .map(|m| m.replace('\u{1f}', "|"))
        .collect())
}

/// Reads until `want` (a whole V3 message) arrives; panics on a close first.
fn v3_expect(client: &mut common::RawClient, want: &str) {
    loop {
        match v3_receive(client) {
            Ok(messages) if messages.iter().any(|m| m == want) => return,
            Ok(_) => {}
            Err(code) => panic!("closed with {code} before {want}"),
        }
    }
}

#[test]
fn each_endpoint_has_its_own_login_settings() {
    let dir = setup("endpoints-settings", None, true);
    let config = std::fs::read_to_string(dir.join("config.yml")).expect("config");
    let config = config.replace(
        "  - type: ws-text\n    options:\n      urlPath: /deepstream-v3\n",
        "  - type: ws-text\n    options:\n      urlPath: /deepstream-v3\n      maxAuthAttempts: 1\n      \
         unauthenticatedClientTimeout: 1000\n",
    );
    std::fs::write(dir.join("config.yml"), config).expect("config");
    let server = start(&dir, "2");
    // One wrong password ends a V3 connection...
    let mut v3 = common::RawClient::connect_path(server.port, "/deepstream-v3");
    v3_expect(&mut v3, "C|A");
    v3_send(&mut v3, r#"A|REQ|{"username":"alice","password":"wrong"}"#);
    let mut said = Vec::new();
    let code = loop {
        match v3_receive(&mut v3) {
            Ok(messages) => said.extend(messages),
            Err(code) => break code,
        }
    };
    assert_eq!(
        (said, code),
        (
            vec![
                "A|E|INVALID_AUTH_DATA|U".to_string(),
                "A|E|TOO_MANY_AUTH_ATTEMPTS".to_string()
            ],
            1008
        )
    );
    // ...while ws-binary keeps its 3 attempts.
    let reply = common::RawClient::auth(server.port, r#"{"username":"alice","password":"wrong"}"#);
    assert_eq!(reply.action, auth_action::AUTH_UNSUCCESSFUL);
    // A V3 connection that does not log in is told after its endpoint's second.
    let started = std::time::Instant::now();
    let mut idle = common::RawClient::connect_path(server.port, "/deepstream-v3");
    v3_expect(&mut idle, "C|E|CONNECTION_AUTHENTICATION_TIMEOUT");
    assert!(started.elapsed() < std::time::Duration::from_secs(4));
    // And a right password logs in, with the user's clientData typed.
    let mut ok = common::RawClient::connect_path(server.port, "/deepstream-v3");
    v3_send(&mut ok, r#"A|REQ|{"username":"alice","password":"secret"}"#);
    v3_expect(&mut ok, r#"A|A|O{"greeting":"hello alice"}"#);
}

/// A tiny MQTT 3.1.1 client over a plain socket, for what the libraries hide: the exact order of
/// packets and whether an acknowledgement came at all.
mod raw_mqtt {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::{Duration, Instant};

    fn text(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&u16::try_from(s.len()).expect("short").to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    }

    fn packet(first: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![first];
        let mut len = body.len();
        loop {
            let mut byte = u8::try_from(len % 128).expect("digit");
            len /= 128;
            if len > 0 {
                byte |= 0x80;
            }
            out.push(byte);
            if len == 0 {
                break;
            }
        }
        out.extend_from_slice(body);
        out
    }

    pub fn connect(user: &str, password: &str) -> Vec<u8> {
        let mut body = Vec::new();
        text(&mut body, "MQTT");
        body.extend_from_slice(&[4, 0xc2, 0, 60]);
        text(&mut body, "raw-client");
        text(&mut body, user);
        text(&mut body, password);
        packet(0x10, &body)
    }

    pub fn publish(topic: &str, payload: &str, id: u16, retain: bool) -> Vec<u8> {
        let mut body = Vec::new();
        text(&mut body, topic);
        body.extend_from_slice(&id.to_be_bytes());
        body.extend_from_slice(payload.as_bytes());
        packet(0x32 | u8::from(retain), &body)
    }

    pub fn subscribe(topic: &str, id: u16) -> Vec<u8> {
        let mut body = id.to_be_bytes().to_vec();
        text(&mut body, topic);
        body.push(0);
        packet(0x82, &body)
    }

    /// Every packet the server sends within `wait` (packet type, body), and whether it closed.
    pub fn read_all(socket: &mut TcpStream, wait: Duration) -> (Vec<(u8, Vec<u8>)>, bool) {
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let started = Instant::now();
        let mut bytes = Vec::new();
        let mut closed = false;
        let mut chunk = [0u8; 4096];
        while started.elapsed() < wait {
            match socket.read(&mut chunk) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => bytes.extend_from_slice(&chunk[..n]),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => {
                    closed = true;
                    break;
                }
            }
        }
        let mut packets = Vec::new();
        let mut at = 0;
        while at + 2 <= bytes.len() {
            let first = bytes[at];
            let (mut len, mut shift, mut header) = (0usize, 0, 1);
            while let Some(&b) = bytes.get(at + header) {
                len |= usize::from(b & 0x7f) << shift;
                shift += 7;
                header += 1;
                if b & 0x80 == 0 {
                    break;
                }
            }
            let Some(body) = bytes.get(at + header..at + header + len) else {
                break;
            };
            packets.push((first >> 4, body.to_vec()));
            at += header + len;
        }
        (packets, closed)
    }

    pub fn open(port: u16) -> TcpStream {
        TcpStream::connect(("127.0.0.1", port)).expect("connect")
    }

    pub fn send(socket: &mut TcpStream, bytes: &[u8]) {
        socket.write_all(bytes).expect("send");
    }
}

/// Issue 28, defect 5: a QoS 1 PUBLISH sent right behind a CONNECT with a wrong password was
/// PUBACKed (and handed on) before the CONNACK refused the login; MQTT 3.1.1 [MQTT-3.1.4-5]
/// says a server that refuses a CONNECT processes nothing sent after it. And a retained
/// publish that Valve refuses was PUBACKed as if stored; now the connection is closed, which
/// is what the spec allows a server that does not authorise a PUBLISH [MQTT-3.3.5-2].
#[test]
fn mqtt_acknowledges_only_what_was_done() {
    const CONNACK: u8 = 2;
    const PUBLISH: u8 = 3;
    const PUBACK: u8 = 4;
    let mqtt_port = free_port();
    let dir = setup("endpoints-mqtt-acks", Some(mqtt_port), true);
    let _server = start(&dir, "1");
    let wait = std::time::Duration::from_millis(700);
    let topic = format!("acks/{}", std::process::id());
    // Wrong password, QoS 1 publishes right behind it: a refusing CONNACK, no PUBACK.
    let mut refused = raw_mqtt::open(mqtt_port);
    let mut both = raw_mqtt::connect("alice", "wrong");
    both.extend(raw_mqtt::publish(&topic, r#"{"by":"intruder"}"#, 6, false));
    both.extend(raw_mqtt::publish(&topic, r#"{"by":"intruder"}"#, 7, true));
    raw_mqtt::send(&mut refused, &both);
    let (packets, closed) = raw_mqtt::read_all(&mut refused, wait);
    let kinds: Vec<u8> = packets.iter().map(|(kind, _)| *kind).collect();
    assert_eq!(kinds, vec![CONNACK], "{packets:?}");
    assert_eq!(packets[0].1, vec![0, 5], "refused: not authorized");
    assert!(closed);
    // Nothing of it was written: a subscriber gets no retained message for the topic.
    let mut reader = raw_mqtt::open(mqtt_port);
    let mut login = raw_mqtt::connect("alice", "secret");
    login.extend(raw_mqtt::subscribe(&topic, 1));
    raw_mqtt::send(&mut reader, &login);
    let (packets, _) = raw_mqtt::read_all(&mut reader, wait);
    assert!(
        !packets.iter().any(|(kind, _)| *kind == PUBLISH),
        "the refused client's publish was handed on: {packets:?}"
    );
    // The same publish with the right password, sent before the CONNACK: acknowledged after it.
    let mut accepted = raw_mqtt::open(mqtt_port);
    let mut both = raw_mqtt::connect("alice", "secret");
    both.extend(raw_mqtt::publish(&topic, r#"{"by":"alice"}"#, 8, true));
    raw_mqtt::send(&mut accepted, &both);
    let (packets, closed) = raw_mqtt::read_all(&mut accepted, wait);
    let kinds: Vec<u8> = packets.iter().map(|(kind, _)| *kind).collect();
    assert_eq!(kinds, vec![CONNACK, PUBACK], "{packets:?}");
    assert_eq!(packets[1].1, vec![0, 8]);
    assert!(!closed);
    // A retained publish Valve refuses (price/* must go up and be positive): no PUBACK, closed.
    let price = format!("price/{}", std::process::id());
    raw_mqtt::send(
        &mut accepted,
        &raw_mqtt::publish(&price, r#"{"price":-1}"#, 9, true),
    );
    let (packets, closed) = raw_mqtt::read_all(&mut accepted, wait);
    assert!(
        !packets.iter().any(|(kind, _)| *kind == PUBACK),
        "a refused write was acknowledged: {packets:?}"
    );
    assert!(closed, "a refused retained publish closes the connection");
    let _ = std::fs::remove_dir_all(&dir);
}
