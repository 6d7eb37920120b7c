//! Soak test: starts a corestream, runs a mixed load against it for a bounded time (records
//! with write acks, events, RPC, presence, listening, connection churn, a slow consumer, garbage
//! frames), then checks that it survived, gave back its memory and descriptors, that every
//! acknowledged write reads back, and that every acknowledged subscriber got every event.
//!
//! `cargo run --release -p corestream-load --bin soak -- --server target/release/corestream
//! --seconds 600`. Not part of `cargo test`: it runs for minutes.

use bytes::{Bytes, BytesMut};
use clap::Parser;
use corestream::protocol::message::{
    auth_action, connection_action, event_action as ea, presence_action as pa, record_action as ra,
    rpc_action, topic, Message,
};
use corestream::protocol::ws;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// The corestream binary to start.
    #[arg(long, default_value = "target/release/corestream")]
    server: String,
    /// How long the load runs.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Shards.
    #[arg(long, default_value_t = 2)]
    cores: usize,
}

/// A blocking deepstream client.
struct Client {
    stream: TcpStream,
    buf: BytesMut,
    /// When it last sent anything: the server cuts connections silent for two heartbeats.
    last_sent: Instant,
}

impl Client {
    fn connect(port: u16) -> std::io::Result<Client> {
        let mut stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_nodelay(true)?;
        stream.write_all(b"GET /deepstream HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")?;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte)?;
            head.push(byte[0]);
        }
        if !head.starts_with(b"HTTP/1.1 101") {
            return Err(std::io::Error::other(
                String::from_utf8_lossy(&head).to_string(),
            ));
        }
        Ok(Client {
            stream,
            buf: BytesMut::new(),
            last_sent: Instant::now(),
        })
    }

    fn login(port: u16, user: &str) -> std::io::Result<Client> {
        let mut client = Client::connect(port)?;
        client.send(&Message::new(
            topic::CONNECTION,
            connection_action::CHALLENGE,
        ))?;
        client.expect(topic::CONNECTION, connection_action::ACCEPT)?;
        client.send(&Message {
            data: Some(Bytes::from(format!(r#"{{"username":"{user}"}}"#))),
            ..Message::new(topic::AUTH, auth_action::REQUEST)
        })?;
        client.expect(topic::AUTH, auth_action::AUTH_SUCCESSFUL)?;
        Ok(client)
    }

    fn send(&mut self, msg: &Message) -> std::io::Result<()> {
        self.send_raw(ws::OP_BINARY, &msg.encode())
    }

    fn send_raw(&mut self, opcode: u8, payload: &[u8]) -> std::io::Result<()> {
        self.last_sent = Instant::now();
        self.stream
            .write_all(&ws::client_frame(opcode, true, payload, [7, 1, 7, 1]))
    }

    /// A ping now and then, as the real client sends them, for clients that only listen.
    fn keepalive(&mut self) -> std::io::Result<()> {
        if self.last_sent.elapsed() >= Duration::from_secs(10) {
            self.send(&Message::new(topic::CONNECTION, connection_action::PING))?;
        }
        Ok(())
    }

    /// The next message; an error for a close frame or a closed socket.
    fn next(&mut self) -> std::io::Result<Message> {
        loop {
            if self.buf.len() >= 2 {
                let (header, len) = match self.buf[1] & 0x7f {
                    126 if self.buf.len() >= 4 => (
                        4,
                        usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]])),
                    ),
                    127 if self.buf.len() >= 10 => {
                        let mut n = [0u8; 8];
                        n.copy_from_slice(&self.buf[2..10]);
                        (10, u64::from_be_bytes(n) as usize)
                    }
                    126 | 127 => (usize::MAX, 0),
                    n => (2, usize::from(n)),
                };
                if header != usize::MAX && self.buf.len() >= header + len {
                    let opcode = self.buf[0] & 0x0f;
                    let frame = self.buf.split_to(header + len).freeze().slice(header..);
                    match opcode {
                        ws::OP_BINARY => {
                            return Message::parse(&frame)
                                .map_err(|e| std::io::Error::other(format!("{e:?}")))
                        }
                        ws::OP_CLOSE => return Err(std::io::Error::other("closed")),
                        _ => continue,
                    }
                }
            }
            let mut chunk = [0u8; 65536];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Skips messages until one of this topic and action.
    fn expect(&mut self, topic: i32, action: i32) -> std::io::Result<Message> {
        loop {
            let msg = self.next()?;
            if msg.topic == topic && msg.action == action {
                return Ok(msg);
            }
        }
    }
}

fn b(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

/// What the checks found; any count here fails the run.
#[derive(Default)]
struct Failures {
    lost_acks: AtomicU64,
    wrong_reads: AtomicU64,
    lost_events: AtomicU64,
    rpc_errors: AtomicU64,
    worker_errors: AtomicU64,
}

#[derive(Default)]
struct Counts {
    writes_acked: AtomicU64,
    events_delivered: AtomicU64,
    rpcs: AtomicU64,
    churned: AtomicU64,
    garbage: AtomicU64,
    listens: AtomicU64,
    presence: AtomicU64,
}

struct Shared {
    port: u16,
    stop: AtomicBool,
    failures: Failures,
    counts: Counts,
}

impl Shared {
    fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed)
    }
}

/// Writes records with acks; at the end every record reads back as the last acked write.
fn record_writer(shared: &Shared, id: usize) -> std::io::Result<()> {
    let mut client = Client::login(shared.port, &format!("writer{id}"))?;
    let names: Vec<String> = (0..50).map(|k| format!("soak/w{id}/{k}")).collect();
    let mut last = vec![None; names.len()];
    let mut n = 0u64;
    while shared.running() {
        let k = (n as usize) % names.len();
        let data = format!(r#"{{"n":{n},"pad":"{}"}}"#, "x".repeat((n % 200) as usize));
        client.send(&Message {
            name: Some(b(&names[k])),
            data: Some(b(&data)),
            version: Some(-1),
            is_write_ack: Some(true),
            correlation_id: Some(b(&n.to_string())),
            ..Message::new(topic::RECORD, ra::UPDATE)
        })?;
        let ack = client.next()?;
        if ack.action == ra::WRITE_ACKNOWLEDGEMENT {
            shared.counts.writes_acked.fetch_add(1, Ordering::Relaxed);
            last[k] = Some(data);
        } else {
            shared.failures.lost_acks.fetch_add(1, Ordering::Relaxed);
        }
        n += 1;
    }
    for (name, expected) in names.iter().zip(&last) {
        let Some(expected) = expected else { continue };
        client.send(&Message {
            name: Some(b(name)),
            ..Message::new(topic::RECORD, ra::READ)
        })?;
        let read = client.expect(topic::RECORD, ra::READ_RESPONSE)?;
        if read.data.as_deref() != Some(expected.as_bytes()) {
            shared.failures.wrong_reads.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// A subscriber acked on `name` must receive every event emitted after its ack, in order.
fn events(shared: &Shared, id: usize) -> std::io::Result<()> {
    let name = format!("soak/e/{id}");
    let mut subscriber = Client::login(shared.port, &format!("sub{id}"))?;
    subscriber.send(&Message {
        names: vec![b(&name)],
        correlation_id: Some(b("s")),
        ..Message::new(topic::EVENT, ea::SUBSCRIBE)
    })?;
    subscriber.expect(topic::EVENT, ea::SUBSCRIBE)?;
    let mut publisher = Client::login(shared.port, &format!("pub{id}"))?;
    let mut sent = 0u64;
    let mut received = 0u64;
    while shared.running() {
        for _ in 0..100 {
            publisher.send(&Message {
                name: Some(b(&name)),
                data: Some(b(&sent.to_string())),
                ..Message::new(topic::EVENT, ea::EMIT)
            })?;
            sent += 1;
        }
        while received < sent {
            subscriber.keepalive()?;
            let msg = subscriber.expect(topic::EVENT, ea::EMIT)?;
            if msg.data.as_deref() != Some(received.to_string().as_bytes()) {
                shared.failures.lost_events.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            received += 1;
            shared
                .counts
                .events_delivered
                .fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// A provider and a caller: every request is answered with its data plus one.
fn rpc(shared: &Shared, id: usize) -> std::io::Result<()> {
    let name = format!("soak/rpc/{id}");
    let mut provider = Client::login(shared.port, &format!("provider{id}"))?;
    provider.send(&Message {
        names: vec![b(&name)],
        correlation_id: Some(b("p")),
        ..Message::new(topic::RPC, rpc_action::PROVIDE)
    })?;
    provider.expect(topic::RPC, rpc_action::PROVIDE)?;
    let mut caller = Client::login(shared.port, &format!("caller{id}"))?;
    let mut n = 0u64;
    while shared.running() {
        let correlation = b(&format!("c{n}"));
        caller.send(&Message {
            name: Some(b(&name)),
            data: Some(b(&n.to_string())),
            correlation_id: Some(correlation.clone()),
            ..Message::new(topic::RPC, rpc_action::REQUEST)
        })?;
        let request = provider.expect(topic::RPC, rpc_action::REQUEST)?;
        for (action, data) in [
            (rpc_action::ACCEPT, None),
            (rpc_action::RESPONSE, Some(b(&(n + 1).to_string()))),
        ] {
            provider.send(&Message {
                name: request.name.clone(),
                correlation_id: request.correlation_id.clone(),
                data,
                ..Message::new(topic::RPC, action)
            })?;
        }
        let response = caller.expect(topic::RPC, rpc_action::RESPONSE);
        match response {
            Ok(r) if r.data.as_deref() == Some((n + 1).to_string().as_bytes()) => {
                shared.counts.rpcs.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                shared.failures.rpc_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        n += 1;
    }
    Ok(())
}

/// Connections that log in, subscribe, listen, query presence and vanish without a goodbye.
fn churn(shared: &Shared, id: usize) -> std::io::Result<()> {
    let mut n = 0u64;
    while shared.running() {
        let mut client = Client::login(shared.port, &format!("churn{id}-{}", n % 20))?;
        client.send(&Message {
            names: vec![b(&format!("soak/churn/{}", n % 50)), b("soak/shared")],
            correlation_id: Some(b("s")),
            ..Message::new(topic::RECORD, ra::SUBSCRIBECREATEANDREAD)
        })?;
        client.send(&Message {
            names: vec![b("writer0"), b("churn0-1")],
            correlation_id: Some(b("p")),
            ..Message::new(topic::PRESENCE, pa::SUBSCRIBE)
        })?;
        client.send(&Message::new(topic::PRESENCE, pa::QUERY_ALL))?;
        client.expect(topic::PRESENCE, pa::QUERY_ALL_RESPONSE)?;
        shared.counts.presence.fetch_add(1, Ordering::Relaxed);
        if n.is_multiple_of(4) {
            client.send(&Message {
                name: Some(b("^soak/churn/.*")),
                correlation_id: Some(b("l")),
                ..Message::new(topic::RECORD, ra::LISTEN)
            })?;
            shared.counts.listens.fetch_add(1, Ordering::Relaxed);
        }
        shared.counts.churned.fetch_add(1, Ordering::Relaxed);
        n += 1;
        drop(client);
    }
    Ok(())
}

/// A listener that accepts what it is offered while a subscriber comes and goes.
fn listening(shared: &Shared) -> std::io::Result<()> {
    let mut listener = Client::login(shared.port, "listener")?;
    listener.send(&Message {
        name: Some(b("^soak/l/.*")),
        correlation_id: Some(b("l")),
        ..Message::new(topic::EVENT, ea::LISTEN)
    })?;
    listener
        .stream
        .set_read_timeout(Some(Duration::from_millis(50)))?;
    let mut subscriber = Client::login(shared.port, "listen-subscriber")?;
    let mut n = 0u64;
    while shared.running() {
        // Each name gains its subscriber, then loses it: offers come again and again.
        let name = b(&format!("soak/l/{}", (n / 2) % 10));
        let action = if n.is_multiple_of(2) {
            ea::SUBSCRIBE
        } else {
            ea::UNSUBSCRIBE
        };
        subscriber.send(&Message {
            names: vec![name],
            correlation_id: Some(b(&n.to_string())),
            ..Message::new(topic::EVENT, action)
        })?;
        subscriber.expect(topic::EVENT, action)?;
        listener.keepalive()?;
        while let Ok(offer) = listener.next() {
            if offer.action == ea::SUBSCRIPTION_FOR_PATTERN_FOUND {
                listener.send(&Message {
                    action: ea::LISTEN_ACCEPT,
                    ..offer
                })?;
                shared.counts.listens.fetch_add(1, Ordering::Relaxed);
            }
        }
        n += 1;
    }
    Ok(())
}

/// Subscribes to a busy event and never reads: the server must cut it off, not buffer forever.
fn slow_consumer(shared: &Shared) -> std::io::Result<bool> {
    let mut slow = Client::login(shared.port, "slow")?;
    slow.send(&Message {
        names: vec![b("soak/e/0")],
        correlation_id: Some(b("s")),
        ..Message::new(topic::EVENT, ea::SUBSCRIBE)
    })?;
    slow.stream.set_read_timeout(Some(Duration::from_secs(1)))?;
    slow.stream.set_nonblocking(false)?;
    // It pings (so it is cut off for not reading, not for silence) but never reads.
    while shared.running() {
        if slow.keepalive().is_err() {
            return Ok(true);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // Now read: a cut-off connection ends with a close (or a reset) after what was queued.
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        match slow.next() {
            Ok(_) => {}
            Err(_) => return Ok(true),
        }
    }
    Ok(false)
}

/// Garbage frames, bad messages and hostile paths from a connection that logs in again
/// whenever the server closes it.
fn garbage(shared: &Shared) -> std::io::Result<()> {
    let mut n = 0u64;
    let mut client = Client::login(shared.port, "garbage")?;
    while shared.running() {
        let result = match n % 6 {
            0 => client.send_raw(ws::OP_BINARY, &[0xff, 0x00, 0x13, n as u8, 0x7f]),
            1 => client.send_raw(ws::OP_TEXT, b"E|S|garbage+"),
            2 => client.send(&Message {
                name: Some(b("soak/garbage")),
                path: Some(b(&"[65536]".repeat(50))),
                data: Some(b("1")),
                version: Some(-1),
                ..Message::new(topic::RECORD, ra::PATCH)
            }),
            3 => client.send(&Message {
                name: Some(b("soak/garbage")),
                data: Some(b("{\"a\":")),
                version: Some(-1),
                ..Message::new(topic::RECORD, ra::UPDATE)
            }),
            4 => client.send(&Message {
                name: Some(b("(((")),
                ..Message::new(topic::EVENT, ea::LISTEN)
            }),
            _ => client.send_raw(ws::OP_CLOSE, &999u16.to_be_bytes()),
        };
        shared.counts.garbage.fetch_add(1, Ordering::Relaxed);
        // Read what came back until quiet; a closed connection is replaced.
        client
            .stream
            .set_read_timeout(Some(Duration::from_millis(20)))?;
        let closed = result.is_err()
            || loop {
                match client.next() {
                    Ok(_) => {}
                    Err(e)
                        if e.kind() == std::io::ErrorKind::WouldBlock
                            || e.kind() == std::io::ErrorKind::TimedOut =>
                    {
                        break false
                    }
                    Err(_) => break true,
                }
            };
        if closed {
            client = Client::login(shared.port, "garbage")?;
        }
        n += 1;
    }
    Ok(())
}

/// One kind of load, run on its own thread.
type Worker = Box<dyn FnOnce(&Shared) -> std::io::Result<()> + Send>;

/// Resident memory (KiB) and open descriptors of a process.
fn usage(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    (rss, fds)
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let mut server = Command::new(&args.server)
        .args(["start", "--host", "127.0.0.1", "--port", "0", "--cores"])
        .arg(args.cores.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the server");
    let mut line = String::new();
    BufReader::new(server.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("listening line");
    let port: u16 = line
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let pid = server.id();
    // A first client warms up every shard's pools before the baseline is taken.
    drop(Client::login(port, "warmup"));
    std::thread::sleep(Duration::from_millis(500));
    let (rss_start, fds_start) = usage(pid);
    let shared = Arc::new(Shared {
        port,
        stop: AtomicBool::new(false),
        failures: Failures::default(),
        counts: Counts::default(),
    });
    let started = Instant::now();
    let mut workers: Vec<std::thread::JoinHandle<()>> = Vec::new();
    let spawn = |f: Worker| {
        let shared = shared.clone();
        std::thread::spawn(move || {
            if let Err(e) = f(&shared) {
                eprintln!("worker error: {e}");
                shared
                    .failures
                    .worker_errors
                    .fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    for id in 0..2 {
        workers.push(spawn(Box::new(move |s| record_writer(s, id))));
        workers.push(spawn(Box::new(move |s| events(s, id))));
        workers.push(spawn(Box::new(move |s| rpc(s, id))));
        workers.push(spawn(Box::new(move |s| churn(s, id))));
    }
    workers.push(spawn(Box::new(listening)));
    workers.push(spawn(Box::new(garbage)));
    let slow = {
        let shared = shared.clone();
        std::thread::spawn(move || slow_consumer(&shared).unwrap_or(false))
    };
    let mut peak = (0, 0);
    while started.elapsed() < Duration::from_secs(args.seconds) {
        std::thread::sleep(Duration::from_secs(1));
        let (rss, fds) = usage(pid);
        peak = (peak.0.max(rss), peak.1.max(fds));
        if server.try_wait().ok().flatten().is_some() {
            break;
        }
    }
    shared.stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.join();
    }
    let slow_cut_off = slow.join().unwrap_or(false);
    std::thread::sleep(Duration::from_secs(5));
    let alive = server.try_wait().ok().flatten().is_none();
    let (rss_end, fds_end) = usage(pid);
    let f = &shared.failures;
    let c = &shared.counts;
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    println!(
        "ran {:.0} s against {} shards",
        started.elapsed().as_secs_f64(),
        args.cores
    );
    println!(
        "acked writes {}, events delivered {}, rpc round trips {}, churned connections {}, \
         presence queries {}, listens {}, garbage frames {}",
        load(&c.writes_acked),
        load(&c.events_delivered),
        load(&c.rpcs),
        load(&c.churned),
        load(&c.presence),
        load(&c.listens),
        load(&c.garbage)
    );
    println!(
        "rss KiB start {rss_start} peak {} end {rss_end}; descriptors start {fds_start} peak {} end {fds_end}",
        peak.0, peak.1
    );
    println!(
        "failures: lost acks {}, wrong reads {}, lost events {}, rpc errors {}, worker errors {}; \
         slow consumer cut off: {slow_cut_off}; server alive: {alive}",
        load(&f.lost_acks),
        load(&f.wrong_reads),
        load(&f.lost_events),
        load(&f.rpc_errors),
        load(&f.worker_errors)
    );
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = server.wait();
    let ok = alive
        && slow_cut_off
        && [
            &f.lost_acks,
            &f.wrong_reads,
            &f.lost_events,
            &f.rpc_errors,
            &f.worker_errors,
        ]
        .iter()
        .all(|a| load(a) == 0)
        && fds_end <= fds_start + 2
        && rss_end <= rss_start + 64 * 1024;
    println!("{}", if ok { "soak: passed" } else { "soak: FAILED" });
    if ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
