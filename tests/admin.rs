//! The admin API (bearer token): connections and users listed, a user's sessions closed, a
//! permissions and users reload under load (and a reload that fails keeping the old rules),
//! runtime settings changed; the login/logout webhook; the live dashboard's numbers.

mod common;

use bytes::Bytes;
use common::{http, RawClient, Received, Server};
use corestream::protocol::message::{event_action, topic, Message};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOKEN: &str = "test-admin-token-0123456789";

const USERS: &str = "alice:\n  password: secret\nbob:\n  password: secret\n";
const OPEN_RULES: &str = "record:\n  \"*\":\n    create: true\n    write: true\n    read: true\n    delete: true\n    listen: true\n    notify: true\nevent:\n  \"*\":\n    publish: true\n    subscribe: true\n    listen: true\nrpc:\n  \"*\":\n    provide: true\n    request: true\npresence:\n  \"*\":\n    allow: true\n";

/// A webhook receiver on a free port: every POST body it gets goes to the returned channel.
fn webhook_receiver() -> (u16, std::sync::mpsc::Receiver<Value>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().unwrap().port();
    let (bodies, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let mut stream = stream;
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            if let Ok(value) = serde_json::from_slice(&body) {
                if bodies.send(value).is_err() {
                    break;
                }
            }
        }
    });
    (port, received)
}

fn setup(name: &str, webhook_port: u16) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("users.yml"), USERS).unwrap();
    std::fs::write(dir.join("permissions.yml"), OPEN_RULES).unwrap();
    std::fs::write(
        dir.join("config.yml"),
        format!(
            "connectionEndpoints:\n  - type: ws-binary\n  - type: ws-text\n  - type: http\nauth:\n  type: file\n  options:\n    users: fileLoad(users.yml)\npermission:\n  type: config\n  options:\n    permissions: fileLoad(permissions.yml)\nadmin:\n  token: {TOKEN}\n  dashboard: /dashboard\n  sessionWebhook:\n    endpointUrl: http://127.0.0.1:{webhook_port}/sessions\n    requestTimeout: 2000\n"
        ),
    )
    .unwrap();
    dir
}

fn admin(port: u16, method: &str, path: &str, body: &str) -> (u16, Value) {
    let auth = format!("Bearer {TOKEN}");
    let mut headers = vec![("Authorization", auth.as_str())];
    if !body.is_empty() {
        headers.push(("Content-Type", "application/json"));
    }
    let response = http(port, method, path, &headers, body.as_bytes());
    let value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    (response.status, value)
}

fn login(port: u16, user: &str) -> RawClient {
    RawClient::login_with(
        port,
        &format!(r#"{{"username":"{user}","password":"secret"}}"#),
    )
}

fn emit(client: &mut RawClient, name: &'static str) {
    client.send(&Message {
        name: Some(Bytes::from_static(name.as_bytes())),
        data: Some(Bytes::from_static(b"1")),
        ..Message::new(topic::EVENT, event_action::EMIT)
    });
}

#[test]
fn admin_endpoints_reload_settings_and_the_session_webhook() {
    let (hook_port, hooks) = webhook_receiver();
    let dir = setup("admin-api", hook_port);
    let config = dir.join("config.yml");
    let server = Server::start(&["--cores", "2", "-c", config.to_str().unwrap()]);
    let port = server.port;

    // Without the token, nothing.
    assert_eq!(
        http(port, "GET", "/admin/connections", &[], b"").status,
        401
    );
    let wrong = [("Authorization", "Bearer not-the-token-at-all")];
    assert_eq!(http(port, "GET", "/admin/users", &wrong, b"").status, 401);
    assert_eq!(http(port, "POST", "/admin/reload", &wrong, b"").status, 401);
    assert_eq!(
        http(port, "POST", "/admin/users/alice/close", &wrong, b"").status,
        401
    );
    assert_eq!(
        http(port, "GET", "/admin/settings", &wrong, b"").status,
        401
    );

    let mut alice = login(port, "alice");
    let _bob = login(port, "bob");
    let (status, listed) = admin(port, "GET", "/admin/connections", "");
    assert_eq!(status, 200, "{listed}");
    let users: Vec<&str> = listed["connections"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["user"].as_str())
        .collect();
    assert!(
        users.contains(&"alice") && users.contains(&"bob"),
        "{listed}"
    );
    // Each connection names its endpoint.
    let _v3 = common::RawClient::connect_path(port, "/deepstream-v3");
    let (_, listed) = admin(port, "GET", "/admin/connections", "");
    let endpoints: Vec<(&str, &str)> = listed["connections"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| Some((c["user"].as_str()?, c["endpoint"].as_str()?)))
        .collect();
    assert!(endpoints.contains(&("alice", "ws-binary")), "{listed}");
    assert!(endpoints.contains(&("", "ws-text")), "{listed}");
    let (_, online) = admin(port, "GET", "/admin/users", "");
    assert_eq!(online["users"], serde_json::json!(["alice", "bob"]));

    // The login webhook saw both.
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while events.len() < 2 && Instant::now() < deadline {
        if let Ok(body) = hooks.recv_timeout(Duration::from_millis(200)) {
            events.extend(body["events"].as_array().cloned().unwrap_or_default());
        }
    }
    let logins: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "login")
        .filter_map(|e| e["user"].as_str())
        .collect();
    assert!(
        logins.contains(&"alice") && logins.contains(&"bob"),
        "{events:?}"
    );

    // Close alice's sessions: her socket is closed with the reason, and she leaves.
    let (status, closed) = admin(port, "POST", "/admin/users/alice/close", "");
    assert_eq!((status, closed["closed"].as_u64()), (200, Some(1)));
    let code = loop {
        match alice.receive() {
            Received::Close(code) => break code,
            _ => continue,
        }
    };
    assert_eq!(code, 1008);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut logout = false;
    while !logout && Instant::now() < deadline {
        if let Ok(body) = hooks.recv_timeout(Duration::from_millis(200)) {
            logout = body["events"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|e| e["event"] == "logout" && e["user"] == "alice");
        }
    }
    assert!(logout, "the logout reached the webhook");

    // A reload under load: a publisher emits all along; once the new rules are in, its emits
    // on news/* are denied.
    let stop = Arc::new(AtomicBool::new(false));
    let denied = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let publisher = {
        let (stop, denied, sent) = (stop.clone(), denied.clone(), sent.clone());
        let mut client = login(port, "bob");
        std::thread::spawn(move || {
            let reader = std::thread::spawn({
                let denied = denied.clone();
                let mut reader = client_reader(&mut client);
                move || {
                    while let Some(msg) = reader() {
                        if msg.action == event_action::MESSAGE_DENIED {
                            denied.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            });
            let started = Instant::now();
            while !stop.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(20) {
                emit(&mut client, "news/x");
                sent.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(2));
            }
            drop(client);
            let _ = reader.join();
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(denied.load(Ordering::SeqCst), 0, "open rules deny nothing");
    std::fs::write(
        dir.join("permissions.yml"),
        OPEN_RULES.replace(
            "event:\n  \"*\":\n    publish: true\n    subscribe: true\n    listen: true\n",
            "event:\n  \"*\":\n    publish: true\n    subscribe: true\n    listen: true\n  \"news/*\":\n    publish: false\n",
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("users.yml"),
        format!("{USERS}carol:\n  password: secret\n"),
    )
    .unwrap();
    let (status, body) = admin(port, "POST", "/admin/reload", "");
    assert_eq!(status, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while denied.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::SeqCst);
    publisher.join().expect("publisher");
    assert!(
        denied.load(Ordering::SeqCst) > 0,
        "the new rule is in force"
    );
    assert!(
        sent.load(Ordering::SeqCst) > 50,
        "the load ran through the reload"
    );
    let _carol = login(port, "carol");

    // A reload that fails keeps the old rules and says why.
    std::fs::write(
        dir.join("permissions.yml"),
        "event:\n  \"*\":\n    publish: \"user.id ===\"\n",
    )
    .unwrap();
    let (status, body) = admin(port, "POST", "/admin/reload", "");
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("permissions"),
        "{body}"
    );
    let mut checker = login(port, "bob");
    emit(&mut checker, "news/y");
    assert_eq!(
        checker.expect_message().action,
        event_action::MESSAGE_DENIED,
        "the old rules stay"
    );

    // Settings.
    let (status, settings) = admin(port, "GET", "/admin/settings", "");
    assert_eq!(
        (status, settings["rpcAckTimeout"].as_u64()),
        (200, Some(1000))
    );
    let (status, settings) = admin(
        port,
        "POST",
        "/admin/settings",
        r#"{"rpcAckTimeout":250,"maxAuthAttempts":5}"#,
    );
    assert_eq!(status, 200, "{settings}");
    assert_eq!(settings["rpcAckTimeout"], 250);
    let (_, again) = admin(port, "GET", "/admin/settings", "");
    assert_eq!(again["maxAuthAttempts"], 5);
    let (status, refused) = admin(port, "POST", "/admin/settings", r#"{"port":1}"#);
    assert_eq!(status, 400, "{refused}");
    assert_eq!(admin(port, "DELETE", "/admin/settings", "").0, 405);
    assert_eq!(admin(port, "GET", "/admin/nothing", "").0, 404);
}

/// A reader of `client`'s messages on its own socket (a clone), `None` once it closes.
fn client_reader(client: &mut RawClient) -> impl FnMut() -> Option<Message> {
    let mut copy = client.try_clone();
    move || match copy.receive_quietly() {
        Some(Received::Message(m)) => Some(*m),
        _ => None,
    }
}

#[test]
fn the_dashboard_numbers_move() {
    let (hook_port, _hooks) = webhook_receiver();
    let dir = setup("admin-dashboard", hook_port);
    let config = dir.join("config.yml");
    let server = Server::start(&["--cores", "2", "-c", config.to_str().unwrap()]);
    let port = server.port;
    let page = http(port, "GET", "/dashboard", &[], b"");
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(page.text().contains("corestream"));
    let first: Value = http(port, "GET", "/dashboard/stats", &[], b"").json();
    let mut client = login(port, "alice");
    for _ in 0..10 {
        emit(&mut client, "d/x");
    }
    std::thread::sleep(Duration::from_millis(200));
    let second: Value = http(port, "GET", "/dashboard/stats", &[], b"").json();
    assert!(second["time"].as_u64() >= first["time"].as_u64());
    assert_eq!(second["messagesIn"]["EVENT"].as_u64(), Some(10), "{second}");
    assert_eq!(second["perShard"].as_array().map(Vec::len), Some(2));
    assert_eq!(http(port, "POST", "/dashboard/stats", &[], b"").status, 415);
}
