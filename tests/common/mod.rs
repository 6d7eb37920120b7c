//! Test support: start the real binary on a free port, and a small blocking WebSocket client
//! that speaks deepstream's protocol byte by byte.
#![allow(dead_code)]

pub mod fault_proxy;
pub mod nats;
pub mod postgres;

use bytes::{Bytes, BytesMut};
use corestream::protocol::message::{auth_action, connection_action, topic, Message};
use corestream::protocol::ws;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running corestream, stopped (by its PID) when dropped.
pub struct Server {
    child: Child,
    pub port: u16,
}

impl Server {
    /// Sockets the server has in epoll sets (its parked connections), from /proc.
    #[allow(dead_code)]
    pub fn sockets_in_epoll(&self) -> usize {
        let dir = format!("/proc/{}/fdinfo", self.child.id());
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| std::fs::read_to_string(entry.path()).ok())
            .map(|info| info.lines().filter(|l| l.starts_with("tfd:")).count())
            .sum()
    }

    pub fn start(args: &[&str]) -> Server {
        Server::spawn(args, Stdio::inherit())
    }

    /// Starts it on `port` (again, after it was killed: the port may take a moment to free).
    pub fn start_on(port: u16, args: &[&str]) -> Server {
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        Server::spawn_on(port, args, Stdio::inherit())
    }

    /// Starts it with its log lines (stderr) sent to the returned channel.
    pub fn start_logging(args: &[&str]) -> (Server, std::sync::mpsc::Receiver<String>) {
        let mut server = Server::spawn(args, Stdio::piped());
        let stderr = server.child.stderr.take().expect("stderr");
        let (lines, received) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("{line}");
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        (server, received)
    }

    fn spawn(args: &[&str], stderr: Stdio) -> Server {
        Server::spawn_on(0, args, stderr)
    }

    fn spawn_on(port: u16, args: &[&str], stderr: Stdio) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_corestream"))
            .arg("start")
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start corestream");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read listening line");
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        Server { child, port }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/deepstream", self.port)
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let status = self.child.wait().expect("wait");
        std::mem::forget(self);
        status
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The steering repository's shared folder beside this one, when it is there. A plain clone
/// has none; CI (CI set) always has it, so there its absence is an error, not a skip.
pub fn shared_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared");
    if dir.join("conformance/run.sh").exists() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set but ../shared/conformance/run.sh is missing beside the repo"
    );
    println!("skipped: ../shared is not beside this repository (a plain clone)");
    None
}

/// Runs the project's own real-client tests (tests/node/run.sh) against `url`; `files` are
/// relative to tests/node (all of client/ when empty). Returns node's output.
pub fn run_client_tests(url: &str, files: &[&str]) -> String {
    run_client_tests_with(url, files, &[])
}

/// `run_client_tests` with extra environment variables for node (a CA file, say).
pub fn run_client_tests_with(url: &str, files: &[&str], env: &[(&str, &str)]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node/run.sh");
    let output = Command::new("bash")
        .arg(script)
        .arg(url)
        .args(files)
        .envs(env.iter().copied())
        .output()
        .expect("run the client tests");
    node_tests_passed(&output, &format!("client tests against {url}"))
}

/// node's test runner output of a run that must have passed every test; its stdout.
pub fn node_tests_passed(output: &std::process::Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success() && stdout.contains("# fail 0"),
        "{what} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// A raw deepstream client over a blocking socket.
pub struct RawClient {
    stream: TcpStream,
    buf: BytesMut,
}

#[derive(Debug)]
pub enum Received {
    Message(Box<Message>),
    Close(u16),
    Other(u8),
}

impl RawClient {
    pub fn connect(port: u16) -> RawClient {
        RawClient::connect_path(port, "/deepstream")
    }

    /// Connects to the WebSocket endpoint at `path`.
    pub fn connect_path(port: u16, path: &str) -> RawClient {
        RawClient::try_connect_path(port, path).expect("connect")
    }

    /// Connects to the WebSocket endpoint at `path`; the error if the server is not there or
    /// does not upgrade.
    pub fn try_connect_path(port: u16, path: &str) -> std::io::Result<RawClient> {
        let mut stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.set_nodelay(true)?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
        stream.write_all(request.as_bytes())?;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte)?;
            head.push(byte[0]);
        }
        if !head.starts_with(b"HTTP/1.1 101") {
            return Err(std::io::Error::other(
                String::from_utf8_lossy(&head).into_owned(),
            ));
        }
        Ok(RawClient {
            stream,
            buf: BytesMut::new(),
        })
    }

    /// Connects and logs in as `user`; `None` if the server is not there or did not accept.
    pub fn try_login(port: u16, user: &str) -> Option<RawClient> {
        let mut client = RawClient::try_connect_path(port, "/deepstream").ok()?;
        let challenge = Message::new(topic::CONNECTION, connection_action::CHALLENGE);
        let accepted = client.try_send(&challenge)
            && matches!(client.receive_quietly(), Some(Received::Message(m))
                if m.action == connection_action::ACCEPT);
        let auth = Message {
            data: Some(Bytes::from(format!(r#"{{"username":"{user}"}}"#))),
            ..Message::new(topic::AUTH, auth_action::REQUEST)
        };
        let logged_in = accepted
            && client.try_send(&auth)
            && matches!(client.receive_quietly(), Some(Received::Message(m))
                if m.action == auth_action::AUTH_SUCCESSFUL);
        logged_in.then_some(client)
    }

    /// Sends `msg`; false if the socket is gone.
    pub fn try_send(&mut self, msg: &Message) -> bool {
        let frame = ws::client_frame(ws::OP_BINARY, true, &msg.encode(), [1, 2, 3, 4]);
        self.stream.write_all(&frame).is_ok()
    }

    /// Connects, challenges and logs in as `user`.
    pub fn login(port: u16, user: &str) -> RawClient {
        let mut client = RawClient::connect(port);
        client.send(&Message::new(
            topic::CONNECTION,
            connection_action::CHALLENGE,
        ));
        assert_eq!(client.expect_message().action, connection_action::ACCEPT);
        client.send(&Message {
            data: Some(Bytes::from(format!(r#"{{"username":"{user}"}}"#))),
            ..Message::new(topic::AUTH, auth_action::REQUEST)
        });
        assert_eq!(client.expect_message().action, auth_action::AUTH_SUCCESSFUL);
        client
    }

    /// Connects, challenges and logs in with `auth` (JSON text), which must succeed.
    pub fn login_with(port: u16, auth: &str) -> RawClient {
        let (mut client, reply) = RawClient::try_auth(port, auth);
        assert_eq!(reply.action, auth_action::AUTH_SUCCESSFUL, "{reply:?}");
        client.buf.clear();
        client
    }

    /// Connects, challenges and sends `auth` (JSON text); returns the server's answer.
    pub fn auth(port: u16, auth: &str) -> Message {
        RawClient::try_auth(port, auth).1
    }

    fn try_auth(port: u16, auth: &str) -> (RawClient, Message) {
        let mut client = RawClient::connect(port);
        client.send(&Message::new(
            topic::CONNECTION,
            connection_action::CHALLENGE,
        ));
        client.expect_message();
        client.send(&Message {
            data: Some(Bytes::from(auth.to_string())),
            ..Message::new(topic::AUTH, auth_action::REQUEST)
        });
        let reply = client.expect_message();
        (client, reply)
    }

    pub fn send(&mut self, msg: &Message) {
        self.send_raw(ws::OP_BINARY, &msg.encode());
    }

    pub fn send_raw(&mut self, opcode: u8, payload: &[u8]) {
        let frame = ws::client_frame(opcode, true, payload, [1, 2, 3, 4]);
        self.stream.write_all(&frame).unwrap();
    }

    /// The next frame from the server.
    pub fn receive(&mut self) -> Received {
        loop {
            if self.buf.len() >= 2 {
                let len = (self.buf[1] & 0x7f) as usize;
                let (header, len) = match len {
                    126 => (4, u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize),
                    127 => (
                        10,
                        u64::from_be_bytes(self.buf[2..10].try_into().unwrap()) as usize,
                    ),
                    n => (2, n),
                };
                if self.buf.len() >= header + len {
                    let opcode = self.buf[0] & 0x0f;
                    let frame = self.buf.split_to(header + len).freeze().slice(header..);
                    return match opcode {
                        ws::OP_BINARY => Received::Message(Box::new(
                            Message::parse(&frame).expect("server sent a bad message"),
                        )),
                        ws::OP_CLOSE => Received::Close(u16::from_be_bytes([frame[0], frame[1]])),
                        other => Received::Other(other),
                    };
                }
            }
            let mut chunk = [0u8; 65536];
            let n = self.stream.read(&mut chunk).expect("read from server");
            assert!(n > 0, "server closed the socket without a close frame");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    pub fn expect_message(&mut self) -> Message {
        match self.receive() {
            Received::Message(m) => *m,
            Received::Close(code) => panic!("closed with {code}"),
            Received::Other(op) => panic!("unexpected opcode {op}"),
        }
    }

    pub fn expect_close(&mut self) -> u16 {
        loop {
            match self.receive() {
                Received::Close(code) => return code,
                Received::Message(_) | Received::Other(_) => {}
            }
        }
    }
}

impl RawClient {
    /// A second handle on the same socket (for reading on another thread).
    pub fn try_clone(&self) -> RawClient {
        RawClient {
            stream: self.stream.try_clone().expect("clone socket"),
            buf: BytesMut::new(),
        }
    }

    /// How long a read waits before it fails (5 s from the start).
    pub fn set_timeout(&self, timeout: Duration) {
        self.stream
            .set_read_timeout(Some(timeout))
            .expect("read timeout");
    }

    /// The next frame, or `None` once the socket is closed or quiet past its read timeout.
    pub fn receive_quietly(&mut self) -> Option<Received> {
        loop {
            if self.whole_frame_buffered() {
                return Some(self.receive());
            }
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// The next frame; `Ok(None)` if the socket is quiet past its read timeout, an error once
    /// it is closed.
    pub fn try_receive(&mut self) -> std::io::Result<Option<Received>> {
        loop {
            if self.whole_frame_buffered() {
                return Ok(Some(self.receive()));
            }
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None)
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether the buffer holds at least one whole frame.
    fn whole_frame_buffered(&self) -> bool {
        let buf = &self.buf;
        if buf.len() < 2 {
            return false;
        }
        let (header, len): (usize, usize) = match buf[1] & 0x7f {
            126 if buf.len() >= 4 => (4, u16::from_be_bytes([buf[2], buf[3]]) as usize),
            127 if buf.len() >= 10 => (
                10,
                u64::from_be_bytes(buf[2..10].try_into().unwrap_or([0xff; 8])) as usize,
            ),
            126 | 127 => return false,
            n => (2, n as usize),
        };
        buf.len() >= header.saturating_add(len)
    }

    /// The next frame as it came: (opcode, payload), for endpoints that are not protobuf.
    pub fn receive_frame(&mut self) -> (u8, Bytes) {
        loop {
            if self.buf.len() >= 2 {
                let (header, len) = match self.buf[1] & 0x7f {
                    126 if self.buf.len() >= 4 => {
                        (4, u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize)
                    }
                    127 if self.buf.len() >= 10 => (
                        10,
                        u64::from_be_bytes(self.buf[2..10].try_into().unwrap()) as usize,
                    ),
                    126 | 127 => (usize::MAX / 2, 0),
                    n => (2, n as usize),
                };
                if self.buf.len() >= header + len {
                    let opcode = self.buf[0] & 0x0f;
                    let frame = self.buf.split_to(header + len).freeze().slice(header..);
                    return (opcode, frame);
                }
            }
            let mut chunk = [0u8; 65536];
            let n = self.stream.read(&mut chunk).expect("read from server");
            assert!(n > 0, "server closed the socket");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    pub fn send_raw_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Writes a frame the server may refuse half-way (it closes as soon as it sees the size).
    pub fn send_raw_lenient(&mut self, opcode: u8, payload: &[u8]) {
        let frame = ws::client_frame(opcode, true, payload, [1, 2, 3, 4]);
        let _ = self.stream.write_all(&frame);
    }
}

/// Whether a service the connector tests need answers on loopback. Without it a test says it
/// skipped; under CI (`CI` or `CORESTREAM_REQUIRE_SERVICES` set) its absence fails the test.
pub fn service(name: &str, port: u16) -> bool {
    let up = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(1),
    )
    .is_ok();
    found_or_skipped(up, &format!("{name} does not answer on 127.0.0.1:{port}"))
}

/// Whether what a test needs is `found`; if not, the test says it skipped (`missing` says what
/// is not there), and under CI (`CI` or `CORESTREAM_REQUIRE_SERVICES` set) it fails.
pub fn found_or_skipped(found: bool, missing: &str) -> bool {
    if !found {
        assert!(
            std::env::var_os("CI").is_none()
                && std::env::var_os("CORESTREAM_REQUIRE_SERVICES").is_none(),
            "{missing}, and CI needs it"
        );
        println!("skipped: {missing}");
    }
    found
}

/// Runs one SQL statement on the machine's PostgreSQL (database `test`); its output, trimmed.
pub fn psql(statement: &str) -> String {
    let output = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "test",
            "-qtA",
            "-c",
        ])
        .arg(statement)
        .output()
        .expect("psql");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// A connection to the machine's Redis (db 0).
pub fn redis_connection() -> redis::Connection {
    redis::Client::open("redis://127.0.0.1:6379/0")
        .and_then(|c| c.get_connection())
        .expect("redis")
}

/// Deletes the machine's Redis keys that start with `prefix`.
pub fn redis_delete_prefix(prefix: &str) {
    let mut c = redis_connection();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query(&mut c)
        .unwrap_or_default();
    for key in keys {
        let _: Result<(), _> = redis::cmd("DEL").arg(key).query(&mut c);
    }
}

/// tests/node with its packages installed.
pub fn node_home() -> PathBuf {
    npm_home("tests/node", "@deepstream/client")
}

/// A folder of the repository with its npm packages installed (`npm ci` once, when `package`
/// is missing from its node_modules).
pub fn npm_home(folder: &str, package: &str) -> PathBuf {
    let home = Path::new(env!("CARGO_MANIFEST_DIR")).join(folder);
    // Tests in parallel threads and processes install the same folder: one `npm ci` at a time
    // (flock), and a marker written after it succeeds, since a half-installed node_modules
    // already holds some packages.
    let marker = home.join("node_modules/.corestream-installed");
    if !marker.exists() {
        let script = format!(
            "test -e node_modules/.corestream-installed || {{ npm ci --no-audit --no-fund \
             --loglevel=error && test -d node_modules/{package} && \
             touch node_modules/.corestream-installed; }}"
        );
        let ok = Command::new("flock")
            .arg(home.join(".npm-install.lock"))
            .args(["sh", "-c", &script])
            .current_dir(&home)
            .status()
            .expect("flock and npm")
            .success();
        assert!(ok, "npm ci in {folder} failed");
    }
    home
}

/// A test's PostgreSQL schema `NAME` and Redis keys `NAME:*`, removed when dropped (also when
/// the test fails).
pub struct Scratch(pub String);

impl Drop for Scratch {
    fn drop(&mut self) {
        psql(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.0));
        redis_delete_prefix(&format!("{}:", self.0));
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The reference deepstream (../shared/peer), stopped (by its PID) when dropped.
pub struct Reference {
    child: Child,
    pub port: u16,
}

impl Reference {
    /// Starts it on a free port with `rest` as its config after `httpServer` (endpoints, auth,
    /// plugins), from `home` (its install; `PEER_HOME`) when given. Files the config loads
    /// are read relative to `dir`, where the config is written.
    pub fn start(shared: &Path, home: Option<&Path>, dir: &Path, rest: &str) -> Reference {
        let port = free_port();
        let config = dir.join("reference.yml");
        std::fs::write(
            &config,
            format!(
                "serverName: reference\nshowLogo: false\nlogger:\n  type: default\n  options:\n    \
                 colors: false\n    logLevel: WARN\nhttpServer:\n  type: default\n  options:\n    \
                 host: 127.0.0.1\n    port: {port}\n{rest}"
            ),
        )
        .expect("config");
        let mut command = Command::new("bash");
        command
            .arg(shared.join("peer/run.sh"))
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let Some(home) = home {
            command.env("PEER_HOME", home);
        }
        let child = command.spawn().expect("reference");
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the reference did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        // Its plugins connect after the port opens.
        std::thread::sleep(Duration::from_millis(1500));
        Reference { child, port }
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/deepstream", self.port)
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP response as a test reads it.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).trim_end().to_string()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// Reads one response from `reader`: by `Content-Length`, chunks, or to the end.
pub fn read_response(reader: &mut impl BufRead) -> std::io::Result<HttpResponse> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line: {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((n, v)) = line.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if status == 204 || status == 100 {
    } else if let Some(len) = find("content-length") {
        body.resize(len.parse().unwrap_or(0), 0);
        reader.read_exact(&mut body)?;
    } else if find("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let size = usize::from_str_radix(size.trim(), 16).map_err(std::io::Error::other)?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        reader.read_to_end(&mut body)?;
    }
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

/// One HTTP request on a fresh connection (`Connection: close`).
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("send head");
    // A server may answer (413) before it has the whole body, and stop reading it.
    let _ = stream.write_all(body);
    read_response(&mut BufReader::new(stream)).expect("response")
}

/// A JSON POST to `path`.
pub fn post_json(port: u16, path: &str, body: &str) -> HttpResponse {
    http(
        port,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
}

/// Waits until `check` holds (at most 5 s).
pub fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An example's binary beside the test's: `cargo test` builds examples in the same profile; a
/// run of one test alone (`--test NAME`) builds it here.
pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary");
    let profile = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let example = profile.join("examples").join(name);
    if !example.is_file() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let release = profile.ends_with("release");
        let status = Command::new(cargo)
            .args(["build", "--example", name])
            .args(release.then_some("--release"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo build --example");
        assert!(status.success(), "cargo build --example {name}");
    }
    example
}

/// A running example, stopped (by its PID) when dropped.
pub struct Example {
    child: Child,
    pub port: u16,
}

impl Example {
    /// Starts example `name` with `--port 0` and `args`; its port is the one it prints in
    /// `listening on HOST:PORT`.
    pub fn start(name: &str, args: &[&str]) -> Example {
        let mut child = Command::new(example(name))
            .args(["--port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the example");
        let stdout = child.stdout.take().expect("stdout");
        let (found, port) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(at) = line.strip_prefix("listening on ") {
                    let port = at.rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
                    let _ = found.send(port);
                }
            }
        });
        let port = port
            .recv_timeout(Duration::from_secs(20))
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("{name} did not print `listening on HOST:PORT`"));
        Example { child, port }
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
