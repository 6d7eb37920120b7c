//! The HTTP/1.1 request head that opens every connection: WebSocket upgrade or a plain GET.

use base64::Engine;
use sha1::{Digest, Sha1};

/// Upper bound for a request head; larger heads are refused.
pub const MAX_HEAD: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    /// The path without its query string.
    pub path: String,
    pub websocket_key: Option<String>,
    pub websocket_version: Option<String>,
    pub upgrade_websocket: bool,
    pub content_length: usize,
    /// `Transfer-Encoding: chunked`: the body comes in chunks (`ChunkedBody`).
    pub chunked: bool,
    /// The media type of `Content-Type`, lower case, without parameters.
    pub content_type: Option<String>,
    pub origin: Option<String>,
    pub referer: Option<String>,
    pub host: Option<String>,
    pub authorization: Option<String>,
    /// HTTP/1.1 keeps the connection unless it says `close`; 1.0 only with `keep-alive`.
    pub keep_alive: bool,
    /// `Expect: 100-continue`: the client waits for a go-ahead before the body.
    pub expect_continue: bool,
    pub cors_request_method: Option<String>,
    pub cors_request_headers: Option<String>,
    /// Headers the monitoring endpoint may be configured to check, as (lower-case name, value).
    pub other: Vec<(String, String)>,
}

impl RequestHead {
    /// A header not read into a field of its own.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.other
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Headers kept in `RequestHead::other`, so a client cannot make the head cost much memory.
const OTHER_HEADERS_KEPT: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    TooLarge,
    Malformed,
}

/// Parses the head if it is complete; returns it with its length in bytes.
pub fn parse_head(buf: &[u8]) -> Result<Option<(RequestHead, usize)>, HeadError> {
    let Some(end) = memchr::memmem::find(buf, b"\r\n\r\n") else {
        return if buf.len() > MAX_HEAD {
            Err(HeadError::TooLarge)
        } else {
            Ok(None)
        };
    };
    let text = std::str::from_utf8(&buf[..end]).map_err(|_| HeadError::Malformed)?;
    let mut lines = text.split("\r\n");
    let mut request_line = lines.next().ok_or(HeadError::Malformed)?.split(' ');
    let method = request_line.next().ok_or(HeadError::Malformed)?.to_string();
    let target = request_line.next().ok_or(HeadError::Malformed)?;
    let version = request_line.next().unwrap_or("HTTP/1.0");
    let path = target.split('?').next().unwrap_or_default().to_string();
    let mut head = RequestHead {
        method,
        path,
        websocket_key: None,
        websocket_version: None,
        upgrade_websocket: false,
        content_length: 0,
        chunked: false,
        content_type: None,
        origin: None,
        referer: None,
        host: None,
        authorization: None,
        keep_alive: version == "HTTP/1.1",
        expect_continue: false,
        cors_request_method: None,
        cors_request_headers: None,
        other: Vec::new(),
    };
    let mut connection_said: Option<bool> = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(HeadError::Malformed);
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "upgrade" => head.upgrade_websocket = value.eq_ignore_ascii_case("websocket"),
            "sec-websocket-key" => head.websocket_key = Some(value.to_string()),
            "sec-websocket-version" => head.websocket_version = Some(value.to_string()),
            "content-length" => {
                head.content_length = value.parse().map_err(|_| HeadError::Malformed)?
            }
            "transfer-encoding" => {
                head.chunked = value
                    .rsplit(',')
                    .next()
                    .is_some_and(|v| v.trim().eq_ignore_ascii_case("chunked"))
            }
            "content-type" => {
                let media = value.split(';').next().unwrap_or_default().trim();
                head.content_type = Some(media.to_ascii_lowercase());
            }
            "origin" => head.origin = Some(value.to_string()),
            "referer" => head.referer = Some(value.to_string()),
            "host" => head.host = Some(value.to_string()),
            "authorization" => head.authorization = Some(value.to_string()),
            "expect" => head.expect_continue = value.eq_ignore_ascii_case("100-continue"),
            "access-control-request-method" => head.cors_request_method = Some(value.to_string()),
            "access-control-request-headers" => head.cors_request_headers = Some(value.to_string()),
            "connection" => {
                for token in value.split(',') {
                    let token = token.trim();
                    if token.eq_ignore_ascii_case("close") {
                        connection_said = Some(false);
                    } else if token.eq_ignore_ascii_case("keep-alive") && connection_said.is_none()
                    {
                        connection_said = Some(true);
                    }
                }
            }
            other if head.other.len() < OTHER_HEADERS_KEPT => {
                head.other.push((other.to_string(), value.to_string()))
            }
            _ => {}
        }
    }
    if let Some(keep) = connection_said {
        head.keep_alive = keep;
    }
    Ok(Some((head, end + 4)))
}

pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// The 101 answer; permessage-deflate is declined by not naming it.
pub fn upgrade_response(key: &str) -> String {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(key)
    )
}

/// The reason phrase of the statuses corestream answers with.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// A whole response: status line, the headers given, `Content-Length` and `Connection`.
pub fn response(status: u16, headers: &[(&str, &str)], body: &[u8], keep_alive: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(160 + body.len());
    out.extend_from_slice(format!("HTTP/1.1 {status} {}\r\n", reason(status)).as_bytes());
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if status != 204 {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(if keep_alive {
        b"Connection: keep-alive\r\n\r\n".as_slice()
    } else {
        b"Connection: close\r\n\r\n".as_slice()
    });
    if status != 204 {
        out.extend_from_slice(body);
    }
    out
}

/// Bytes of trailer lines after the last chunk, at most: an endless trailer (no line end)
/// grew the buffer without bound and was scanned again on every read.
pub const MAX_TRAILER: usize = 8 * 1024;

/// A body sent with `Transfer-Encoding: chunked`, decoded as it arrives.
#[derive(Debug, Default)]
pub struct ChunkedBody {
    pub body: Vec<u8>,
    /// Bytes of the current chunk still to come; `None` between chunks.
    left: Option<usize>,
    done: bool,
    /// Trailer bytes taken so far.
    trailer: usize,
}

impl ChunkedBody {
    /// Takes what it can from the front of `buf`. `Ok(true)` once the last chunk (and the
    /// empty trailer) is in; a body past `max` bytes or a malformed chunk is an error.
    pub fn feed(&mut self, buf: &mut bytes::BytesMut, max: usize) -> Result<bool, HeadError> {
        use bytes::Buf;
        loop {
            if self.done {
                // The trailer: header lines until an empty one, `MAX_TRAILER` bytes at most.
                let Some(end) = memchr::memmem::find(buf, b"\r\n") else {
                    if self.trailer.saturating_add(buf.len()) > MAX_TRAILER {
                        return Err(HeadError::TooLarge);
                    }
                    return Ok(false);
                };
                buf.advance(end + 2);
                if end == 0 {
                    return Ok(true);
                }
                self.trailer = self.trailer.saturating_add(end + 2);
                if self.trailer > MAX_TRAILER {
                    return Err(HeadError::TooLarge);
                }
                continue;
            }
            match self.left {
                Some(0) => {
                    if buf.len() < 2 {
                        return Ok(false);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(HeadError::Malformed);
                    }
                    buf.advance(2);
                    self.left = None;
                }
                Some(n) => {
                    let take = n.min(buf.len());
                    if take == 0 {
                        return Ok(false);
                    }
                    self.body.extend_from_slice(&buf[..take]);
                    buf.advance(take);
                    self.left = Some(n - take);
                }
                None => {
                    let Some(end) = memchr::memmem::find(buf, b"\r\n") else {
                        return if buf.len() > 64 {
                            Err(HeadError::Malformed)
                        } else {
                            Ok(false)
                        };
                    };
                    let line =
                        std::str::from_utf8(&buf[..end]).map_err(|_| HeadError::Malformed)?;
                    let size = line.split(';').next().unwrap_or_default().trim();
                    let size = usize::from_str_radix(size, 16).map_err(|_| HeadError::Malformed)?;
                    buf.advance(end + 2);
                    if self.body.len().saturating_add(size) > max {
                        return Err(HeadError::TooLarge);
                    }
                    if size == 0 {
                        self.done = true;
                    } else {
                        self.left = Some(size);
                    }
                }
            }
        }
    }
}

pub fn plain_response(status: u16, reason: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nAccess-Control-Allow-Origin: *\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_accept_key() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn parses_an_upgrade() {
        let req = b"GET /deepstream?x=1 HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: abc\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\nrest";
        let (head, len) = parse_head(req).unwrap().unwrap();
        assert_eq!(head.path, "/deepstream");
        assert!(head.upgrade_websocket);
        assert_eq!(head.websocket_key.as_deref(), Some("abc"));
        assert_eq!(&req[len..], b"rest");
    }

    #[test]
    fn incomplete_oversize_and_malformed() {
        assert_eq!(parse_head(b"GET / HTTP/1.1\r\nHost: a\r\n"), Ok(None));
        assert_eq!(
            parse_head(&vec![b'a'; MAX_HEAD + 1]),
            Err(HeadError::TooLarge)
        );
        assert_eq!(
            parse_head(b"GET / HTTP/1.1\r\nno colon\r\n\r\n"),
            Err(HeadError::Malformed)
        );
        assert_eq!(parse_head(b"\xff\xfe\r\n\r\n"), Err(HeadError::Malformed));
    }

    #[test]
    fn reads_the_headers_an_api_request_needs() {
        let req = b"POST /api HTTP/1.1\r\nContent-Type: application/json; charset=utf-8\r\nOrigin: http://a\r\nContent-Length: 12\r\nExpect: 100-continue\r\nX-Key: v\r\n\r\n";
        let (head, _) = parse_head(req).unwrap().unwrap();
        assert_eq!(head.content_type.as_deref(), Some("application/json"));
        assert_eq!(head.origin.as_deref(), Some("http://a"));
        assert_eq!(head.content_length, 12);
        assert!(head.keep_alive && head.expect_continue);
        assert_eq!(head.header("x-key"), Some("v"));
        let (head, _) = parse_head(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!head.keep_alive);
        let (head, _) = parse_head(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!head.keep_alive);
    }

    /// Issue 28, defect 3: after the last chunk, trailer bytes with no line end were kept for
    /// ever (+100 MiB in 9 s from one client).
    #[test]
    fn an_endless_trailer_is_refused() {
        let mut chunked = ChunkedBody::default();
        let mut buf = bytes::BytesMut::from(&b"5\r\nhello\r\n0\r\n"[..]);
        assert_eq!(chunked.feed(&mut buf, 1024).ok(), Some(false));
        let mut refused = false;
        for _ in 0..64 {
            buf.extend_from_slice(&[b'a'; 1024]);
            match chunked.feed(&mut buf, 1024) {
                Ok(false) => {}
                Err(HeadError::TooLarge) => {
                    refused = true;
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(refused, "a trailer past {MAX_TRAILER} bytes is refused");
        // Many short trailer lines count too.
        let mut chunked = ChunkedBody::default();
        let mut buf = bytes::BytesMut::from(&b"0\r\n"[..]);
        for _ in 0..2048 {
            buf.extend_from_slice(b"x: y\r\n");
        }
        assert!(matches!(
            chunked.feed(&mut buf, 1024),
            Err(HeadError::TooLarge)
        ));
        // A trailer of a few lines is fine.
        let mut chunked = ChunkedBody::default();
        let mut buf = bytes::BytesMut::from(&b"0\r\nx-sum: 1\r\n\r\n"[..]);
        assert_eq!(chunked.feed(&mut buf, 1024).ok(), Some(true));
    }

    #[test]
    fn chunked_bodies_in_pieces() {
        let whole = b"4\r\nWiki\r\n5;x=y\r\npedia\r\n0\r\nTrailer: a\r\n\r\nNEXT";
        for split in 0..whole.len() {
            let mut body = ChunkedBody::default();
            let mut buf = bytes::BytesMut::from(&whole[..split]);
            let mut done = body.feed(&mut buf, 100).unwrap();
            buf.extend_from_slice(&whole[split..]);
            if !done {
                done = body.feed(&mut buf, 100).unwrap();
            }
            assert!(done, "split at {split}");
            assert_eq!(body.body, b"Wikipedia");
            assert_eq!(&buf[..], b"NEXT");
        }
        let mut buf = bytes::BytesMut::from(&b"ff\r\n"[..]);
        assert_eq!(
            ChunkedBody::default().feed(&mut buf, 10),
            Err(HeadError::TooLarge)
        );
        let mut buf = bytes::BytesMut::from(&b"zz\r\n"[..]);
        assert_eq!(
            ChunkedBody::default().feed(&mut buf, 10),
            Err(HeadError::Malformed)
        );
    }
}
