//! Login work off the shard's turn: auth webhooks (a small HTTP/1.1 client on glommio that
//! posts the login's auth data and turns the answer into an auth verdict, with the configured
//! timeout and retries), authentication plugins (on the plugins' connector thread) and password
//! hashes (on `cpu_pool`, off the shards).

use crate::auth::plugin::PluginAuth;
use crate::auth::{self, LoginOk};
use crate::bridge::BridgeHandle;
use crate::config::{AuthConfig, Config, HttpAuth};
use crate::shard::session::AuthWork;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use std::time::Duration;

/// Largest webhook answer read; more is refused.
const MAX_RESPONSE: usize = 64 * 1024;

/// Does one login's work off the shard: the verdict to hand back (`None`: the strategy is no
/// longer one that is asked, after a reload).
pub async fn verdict(
    work: AuthWork,
    strategy: usize,
    config: &Config,
    plugins: Option<&BridgeHandle>,
) -> Option<Result<LoginOk, Option<String>>> {
    Some(match work {
        AuthWork::Ask(body) => match config.auth.get(strategy) {
            Some(AuthConfig::Http(settings)) => ask_with_retries(settings, &body).await,
            Some(AuthConfig::Plugin(plugin)) => ask_plugin(plugin, body, plugins).await,
            _ => return None,
        },
        // Off the shards at a lower priority (a flood of bad passwords must not delay
        // other clients); a full pool refuses the login.
        AuthWork::Password(check) => super::cpu_pool::run(move || check.run())
            .await
            .flatten()
            .ok_or(None),
    })
}

/// Runs the plugin on the plugins' connector thread; a full or stopped one refuses the login.
async fn ask_plugin(
    plugin: &PluginAuth,
    body: String,
    plugins: Option<&BridgeHandle>,
) -> Result<LoginOk, Option<String>> {
    let Some(plugins) = plugins else {
        return Err(None);
    };
    let (answer, answered) = async_channel::bounded(1);
    let plugin = plugin.clone();
    if let Err(why) = plugins.submit(async move { plugin.ask(&body).await }, answer) {
        crate::log!(
            crate::log::Level::Warn,
            "AUTH_PLUGIN",
            "a login is refused: {why}"
        );
        return Err(None);
    }
    answered.recv().await.unwrap_or(Err(None))
}

async fn ask_with_retries(settings: &HttpAuth, body: &str) -> Result<LoginOk, Option<String>> {
    let mut attempt = 0;
    loop {
        match post(settings, body).await {
            Ok((status, response)) if !settings.retry_status.contains(&status) => {
                return auth::webhook_verdict(status, &response, &settings.permitted_status);
            }
            Ok((status, _)) => crate::log!(
                crate::log::Level::Warn,
                "AUTH_WEBHOOK",
                "auth webhook {}:{}: status {status}, retrying",
                settings.host,
                settings.port
            ),
            Err(reason) => crate::log!(
                crate::log::Level::Warn,
                "AUTH_WEBHOOK",
                "auth webhook {}:{}{}: {reason}",
                settings.host,
                settings.port,
                settings.path
            ),
        }
        if attempt >= settings.retry_attempts {
            let exceeded = settings.retry_attempts > 0;
            return Err(exceeded.then(|| r#"{"error":"AUTH_RETRY_ATTEMPTS_EXCEEDED"}"#.to_string()));
        }
        attempt += 1;
        glommio::timer::sleep(Duration::from_millis(settings.retry_interval_ms)).await;
    }
}

/// One POST with the whole exchange bounded by the request timeout.
pub async fn post(settings: &HttpAuth, body: &str) -> Result<(u16, Vec<u8>), String> {
    let exchange = async {
        let addr = format!("{}:{}", settings.host, settings.port);
        let mut stream = glommio::net::TcpStream::connect(addr.as_str())
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let request = format!(
            "POST {} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            settings.path,
            body.len()
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("cannot send: {e}"))?;
        let mut response = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream
                .read(&mut chunk)
                .await
                .map_err(|e| format!("cannot read: {e}"))?;
            if n == 0 {
                break;
            }
            response.extend_from_slice(&chunk[..n]);
            if response.len() > MAX_RESPONSE {
                return Err("answer too large".to_string());
            }
            if complete(&response) {
                break;
            }
        }
        parse_response(&response)
    };
    let timeout = async {
        glommio::timer::sleep(Duration::from_millis(settings.timeout_ms)).await;
        Err(format!("no answer within {} ms", settings.timeout_ms))
    };
    futures_lite::future::or(exchange, timeout).await
}

/// Head and Content-Length bytes of body are in.
fn complete(response: &[u8]) -> bool {
    let Some(end) = memchr::memmem::find(response, b"\r\n\r\n") else {
        return false;
    };
    match content_length(&response[..end]) {
        Some(len) => response.len() >= end + 4 + len,
        None => false,
    }
}

fn content_length(head: &[u8]) -> Option<usize> {
    let head = std::str::from_utf8(head).ok()?;
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
}

/// Status code and body of an HTTP/1.1 answer (plain or chunked).
fn parse_response(response: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let end =
        memchr::memmem::find(response, b"\r\n\r\n").ok_or("answer without a complete head")?;
    let head = std::str::from_utf8(&response[..end]).map_err(|_| "answer head is not text")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("answer without a status code")?;
    let body = &response[end + 4..];
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    Ok((
        status,
        if chunked {
            dechunk(body)
        } else {
            body.to_vec()
        },
    ))
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = memchr::memmem::find(body, b"\r\n") {
        let size = std::str::from_utf8(&body[..line_end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
            .unwrap_or(0);
        let start = line_end + 2;
        if size == 0 || start + size > body.len() {
            break;
        }
        out.extend_from_slice(&body[start..start + size]);
        body = &body[(start + size + 2).min(body.len())..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_plain_and_chunked_answers() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"id\":\"a\"}\n";
        assert!(complete(plain));
        assert_eq!(
            parse_response(plain).unwrap(),
            (200, b"{\"id\":\"a\"}\n".to_vec())
        );
        let chunked = b"HTTP/1.1 401 Unauthorized\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n3\r\nefg\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap(), (401, b"abcdefg".to_vec()));
        assert!(parse_response(b"garbage").is_err());
        assert!(!complete(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab"));
    }
}
