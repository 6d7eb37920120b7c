//! One client socket: the HTTP request head (WebSocket upgrade or health check), then a reader
//! that feeds frames to the shard and a writer that drains the connection's outbox.

use super::mesh::Pump;
use super::Runtime;
use crate::protocol::http::{self, parse_head};
use crate::protocol::ws::{self, FrameDecoder, WsEvent};
use crate::shard::outbox::Outbox;
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

enum ReadOutcome {
    Data(usize),
    Closed,
    TimedOut,
    Stopped,
}

/// Reads more bytes into `buf`, racing a timeout and the outbox being closed.
async fn read_more(
    reader: &mut (impl AsyncRead + Unpin),
    buf: &mut BytesMut,
    timeout: Duration,
    outbox: Option<&Outbox>,
) -> ReadOutcome {
    let start = buf.len();
    buf.resize(start + READ_CHUNK, 0);
    let read = async {
        match reader.read(&mut buf[start..]).await {
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
    let outcome = futures_lite::future::or(read, futures_lite::future::or(timer, stopped)).await;
    let filled = if let ReadOutcome::Data(n) = outcome {
        n
    } else {
        0
    };
    buf.truncate(start + filled);
    outcome
}

pub async fn serve(stream: TcpStream, shard: Rc<RefCell<Shard>>, pump: Pump, runtime: Runtime) {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = futures_lite::io::split(stream);
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let head = loop {
        match parse_head(&buf) {
            Ok(Some((head, len))) => {
                let _ = buf.split_to(len);
                break head;
            }
            Ok(None) => {}
            Err(_) => {
                let _ = writer
                    .write_all(
                        http::plain_response(400, "Bad Request", "text/plain", "bad request")
                            .as_bytes(),
                    )
                    .await;
                return;
            }
        }
        if !matches!(
            read_more(&mut reader, &mut buf, HEAD_TIMEOUT, None).await,
            ReadOutcome::Data(_)
        ) {
            return;
        }
    };
    let (health_path, url_path, max_message, limit, heartbeat) = {
        let shard = shard.borrow();
        let c = shard.config();
        (
            c.health_check_path.clone(),
            c.url_path.clone(),
            c.max_message_size,
            c.max_outgoing_buffer,
            c.heartbeat_interval_ms,
        )
    };
    let key = match (head.method.as_str(), head.websocket_key.clone()) {
        ("GET", Some(key)) if head.upgrade_websocket && head.path == url_path => key,
        ("GET", _) if head.path == health_path => {
            let _ = writer
                .write_all(http::plain_response(200, "OK", "text/plain", "OK").as_bytes())
                .await;
            let _ = writer.close().await;
            return;
        }
        _ => {
            let _ = writer
                .write_all(
                    http::plain_response(404, "Not Found", "text/plain", "not found").as_bytes(),
                )
                .await;
            let _ = writer.close().await;
            return;
        }
    };
    if writer
        .write_all(http::upgrade_response(&key).as_bytes())
        .await
        .is_err()
    {
        return;
    }
    let outbox = Outbox::new(limit);
    let local = shard
        .borrow_mut()
        .open_conn(outbox.clone(), runtime.now_ms());
    let writer_task = glommio::spawn_local(write_loop(writer, outbox.clone())).detach();
    // Silent sockets are dropped after two heartbeat intervals, as the reference does.
    let silence = Duration::from_millis(heartbeat.saturating_mul(2).max(1000));
    read_loop(
        &mut reader,
        buf,
        &shard,
        &pump,
        &runtime,
        local,
        &outbox,
        max_message,
        silence,
    )
    .await;
    shard.borrow_mut().close_conn(local);
    pump.wake();
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

#[allow(clippy::too_many_arguments)]
async fn read_loop(
    reader: &mut (impl AsyncRead + Unpin),
    mut buf: BytesMut,
    shard: &Rc<RefCell<Shard>>,
    pump: &Pump,
    runtime: &Runtime,
    local: u32,
    outbox: &Outbox,
    max_message: usize,
    silence: Duration,
) {
    let mut decoder = FrameDecoder::new(max_message);
    loop {
        let mut touched = false;
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(event)) => {
                    touched = true;
                    match event {
                        WsEvent::Binary(payload) => {
                            shard
                                .borrow_mut()
                                .on_client_frame(local, &payload, runtime.now_ms())
                        }
                        WsEvent::Text(_) => shard.borrow_mut().on_client_text(local),
                        WsEvent::Ping(payload) => outbox.push(ws::frame(ws::OP_PONG, &payload)),
                        WsEvent::Pong(_) => {}
                        WsEvent::Close(_, _) => {
                            outbox.close(ws::CLOSE_NORMAL, "");
                            pump.wake();
                            return;
                        }
                    }
                }
                Ok(None) => break,
                Err(violation) => {
                    if violation.code == ws::CLOSE_TOO_BIG {
                        shard.borrow_mut().on_oversize(local);
                    }
                    outbox.close(violation.code, violation.reason);
                    pump.wake();
                    return;
                }
            }
        }
        if touched {
            pump.wake();
        }
        if outbox.closing().is_some() {
            return;
        }
        if buf.is_empty() && buf.capacity() > 4 * READ_CHUNK {
            buf = BytesMut::with_capacity(READ_CHUNK);
        }
        match read_more(reader, &mut buf, silence, Some(outbox)).await {
            ReadOutcome::Data(_) => {}
            ReadOutcome::TimedOut => {
                outbox.close(ws::CLOSE_GOING_AWAY, "heartbeat timeout");
                return;
            }
            ReadOutcome::Closed | ReadOutcome::Stopped => return,
        }
    }
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
            if outbox.queued_bytes() == 0 {
                let _ = writer.write_all(&ws::close_frame(code, reason)).await;
                let _ = writer.flush().await;
                let _ = writer.close().await;
                return;
            }
        }
    }
}
