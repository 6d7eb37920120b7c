//! The live dashboard (opt-in, `admin.dashboard`): one static page embedded in the binary, and
//! the JSON it reads every second (`<path>/stats`), gathered from every shard.

use super::shard_io::ShardIo;
use crate::api::admin::AdminConfig;
use crate::protocol::http::{self, RequestHead};
use std::rc::Rc;
use std::time::Duration;

const PAGE: &str = include_str!("assets/dashboard.html");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Html,
    Stats,
}

/// Whether `head` asks for the dashboard or its numbers.
pub fn route(config: &AdminConfig, head: &RequestHead) -> Option<Page> {
    let path = config.dashboard.as_deref()?;
    if head.method != "GET" {
        return None;
    }
    let rest = head.path.strip_prefix(path)?;
    match rest {
        "" | "/" => Some(Page::Html),
        "/stats" => Some(Page::Stats),
        _ => None,
    }
}

fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The whole response for `page`.
pub async fn answer(
    io: &Rc<ShardIo>,
    page: Page,
    origin: &[(&str, String)],
    keep_alive: bool,
) -> Vec<u8> {
    let mut headers: Vec<(&str, &str)> = origin.iter().map(|(n, v)| (*n, v.as_str())).collect();
    headers.push(("Cache-Control", "no-store"));
    match page {
        Page::Html => {
            headers.push(("Content-Type", "text/html; charset=utf-8"));
            http::response(200, &headers, PAGE.as_bytes(), keep_alive)
        }
        Page::Stats => match io.pump.gather_metrics(Duration::from_secs(2)).await {
            Some(sum) => {
                let body = crate::monitoring::dashboard::json(&sum, io.pump.shards(), epoch_ms());
                headers.push(("Content-Type", "application/json; charset=utf-8"));
                http::response(200, &headers, body.as_bytes(), keep_alive)
            }
            None => {
                headers.push(("Content-Type", "text/plain; charset=utf-8"));
                http::response(
                    503,
                    &headers,
                    b"not every shard answered in time",
                    keep_alive,
                )
            }
        },
    }
}
