//! The clients of a fault scenario: writers that keep every answer, subscribers that keep every
//! version they see, and the readers of the end state.

use super::common::{RawClient, Received};
use super::history::{canonical, Final, SubscriberLog, WriterLog};
use bytes::Bytes;
use corestream::protocol::message::{record_action as ra, topic, Message};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Writes per writer at most, whatever the scenario's length.
const MAX_WRITES: u64 = 200_000;

pub fn records(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("fault/r{i}")).collect()
}

fn bytes(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

/// One writer on the node at `port`: acked patches of its own field `w<writer>` of the shared
/// records, a number one higher each time, one at a time. A write not answered within `bound`
/// is late; a connection lost leaves its write unknown and the writer logs in again.
pub fn writer(
    writer: usize,
    port: u16,
    records: Vec<String>,
    bound: Duration,
    stop: Arc<AtomicBool>,
) -> JoinHandle<WriterLog> {
    std::thread::spawn(move || {
        let mut log = WriterLog {
            writer,
            ..WriterLog::default()
        };
        let mut client: Option<RawClient> = None;
        let mut n = 0;
        let user = format!("writer-{writer}");
        while !stop.load(Ordering::SeqCst) && n < MAX_WRITES {
            let Some(connected) = client.as_mut() else {
                client = RawClient::try_login(port, &user);
                if client.is_none() {
                    std::thread::sleep(Duration::from_millis(100));
                }
                continue;
            };
            n += 1;
            let record = &records[fastrand::usize(..records.len())];
            let cid = n.to_string();
            let sent = connected.try_send(&Message {
                name: Some(bytes(record)),
                version: Some(-1),
                path: Some(bytes(&format!("w{writer}"))),
                data: Some(bytes(&cid)),
                is_write_ack: Some(true),
                correlation_id: Some(bytes(&cid)),
                ..Message::new(topic::RECORD, ra::CREATEANDPATCH)
            });
            let started = Instant::now();
            let answer = sent
                .then(|| answer_to(connected, &cid, bound + Duration::from_secs(5)))
                .flatten();
            let waited = started.elapsed();
            log.slowest = log.slowest.max(waited);
            match answer {
                Some(action) => {
                    if waited > bound {
                        log.late.push((n, waited));
                    }
                    if action == ra::WRITE_ACKNOWLEDGEMENT {
                        log.acks += 1;
                        log.acked.insert(record.clone(), n);
                        *log.per_record.entry(record.clone()).or_default() += 1;
                    } else {
                        log.refused += 1;
                        // Not hammering a service that is away.
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
                None if waited >= bound => {
                    log.late.push((n, waited));
                    client = None;
                }
                None => {
                    log.unknown += 1;
                    client = None;
                }
            }
        }
        log
    })
}

/// The action of the answer to the write `cid`; `None` if the connection closed or nothing
/// came within `timeout`.
fn answer_to(client: &mut RawClient, cid: &str, timeout: Duration) -> Option<i32> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        client.set_timeout(left.max(Duration::from_millis(1)));
        match client.receive_quietly()? {
            Received::Message(m) if m.correlation_id.as_deref() == Some(cid.as_bytes()) => {
                return Some(m.action)
            }
            Received::Close(_) => return None,
            _ => {}
        }
    }
}

/// One subscriber on the node at `port`: every record subscribed, every version logged with
/// the content it had (patches applied to the content before). A lost connection logs in and
/// subscribes again, into the same log.
pub fn subscriber(
    node: usize,
    port: u16,
    records: Vec<String>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<SubscriberLog> {
    std::thread::spawn(move || {
        let mut log = SubscriberLog {
            node,
            ..SubscriberLog::default()
        };
        let mut contents: std::collections::BTreeMap<String, (i32, Option<Value>)> =
            Default::default();
        let user = format!("subscriber-{node}-{}", fastrand::u32(..));
        let mut client: Option<RawClient> = None;
        while !stop.load(Ordering::SeqCst) {
            let Some(connected) = client.as_mut() else {
                // A new session: each record is ready again once its read is answered.
                contents.clear();
                client = RawClient::try_login(port, &user);
                let subscribe = Message {
                    correlation_id: Some(bytes("s")),
                    names: records.iter().map(|r| bytes(r)).collect(),
                    ..Message::new(topic::RECORD, ra::SUBSCRIBECREATEANDREAD)
                };
                if !client.as_mut().is_some_and(|c| c.try_send(&subscribe)) {
                    client = None;
                    std::thread::sleep(Duration::from_millis(100));
                }
                continue;
            };
            connected.set_timeout(Duration::from_millis(100));
            let m = match connected.try_receive() {
                Ok(None) => continue,
                Ok(Some(Received::Message(m))) => m,
                Ok(Some(_)) | Err(_) => {
                    client = None;
                    continue;
                }
            };
            if m.topic != topic::RECORD {
                continue;
            }
            let (Some(name), Some(version)) = (m.name.as_deref(), m.version) else {
                continue;
            };
            let name = String::from_utf8_lossy(name).into_owned();
            let data = m
                .data
                .as_deref()
                .and_then(|d| serde_json::from_slice::<Value>(d).ok());
            // Until its read is answered a record is not ready, as in the client: what comes
            // before (writes already fanned out to the new subscriber) is in the read.
            if m.action != ra::READ_RESPONSE && !contents.contains_key(&name) {
                continue;
            }
            let entry = contents.entry(name.clone()).or_insert((-1, None));
            let content = match m.action {
                ra::READ_RESPONSE | ra::UPDATE => data,
                ra::PATCH => {
                    let path = m
                        .path
                        .as_deref()
                        .map(|p| String::from_utf8_lossy(p).into_owned());
                    match (&mut entry.1, path, data) {
                        (Some(Value::Object(fields)), Some(path), Some(value))
                            if version == entry.0 + 1 =>
                        {
                            fields.insert(path, value);
                            Some(Value::Object(fields.clone()))
                        }
                        _ => {
                            log.gaps
                                .push(format!("{name}: a patch to v{version} after v{}", entry.0));
                            None
                        }
                    }
                }
                _ => continue,
            };
            *entry = (version, content.clone());
            let seen = log.seen.entry(name).or_default();
            seen.push((version, content.as_ref().map(canonical), m.action));
        }
        log
    })
}

/// What the node at `port` reads of each record at the end (`None` where the read failed).
pub fn read_all(port: u16, records: &[String]) -> Vec<Option<Final>> {
    let Some(mut client) = RawClient::try_login(port, "reader") else {
        return vec![None; records.len()];
    };
    records
        .iter()
        .map(|record| {
            let sent = client.try_send(&Message {
                name: Some(bytes(record)),
                ..Message::new(topic::RECORD, ra::READ)
            });
            if !sent {
                return None;
            }
            client.set_timeout(Duration::from_secs(5));
            match client.receive_quietly()? {
                Received::Message(m) if m.action == ra::READ_RESPONSE => Some(Final {
                    version: m.version?,
                    data: serde_json::from_slice(m.data.as_deref()?).ok()?,
                }),
                _ => None,
            }
        })
        .collect()
}

/// Events emitted on the node at `port`, about `per_second`, until `stop` (events are what a
/// node publishes most; during an outage they pile up in front of NATS).
pub fn emitter(port: u16, per_second: u64, stop: Arc<AtomicBool>) -> JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut emitted = 0;
        let Some(mut client) = RawClient::try_login(port, "emitter") else {
            return 0;
        };
        let started = Instant::now();
        while !stop.load(Ordering::SeqCst) && emitted < 1_000_000 {
            let due = started.elapsed().as_millis() as u64 * per_second / 1000;
            if emitted >= due {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            emitted += 1;
            let emit = Message {
                name: Some(bytes("fault/events")),
                data: Some(bytes(&emitted.to_string())),
                ..Message::new(
                    topic::EVENT,
                    corestream::protocol::message::event_action::EMIT,
                )
            };
            if !client.try_send(&emit) {
                break;
            }
        }
        emitted
    })
}
