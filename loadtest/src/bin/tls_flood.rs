//! Other clients' latency while TLS handshakes flood the server (issue 28, defect 6): a wss
//! client emits an event to another wss client every 2 ms and times its arrival, first alone,
//! then while `--flooders` threads open TLS connections as fast as they can (a full handshake
//! each, then close, as `openssl s_time -new` does), then alone again. Prints each phase's
//! p50/p99/max and the handshakes done.
//! Usage: tls_flood --server target/release/corestream [--seconds 4] [--flooders 6]
//!        [--client-cpu 1]

use corestream::protocol::message::{auth_action, connection_action, event_action, topic, Message};
use corestream::protocol::ws;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

type Tls = rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>;

#[path = "../tls_bench.rs"]
mod tls_bench;
use tls_bench::arg;

fn open(port: u16, config: &Arc<rustls::ClientConfig>) -> Option<Tls> {
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    let _ = tcp.set_nodelay(true);
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
    let name = rustls::pki_types::ServerName::try_from("localhost").ok()?;
    let conn = rustls::ClientConnection::new(config.clone(), name).ok()?;
    Some(rustls::StreamOwned::new(conn, tcp))
}

fn send(stream: &mut Tls, msg: &Message) {
    let frame = ws::client_frame(ws::OP_BINARY, true, &msg.encode(), [1, 2, 3, 4]);
    stream.write_all(&frame).expect("send");
}

fn receive(stream: &mut Tls) -> Message {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).expect("frame head");
    let mut len = usize::from(head[1] & 0x7f);
    if len == 126 {
        let mut ext = [0u8; 2];
        stream.read_exact(&mut ext).expect("length");
        len = usize::from(u16::from_be_bytes(ext));
    }
    let mut payload = vec![0; len];
    stream.read_exact(&mut payload).expect("payload");
    Message::parse(&bytes::Bytes::from(payload)).expect("message")
}

/// A logged-in wss client.
fn client(port: u16, config: &Arc<rustls::ClientConfig>) -> Tls {
    let mut stream = open(port, config).expect("connect");
    let request = "GET /deepstream HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    stream.write_all(request.as_bytes()).expect("upgrade");
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).expect("head") > 0, "closed");
        if line == "\r\n" {
            break;
        }
    }
    let mut stream = reader.into_inner();
    send(
        &mut stream,
        &Message::new(topic::CONNECTION, connection_action::CHALLENGE),
    );
    receive(&mut stream);
    send(
        &mut stream,
        &Message {
            data: Some(bytes::Bytes::from_static(br#"{"username":"u"}"#)),
            ..Message::new(topic::AUTH, auth_action::REQUEST)
        },
    );
    assert_eq!(receive(&mut stream).action, auth_action::AUTH_SUCCESSFUL);
    stream
}

/// Event round trips every 2 ms for `seconds`: the latencies in µs, sorted.
fn measure(sender: &mut Tls, receiver: &mut Tls, seconds: u64) -> Vec<u64> {
    let mut latencies = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let emit = Message {
        name: Some(bytes::Bytes::from_static(b"latency")),
        data: Some(bytes::Bytes::from_static(b"1")),
        ..Message::new(topic::EVENT, event_action::EMIT)
    };
    while Instant::now() < deadline {
        let sent = Instant::now();
        send(sender, &emit);
        let got = receive(receiver);
        assert_eq!(got.action, event_action::EMIT);
        latencies.push(sent.elapsed().as_micros() as u64);
        std::thread::sleep(Duration::from_millis(2));
    }
    latencies.sort_unstable();
    latencies
}

fn row(phase: &str, latencies: &[u64], handshakes: u64, seconds: u64) {
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    println!(
        "| {phase} | {} | {} µs | {} µs | {} µs | {:.0} |",
        latencies.len(),
        at(0.5),
        at(0.99),
        latencies[latencies.len() - 1],
        handshakes as f64 / seconds as f64
    );
}

fn main() {
    let server = arg("--server", "target/release/corestream");
    let seconds: u64 = arg("--seconds", "4").parse().unwrap_or(4);
    let flooders: usize = arg("--flooders", "6").parse().unwrap_or(6);
    let dir = std::env::temp_dir().join(format!("corestream-tls-flood-{}", std::process::id()));
    let (config, tls) = tls_bench::certificate_and_client(&dir);
    // The shard runs on cpu 0 (`--cores 1`); the loader's threads on `--client-cpu`, so the
    // flood's own client-side crypto does not compete with the shard (an attacker's would not).
    let _ = Command::new("taskset")
        .args([
            "-p",
            "-c",
            &arg("--client-cpu", "1"),
            &std::process::id().to_string(),
        ])
        .output();
    let mut child = Command::new(&server)
        .args([
            "start",
            "--cores",
            "1",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "-c",
        ])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("server");
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
    let mut receiver = client(port, &tls);
    let mut sender = client(port, &tls);
    send(
        &mut receiver,
        &Message {
            correlation_id: Some(bytes::Bytes::from_static(b"1")),
            names: vec![bytes::Bytes::from_static(b"latency")],
            ..Message::new(topic::EVENT, event_action::SUBSCRIBE)
        },
    );
    receive(&mut receiver);
    println!("| phase | round trips | p50 | p99 | max | handshakes/s |");
    println!("|---|---|---|---|---|---|");
    row(
        "alone",
        &measure(&mut sender, &mut receiver, seconds),
        0,
        seconds,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..flooders)
        .map(|_| {
            let (stop, done, tls) = (stop.clone(), done.clone(), tls.clone());
            std::thread::spawn(move || {
                // Below the measuring client, which shares their cpu: its latency must be the
                // server's, not its wait behind them.
                // SAFETY: setpriority on this thread's own id; no memory is touched.
                unsafe {
                    libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 10);
                }
                let deadline = Instant::now() + Duration::from_secs(seconds + 5);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let Some(mut stream) = open(port, &tls) else {
                        continue;
                    };
                    let (conn, tcp) = (&mut stream.conn, &mut stream.sock);
                    let mut ok = true;
                    while conn.is_handshaking() && ok {
                        ok = conn.complete_io(tcp).is_ok();
                    }
                    if ok {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let before = done.load(Ordering::Relaxed);
    let flooded = measure(&mut sender, &mut receiver, seconds);
    row(
        &format!("{flooders} flooders"),
        &flooded,
        done.load(Ordering::Relaxed) - before,
        seconds,
    );
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    row(
        "alone again",
        &measure(&mut sender, &mut receiver, seconds),
        0,
        seconds,
    );
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
