//! deepstream's V3 text protocol (`ws-text`, for `deepstream.io-client-js` 2.x):
//! `TOPIC␟ACTION␟field…␞`, with typed payloads (`codec::typed`). Read and written as the
//! reference's text endpoint does (src/connection-endpoint/websocket/text), except that input
//! it cannot read gets the V3 server's error message instead of being dropped (or, for some,
//! crashing the reference).
//!
//! The V3 protocol has no correlation ids for subscriptions and record writes; the codec puts
//! the name (or the written version) in the message's correlation id, so the shard's ack comes
//! back with what the V3 answer has to name, and nothing is kept per connection.

use super::typed::{from_typed, to_typed};
use super::Inbound;
use crate::protocol::message::{
    auth_action as aa, connection_action as ca, event_action as ea, parser_action as xa,
    presence_action as ua, record_action as ra, rpc_action as pa, topic, Message,
};
use crate::protocol::names::{action_name, topic_name};
use bytes::Bytes;

pub const MESSAGE_SEPARATOR: u8 = 0x1e;
pub const PART_SEPARATOR: u8 = 0x1f;
/// No V3 message has more parts; more is an error, not an allocation.
const MAX_PARTS: usize = 8;
/// How much of a message an error quotes back.
const QUOTED: usize = 200;
const WRITE_SUCCESS: &[u8] = b"{\"writeSuccess\":true}";

/// The message an endpoint of this protocol starts every connection with: the reference sends
/// `C␟A` at once (its V3 clients never answer a challenge), which the shard's answer to this
/// challenge becomes.
pub fn opening_message() -> Box<Message> {
    Box::new(Message::new(topic::CONNECTION, ca::CHALLENGE))
}

/// Reads every message of one text frame.
pub fn decode(frame: &Bytes, out: &mut Vec<Inbound>) {
    let mut start = 0;
    for end in memchr::memchr_iter(MESSAGE_SEPARATOR, frame).chain([frame.len()]) {
        if end > start {
            decode_one(&frame.slice(start..end), out);
        }
        start = end + 1;
    }
}

fn decode_one(raw: &Bytes, out: &mut Vec<Inbound>) {
    // The reference skips anything shorter (stray separators, keep-alive newlines).
    if raw.len() < 3 {
        return;
    }
    let mut parts: Vec<Bytes> = Vec::with_capacity(6);
    let mut start = 0;
    for end in memchr::memchr_iter(PART_SEPARATOR, raw).chain([raw.len()]) {
        if parts.len() == MAX_PARTS {
            out.push(parse_error(raw, "too many message parts"));
            return;
        }
        parts.push(raw.slice(start..end));
        start = end + 1;
    }
    match read(&parts) {
        Ok(Some(msg)) => out.push(Inbound::Message(Box::new(msg))),
        Ok(None) => {}
        Err(Bad::UnknownTopic) => out.push(Inbound::Reply(error(
            b"X",
            b"UNKNOWN_TOPIC",
            &[quote(parts.first().map_or(&[][..], |p| p))],
        ))),
        Err(Bad::UnknownAction) => {
            let topic = parts.first().map_or(&b"X"[..], |p| p);
            let mut detail = b"unknown action ".to_vec();
            detail.extend_from_slice(quote(parts.get(1).map_or(&[][..], |p| p)));
            out.push(Inbound::Reply(error(topic, b"UNKNOWN_ACTION", &[&detail])));
        }
        Err(Bad::Parts) => out.push(parse_error(raw, "insufficient message parts")),
        Err(Bad::Data(data)) => {
            let topic = parts.first().map_or(&b"X"[..], |p| p);
            out.push(Inbound::Reply(error(
                topic,
                b"INVALID_MESSAGE_DATA",
                &[quote(&data)],
            )))
        }
    }
}

enum Bad {
    UnknownTopic,
    UnknownAction,
    Parts,
    Data(Bytes),
}

fn quote(bytes: &[u8]) -> &[u8] {
    let mut end = bytes.len().min(QUOTED);
    while end > 0 && end < bytes.len() && (bytes[end] & 0xC0) == 0x80 {
        end -= 1;
    }
    &bytes[..end]
}

fn parse_error(raw: &[u8], why: &str) -> Inbound {
    let mut detail = why.as_bytes().to_vec();
    detail.extend_from_slice(b" (");
    detail.extend_from_slice(quote(raw));
    detail.push(b')');
    Inbound::Reply(error(b"X", b"MESSAGE_PARSE_ERROR", &[&detail]))
}

fn error(topic: &[u8], event: &[u8], fields: &[&[u8]]) -> Bytes {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(topic);
    out.extend_from_slice(b"\x1fE\x1f");
    out.extend_from_slice(event);
    for field in fields {
        out.push(PART_SEPARATOR);
        out.extend_from_slice(field);
    }
    out.push(MESSAGE_SEPARATOR);
    Bytes::from(out)
}

/// The field at `i`, required.
fn at(parts: &[Bytes], i: usize) -> Result<Bytes, Bad> {
    parts.get(i).cloned().ok_or(Bad::Parts)
}

fn typed_data(value: &Bytes) -> Result<Option<Bytes>, Bad> {
    from_typed(value).map_err(|_| Bad::Data(value.clone()))
}

fn json_data(value: &Bytes) -> Result<Bytes, Bad> {
    serde_json::from_slice::<serde::de::IgnoredAny>(value).map_err(|_| Bad::Data(value.clone()))?;
    Ok(value.clone())
}

fn version_of(value: &Bytes) -> Result<i32, Bad> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.trim().parse::<i32>().ok())
        .ok_or_else(|| Bad::Data(value.clone()))
}

/// A one-name subscription-like message: the name is also its correlation id (see the module
/// note), so the shard's ack names it.
fn named(topic: i32, action: i32, name: Bytes) -> Message {
    Message {
        names: vec![name.clone()],
        correlation_id: Some(name),
        ..Message::new(topic, action)
    }
}

fn read(parts: &[Bytes]) -> Result<Option<Message>, Bad> {
    let topic_text = at(parts, 0)?;
    let topic = match topic_text.as_ref() {
        b"C" => topic::CONNECTION,
        b"A" => topic::AUTH,
        b"E" => topic::EVENT,
        b"R" => topic::RECORD,
        b"P" => topic::RPC,
        b"U" => topic::PRESENCE,
        _ => return Err(Bad::UnknownTopic),
    };
    let mut i = 1;
    let mut is_ack = false;
    if parts.get(i).is_some_and(|p| p.as_ref() == b"A") && parts.len() > 2 {
        is_ack = true;
        i += 1;
    }
    let action = at(parts, i)?;
    i += 1;
    match topic {
        topic::CONNECTION => read_connection(&action, is_ack),
        topic::AUTH => match action.as_ref() {
            b"REQ" => Ok(Some(Message {
                data: Some(at(parts, i)?),
                ..Message::new(topic::AUTH, aa::REQUEST)
            })),
            _ => Err(Bad::UnknownAction),
        },
        topic::EVENT => read_event(parts, i, &action).map(Some),
        topic::RECORD => read_record(parts, i, &action),
        topic::RPC => read_rpc(parts, i, &action, is_ack).map(Some),
        _ => read_presence(parts, i, &action).map(Some),
    }
}

fn read_connection(action: &[u8], is_ack: bool) -> Result<Option<Message>, Bad> {
    Ok(match action {
        // Answers to our pings: being heard is all they are for.
        b"PO" => None,
        b"PI" => Some(Message::new(topic::CONNECTION, ca::PING)),
        // A challenge response or an ack: V3 clients send them only to servers that challenge.
        b"CHR" => None,
        _ if is_ack => None,
        _ => return Err(Bad::UnknownAction),
    })
}

fn listen_message(topic: i32, action: i32, parts: &[Bytes], i: usize) -> Result<Message, Bad> {
    let pattern = at(parts, i)?;
    let response = matches!(
        (topic, action),
        (topic::EVENT, ea::LISTEN_ACCEPT | ea::LISTEN_REJECT)
            | (topic::RECORD, ra::LISTEN_ACCEPT | ra::LISTEN_REJECT)
    );
    let subscription = if response {
        Some(at(parts, i + 1)?)
    } else {
        None
    };
    Ok(Message {
        name: Some(pattern),
        subscription,
        ..Message::new(topic, action)
    })
}

fn read_event(parts: &[Bytes], i: usize, action: &[u8]) -> Result<Message, Bad> {
    let t = topic::EVENT;
    Ok(match action {
        b"S" => named(t, ea::SUBSCRIBE, at(parts, i)?),
        b"US" => named(t, ea::UNSUBSCRIBE, at(parts, i)?),
        b"EVT" => Message {
            name: Some(at(parts, i)?),
            data: match parts.get(i + 1) {
                Some(value) => typed_data(value)?,
                None => None,
            },
            ..Message::new(t, ea::EMIT)
        },
        b"L" => listen_message(t, ea::LISTEN, parts, i)?,
        b"UL" => listen_message(t, ea::UNLISTEN, parts, i)?,
        b"LA" => listen_message(t, ea::LISTEN_ACCEPT, parts, i)?,
        b"LR" => listen_message(t, ea::LISTEN_REJECT, parts, i)?,
        _ => return Err(Bad::UnknownAction),
    })
}

/// `R␟U`, `R␟P`, `R␟CU`: the version is the correlation id, which the write ack gives back.
fn read_write(parts: &[Bytes], mut i: usize, action: &[u8]) -> Result<Message, Bad> {
    let name = at(parts, i)?;
    i += 1;
    let version_text = at(parts, i)?;
    let version = version_of(&version_text)?;
    i += 1;
    let is_write_ack = parts.last().is_some_and(|p| p.as_ref() == WRITE_SUCCESS);
    let mut action = match action {
        b"U" => ra::UPDATE,
        b"P" => ra::PATCH,
        _ => ra::CREATEANDUPDATE,
    };
    if action == ra::CREATEANDUPDATE && parts.len() == 7 {
        action = ra::CREATEANDPATCH;
    }
    let path = if matches!(action, ra::PATCH | ra::CREATEANDPATCH) {
        let path = at(parts, i)?;
        i += 1;
        Some(path)
    } else {
        None
    };
    // With a trailing write config the data is the part before it.
    let value = if parts.len() - i == 2 {
        at(parts, parts.len() - 2)?
    } else {
        at(parts, i)?
    };
    let data = if path.is_some() {
        match typed_data(&value)? {
            Some(data) => data,
            // An undefined value erases the path.
            None => {
                action = ra::ERASE;
                Bytes::new()
            }
        }
    } else {
        json_data(&value)?
    };
    Ok(Message {
        name: Some(name),
        version: Some(version),
        path,
        data: (action != ra::ERASE).then_some(data),
        is_write_ack: is_write_ack.then_some(true),
        correlation_id: Some(version_text),
        ..Message::new(topic::RECORD, action)
    })
}

fn read_record(parts: &[Bytes], i: usize, action: &[u8]) -> Result<Option<Message>, Bad> {
    let t = topic::RECORD;
    let name = || at(parts, i);
    Ok(Some(match action {
        b"CR" => named(t, ra::SUBSCRIBECREATEANDREAD, name()?),
        b"S" => named(t, ra::SUBSCRIBE, name()?),
        b"US" => named(t, ra::UNSUBSCRIBE, name()?),
        b"R" | b"SN" => Message {
            name: Some(name()?),
            ..Message::new(t, ra::READ)
        },
        b"HD" => Message {
            name: Some(name()?),
            ..Message::new(t, ra::HEAD)
        },
        // `has`: a HEAD whose answer says whether the version is known.
        b"H" => Message {
            name: Some(name()?),
            correlation_id: Some(Bytes::from_static(HAS)),
            ..Message::new(t, ra::HEAD)
        },
        b"D" => Message {
            name: Some(name()?),
            ..Message::new(t, ra::DELETE)
        },
        b"U" | b"P" | b"CU" => read_write(parts, i, action)?,
        b"L" => listen_message(t, ra::LISTEN, parts, i)?,
        b"UL" => listen_message(t, ra::UNLISTEN, parts, i)?,
        b"LA" => listen_message(t, ra::LISTEN_ACCEPT, parts, i)?,
        b"LR" => listen_message(t, ra::LISTEN_REJECT, parts, i)?,
        // A client's own error report (the reference ignores them too).
        b"E" => return Ok(None),
        _ => return Err(Bad::UnknownAction),
    }))
}

const HAS: &[u8] = b"\x01has";

/// Records a V3 client has asked to read (`R␟CR`) and not been answered yet. With several
/// shards a record's updates can reach the connection before its read answer (which already
/// holds them); the V3 client would take the first update for its initial state and never
/// become ready, so updates of such a record are held back until the answer. Bounded: past
/// `MAX_READS_IN_FLIGHT` names, the rest are not tracked.
#[derive(Debug, Default)]
pub struct ReadsInFlight(ahash::AHashSet<Bytes>);

const MAX_READS_IN_FLIGHT: usize = 4096;

impl ReadsInFlight {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn on_request(&mut self, msg: &Message) {
        if (msg.topic, msg.action) == (topic::RECORD, ra::SUBSCRIBECREATEANDREAD)
            && self.0.len() < MAX_READS_IN_FLIGHT
        {
            self.0.extend(msg.names.iter().cloned());
        }
    }

    /// Whether an outgoing message goes to the client.
    pub fn passes(&mut self, msg: &Message) -> bool {
        if msg.topic != topic::RECORD || self.0.is_empty() {
            return true;
        }
        let Some(name) = &msg.name else {
            return true;
        };
        match msg.action {
            ra::UPDATE | ra::PATCH | ra::ERASE => !self.0.contains(name),
            ra::READ_RESPONSE => {
                self.0.remove(name);
                true
            }
            _ if msg.is_error == Some(true) => {
                self.0.remove(name);
                true
            }
            _ => true,
        }
    }
}

fn read_rpc(parts: &[Bytes], i: usize, action: &[u8], is_ack: bool) -> Result<Message, Bad> {
    let t = topic::RPC;
    let call = |action: i32, data: Option<Bytes>| -> Result<Message, Bad> {
        Ok(Message {
            name: Some(at(parts, i)?),
            correlation_id: Some(at(parts, i + 1)?),
            data,
            ..Message::new(t, action)
        })
    };
    Ok(match action {
        b"S" => named(t, pa::PROVIDE, at(parts, i)?),
        b"US" => named(t, pa::UNPROVIDE, at(parts, i)?),
        b"REQ" if is_ack => call(pa::ACCEPT, None)?,
        b"REQ" => call(pa::REQUEST, payload(parts, i + 2)?)?,
        b"RES" => call(pa::RESPONSE, payload(parts, i + 2)?)?,
        b"REJ" => call(pa::REJECT, None)?,
        // `P␟E␟<error text>␟name␟id`: the provider's error, as a JSON string.
        b"E" => {
            let text = at(parts, i)?;
            let text = std::str::from_utf8(&text).map_err(|_| Bad::Data(text.clone()))?;
            let data = serde_json::to_vec(text).map_err(|_| Bad::Parts)?;
            Message {
                name: Some(at(parts, i + 1)?),
                correlation_id: Some(at(parts, i + 2)?),
                data: Some(Bytes::from(data)),
                ..Message::new(t, pa::REQUEST_ERROR)
            }
        }
        _ => return Err(Bad::UnknownAction),
    })
}

fn payload(parts: &[Bytes], i: usize) -> Result<Option<Bytes>, Bad> {
    match parts.get(i) {
        Some(value) => typed_data(value),
        None => Ok(None),
    }
}

fn user_names(value: &Bytes) -> Result<Vec<Bytes>, Bad> {
    let names: Vec<String> = serde_json::from_slice(value).map_err(|_| Bad::Data(value.clone()))?;
    Ok(names.into_iter().map(Bytes::from).collect())
}

fn read_presence(parts: &[Bytes], i: usize, action: &[u8]) -> Result<Message, Bad> {
    let t = topic::PRESENCE;
    match action {
        b"Q" if parts.len() == 3 => Ok(Message::new(t, ua::QUERY_ALL)),
        b"Q" => Ok(Message {
            correlation_id: Some(at(parts, i)?),
            names: user_names(&at(parts, i + 1)?)?,
            ..Message::new(t, ua::QUERY)
        }),
        b"S" | b"US" => {
            let subscribe = action == b"S";
            let (correlation_id, data) = if parts.len() == 4 {
                (Some(at(parts, i)?), at(parts, i + 1)?)
            } else {
                (None, at(parts, i)?)
            };
            let all = if subscribe {
                matches!(data.as_ref(), b"S" | b"U")
            } else {
                data.as_ref() == b"US"
            };
            if all {
                let action = if subscribe {
                    ua::SUBSCRIBE_ALL
                } else {
                    ua::UNSUBSCRIBE_ALL
                };
                return Ok(Message::new(t, action));
            }
            let action = if subscribe {
                ua::SUBSCRIBE
            } else {
                ua::UNSUBSCRIBE
            };
            Ok(Message {
                correlation_id,
                names: user_names(&data)?,
                ..Message::new(t, action)
            })
        }
        _ => Err(Bad::UnknownAction),
    }
}

// ---------------------------------------------------------------------------------------------
// Writing

struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
    fn start<'b>(out: &'b mut Vec<u8>, topic: &[u8]) -> Writer<'b> {
        out.extend_from_slice(topic);
        Writer(out)
    }
    fn part(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.push(PART_SEPARATOR);
        self.0.extend_from_slice(bytes);
        self
    }
    fn typed(&mut self, json: Option<&Bytes>) -> &mut Self {
        self.0.push(PART_SEPARATOR);
        to_typed(json.map(|b| b.as_ref()), self.0);
        self
    }
    fn end(&mut self) {
        self.0.push(MESSAGE_SEPARATOR);
    }
    /// A record message's `ACTION␟name␟version`.
    fn record(&mut self, action: &[u8], name: &[u8], version: Option<i32>) -> &mut Self {
        self.part(action)
            .part(name)
            .part(version_text(version).as_bytes())
    }
    /// The trailing write config of a write that asked for an ack.
    fn write_config(&mut self, msg: &Message) -> &mut Self {
        if msg.is_write_ack == Some(true) {
            self.part(WRITE_SUCCESS);
        }
        self
    }
}

fn field(value: &Option<Bytes>) -> &[u8] {
    value.as_deref().unwrap_or_default()
}

fn topic_letter(topic: i32) -> &'static [u8] {
    match topic {
        topic::CONNECTION => b"C",
        topic::AUTH => b"A",
        topic::EVENT => b"E",
        topic::RECORD => b"R",
        topic::RPC => b"P",
        topic::PRESENCE => b"U",
        _ => b"X",
    }
}

/// The V3 text of the client actions an error may name.
fn action_text(topic: i32, action: i32) -> Option<&'static [u8]> {
    Some(match (topic, action) {
        (topic::EVENT, ea::SUBSCRIBE) | (topic::RECORD, ra::SUBSCRIBE) => b"S",
        (topic::EVENT, ea::UNSUBSCRIBE) | (topic::RECORD, ra::UNSUBSCRIBE) => b"US",
        (topic::EVENT, ea::EMIT) => b"EVT",
        (topic::EVENT, ea::LISTEN) | (topic::RECORD, ra::LISTEN) => b"L",
        (topic::EVENT, ea::UNLISTEN) | (topic::RECORD, ra::UNLISTEN) => b"UL",
        (topic::RECORD, ra::SUBSCRIBECREATEANDREAD) => b"CR",
        (topic::RECORD, ra::READ) => b"R",
        (topic::RECORD, ra::HEAD) => b"HD",
        (topic::RECORD, ra::UPDATE) => b"U",
        (topic::RECORD, ra::PATCH | ra::ERASE) => b"P",
        (topic::RECORD, ra::CREATEANDUPDATE | ra::CREATEANDPATCH) => b"CU",
        (topic::RECORD, ra::DELETE) => b"D",
        (topic::RPC, pa::PROVIDE) | (topic::PRESENCE, ua::SUBSCRIBE | ua::SUBSCRIBE_ALL) => b"S",
        (topic::RPC, pa::UNPROVIDE) | (topic::PRESENCE, ua::UNSUBSCRIBE | ua::UNSUBSCRIBE_ALL) => {
            b"US"
        }
        (topic::RPC, pa::REQUEST) => b"REQ",
        (topic::RPC, pa::RESPONSE) => b"RES",
        (topic::RPC, pa::REJECT) => b"REJ",
        (topic::PRESENCE, ua::QUERY | ua::QUERY_ALL) => b"Q",
        _ => return None,
    })
}

/// Appends the V3 form of a message the shard sent; nothing for what V3 has no words for.
pub fn encode(msg: &Message, out: &mut Vec<u8>) {
    let letter = topic_letter(msg.topic);
    let name = field(&msg.name);
    let corr = field(&msg.correlation_id);
    let start = out.len();
    let mut w = Writer::start(out, letter);
    let ack = msg.is_ack == Some(true);
    match (msg.topic, msg.action) {
        (topic::CONNECTION, ca::PING) => w.part(b"PI"),
        (topic::CONNECTION, ca::PONG) => w.part(b"PO"),
        (topic::CONNECTION, ca::ACCEPT) => w.part(b"A"),
        (topic::CONNECTION, ca::CHALLENGE) => w.part(b"CH"),
        (topic::CONNECTION, ca::REJECT) => w.part(b"REJ").part(field(&msg.data)),
        (topic::CONNECTION, ca::AUTHENTICATION_TIMEOUT) => {
            w.part(b"E").part(b"CONNECTION_AUTHENTICATION_TIMEOUT")
        }
        (topic::CONNECTION, ca::CLOSING | ca::CLOSED) => return w.0.truncate(start),
        (topic::AUTH, aa::AUTH_SUCCESSFUL) => {
            w.part(b"A");
            if msg.data.is_some() {
                w.typed(msg.data.as_ref());
            }
            &mut w
        }
        (topic::AUTH, aa::AUTH_UNSUCCESSFUL | aa::INVALID_MESSAGE_DATA) => w
            .part(b"E")
            .part(b"INVALID_AUTH_DATA")
            .typed(msg.data.as_ref()),
        (topic::AUTH, aa::TOO_MANY_AUTH_ATTEMPTS) => w.part(b"E").part(b"TOO_MANY_AUTH_ATTEMPTS"),
        (topic::EVENT, ea::EMIT) => w.part(b"EVT").part(name).typed(msg.data.as_ref()),
        (topic::EVENT | topic::RECORD | topic::RPC, _) if ack => {
            let Some(action) = action_text(msg.topic, msg.action) else {
                return w.0.truncate(start);
            };
            // Subscriptions name themselves in the correlation id (see the module note).
            let action = if action == b"CR" { b"S" } else { action };
            let named = if msg.correlation_id.is_some() {
                corr
            } else {
                name
            };
            w.part(b"A").part(action).part(named)
        }
        (topic::EVENT, ea::SUBSCRIPTION_FOR_PATTERN_FOUND)
        | (topic::RECORD, ra::SUBSCRIPTION_FOR_PATTERN_FOUND) => {
            w.part(b"SP").part(name).part(field(&msg.subscription))
        }
        (topic::EVENT, ea::SUBSCRIPTION_FOR_PATTERN_REMOVED)
        | (topic::RECORD, ra::SUBSCRIPTION_FOR_PATTERN_REMOVED) => {
            w.part(b"SR").part(name).part(field(&msg.subscription))
        }
        (topic::RECORD, ra::READ_RESPONSE) => {
            w.record(b"R", name, msg.version).part(field(&msg.data))
        }
        (topic::RECORD, ra::HEAD_RESPONSE) if corr == HAS => {
            let known = msg.version.is_some_and(|v| v >= 0);
            w.part(b"H")
                .part(name)
                .part(if known { b"T" } else { b"F" })
        }
        (topic::RECORD, ra::HEAD_RESPONSE) => w.record(b"HD", name, msg.version).part(b"null"),
        (topic::RECORD, ra::UPDATE | ra::CREATEANDUPDATE) => {
            let action: &[u8] = if msg.action == ra::UPDATE {
                b"U"
            } else {
                b"CU"
            };
            w.record(action, name, msg.version)
                .part(field(&msg.data))
                .write_config(msg)
        }
        (topic::RECORD, ra::PATCH | ra::ERASE | ra::CREATEANDPATCH) => {
            let action: &[u8] = if msg.action == ra::CREATEANDPATCH {
                b"CU"
            } else {
                b"P"
            };
            w.record(action, name, msg.version).part(field(&msg.path));
            if msg.action == ra::ERASE {
                w.part(b"U");
            } else {
                w.typed(msg.data.as_ref());
            }
            w.write_config(msg)
        }
        (topic::RECORD, ra::DELETE_SUCCESS | ra::DELETED) => w.part(b"A").part(b"D").part(name),
        (topic::RECORD, ra::WRITE_ACKNOWLEDGEMENT) => {
            let mut versions = b"[".to_vec();
            versions.extend_from_slice(corr);
            versions.push(b']');
            w.part(b"WA").part(name).part(&versions);
            match &msg.data {
                Some(error) if !error.is_empty() => w.typed(Some(error)),
                _ => w.part(b"L"),
            }
        }
        // As the reference: the 2.x client raises it as an error event (its snapshot callback
        // is not called; `R␟E␟SN␟…` would reach the callback, but clients written against the
        // reference listen for the event).
        (topic::RECORD, ra::RECORD_NOT_FOUND) => w.part(b"E").part(b"RECORD_NOT_FOUND").part(name),
        (topic::RECORD, ra::SUBSCRIPTION_HAS_PROVIDER) => w.part(b"SH").part(name).part(b"T"),
        (topic::RECORD, ra::SUBSCRIPTION_HAS_NO_PROVIDER) => w.part(b"SH").part(name).part(b"F"),
        (topic::RECORD, ra::VERSION_EXISTS) => w
            .part(b"E")
            .record(b"VERSION_EXISTS", name, msg.version)
            .part(field(&msg.data))
            .write_config(msg),
        (topic::RPC, pa::REQUEST) => w
            .part(b"REQ")
            .part(name)
            .part(corr)
            .typed(msg.data.as_ref()),
        (topic::RPC, pa::RESPONSE) => w
            .part(b"RES")
            .part(name)
            .part(corr)
            .typed(msg.data.as_ref()),
        (topic::RPC, pa::ACCEPT) => w.part(b"A").part(b"REQ").part(name).part(corr),
        (topic::RPC, pa::REJECT) => w.part(b"REJ").part(name).part(corr),
        (topic::RPC, pa::REQUEST_ERROR) => {
            // The provider's error text, as the client's callback receives it.
            let text = msg
                .data
                .as_ref()
                .and_then(|d| serde_json::from_slice::<String>(d).ok())
                .unwrap_or_default();
            w.part(b"E").part(text.as_bytes()).part(name).part(corr)
        }
        (
            topic::RPC,
            pa::NO_RPC_PROVIDER
            | pa::ACCEPT_TIMEOUT
            | pa::RESPONSE_TIMEOUT
            | pa::MULTIPLE_ACCEPT
            | pa::MULTIPLE_RESPONSE
            | pa::INVALID_RPC_CORRELATION_ID,
        ) => {
            let event = action_name(msg.topic, msg.action).unwrap_or("ERROR");
            w.part(b"E").part(event.as_bytes()).part(name).part(corr)
        }
        // Unproviding or unsubscribing a name not held: the reference sends the ack alone.
        (topic::RPC, pa::NOT_PROVIDED) | (topic::EVENT, ea::NOT_SUBSCRIBED) => {
            return w.0.truncate(start)
        }
        (topic::RPC, pa::MULTIPLE_PROVIDERS) => {
            w.part(b"E").part(b"MULTIPLE_SUBSCRIPTIONS").part(name)
        }
        (topic::PRESENCE, ua::SUBSCRIBE_ALL) if ack => w.part(b"A").part(b"S").part(b"S"),
        (topic::PRESENCE, ua::UNSUBSCRIBE_ALL) if ack => w.part(b"A").part(b"US").part(b"US"),
        (topic::PRESENCE, ua::SUBSCRIBE | ua::UNSUBSCRIBE) if ack => {
            let action: &[u8] = if msg.action == ua::SUBSCRIBE {
                b"S"
            } else {
                b"US"
            };
            w.part(b"A").part(action).part(corr)
        }
        (topic::PRESENCE, ua::QUERY_RESPONSE) => w.part(b"Q").part(corr).part(field(&msg.data)),
        (topic::PRESENCE, ua::QUERY_ALL_RESPONSE) => {
            w.part(b"Q");
            for user in &msg.names {
                w.part(user);
            }
            &mut w
        }
        (topic::PRESENCE, ua::PRESENCE_JOIN | ua::PRESENCE_JOIN_ALL) => w.part(b"PNJ").part(name),
        (topic::PRESENCE, ua::PRESENCE_LEAVE | ua::PRESENCE_LEAVE_ALL) => w.part(b"PNL").part(name),
        _ => return encode_error(msg, w),
    }
    .end();
}

/// Every other answer is an error: `T␟E␟<EVENT>␟…` as the reference's builders write them.
fn encode_error(msg: &Message, mut w: Writer<'_>) {
    let event = action_name(msg.topic, msg.action).unwrap_or("ERROR");
    w.part(b"E").part(event.as_bytes());
    let denied = matches!(
        (msg.topic, msg.action),
        (
            topic::EVENT,
            ea::MESSAGE_DENIED | ea::MESSAGE_PERMISSION_ERROR
        ) | (
            topic::RECORD,
            ra::MESSAGE_DENIED | ra::MESSAGE_PERMISSION_ERROR
        ) | (
            topic::RPC,
            pa::MESSAGE_DENIED | pa::MESSAGE_PERMISSION_ERROR
        ) | (
            topic::PRESENCE,
            ua::MESSAGE_DENIED | ua::MESSAGE_PERMISSION_ERROR
        )
    );
    if denied {
        w.part(field(&msg.name));
        if let Some(action) = msg.original_action.and_then(|a| action_text(msg.topic, a)) {
            w.part(action);
        }
        if msg.topic == topic::RPC {
            if let Some(corr) = &msg.correlation_id {
                w.part(corr);
            }
        }
    } else if msg.topic == topic::PARSER || msg.action == xa::ERROR {
        match (&msg.data, msg.original_topic, msg.original_action) {
            (Some(data), _, _) => w.part(data),
            (None, Some(t), Some(a)) => {
                let what = format!(
                    "{} {}",
                    topic_name(t).unwrap_or("?"),
                    action_name(t, a).unwrap_or("?")
                );
                w.part(what.as_bytes())
            }
            _ => &mut w,
        };
    } else if let Some(name) = &msg.name {
        w.part(name);
    } else if let Some(data) = &msg.data {
        w.part(data);
    }
    w.end();
}

fn version_text(version: Option<i32>) -> String {
    version.map_or_else(|| "-1".into(), |v| v.to_string())
}

#[cfg(test)]
mod tests;
