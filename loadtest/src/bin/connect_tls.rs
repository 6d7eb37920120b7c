//! Connect + login over TLS against plain, on the same server build: starts corestream (pinned
//! to one cpu) twice, once with a generated certificate, and logs in over and over from threads
//! on another cpu for a bounded time. Prints logins/s and the server's CPU time per login.
//! Usage: connect_tls --server target/release/corestream [--seconds 5] [--threads 4]
//!        [--server-cpu 0] [--client-cpu 1]

use corestream::protocol::message::{auth_action, connection_action, topic, Message};
use corestream::protocol::ws;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "../tls_bench.rs"]
mod tls_bench;
use tls_bench::arg;

fn server_cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// One login on an open stream: upgrade, challenge, auth; true once AUTH_SUCCESSFUL arrived.
fn login(stream: &mut (impl Read + Write)) -> bool {
    let request = "GET /deepstream HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return false;
        }
        if line == "\r\n" {
            break;
        }
    }
    let stream = reader.into_inner();
    let send = |s: &mut dyn Write, m: &Message| {
        let frame = ws::client_frame(ws::OP_BINARY, true, &m.encode(), [1, 2, 3, 4]);
        s.write_all(&frame).is_ok()
    };
    let read_message = |s: &mut dyn Read| -> Option<Message> {
        let mut head = [0u8; 2];
        s.read_exact(&mut head).ok()?;
        let len = usize::from(head[1] & 0x7f);
        let mut payload = vec![0; len];
        s.read_exact(&mut payload).ok()?;
        Message::parse(&bytes::Bytes::from(payload)).ok()
    };
    if !send(
        stream,
        &Message::new(topic::CONNECTION, connection_action::CHALLENGE),
    ) {
        return false;
    }
    if read_message(stream).is_none() {
        return false;
    }
    let auth = Message {
        data: Some(bytes::Bytes::from_static(br#"{"username":"u"}"#)),
        ..Message::new(topic::AUTH, auth_action::REQUEST)
    };
    send(stream, &auth)
        && read_message(stream).is_some_and(|m| m.action == auth_action::AUTH_SUCCESSFUL)
}

fn run(
    server: &str,
    config: Option<&std::path::Path>,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> (f64, f64) {
    let seconds: u64 = arg("--seconds", "5").parse().unwrap_or(5);
    let threads: usize = arg("--threads", "4").parse().unwrap_or(4);
    let mut command = Command::new("taskset");
    command
        .args([
            "-c",
            &arg("--server-cpu", "0"),
            server,
            "start",
            "--cores",
            "1",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(config) = config {
        command.arg("-c").arg(config);
    }
    let mut child = command.spawn().expect("server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("listening");
    let port: u16 = line
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let logins = Arc::new(AtomicU64::new(0));
    let cpu_before = server_cpu_seconds(child.id());
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (logins, tls) = (logins.clone(), tls.clone());
            std::thread::spawn(move || {
                while Instant::now() < deadline {
                    let Ok(tcp) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
                        continue;
                    };
                    let _ = tcp.set_nodelay(true);
                    let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
                    let ok = match &tls {
                        Some(config) => {
                            let name =
                                rustls::pki_types::ServerName::try_from("localhost").expect("name");
                            let conn =
                                rustls::ClientConnection::new(config.clone(), name).expect("tls");
                            let mut stream = rustls::StreamOwned::new(conn, tcp);
                            login(&mut stream)
                        }
                        None => {
                            let mut tcp = tcp;
                            login(&mut tcp)
                        }
                    };
                    if ok {
                        logins.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = server_cpu_seconds(child.id()) - cpu_before;
    let _ = child.kill();
    let _ = child.wait();
    let n = logins.load(Ordering::Relaxed) as f64;
    (n / elapsed, cpu / n.max(1.0) * 1e6)
}

fn main() {
    let server = arg("--server", "target/release/corestream");
    let dir = std::env::temp_dir().join(format!("corestream-tls-bench-{}", std::process::id()));
    let (config, client) = tls_bench::certificate_and_client(&dir);
    let client_cpu = arg("--client-cpu", "1");
    // The loader's own threads on their cpu.
    let _ = Command::new("taskset")
        .args(["-p", "-c", &client_cpu, &std::process::id().to_string()])
        .output();
    let (plain_rate, plain_cpu) = run(&server, None, None);
    let (tls_rate, tls_cpu) = run(&server, Some(&config), Some(client));
    println!("| | logins/s | server CPU per login |");
    println!("|---|---|---|");
    println!("| plain ws:// | {plain_rate:.0} | {plain_cpu:.0} µs |");
    println!("| TLS wss:// | {tls_rate:.0} | {tls_cpu:.0} µs |");
    println!(
        "| TLS / plain | {:.2}x | {:.2}x |",
        tls_rate / plain_rate.max(1e-9),
        tls_cpu / plain_cpu.max(1e-9)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
