//! One client socket: the HTTP request head (WebSocket upgrade or health check), then a reader
//! that feeds frames to the shard and a writer that drains the connection's outbox.

use super::mesh::Pump;
use super::Runtime;
use crate::protocol::http::{self, parse_head};
use crate::protocol::ws::{self, FrameDecoder, WsEvent};
use crate::shard::outbox::{Outbox, ABORTED};
use crate::shard::Shard;
use bytes::{Bytes, BytesMut};
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use std::cell::RefCell;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

const READ_CHUNK: usize = 16 * 1024;
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Bytes a quiet connection reads without a pooled buffer.
const QUIET_READ: usize = 128;

enum ReadOutcome {
    Data(usize),
    Closed,
    TimedOut,
    Stopped,
}

/// Reads into `dst`, racing a timeout and the outbox being closed.
async fn read_racing(
    reader: &mut (impl AsyncRead + Unpin),
    dst: &mut [u8],
    timeout: Duration,
    outbox: Option<&Outbox>,
) -> ReadOutcome {
    let read = async {
        match reader.read(dst).await {
            Ok(0) | Err(_) => ReadOutcome::Closed,
            Ok(n) => ReadOutcome::Data(n),
        }
    };
    let timer = async {
        glommio::timer::sleep(timeout).await;
        ReadOutcome::TimedOut
    };
    let stopped = poll_fn(|cx| match outbox {
        Some(outbox) if outbox.closing().is_some() => Poll::Ready(ReadOutcome::Stopped),
        Some(outbox) => {
            outbox.watch_close(cx.waker());
            Poll::Pending
        }
        None => Poll::Pending,
    });
    futures_lite::future::or(read, futures_lite::future::or(timer, stopped)).await
}

/// Reads more bytes onto the end of `buf`.
async fn read_more(
    reader: &mut (impl AsyncRead + Unpin),
    buf: &mut BytesMut,
    timeout: Duration,
    outbox: Option<&Outbox>,
) -> ReadOutcome {
    let start = buf.len();
    buf.resize(start + READ_CHUNK, 0);
    let outcome = read_racing(reader, &mut buf[start..], timeout, outbox).await;
    let filled = if let ReadOutcome::Data(n) = outcome {
        n
    } else {
        0
    };
    buf.truncate(start + filled);
    outcome
}

/// Waits for the next bytes without holding a read buffer while the socket is quiet. A read
/// is tried at once with a pooled buffer (free when glommio already knows the socket is empty);
/// if nothing is there and no frame is half-read, the buffer goes back to the pool and the wait
/// is a read into a small inline array, which holds a whole typical message, so a quiet
/// connection still costs one `recv` per message and no buffer between messages.
async fn next_bytes(
    reader: &mut (impl AsyncRead + Unpin),
    slot: &mut Option<BytesMut>,
    pool: &BufferPool,
    timeout: Duration,
    outbox: &Outbox,
) -> ReadOutcome {
    let mut buf = slot.take().unwrap_or_else(|| pool.take());
    let start = buf.len();
    buf.resize(start + READ_CHUNK, 0);
    let immediate = futures_lite::future::poll_once(reader.read(&mut buf[start..])).await;
    let outcome = match immediate {
        Some(Ok(0)) | Some(Err(_)) => Some(ReadOutcome::Closed),
        Some(Ok(n)) => Some(ReadOutcome::Data(n)),
        None => None,
    };
    let filled = if let Some(ReadOutcome::Data(n)) = outcome {
        n
    } else {
        0
    };
    buf.truncate(start + filled);
    if let Some(outcome) = outcome {
        *slot = Some(buf);
        return outcome;
    }
    if !buf.is_empty() {
        let outcome = read_more(reader, &mut buf, timeout, Some(outbox)).await;
        *slot = Some(buf);
        return outcome;
    }
    pool.put(buf);
    let mut small = [0u8; QUIET_READ];
    let outcome = read_racing(reader, &mut small, timeout, Some(outbox)).await;
    if let ReadOutcome::Data(n) = outcome {
        let mut buf = pool.take();
        buf.extend_from_slice(&small[..n]);
        *slot = Some(buf);
    }
    outcome
}

/// Read buffers shared by a shard's connections, so an idle connection holds none.
#[derive(Clone, Default)]
pub struct BufferPool(Rc<RefCell<Vec<BytesMut>>>);

const POOLED_BUFFERS: usize = 256;

impl BufferPool {
    fn take(&self) -> BytesMut {
        self.0
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| BytesMut::with_capacity(READ_CHUNK))
    }

    fn put(&self, mut buf: BytesMut) {
        let mut pool = self.0.borrow_mut();
        if buf.is_empty() && buf.capacity() >= READ_CHUNK && pool.len() < POOLED_BUFFERS {
            buf.clear();
            pool.push(buf);
        }
    }
}

/// What a connection needs to know after its upgrade.
struct Limits {
    max_message: usize,
    outgoing: usize,
    heartbeat_ms: u64,
}

/// Reads the request head and answers it; `Some` once the socket speaks WebSocket. Everything
/// allocated for the head is freed when this returns, before the connection's long life.
async fn handshake(
    reader: &mut (impl AsyncRead + Unpin),
    writer: &mut (impl AsyncWrite + Unpin),
    buf: &mut BytesMut,
    shard: &Rc<RefCell<Shard>>,
) -> Option<Limits> {
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
                let _ = writer.write_all(response.as_bytes()).await;
                return None;
            }
        }
        if !matches!(
            read_more(reader, buf, HEAD_TIMEOUT, None).await,
            ReadOutcome::Data(_)
        ) {
            return None;
        }
    };
    let (upgrade, health, limits) = {
        let shard = shard.borrow();
        let c = shard.config();
        let upgrade = head.method == "GET" && head.upgrade_websocket && head.path == c.url_path;
        let health = head.method == "GET" && head.path == c.health_check_path;
        let limits = Limits {
            max_message: c.max_message_size,
            outgoing: c.max_outgoing_buffer,
            heartbeat_ms: c.heartbeat_interval_ms,
        };
        (upgrade, health, limits)
    };
    let response = match (&head.websocket_key, upgrade, health) {
        (Some(key), true, _) => http::upgrade_response(key),
        (_, _, true) => http::plain_response(200, "OK", "text/plain", "OK"),
        _ => http::plain_response(404, "Not Found", "text/plain", "not found"),
    };
    let sent = writer.write_all(response.as_bytes()).await.is_ok();
    if upgrade && head.websocket_key.is_some() {
        return sent.then_some(limits);
    }
    let _ = writer.close().await;
    None
}

pub async fn serve(
    stream: TcpStream,
    shard: Rc<RefCell<Shard>>,
    pump: Pump,
    runtime: Runtime,
    pool: BufferPool,
) {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = futures_lite::io::split(stream);
    let mut buf = pool.take();
    let Some(Limits {
        max_message,
        outgoing: limit,
        heartbeat_ms: heartbeat,
    }) = handshake(&mut reader, &mut writer, &mut buf, &shard).await
    else {
        return;
    };
    let outbox = Outbox::new(limit);
    let local = shard
        .borrow_mut()
        .open_conn(outbox.clone(), runtime.now_ms());
    let writer_task = glommio::spawn_local(write_loop(writer, outbox.clone())).detach();
    // Silent sockets are dropped after two heartbeat intervals, as the reference does.
    let silence = Duration::from_millis(heartbeat.saturating_mul(2).max(1000));
    let cx = ReadContext {
        shard: &shard,
        pump: &pump,
        runtime: &runtime,
        pool: &pool,
        outbox: &outbox,
        local,
        max_message,
        silence,
    };
    let end = read_loop(&mut reader, buf, cx).await;
    shard.borrow_mut().close_conn(local);
    pump.wake();
    if let End::PeerGone = end {
        outbox.abort();
        return;
    }
    outbox.close(ws::CLOSE_NORMAL, "");
    let _ = futures_lite::future::or(
        async {
            writer_task.await;
        },
        glommio::timer::sleep(CLOSE_TIMEOUT),
    )
    .await;
    // Keep reading (and discarding) until the client closes too: closing a socket with unread
    // data resets it, and the client would never see our close frame.
    let drain = async {
        let mut sink = BytesMut::new();
        while let ReadOutcome::Data(_) =
            read_more(&mut reader, &mut sink, CLOSE_TIMEOUT, None).await
        {
            sink.clear();
        }
    };
    futures_lite::future::or(drain, glommio::timer::sleep(CLOSE_TIMEOUT)).await;
}

/// What the reader of one connection works with.
struct ReadContext<'a> {
    shard: &'a Rc<RefCell<Shard>>,
    pump: &'a Pump,
    runtime: &'a Runtime,
    pool: &'a BufferPool,
    outbox: &'a Outbox,
    local: u32,
    max_message: usize,
    silence: Duration,
}

/// How a connection's reading ended.
enum End {
    /// The socket is gone (EOF or error): nothing more can be sent.
    PeerGone,
    /// A close handshake or a server-side close: send what is queued and a close frame.
    Closing,
}

async fn read_loop(
    reader: &mut (impl AsyncRead + Unpin),
    first: BytesMut,
    cx: ReadContext<'_>,
) -> End {
    let mut decoder = FrameDecoder::new(cx.max_message);
    let mut slot = Some(first);
    loop {
        if let Some(buf) = slot.as_mut() {
            if !decode_all(&mut decoder, buf, &cx) {
                return End::Closing;
            }
        }
        if cx.outbox.closing().is_some() {
            return End::Closing;
        }
        match next_bytes(reader, &mut slot, cx.pool, cx.silence, cx.outbox).await {
            ReadOutcome::Data(_) => {}
            ReadOutcome::TimedOut => {
                cx.outbox.close(ws::CLOSE_GOING_AWAY, "heartbeat timeout");
                return End::Closing;
            }
            ReadOutcome::Stopped => return End::Closing,
            ReadOutcome::Closed => return End::PeerGone,
        }
    }
}

/// Hands every complete frame in `buf` to the shard; false once the connection must end.
fn decode_all(decoder: &mut FrameDecoder, buf: &mut BytesMut, cx: &ReadContext<'_>) -> bool {
    let mut touched = false;
    let keep_going = loop {
        match decoder.decode(buf) {
            Ok(Some(event)) => {
                touched = true;
                match event {
                    WsEvent::Binary(payload) => cx.shard.borrow_mut().on_client_frame(
                        cx.local,
                        &payload,
                        cx.runtime.now_ms(),
                    ),
                    WsEvent::Text(_) => cx.shard.borrow_mut().on_client_text(cx.local),
                    WsEvent::Ping(payload) => cx.outbox.push(ws::frame(ws::OP_PONG, &payload)),
                    WsEvent::Pong(_) => {}
                    WsEvent::Close(_, _) => {
                        cx.outbox.close(ws::CLOSE_NORMAL, "");
                        break false;
                    }
                }
            }
            Ok(None) => break true,
            Err(violation) => {
                if violation.code == ws::CLOSE_TOO_BIG {
                    cx.shard.borrow_mut().on_oversize(cx.local);
                }
                cx.outbox.close(violation.code, violation.reason);
                break false;
            }
        }
    };
    if touched {
        let jobs = cx.shard.borrow_mut().take_auth_jobs();
        for job in jobs {
            glommio::spawn_local(super::webhook::run(job, cx.shard.clone(), cx.pump.clone()))
                .detach();
        }
    }
    if touched || !keep_going {
        cx.pump.wake();
    }
    keep_going
}

/// Drains the outbox: one frame goes out as it is, several are coalesced into one write.
async fn write_loop(mut writer: impl AsyncWrite + Unpin, outbox: Outbox) {
    let mut batch: Vec<Bytes> = Vec::new();
    let mut coalesced: Vec<u8> = Vec::new();
    loop {
        poll_fn(|cx| {
            outbox.drain(&mut batch, cx.waker());
            if batch.is_empty() && outbox.closing().is_none() {
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await;
        let result = match batch.len() {
            0 => Ok(()),
            1 => writer.write_all(&batch[0]).await,
            _ => {
                coalesced.clear();
                for frame in &batch {
                    coalesced.extend_from_slice(frame);
                }
                writer.write_all(&coalesced).await
            }
        };
        batch.clear();
        if coalesced.capacity() > 1 << 20 {
            coalesced = Vec::new();
        }
        if result.is_err() {
            outbox.close(ws::CLOSE_GOING_AWAY, "write failed");
            return;
        }
        if let Some((code, reason)) = outbox.closing() {
            if code == ABORTED {
                return;
            }
            if outbox.queued_bytes() == 0 {
                let _ = writer.write_all(&ws::close_frame(code, reason)).await;
                let _ = writer.flush().await;
                let _ = writer.close().await;
                return;
            }
        }
    }
}
