//! Plain HTTP requests on the server port (everything but the WebSocket upgrade): deepstream's
//! HTTP API and its auth endpoint, the health check and monitoring, over keep-alive
//! connections. An API request becomes a connection of the shard that logs in and sends its
//! items one at a time, each after the last one's answer, so the items of a batch apply in
//! order and every answer (a write's after the store has it) is the truth.

use super::shard_io::ShardIo;
use crate::api::jif::{self, ItemResult};
use crate::api::{self, Route};
use crate::protocol::http::{self, parse_head, ChunkedBody, HeadError, RequestHead};
use crate::protocol::message::{auth_action, topic, Message};
use crate::protocol::ws;
use crate::shard::outbox::Outbox;
use bytes::{Bytes, BytesMut};
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use futures_lite::{AsyncRead, AsyncWrite};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How long a keep-alive connection may wait quietly for its next request (node's default).
const KEEP_ALIVE_IDLE: Duration = Duration::from_secs(5);
/// What one API request's replies may queue before it is cut short (a read of a large record
/// is one frame; a batch's replies are taken one at a time).
const API_OUTBOX: usize = 64 << 20;
const READ_CHUNK: usize = 16 * 1024;
/// How long, and how many bytes, a closing connection still reads (and drops).
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 16 << 20;

/// Serves plain requests on one socket, `first` (whose head is already read) and then any
/// that follow on the same connection, until the client closes, asks to, or idles.
pub async fn serve(
    stream: &mut (impl AsyncRead + AsyncWrite + Unpin),
    buf: &mut BytesMut,
    first: RequestHead,
    io: &Rc<ShardIo>,
) {
    let mut head = first;
    loop {
        let keep_alive = answer(stream, buf, &head, io).await;
        if !keep_alive
            || io
                .runtime
                .stopping
                .load(std::sync::atomic::Ordering::Relaxed)
        {
            break;
        }
        head = match next_head(stream, buf, io).await {
            Some(next) => next,
            None => break,
        };
        // Another upgrade or a request on the WebSocket path is not served on a reused socket.
        if head.upgrade_websocket {
            let _ = write(stream, &text(404, "Endpoint not found.", &[], false)).await;
            break;
        }
    }
    linger_close(stream).await;
}

/// Closes our side, then reads and drops what the client still sends (a refused body, most
/// often) for a little while: closing with unread bytes resets the connection, and the client
/// could lose the answer it was sent.
async fn linger_close(stream: &mut (impl AsyncRead + AsyncWrite + Unpin)) {
    if stream.close().await.is_err() {
        return;
    }
    let drain = async {
        let mut sink = vec![0u8; READ_CHUNK];
        let mut left = LINGER_BYTES;
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    futures_lite::future::or(drain, glommio::timer::sleep(LINGER)).await;
}

/// Reads the next request head, within the idle timeout for its first byte and the handshake
/// timeout for the rest.
async fn next_head(
    stream: &mut (impl AsyncRead + AsyncWrite + Unpin),
    buf: &mut BytesMut,
    io: &Rc<ShardIo>,
) -> Option<RequestHead> {
    let handshake = Duration::from_millis(io.shard.borrow().config().limits.handshake_timeout_ms);
    let mut deadline = Instant::now() + KEEP_ALIVE_IDLE;
    let mut started = !buf.is_empty();
    if started {
        deadline = Instant::now() + handshake;
    }
    loop {
        match parse_head(buf) {
            Ok(Some((head, len))) => {
                let _ = buf.split_to(len);
                return Some(head);
            }
            Ok(None) => {}
            Err(_) => {
                let _ = write(stream, &text(400, "bad request", &[], false)).await;
                return None;
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || !read_more(stream, buf, left).await {
            return None;
        }
        if !started {
            started = true;
            deadline = Instant::now() + handshake;
        }
    }
}

/// Reads more bytes within `timeout`; false on end of stream, error or timeout.
async fn read_more(
    stream: &mut (impl AsyncRead + Unpin),
    buf: &mut BytesMut,
    timeout: Duration,
) -> bool {
    let mut chunk = vec![0u8; READ_CHUNK];
    let read = async {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => None,
            Ok(n) => Some(n),
        }
    };
    let timer = async {
        glommio::timer::sleep(timeout).await;
        None
    };
    match futures_lite::future::or(read, timer).await {
        Some(n) => {
            buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
            true
        }
        None => false,
    }
}

/// Writes and flushes (over TLS, a write may leave records in the session until flushed).
async fn write(stream: &mut (impl AsyncWrite + Unpin), bytes: &[u8]) -> bool {
    stream.write_all(bytes).await.is_ok() && stream.flush().await.is_ok()
}

/// A text answer as the reference sends them (its text ends in an empty line).
fn text(status: u16, body: &str, extra: &[(&str, String)], keep_alive: bool) -> Vec<u8> {
    let body = if body.is_empty() {
        String::new()
    } else {
        format!("{body}\r\n\r\n")
    };
    let mut headers: Vec<(&str, &str)> = extra.iter().map(|(n, v)| (*n, v.as_str())).collect();
    headers.push(("Content-Type", "text/plain; charset=utf-8"));
    http::response(status, &headers, body.as_bytes(), keep_alive)
}

fn json(status: u16, body: &str, extra: &[(&str, String)], keep_alive: bool) -> Vec<u8> {
    let body = format!("{body}\r\n\r\n");
    let mut headers: Vec<(&str, &str)> = extra.iter().map(|(n, v)| (*n, v.as_str())).collect();
    headers.push(("Content-Type", "application/json; charset=utf-8"));
    http::response(status, &headers, body.as_bytes(), keep_alive)
}

/// Answers one request; true if the connection stays open for another.
async fn answer(
    stream: &mut (impl AsyncRead + AsyncWrite + Unpin),
    buf: &mut BytesMut,
    head: &RequestHead,
    io: &Rc<ShardIo>,
) -> bool {
    let config = io.shard.borrow().config_arc();
    let mut keep_alive = head.keep_alive;
    let origin = match api::origin_headers(&config.api, head) {
        Ok(headers) => headers,
        Err(why) => {
            let _ = write(stream, &text(403, &why, &[], false)).await;
            return false;
        }
    };
    if head.upgrade_websocket {
        // An upgrade on another path: the reference drops the socket.
        return false;
    }
    if let Some(admin) = crate::api::admin::route(&config.admin, head) {
        let body = if head.content_length > 0 || head.chunked {
            match read_body(stream, buf, head, io).await {
                Ok(body) => body,
                Err((status, why)) => {
                    let _ = write(stream, &text(status, &why, &origin, false)).await;
                    return false;
                }
            }
        } else {
            Vec::new()
        };
        let (status, body) = super::admin::answer(io, admin, &body).await;
        return write(stream, &json(status, &body, &origin, keep_alive)).await && keep_alive;
    }
    if let Some(page) = super::dashboard::route(&config.admin, head) {
        let response = super::dashboard::answer(io, page, &origin, keep_alive).await;
        return write(stream, &response).await && keep_alive;
    }
    let route = {
        api::route(
            &config.api,
            &config.health_check_path,
            &io.monitor.paths(),
            head,
        )
    };
    let response = match route {
        Route::Answer(status, body, extra) => {
            // A refused POST's body is not read: the connection cannot be reused.
            if head.method == "POST" || head.content_length > 0 || head.chunked {
                keep_alive = false;
            }
            let mut headers = origin;
            headers.extend(extra);
            text(status, &body, &headers, keep_alive)
        }
        Route::Health => {
            let mut headers = origin;
            headers.push(("Content-Type", "text/plain".into()));
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            http::response(200, &headers, b"OK", keep_alive)
        }
        Route::Ready => {
            // 200 while nothing keeps the node from serving; 503 naming what is down.
            let problems = crate::health::problems();
            let (status, body) = if problems.is_empty() {
                (200, "READY".to_string())
            } else {
                let lines: Vec<String> = problems
                    .iter()
                    .map(|(part, why)| format!("{part}: {why}"))
                    .collect();
                (503, format!("NOT READY\n{}", lines.join("\n")))
            };
            text(status, &body, &origin, keep_alive)
        }
        Route::Monitoring(index) => {
            let admitted = io
                .monitor
                .monitors
                .get(index)
                .is_some_and(|m| m.admits(|name| head.header(name).map(str::to_string)));
            // The reference hides the endpoint from a request without the header.
            let read = if admitted {
                io.monitor.read(index, &io.pump).await
            } else {
                None
            };
            match read {
                _ if !admitted => text(404, "Endpoint not found.", &origin, keep_alive),
                Some((content_type, body)) => {
                    let mut headers: Vec<(&str, &str)> =
                        origin.iter().map(|(n, v)| (*n, v.as_str())).collect();
                    headers.push(("Content-Type", content_type));
                    http::response(200, &headers, body.as_bytes(), keep_alive)
                }
                None => text(
                    503,
                    "Not every shard answered in time.",
                    &origin,
                    keep_alive,
                ),
            }
        }
        Route::Api | Route::Auth => {
            let body = match read_body(stream, buf, head, io).await {
                Ok(body) => body,
                Err((status, why)) => {
                    let _ = write(stream, &text(status, &why, &origin, false)).await;
                    return false;
                }
            };
            let busy = io.api_requests.get() >= config.limits.http_requests_per_shard;
            if busy {
                text(503, "Too many requests in progress.", &origin, keep_alive)
            } else {
                io.api_requests.set(io.api_requests.get() + 1);
                let (status, body, is_json) = if route == Route::Auth {
                    auth_request(io, &body).await
                } else {
                    api_request(io, &body).await
                };
                io.api_requests.set(io.api_requests.get().saturating_sub(1));
                if is_json {
                    json(status, &body, &origin, keep_alive)
                } else {
                    text(status, &body, &origin, keep_alive)
                }
            }
        }
    };
    write(stream, &response).await && keep_alive
}

/// The request's body: `Content-Length` bytes or chunks, at most `maxMessageSize`, within the
/// handshake timeout. A client that waits for `100 Continue` is told to go on first.
async fn read_body(
    stream: &mut (impl AsyncRead + AsyncWrite + Unpin),
    buf: &mut BytesMut,
    head: &RequestHead,
    io: &Rc<ShardIo>,
) -> Result<Vec<u8>, (u16, String)> {
    let (max, timeout) = {
        let shard = io.shard.borrow();
        let c = shard.config();
        (
            c.max_message_size,
            Duration::from_millis(c.limits.handshake_timeout_ms),
        )
    };
    let too_large = || {
        (
            413,
            "Failed to parse body of request: request entity too large".to_string(),
        )
    };
    if !head.chunked && head.content_length > max {
        return Err(too_large());
    }
    if head.expect_continue && !write(stream, b"HTTP/1.1 100 Continue\r\n\r\n").await {
        return Err((400, "connection lost".into()));
    }
    let deadline = Instant::now() + timeout;
    let timed_out = || (408, "Request body not received in time.".to_string());
    // What the body holds counts in the shard's budget for unauthenticated bytes: 400 sockets
    // each holding a nearly complete 1 MiB body held 476 MiB before.
    let mut held = super::admission::HeldBytes::new(io);
    let over_budget = || {
        (
            503,
            "Too many bytes held by unfinished requests on this server; try again later."
                .to_string(),
        )
    };
    if head.chunked {
        let mut chunked = ChunkedBody::default();
        loop {
            if !held.hold(buf.len().saturating_add(chunked.body.len())) {
                return Err(over_budget());
            }
            match chunked.feed(buf, max) {
                Ok(true) => return Ok(chunked.body),
                Ok(false) => {}
                Err(HeadError::TooLarge) => return Err(too_large()),
                Err(HeadError::Malformed) => {
                    return Err((400, "Failed to parse body of request: bad chunk".into()))
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !read_more(stream, buf, left).await {
                return Err(timed_out());
            }
        }
    }
    while buf.len() < head.content_length {
        if !held.hold(buf.len()) {
            return Err(over_budget());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || !read_more(stream, buf, left).await {
            return Err(timed_out());
        }
    }
    Ok(buf.split_to(head.content_length).to_vec())
}

/// One request's connection on the shard, closed however the request ends.
struct ApiConn {
    io: Rc<ShardIo>,
    local: u32,
    outbox: Outbox,
    frames: Vec<Bytes>,
}

impl ApiConn {
    fn open(io: &Rc<ShardIo>) -> ApiConn {
        let now = io.runtime.now_ms();
        let outbox = Outbox::new(API_OUTBOX, now);
        let local = io.pump.enter().open_api_conn(outbox.clone(), now);
        ApiConn {
            io: io.clone(),
            local,
            outbox,
            frames: Vec::new(),
        }
    }

    /// The next message the shard sends this request, or `None` once `deadline` has passed
    /// (or the shard closed the connection).
    async fn next(&mut self, deadline: Instant) -> Option<Message> {
        loop {
            if !self.frames.is_empty() {
                let frame = self.frames.remove(0);
                let Some((ws::OP_BINARY, payload)) = ws::server_frame_payload(&frame) else {
                    continue;
                };
                match Message::parse(&payload) {
                    Ok(msg) => return Some(msg),
                    Err(_) => continue,
                }
            }
            let outbox = &self.outbox;
            let frames = &mut self.frames;
            let arrived = std::future::poll_fn(|cx| {
                outbox.drain(frames, cx.waker());
                if !frames.is_empty() {
                    return std::task::Poll::Ready(true);
                }
                if outbox.closing().is_some() {
                    return std::task::Poll::Ready(false);
                }
                std::task::Poll::Pending
            });
            let left = deadline.saturating_duration_since(Instant::now());
            let timer = async {
                glommio::timer::sleep(left).await;
                false
            };
            if !futures_lite::future::or(arrived, timer).await {
                return None;
            }
        }
    }

    /// Logs in with `auth_data` (a JSON object's text). `Ok` with the client data the login
    /// gave, or `Err` with the 401's text.
    /// The auth endpoint's answer for the login (`auth::endpoint_answer`), or why it was
    /// refused.
    async fn login(&mut self, auth_data: &str, deadline: Instant) -> Result<Option<Bytes>, String> {
        let value = simd_json::to_owned_value(&mut auth_data.as_bytes().to_vec())
            .ok()
            .filter(|v| matches!(v, simd_json::OwnedValue::Object(_)));
        let Some(value) = value else {
            return Err("Invalid authentication data.".into());
        };
        self.io.pump.enter().api_login(self.local, value);
        while let Some(reply) = self.next(deadline).await {
            if reply.topic != topic::AUTH {
                continue;
            }
            return match reply.action {
                auth_action::AUTH_SUCCESSFUL => Ok(reply.data),
                _ => Err(reply
                    .data
                    .as_deref()
                    .and_then(|d| serde_json::from_slice::<String>(d).ok())
                    .unwrap_or_else(|| "Unsuccessful authentication attempt.".into())),
            };
        }
        Err("Unsuccessful authentication attempt.".into())
    }
}

impl Drop for ApiConn {
    fn drop(&mut self) {
        self.io.pump.enter().close_conn(self.local);
    }
}

/// A JIF request: status, body, and whether the body is JSON.
async fn api_request(io: &Rc<ShardIo>, body: &[u8]) -> (u16, String, bool) {
    let config = io.shard.borrow().config_arc();
    let request = match jif::parse_request(body, config.api.allow_auth_data) {
        Ok(request) => request,
        Err(refusal) => return (refusal.status, refusal.text, false),
    };
    let deadline = Instant::now() + Duration::from_millis(config.api.request_timeout_ms);
    let mut conn = ApiConn::open(io);
    if let Err(why) = conn.login(&request.auth_data, deadline).await {
        log_refused_login(&config, &request.auth_data);
        return (401, why, false);
    }
    let items = match request.items {
        Ok(items) => items,
        Err(refusal) => return (refusal.status, refusal.text, false),
    };
    let mut results = Vec::with_capacity(items.len());
    'items: for item in &items {
        let now = io.runtime.now_ms();
        io.pump
            .enter()
            .on_api_message(conn.local, item.msg.clone(), now);
        loop {
            let Some(reply) = conn.next(deadline).await else {
                break 'items;
            };
            if let Some(result) = jif::result_of(item, &reply) {
                results.push(result);
                break;
            }
        }
    }
    while results.len() < items.len() {
        results.push(ItemResult::timed_out());
    }
    (200, jif::response_body(&results), true)
}

/// The auth endpoint: `{token, clientData}` as deepstream answers it (`auth::endpoint_answer`).
async fn auth_request(io: &Rc<ShardIo>, body: &[u8]) -> (u16, String, bool) {
    let config = io.shard.borrow().config_arc();
    let auth_data = String::from_utf8_lossy(body).into_owned();
    let deadline = Instant::now() + Duration::from_millis(config.api.request_timeout_ms);
    let mut conn = ApiConn::open(io);
    match conn.login(&auth_data, deadline).await {
        Ok(answer) => {
            let answer = answer.as_deref().unwrap_or(b"{}");
            (200, String::from_utf8_lossy(answer).into_owned(), true)
        }
        Err(why) => {
            log_refused_login(&config, &auth_data);
            let why = if why == "Unsuccessful authentication attempt." {
                "Invalid authentication data.".into()
            } else {
                why
            };
            (401, why, false)
        }
    }
}

fn log_refused_login(config: &crate::config::Config, auth_data: &str) {
    if config.api.log_invalid_auth_data {
        crate::log!(
            crate::log::Level::Debug,
            "AUTH_UNSUCCESSFUL",
            "an HTTP API login was refused: {auth_data}"
        );
    }
}
