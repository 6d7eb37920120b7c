//! One client socket, one task: the HTTP request head (WebSocket upgrade or health check), then
//! frames read and handed to the shard while the outbox is written out, then the close.
//!
//! An idle connection holds only its small task, the socket and its outbox: sockets are read
//! into one per-shard buffer and only the bytes read are copied into a buffer pooled per shard
//! and taken only while bytes are in hand (so nothing is zeroed per read), writes are joined in
//! a per-shard buffer, and silence is detected by the shard's sweep instead of a timer per
//! connection.

use super::shard_io::ShardIo;
use crate::codec::{Codec, Inbound, WsCodec};
use crate::config::endpoints::Protocol;
use crate::protocol::http::{self, parse_head};
use crate::protocol::ws::{self, FrameDecoder, WsEvent};
use crate::shard::outbox::{Outbox, Park, ABORTED};
use crate::shard::Shard;
use bytes::{Buf, Bytes, BytesMut};
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use std::cell::RefCell;
use std::future::Future;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

/// The most one read of the HTTP request head takes (a head is usually a few hundred bytes).
const HEAD_CHUNK: usize = 2 * 1024;
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Reads one connection makes in a row before letting other tasks run.
const READS_PER_TURN: usize = 8;
/// A joined write buffer larger than this is not kept for the next write.
const JOINED_KEPT: usize = 1 << 20;

enum ReadOutcome {
    Data(usize),
    Closed,
    TimedOut,
}

/// Reads more bytes onto the end of `buf`, within `timeout`.
async fn read_more(
    reader: &mut (impl AsyncRead + Unpin),
    buf: &mut BytesMut,
    timeout: Duration,
) -> ReadOutcome {
    let mut chunk = [0u8; HEAD_CHUNK];
    let read = async {
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => ReadOutcome::Closed,
            Ok(n) => ReadOutcome::Data(n),
        }
    };
    let timer = async {
        glommio::timer::sleep(timeout).await;
        ReadOutcome::TimedOut
    };
    let outcome = futures_lite::future::or(read, timer).await;
    if let ReadOutcome::Data(n) = outcome {
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
    outcome
}

/// What a connection needs to know after its upgrade.
struct Limits {
    /// The endpoint (`Config::endpoint`) and its codec (`None`: ws-binary).
    endpoint: u8,
    codec: Option<WsCodec>,
    max_message: usize,
    /// The largest message before login.
    max_before_login: usize,
    outgoing: usize,
}

/// What a socket's request head asked for.
enum Opened {
    /// A WebSocket upgrade at the endpoint's path, answered 101.
    WebSocket(Limits),
    /// Any other request: served by `net::http` (API, health check, monitoring).
    Plain(Box<http::RequestHead>),
    /// Answered and closed (a bad head, a refused upgrade) or gone.
    Done,
}

/// Reads the request head; answers a WebSocket upgrade at once. Everything allocated for the
/// head is freed when this returns, before the connection's long life. The whole head must
/// arrive by `deadline` (`limits.handshakeTimeout` from accept), however slowly it is dripped.
async fn handshake(
    stream: &mut (impl AsyncRead + AsyncWrite + Unpin),
    buf: &mut BytesMut,
    shard: &RefCell<Shard>,
    deadline: std::time::Instant,
) -> Opened {
    let head = loop {
        match parse_head(buf) {
            Ok(Some((head, len))) => {
                let _ = buf.split_to(len);
                break head;
            }
            Ok(None) => {}
            Err(_) => {
                let response =
                    http::plain_response(400, "Bad Request", "text/plain", "bad request");
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.close().await;
                return Opened::Done;
            }
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() || !matches!(read_more(stream, buf, left).await, ReadOutcome::Data(_)) {
            return Opened::Done;
        }
    };
    let (upgrade, full, limits) = {
        let shard = shard.borrow();
        let c = shard.config();
        let endpoint = c.endpoint_at_path(&head.path);
        let upgrade = head.method == "GET" && head.upgrade_websocket && endpoint.is_some();
        let full = shard.awaiting_login() >= c.limits.unauthenticated_connections_per_shard;
        // (`admission::room_for_another_login`, with the shard already borrowed here.)
        let (endpoint, protocol) = endpoint.unwrap_or((0, Protocol::Binary));
        let max_message = c.max_message_size_of(endpoint);
        let limits = Limits {
            endpoint,
            codec: WsCodec::of(protocol),
            max_message,
            max_before_login: max_message.min(c.limits.unauthenticated_max_message_size),
            outgoing: c.max_outgoing_buffer,
        };
        (upgrade, full, limits)
    };
    let Some(key) = head.websocket_key.as_deref().filter(|_| upgrade) else {
        return Opened::Plain(Box::new(head));
    };
    // Too many sockets wait to log in on this shard: refuse before any memory is given.
    if full {
        let response = http::plain_response(
            503,
            "Service Unavailable",
            "text/plain",
            "too many connections waiting to log in",
        );
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.close().await;
        return Opened::Done;
    }
    let upgraded = stream
        .write_all(http::upgrade_response(key).as_bytes())
        .await
        .is_ok();
    if upgraded && stream.flush().await.is_ok() {
        Opened::WebSocket(limits)
    } else {
        Opened::Done
    }
}

/// Serves one accepted socket to its end.
pub fn serve(stream: TcpStream, io: Rc<ShardIo>) -> Connection {
    io.live.set(io.live.get() + 1);
    Connection(State::Opening(Box::pin(open(stream, io.clone())), io))
}

/// One connection's task, as a state machine rather than an `async fn`, so the task is no
/// larger than the open connection: the handshake and the close live in boxes of their own.
pub struct Connection(State);

enum State {
    Opening(Pin<Box<dyn Future<Output = Option<Live>>>>, Rc<ShardIo>),
    Open(Live),
    Closing(Pin<Box<dyn Future<Output = ()>>>, Rc<ShardIo>),
    Done,
}

impl Future for Connection {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut self.get_mut().0;
        loop {
            match this {
                State::Opening(handshake, io) => match handshake.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Some(live)) => *this = State::Open(live),
                    // Health checks, 404s and failed upgrades end here.
                    Poll::Ready(None) => {
                        io.live.set(io.live.get() - 1);
                        *this = State::Done;
                        return Poll::Ready(());
                    }
                },
                State::Open(live) => {
                    let Poll::Ready(end) = Pin::new(&mut *live).poll(cx) else {
                        return Poll::Pending;
                    };
                    live.io.pump.enter().close_conn(live.local);
                    let State::Open(live) = std::mem::replace(this, State::Done) else {
                        return Poll::Ready(());
                    };
                    let io = live.io.clone();
                    match end {
                        End::PeerGone => {
                            live.outbox.abort();
                            io.live.set(io.live.get() - 1);
                            return Poll::Ready(());
                        }
                        End::Closing => *this = State::Closing(Box::pin(live.finish()), io),
                    }
                }
                State::Closing(close, io) => {
                    let Poll::Ready(()) = close.as_mut().poll(cx) else {
                        return Poll::Pending;
                    };
                    io.live.set(io.live.get() - 1);
                    *this = State::Done;
                    return Poll::Ready(());
                }
                State::Done => return Poll::Ready(()),
            }
        }
    }
}

/// The handshake; `Some` with the shard's new connection once the socket speaks WebSocket.
async fn open(stream: TcpStream, io: Rc<ShardIo>) -> Option<Live> {
    // A socket beyond the shard's budget of handshakes in progress is closed unread.
    let mut admission = super::admission::Admission::at_accept(&io)?;
    // TCP_NODELAY comes from the listening socket (see `net::listen_socket`).
    let mut head = io.take_buffer();
    // The TLS handshake and the HTTP head share one deadline from accept.
    let deadline = admission.deadline();
    let socket = match &io.tls {
        Some(config) => super::tls_socket::accept(config.clone(), stream, deadline)
            .await
            .map(|tls| Socket::Tls(Box::new(tls))),
        None => Some(Socket::Active(Box::new(stream))),
    };
    let opened = match socket {
        Some(mut socket) => {
            let opened = handshake(&mut socket, &mut head, &io.shard, deadline).await;
            Some((socket, opened))
        }
        None => None,
    };
    admission.handshake_done();
    drop(admission);
    let Some((mut socket, opened)) = opened else {
        io.put_buffer(head);
        return None;
    };
    let limits = match opened {
        Opened::WebSocket(limits) => limits,
        Opened::Plain(request) => {
            super::http::serve(&mut socket, &mut head, *request, &io).await;
            head.clear();
            io.put_buffer(head);
            return None;
        }
        Opened::Done => {
            io.put_buffer(head);
            return None;
        }
    };
    let now = io.runtime.now_ms();
    let outbox = Outbox::new(limits.outgoing, now);
    let local = {
        let mut shard = io.pump.enter();
        let local = shard.open_conn_on(outbox.clone(), now, limits.endpoint);
        if let Some(opening) = limits.codec.and_then(WsCodec::opening) {
            shard.on_client_message_of(local, opening, now);
        }
        local
    };
    let mut live = Live {
        codec: limits
            .codec
            .map(|kind| Codec::new(kind, limits.max_message)),
        socket,
        io,
        outbox,
        local,
        decoder: FrameDecoder::new(limits.max_before_login),
        max_message: u32::try_from(limits.max_message).unwrap_or(u32::MAX),
        held_before_login: 0,
        inbound: None,
        unsent: None,
    };
    // Frames that came in the same packets as the head are handled now, not after the next
    // read (which may never come: the client waits for their answers).
    if !head.is_empty() {
        live.outbox.heard(now);
        live.decode_all(&mut head, now);
    }
    live.keep_or_return(head);
    Some(live)
}

/// How a connection's open life ended.
enum End {
    /// The socket is gone (EOF or error): nothing more can be sent.
    PeerGone,
    /// A close handshake or a server-side close: send what is queued and a close frame.
    Closing,
}

enum Socket {
    /// Boxed: a parked connection's task does not carry an empty stream's worth of bytes.
    Active(Box<TcpStream>),
    /// Over TLS (`httpServer.options.ssl`); such a connection is never parked (its bytes are
    /// records only the TLS session can make).
    Tls(Box<super::tls_socket::TlsSocket>),
    /// Waiting in the shard's set of quiet sockets: a duplicate of the stream's descriptor,
    /// the stream itself (and its io_uring poll) dropped.
    Parked(OwnedFd),
    /// Only while changing between the two.
    Gone,
}

fn not_connected<T>() -> Poll<std::io::Result<T>> {
    Poll::Ready(Err(std::io::ErrorKind::NotConnected.into()))
}

/// Reads and writes of a socket while it runs actively (plain or TLS); a parked one must be
/// brought back first.
impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Socket::Active(stream) => Pin::new(&mut **stream).poll_read(cx, buf),
            Socket::Tls(stream) => Pin::new(&mut **stream).poll_read(cx, buf),
            Socket::Parked(_) | Socket::Gone => not_connected(),
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Socket::Active(stream) => Pin::new(&mut **stream).poll_write(cx, buf),
            Socket::Tls(stream) => Pin::new(&mut **stream).poll_write(cx, buf),
            Socket::Parked(_) | Socket::Gone => not_connected(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Socket::Active(stream) => Pin::new(&mut **stream).poll_flush(cx),
            Socket::Tls(stream) => Pin::new(&mut **stream).poll_flush(cx),
            Socket::Parked(_) | Socket::Gone => not_connected(),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Socket::Active(stream) => Pin::new(&mut **stream).poll_close(cx),
            Socket::Tls(stream) => Pin::new(&mut **stream).poll_close(cx),
            Socket::Parked(_) | Socket::Gone => not_connected(),
        }
    }
}

/// The open connection: reads frames into the shard and writes the outbox, as one future.
struct Live {
    socket: Socket,
    io: Rc<ShardIo>,
    outbox: Outbox,
    local: u32,
    decoder: FrameDecoder,
    /// The largest message once logged in; 0 once the decoder has it (before login the decoder
    /// takes only `limits.unauthenticatedMaxMessageSize`). u32: it packs beside `local`.
    max_message: u32,
    /// Bytes of `inbound` counted in the shard's `unauthenticated_bytes` (before login only).
    held_before_login: u32,
    /// Bytes of a frame not complete yet; `None` between frames, so no buffer is held.
    /// Boxed: rare, and the task should stay small while it waits.
    inbound: Option<Box<BytesMut>>,
    /// What the socket did not take yet.
    unsent: Option<Bytes>,
    /// The endpoint's codec when it is not ws-binary.
    codec: Option<Box<Codec>>,
}

impl Future for Live {
    type Output = End;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<End> {
        let this = self.get_mut();
        // Frames the shard queues for us while we read are written below in this same turn.
        this.outbox.unwatch();
        if let Some(parked) = this.poll_parked(cx) {
            return parked;
        }
        if let Poll::Ready(end) = this.poll_read_side(cx) {
            return Poll::Ready(end);
        }
        if this.poll_write_side(cx).is_err() {
            return Poll::Ready(End::PeerGone);
        }
        if this.outbox.closing().is_some() {
            return Poll::Ready(End::Closing);
        }
        if this.outbox.park_state() == Park::Requested {
            this.park(cx);
        }
        Poll::Pending
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let counter = &self.io.unauthenticated_bytes;
        counter.set(
            counter
                .get()
                .saturating_sub(self.held_before_login as usize),
        );
    }
}

impl Live {
    /// Parks the socket if nothing is in flight: no partial frame, nothing unsent.
    fn park(&mut self, cx: &Context<'_>) {
        self.outbox.set_park_state(Park::Active);
        let Some(parking) = self.io.parking.clone() else {
            return;
        };
        if self.inbound.is_some() || self.unsent.is_some() || self.decoder.in_message() {
            return;
        }
        let Socket::Active(stream) = &self.socket else {
            return;
        };
        // SAFETY: the descriptor belongs to `stream`, which outlives this borrow.
        let borrowed = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
        let Ok(duplicate) = rustix::io::fcntl_dupfd_cloexec(borrowed, 0) else {
            return;
        };
        if parking.park(self.local, &duplicate).is_err() {
            return;
        }
        self.outbox.watch(cx.waker());
        // Dropping the stream closes its descriptor and cancels its poll; the duplicate keeps
        // the connection open.
        self.socket = Socket::Parked(duplicate);
        self.outbox.set_park_state(Park::Parked);
    }

    fn unpark(&mut self) {
        if !matches!(self.socket, Socket::Parked(_)) {
            return;
        }
        let Socket::Parked(fd) = std::mem::replace(&mut self.socket, Socket::Gone) else {
            return;
        };
        if let Some(parking) = &self.io.parking {
            parking.unpark(&fd);
        }
        // SAFETY: `fd` is an open TCP socket that nothing else owns; the stream takes it over.
        let stream = unsafe { TcpStream::from_raw_fd(fd.into_raw_fd()) };
        self.socket = Socket::Active(Box::new(stream));
        self.outbox.set_park_state(Park::Active);
    }

    /// While parked: `None` once the connection must run actively again (the socket has
    /// bytes, a close is asked for, or a write would block); else frames queued meanwhile are
    /// sent straight on the descriptor and the connection stays parked.
    fn poll_parked(&mut self, cx: &mut Context<'_>) -> Option<Poll<End>> {
        if !matches!(self.socket, Socket::Parked(_)) {
            return None;
        }
        if self.outbox.park_state() != Park::Parked || self.outbox.closing().is_some() {
            self.unpark();
            return None;
        }
        if self.poll_write_side(cx).is_err() {
            return Some(Poll::Ready(End::PeerGone));
        }
        if !matches!(self.socket, Socket::Parked(_)) {
            // The socket was full: the glommio stream waits for room now.
            return None;
        }
        // Readiness, a frame or a close wakes us through the outbox.
        self.outbox.watch(cx.waker());
        Some(Poll::Pending)
    }

    /// One write: through glommio while active, straight on the descriptor while parked (a
    /// full socket brings the glommio stream back, which then waits for room).
    fn poll_send(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let parked = match &mut self.socket {
            Socket::Active(_) | Socket::Tls(_) => {
                return Pin::new(&mut self.socket).poll_write(cx, data)
            }
            Socket::Gone => return not_connected(),
            Socket::Parked(fd) => {
                let flags = rustix::net::SendFlags::DONTWAIT | rustix::net::SendFlags::NOSIGNAL;
                rustix::net::send(&*fd, data, flags)
            }
        };
        match parked {
            Ok(n) => Poll::Ready(Ok(n)),
            Err(rustix::io::Errno::AGAIN) => {
                self.unpark();
                self.poll_send(cx, data)
            }
            Err(e) => Poll::Ready(Err(e.into())),
        }
    }

    /// Reads what the socket has and hands complete frames to the shard. Ready when reading
    /// is over; Pending once the socket is empty (or after a fair share of reads).
    fn poll_read_side(&mut self, cx: &mut Context<'_>) -> Poll<End> {
        if self.io.must_wait() {
            self.io.pause(cx.waker());
            return Poll::Pending;
        }
        for _ in 0..READS_PER_TURN {
            if self.outbox.closing().is_some() {
                return Poll::Ready(End::Closing);
            }
            let mut buf = match self.inbound.take() {
                Some(partial) => *partial,
                None => self.io.take_buffer(),
            };
            let read = {
                let mut scratch = self.io.scratch.borrow_mut();
                let read = Pin::new(&mut self.socket).poll_read(cx, &mut scratch[..]);
                if let Poll::Ready(Ok(n)) = read {
                    buf.extend_from_slice(scratch.get(..n).unwrap_or_default());
                }
                read
            };
            match read {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(End::PeerGone),
                Poll::Ready(Ok(_)) => {
                    let now = self.io.runtime.now_ms();
                    self.outbox.heard(now);
                    let keep_going = self.decode_all(&mut buf, now);
                    self.keep_or_return(buf);
                    if !keep_going {
                        return Poll::Ready(End::Closing);
                    }
                }
                Poll::Pending => {
                    self.keep_or_return(buf);
                    return Poll::Pending;
                }
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Keeps a buffer holding part of a frame; gives an empty one back to the pool.
    fn keep_or_return(&mut self, buf: BytesMut) {
        if self.max_message != 0 || self.held_before_login != 0 {
            self.count_before_login(if buf.is_empty() { 0 } else { buf.capacity() });
        }
        if buf.is_empty() {
            self.io.put_buffer(buf);
        } else {
            self.inbound = Some(Box::new(buf));
        }
    }

    /// Counts what a connection not logged in holds against the shard's budget, and closes
    /// the one that goes past it. After login it counts nothing.
    fn count_before_login(&mut self, held: usize) {
        let held = if self.max_message == 0 { 0 } else { held };
        let held = u32::try_from(held).unwrap_or(u32::MAX);
        let counter = &self.io.unauthenticated_bytes;
        let total = counter
            .get()
            .saturating_sub(self.held_before_login as usize)
            + held as usize;
        counter.set(total);
        self.held_before_login = held;
        if held > 0 && total > self.io.unauthenticated_budget() {
            self.outbox.close(
                ws::CLOSE_POLICY,
                "too many bytes from connections not logged in",
            );
        }
    }

    /// Hands every complete frame in `buf` to the shard; false once the connection must end.
    /// `now` is when the bytes were read; every frame in them is handled at that time.
    fn decode_all(&mut self, buf: &mut BytesMut, now: u64) -> bool {
        let mut handled = false;
        let keep_going = loop {
            let decoded = self.decoder.decode(buf);
            handled |= !matches!(decoded, Ok(None));
            match decoded {
                Ok(Some(event)) => match (event, self.codec.as_deref_mut()) {
                    (WsEvent::Binary(payload), None) => self
                        .io
                        .pump
                        .enter()
                        .on_client_frame(self.local, &payload, now),
                    (WsEvent::Text(_), None) => self.io.pump.enter().on_client_text(self.local),
                    (WsEvent::Text(payload), Some(codec)) if codec.kind() == WsCodec::Echo => {
                        self.outbox.push(ws::frame(ws::OP_TEXT, &payload))
                    }
                    (WsEvent::Binary(payload), Some(codec)) if codec.kind() == WsCodec::Echo => {
                        self.outbox.push(ws::frame(ws::OP_BINARY, &payload))
                    }
                    (WsEvent::Text(payload), Some(codec)) if !codec.kind().reads_binary() => {
                        self.codec_input(&payload, now)
                    }
                    (WsEvent::Binary(payload), Some(codec)) if codec.kind().reads_binary() => {
                        self.codec_input(&payload, now)
                    }
                    (WsEvent::Text(_) | WsEvent::Binary(_), Some(codec)) => {
                        let kind = codec.kind();
                        self.outbox
                            .push(ws::frame(kind.opcode(), &kind.wrong_frame_refused()))
                    }
                    (event, _) => match event {
                        WsEvent::Ping(payload) => {
                            self.outbox.push(ws::frame(ws::OP_PONG, &payload))
                        }
                        WsEvent::Close(_, _) => {
                            self.outbox.close(ws::CLOSE_NORMAL, "");
                            break false;
                        }
                        _ => {}
                    },
                },
                Ok(None) => break true,
                Err(violation) => {
                    if violation.code == ws::CLOSE_TOO_BIG {
                        self.io.pump.enter().on_oversize(self.local);
                    }
                    self.outbox.close(violation.code, violation.reason);
                    break false;
                }
            }
        };
        // Once logged in, a connection may send frames of full size.
        if handled && self.max_message != 0 && self.io.shard.borrow().logged_in(self.local) {
            self.decoder.set_max_message(self.max_message as usize);
            self.max_message = 0;
            let counter = &self.io.unauthenticated_bytes;
            counter.set(
                counter
                    .get()
                    .saturating_sub(self.held_before_login as usize),
            );
            self.held_before_login = 0;
        }
        keep_going
    }

    /// One frame for the codec: its messages go to the shard, its own answers to the client.
    fn codec_input(&mut self, payload: &Bytes, now: u64) {
        let Some(codec) = self.codec.as_deref_mut() else {
            return;
        };
        let mut inbound = Vec::new();
        codec.decode(payload, &mut inbound);
        let opcode = codec.kind().opcode();
        let io = self.io.clone();
        let mut shard = io.pump.enter();
        for item in inbound {
            match item {
                Inbound::Message(msg) => shard.on_client_message_of(self.local, msg, now),
                Inbound::Reply(bytes) => self.outbox.push(ws::frame(opcode, &bytes)),
            }
        }
    }

    /// Writes what is queued: one frame as it is, several joined into one write. Ok(()) when
    /// everything went out or the socket is full (we are woken when it drains).
    fn poll_write_side(&mut self, cx: &mut Context<'_>) -> std::io::Result<()> {
        loop {
            if let Some(mut unsent) = self.unsent.take() {
                match self.poll_send(cx, &unsent) {
                    Poll::Ready(Ok(0)) => return Err(std::io::ErrorKind::WriteZero.into()),
                    Poll::Ready(Ok(n)) => {
                        unsent.advance(n);
                        if !unsent.is_empty() {
                            self.unsent = Some(unsent);
                        }
                        continue;
                    }
                    Poll::Ready(Err(e)) => return Err(e),
                    Poll::Pending => {
                        self.unsent = Some(unsent);
                        // A close (or an overflow) must still wake us while the socket is full.
                        self.outbox.watch(cx.waker());
                        return Ok(());
                    }
                }
            }
            let io = self.io.clone();
            let mut frames = io.frames.borrow_mut();
            self.outbox.drain(&mut frames, cx.waker());
            if let Some(codec) = self.codec.as_deref_mut() {
                let drained = !frames.is_empty();
                codec.rewrite(&mut frames, &mut io.transcoded.borrow_mut());
                // All of it came to nothing in this protocol: drain again, which registers
                // the waker for what comes next (a drain that returns frames does not).
                if drained && frames.is_empty() {
                    continue;
                }
            }
            match frames.len() {
                0 => {
                    // TLS keeps records the socket did not take; they go out on a flush (which
                    // waits for room, waking us).
                    if let Socket::Tls(_) = self.socket {
                        if let Poll::Ready(Err(e)) = Pin::new(&mut self.socket).poll_flush(cx) {
                            return Err(e);
                        }
                    }
                    return Ok(());
                }
                1 => self.unsent = frames.pop(),
                _ => {
                    let mut joined = io.joined.borrow_mut();
                    joined.clear();
                    for frame in frames.drain(..) {
                        joined.extend_from_slice(&frame);
                    }
                    let written = match self.poll_send(cx, &joined) {
                        Poll::Ready(Ok(n)) => n,
                        Poll::Ready(Err(e)) => return Err(e),
                        Poll::Pending => 0,
                    };
                    if written < joined.len() {
                        self.unsent = Some(Bytes::copy_from_slice(&joined[written..]));
                    }
                    if joined.capacity() > JOINED_KEPT {
                        *joined = Vec::new();
                    }
                }
            }
        }
    }
}

impl Live {
    /// The close: what is still queued, then the close frame, then reading until the client
    /// closes too (closing a socket with unread data resets it, and the client would lose our
    /// close frame).
    async fn finish(mut self) {
        let (code, reason) = self.outbox.closing().unwrap_or((ws::CLOSE_NORMAL, ""));
        if code == ABORTED {
            return;
        }
        self.unpark();
        if !matches!(self.socket, Socket::Active(_) | Socket::Tls(_)) {
            return;
        }
        let stream = &mut self.socket;
        let unsent = self.unsent.take();
        let outbox = &self.outbox;
        let mut codec = self.codec.take();
        let io = self.io.clone();
        let flush = async {
            if let Some(unsent) = unsent {
                stream.write_all(&unsent).await?;
            }
            let mut frames = outbox.take_all();
            if let Some(codec) = codec.as_deref_mut() {
                codec.rewrite(&mut frames, &mut io.transcoded.borrow_mut());
            }
            for frame in frames {
                stream.write_all(&frame).await?;
            }
            stream.write_all(&ws::close_frame(code, reason)).await?;
            stream.close().await
        };
        let sent = futures_lite::future::or(flush, async {
            glommio::timer::sleep(CLOSE_TIMEOUT).await;
            Err(std::io::ErrorKind::TimedOut.into())
        })
        .await;
        if sent.is_err() {
            return;
        }
        let drain = async {
            let mut sink = [0u8; 512];
            while let Ok(1..) = stream.read(&mut sink).await {}
        };
        futures_lite::future::or(drain, glommio::timer::sleep(CLOSE_TIMEOUT)).await;
    }
}
