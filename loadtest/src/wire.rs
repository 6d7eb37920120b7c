//! The client side of the wire: connect, upgrade, log in, send masked frames, read server frames.

use bytes::{Buf, Bytes, BytesMut};
use corestream::protocol::message::{auth_action, connection_action, topic, Message};
use corestream::protocol::ws;
use futures_lite::io::AsyncWriteExt;
use glommio::net::TcpStream;
use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;

/// Where to connect: address and WebSocket path from a `ws://host:port/path` URL.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    pub path: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, String> {
        let rest = url
            .strip_prefix("ws://")
            .ok_or("the url must start with ws://")?;
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let addr = std::net::ToSocketAddrs::to_socket_addrs(host)
            .map_err(|e| format!("{host}: {e}"))?
            .next()
            .ok_or_else(|| format!("{host}: no address"))?;
        Ok(Target {
            addr,
            path: format!("/{path}"),
        })
    }
}

/// Frames from the server, unmasked; `payload` is the deepstream message bytes.
pub struct Reader {
    buf: BytesMut,
    /// Messages of a frame that held several (V3, JSON and 4.0 frames may), not taken yet.
    pending: std::collections::VecDeque<Message>,
}

impl Default for Reader {
    fn default() -> Self {
        Reader {
            buf: BytesMut::with_capacity(64 * 1024),
            pending: std::collections::VecDeque::new(),
        }
    }
}

thread_local! {
    /// Where every read of a loader thread lands before its bytes join their connection's reader.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; 64 * 1024]);
}

impl Reader {
    /// The next complete frame already buffered: (opcode, payload).
    pub fn next_frame(&mut self) -> Option<(u8, Bytes)> {
        let b1 = *self.buf.get(1)?;
        let (header, len) = match b1 & 0x7f {
            126 => (
                4,
                u16::from_be_bytes([*self.buf.get(2)?, *self.buf.get(3)?]) as usize,
            ),
            127 => (
                10,
                u64::from_be_bytes(self.buf.get(2..10)?.try_into().ok()?) as usize,
            ),
            n => (2, n as usize),
        };
        if self.buf.len() < header + len {
            return None;
        }
        let opcode = self.buf[0] & 0x0f;
        self.buf.advance(header);
        Some((opcode, self.buf.split_to(len).freeze()))
    }

    /// Reads more bytes. Safe to cancel (the loader races reads with timers): bytes are moved
    /// into the reader only in the poll that receives them. Reads land in one buffer per loader
    /// thread, so no read zeroes or reserves memory ahead of the bytes that arrive.
    pub async fn fill(
        &mut self,
        stream: &mut (impl futures_lite::AsyncRead + Unpin),
    ) -> io::Result<()> {
        let n = futures_lite::future::poll_fn(|cx| {
            SCRATCH.with(|scratch| {
                let mut scratch = scratch.borrow_mut();
                let read = std::pin::Pin::new(&mut *stream).poll_read(cx, &mut scratch[..]);
                if let std::task::Poll::Ready(Ok(n)) = read {
                    self.buf
                        .extend_from_slice(scratch.get(..n).unwrap_or_default());
                }
                read
            })
        })
        .await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }

    /// Reads until the next deepstream message arrives.
    pub async fn message(
        &mut self,
        stream: &mut (impl futures_lite::AsyncRead + Unpin),
    ) -> io::Result<Message> {
        loop {
            if let Some(msg) = self.pending.pop_front() {
                return Ok(msg);
            }
            while let Some((opcode, payload)) = self.next_frame() {
                match opcode {
                    ws::OP_CLOSE => return Err(io::ErrorKind::ConnectionAborted.into()),
                    ws::OP_BINARY | ws::OP_TEXT => {
                        self.pending.extend(server_messages(opcode, &payload));
                        if let Some(msg) = self.pending.pop_front() {
                            return Ok(msg);
                        }
                    }
                    _ => {}
                }
            }
            self.fill(stream).await?;
        }
    }
}

/// Which of the server's WebSocket endpoints the loader speaks (`--protocol`); set once at
/// start. The fanout scenario runs on every one; the others need `binary`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// ws-binary: deepstream's protobuf messages.
    Binary,
    /// ws-text: the V3 text protocol.
    Text,
    /// ws-json: messages as JSON objects.
    Json,
    /// ws-frame: the binary framing of deepstream's 4.0 design.
    Frame,
}

static PROTOCOL: std::sync::OnceLock<Protocol> = std::sync::OnceLock::new();

pub fn set_protocol(protocol: Protocol) {
    let _ = PROTOCOL.set(protocol);
}

pub fn protocol() -> Protocol {
    PROTOCOL.get().copied().unwrap_or(Protocol::Binary)
}

/// Appends a masked client frame (mask key zero: valid, and free to apply).
fn put_client_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    let mut header = BytesMut::with_capacity(10);
    ws::put_frame_header(&mut header, opcode, payload.len());
    header[1] |= 0x80;
    out.extend_from_slice(&header);
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(payload);
}

/// The V3 text a client sends for the messages the loader sends (login, subscribe, emit).
fn v3_client_text(msg: &Message, out: &mut Vec<u8>) {
    use corestream::protocol::message::event_action;
    let sep = |out: &mut Vec<u8>| out.push(0x1f);
    match (msg.topic, msg.action) {
        (topic::AUTH, _) => {
            out.extend_from_slice(b"A\x1fREQ");
            sep(out);
            out.extend_from_slice(msg.data.as_deref().unwrap_or(b"{}"));
            out.push(0x1e);
        }
        (topic::EVENT, event_action::SUBSCRIBE) => {
            for name in &msg.names {
                out.extend_from_slice(b"E\x1fS");
                sep(out);
                out.extend_from_slice(name);
                out.push(0x1e);
            }
        }
        (topic::EVENT, event_action::EMIT) => {
            out.extend_from_slice(b"E\x1fEVT");
            sep(out);
            out.extend_from_slice(msg.name.as_deref().unwrap_or_default());
            sep(out);
            corestream::codec::typed::to_typed(msg.data.as_deref(), out);
            out.push(0x1e);
        }
        // V3 servers open the connection themselves: no challenge.
        _ => {}
    }
}

/// Appends a client frame for `msg` in the loader's protocol.
pub fn put_message(out: &mut Vec<u8>, msg: &Message) {
    match protocol() {
        Protocol::Binary => {
            let len = msg.encoded_len();
            let mut header = BytesMut::with_capacity(10);
            ws::put_frame_header(&mut header, ws::OP_BINARY, len);
            header[1] |= 0x80;
            out.extend_from_slice(&header);
            out.extend_from_slice(&[0, 0, 0, 0]);
            msg.encode_into(out);
        }
        Protocol::Text => {
            let mut text = Vec::new();
            v3_client_text(msg, &mut text);
            if !text.is_empty() {
                put_client_frame(out, ws::OP_TEXT, &text);
            }
        }
        Protocol::Json => {
            let mut json = Vec::new();
            corestream::codec::json::encode(msg, &mut json);
            put_client_frame(out, ws::OP_TEXT, &json);
        }
        Protocol::Frame => {
            let mut framed = Vec::new();
            corestream::codec::frame::encode(msg, &mut framed);
            put_client_frame(out, ws::OP_BINARY, &framed);
        }
    }
}

/// The messages of one server frame in the loader's protocol, as (is an event emit, bytes
/// holding its data): a V3 or 4.0 frame can hold several.
pub fn deliveries(opcode: u8, payload: &Bytes, mut each: impl FnMut(bool, &[u8])) {
    use corestream::protocol::message::event_action;
    match (protocol(), opcode) {
        (Protocol::Binary, ws::OP_BINARY) => each(true, payload),
        (Protocol::Text, ws::OP_TEXT) => {
            for message in payload.split(|b| *b == 0x1e).filter(|m| !m.is_empty()) {
                each(message.starts_with(b"E\x1fEVT\x1f"), message);
            }
        }
        (Protocol::Json, ws::OP_TEXT) => each(
            memchr::memmem::find(payload, b"\"action\":2,").is_some(),
            payload,
        ),
        (Protocol::Frame, ws::OP_BINARY) => {
            let mut at = 0;
            while let Some(header) = payload.get(at..at + 8) {
                let len = |b: &[u8]| {
                    (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2])
                };
                let end = at + 8 + len(&header[2..5]) + len(&header[5..8]);
                let emit =
                    header[0] & 0x7f == topic::EVENT as u8 && header[1] == event_action::EMIT as u8;
                each(emit, payload.get(at..end).unwrap_or_default());
                at = end;
            }
        }
        _ => {}
    }
}

/// The messages of a server frame in the loader's protocol, as the shard's `Message`s (for
/// V3, only topic and action: enough to tell a login's answer). The server's own V3 messages
/// (`C␟A`, `C␟PI`) are left out.
fn server_messages(opcode: u8, payload: &Bytes) -> Vec<Message> {
    match (protocol(), opcode) {
        (Protocol::Binary, ws::OP_BINARY) => Message::parse(payload).ok().into_iter().collect(),
        (Protocol::Text, ws::OP_TEXT) => payload
            .split(|b| *b == 0x1e)
            .filter(|m| !m.is_empty() && !m.starts_with(b"C"))
            .map(|message| {
                let topic = match message.first() {
                    Some(b'A') => topic::AUTH,
                    Some(b'E') => topic::EVENT,
                    Some(b'R') => topic::RECORD,
                    _ => topic::PARSER,
                };
                let action = if message.starts_with(b"A\x1fA") {
                    auth_action::AUTH_SUCCESSFUL
                } else if topic == topic::AUTH {
                    auth_action::AUTH_UNSUCCESSFUL
                } else {
                    0
                };
                Message::new(topic, action)
            })
            .collect(),
        (Protocol::Json, ws::OP_TEXT) | (Protocol::Frame, ws::OP_BINARY) => {
            let mut out = Vec::new();
            if protocol() == Protocol::Json {
                corestream::codec::json::decode(payload, &mut out);
            } else {
                let mut partial = corestream::codec::frame::Partial::default();
                corestream::codec::frame::decode(payload, &mut partial, usize::MAX, &mut out);
            }
            out.into_iter()
                .filter_map(|i| match i {
                    corestream::codec::Inbound::Message(m) => Some(*m),
                    corestream::codec::Inbound::Reply(_) => None,
                })
                .collect()
        }
        _ => Vec::new(),
    }
}

pub async fn send(
    stream: &mut (impl futures_lite::AsyncWrite + Unpin),
    msg: &Message,
) -> io::Result<()> {
    let mut out = Vec::with_capacity(msg.encoded_len() + 14);
    put_message(&mut out, msg);
    stream.write_all(&out).await
}

/// A TCP connection from `source` (when given) to the target, made blocking then handed to
/// glommio: loopback connects are immediate and this lets idle runs use many source addresses.
pub fn connect_from(target: &Target, source: Option<std::net::IpAddr>) -> io::Result<TcpStream> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(target.addr),
        socket2::Type::STREAM,
        None,
    )?;
    if let Some(ip) = source {
        defer_port_choice(&socket)?;
        socket.bind(&SocketAddr::new(ip, 0).into())?;
    }
    socket.connect(&target.addr.into())?;
    socket.set_nodelay(true)?;
    socket.set_nonblocking(true)?;
    Ok(TcpStream::from(socket))
}

/// Lets `connect` pick the source port by the whole 4-tuple. A plain `bind` to port 0 reserves
/// a port unused by any socket on that address, a search that grows with every connection in
/// TIME_WAIT; after a few seconds of the connect scenario it dominated the loader's time.
fn defer_port_choice(socket: &socket2::Socket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let enable: libc::c_int = 1;
    // SAFETY: the fd is open for the duration of the call (borrowed from `socket`), and the
    // option value points at a live c_int whose size is passed alongside.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&enable as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reads with a periodic way out, for loops that must notice the end of a run while no bytes
/// come. The timer is armed once per period and polled only on a wake-up that brought no
/// bytes: a glommio timer made, polled and dropped around every read (the first way) cost a
/// clock read and two timer-map updates per read, a visible part of the loader at 1M
/// deliveries/s.
pub struct Ticker {
    period: std::time::Duration,
    timer: Option<(glommio::timer::Timer, std::time::Instant)>,
}

impl Ticker {
    pub fn new(period: std::time::Duration) -> Self {
        Ticker {
            period,
            timer: None,
        }
    }

    /// More bytes into `reader`, or `None` once a period passed with none.
    pub async fn fill(
        &mut self,
        reader: &mut Reader,
        stream: &mut (impl futures_lite::AsyncRead + Unpin),
    ) -> Option<io::Result<()>> {
        let mut read = std::pin::pin!(reader.fill(stream));
        futures_lite::future::poll_fn(|cx| {
            if let std::task::Poll::Ready(result) = read.as_mut().poll(cx) {
                return std::task::Poll::Ready(Some(result));
            }
            match &mut self.timer {
                Some((_, deadline)) if std::time::Instant::now() < *deadline => {
                    std::task::Poll::Pending
                }
                Some(_) => {
                    self.timer = None;
                    std::task::Poll::Ready(None)
                }
                None => {
                    let deadline = std::time::Instant::now() + self.period;
                    let mut timer = glommio::timer::Timer::new(self.period);
                    // Registers this task's waker with the reactor for the deadline.
                    match std::pin::Pin::new(&mut timer).poll(cx) {
                        std::task::Poll::Ready(_) => std::task::Poll::Ready(None),
                        std::task::Poll::Pending => {
                            self.timer = Some((timer, deadline));
                            std::task::Poll::Pending
                        }
                    }
                }
            }
        })
        .await
    }
}

/// Upgrade, challenge and login; returns the stream and its reader state.
pub async fn open(
    target: &Target,
    user: &str,
    source: Option<std::net::IpAddr>,
) -> io::Result<(TcpStream, Reader)> {
    let mut stream = connect_from(target, source)?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        target.path, target.addr
    );
    stream.write_all(request.as_bytes()).await?;
    let mut reader = Reader::default();
    loop {
        if let Some(end) = memchr::memmem::find(&reader.buf, b"\r\n\r\n") {
            if !reader.buf.starts_with(b"HTTP/1.1 101") {
                return Err(io::Error::other("upgrade refused"));
            }
            reader.buf.advance(end + 4);
            break;
        }
        reader.fill(&mut stream).await?;
    }
    let mut out = Vec::new();
    put_message(
        &mut out,
        &Message::new(topic::CONNECTION, connection_action::CHALLENGE),
    );
    let auth = Message {
        data: Some(Bytes::from(format!(r#"{{"username":"{user}"}}"#))),
        ..Message::new(topic::AUTH, auth_action::REQUEST)
    };
    put_message(&mut out, &auth);
    stream.write_all(&out).await?;
    loop {
        let msg = reader.message(&mut stream).await?;
        if msg.topic == topic::AUTH {
            if msg.action == auth_action::AUTH_SUCCESSFUL {
                return Ok((stream, reader));
            }
            return Err(io::Error::other("login refused"));
        }
    }
}
