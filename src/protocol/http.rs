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
}

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
    let path = target.split('?').next().unwrap_or_default().to_string();
    let mut head = RequestHead {
        method,
        path,
        websocket_key: None,
        websocket_version: None,
        upgrade_websocket: false,
        content_length: 0,
    };
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
            _ => {}
        }
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
}
