//! deepstream's JSON interchange format (JIF), sans I/O: a POST body becomes the auth data and
//! one client `Message` per item; the replies the shard sends those messages become the items'
//! results. The checks are the reference's JSON schema (src/jif/jif-schema.ts): a known topic
//! and action, the fields each needs with their types, and no other fields.

use crate::protocol::message::{
    event_action as ea, presence_action as pa, record_action as ra, rpc_action, topic, Message,
};
use bytes::Bytes;
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// A request refused as a whole: the status and the text body the reference sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub text: String,
}

impl Refusal {
    fn bad_request(text: impl Into<String>) -> Refusal {
        Refusal {
            status: 400,
            text: text.into(),
        }
    }
}

/// A POST body read up to its items: who asks, and the items (their check waits until the
/// request is authenticated, the order the reference has).
#[derive(Debug)]
pub struct Request {
    /// The auth data as a JSON object's text: `authData`, or `{"token": ...}`, or `{}`.
    pub auth_data: String,
    pub items: Result<Vec<Item>, Refusal>,
}

/// One item of a request, as the client message it becomes.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub msg: Box<Message>,
    pub kind: ItemKind,
}

/// What answers an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    Emit,
    Rpc,
    Read,
    Head,
    Write,
    Delete,
    Notify,
    Presence,
}

/// Object keys as `JSON.parse` keeps them: the last of duplicates wins.
type Fields<'a> = BTreeMap<String, &'a RawValue>;

fn fields(raw: &RawValue) -> Option<Fields<'_>> {
    serde_json::from_str::<BTreeMap<String, &RawValue>>(raw.get()).ok()
}

/// Reads a POST body: a JSON object with `body` (a non-empty array), and `authData` (an object,
/// when `allow_auth_data`) or `token` (a non-empty string).
pub fn parse_request(body: &[u8], allow_auth_data: bool) -> Result<Request, Refusal> {
    let text = std::str::from_utf8(body)
        .map_err(|_| Refusal::bad_request("Failed to parse body of request: invalid UTF-8"))?;
    // body-parser's strict mode: only an object or an array is a body.
    let first = text.trim_start().as_bytes().first().copied();
    if !matches!(first, Some(b'{' | b'[')) {
        return Err(Refusal::bad_request(
            "Failed to parse body of request: the body must be a JSON object",
        ));
    }
    let root: &RawValue = serde_json::from_str(text)
        .map_err(|e| Refusal::bad_request(format!("Failed to parse body of request: {e}")))?;
    crate::core::json::validate(root.get().as_bytes())
        .map_err(|e| Refusal::bad_request(format!("Failed to parse body of request: {e}")))?;
    let top = fields(root).unwrap_or_default();
    let items: Option<Vec<&RawValue>> = top
        .get("body")
        .and_then(|b| serde_json::from_str::<Vec<&RawValue>>(b.get()).ok());
    let items = match items {
        Some(items) if !items.is_empty() => items,
        _ => {
            let exists = top.get("body").is_some_and(|b| b.get() != "null");
            return Err(Refusal::bad_request(format!(
                "Invalid message: the \"body\" parameter must {}",
                if exists {
                    "be a non-empty array of Objects."
                } else {
                    "exist."
                }
            )));
        }
    };
    let auth_data = if let Some(auth) = top.get("authData") {
        if !allow_auth_data {
            return Err(Refusal::bad_request(
                "Authentication using authData is disabled. Try using a token instead.",
            ));
        }
        if !auth.get().starts_with('{') {
            return Err(Refusal::bad_request(
                "Invalid message: the \"authData\" parameter must be an object",
            ));
        }
        auth.get().to_string()
    } else if let Some(token) = top.get("token") {
        match serde_json::from_str::<String>(token.get()) {
            Ok(t) if !t.is_empty() => format!("{{\"token\":{}}}", token.get()),
            _ => {
                return Err(Refusal::bad_request(
                    "Invalid message: the \"token\" parameter must be a non-empty string",
                ))
            }
        }
    } else {
        "{}".to_string()
    };
    let items = items
        .iter()
        .enumerate()
        .map(|(index, raw)| {
            parse_item(raw, index).map_err(|reason| {
                let mut text = format!("Failed to parse JIF object at index {index}.");
                if let Some(reason) = reason {
                    let _ = write!(text, " Reason: {reason}");
                }
                Refusal::bad_request(text)
            })
        })
        .collect();
    Ok(Request { auth_data, items })
}

/// What a field must hold.
#[derive(Clone, Copy)]
enum Want {
    /// A string of at least one character.
    Name,
    String,
    /// Any JSON value.
    Any,
    /// A JSON object or array.
    Container,
    /// An array of strings.
    Strings,
    /// An integer of at least -1.
    Version,
}

/// Fields of an item with what each must hold.
type FieldSpec = &'static [(&'static str, Want)];

fn check(value: &RawValue, want: Want) -> Result<(), String> {
    let text = value.get();
    let ok = match want {
        Want::Any => true,
        Want::Name => serde_json::from_str::<String>(text).is_ok_and(|s| !s.is_empty()),
        Want::String => serde_json::from_str::<String>(text).is_ok(),
        Want::Container => text.starts_with('{') || text.starts_with('['),
        Want::Strings => serde_json::from_str::<Vec<String>>(text).is_ok(),
        Want::Version => serde_json::from_str::<f64>(text)
            .is_ok_and(|v| v.fract() == 0.0 && v >= -1.0 && v <= f64::from(i32::MAX)),
    };
    if ok {
        return Ok(());
    }
    Err(match want {
        Want::Name => "should NOT be shorter than 1 characters or not a string",
        Want::String => "should be string",
        Want::Any => "",
        Want::Container => "should be object,array",
        Want::Strings => "should be array of strings",
        Want::Version => "should be an integer >= -1",
    }
    .to_string())
}

fn string_of(value: &RawValue) -> String {
    serde_json::from_str::<String>(value.get()).unwrap_or_default()
}

fn bytes_of(value: &RawValue) -> Bytes {
    Bytes::from(string_of(value))
}

/// One item, checked as the reference's schema checks it. `Err(None)`: refused without a
/// reason the reference would name.
fn parse_item(raw: &RawValue, index: usize) -> Result<Item, Option<String>> {
    let item = fields(raw).ok_or(None)?;
    let text = |key: &str| item.get(key).map(|v| string_of(v));
    let topic_name = text("topic").unwrap_or_default();
    let action = text("action").unwrap_or_default();
    let path_given = item.contains_key("path");
    // (required fields with their types, optional ones)
    let (kind, required, optional): (ItemKind, FieldSpec, FieldSpec) =
        match (topic_name.as_str(), action.as_str()) {
            ("event", "emit") => (
                ItemKind::Emit,
                &[("eventName", Want::Name)],
                &[("data", Want::Any)],
            ),
            ("rpc", "make") => (
                ItemKind::Rpc,
                &[("rpcName", Want::Name)],
                &[("data", Want::Any)],
            ),
            ("record", "read") => (ItemKind::Read, &[("recordName", Want::Name)], &[]),
            ("record", "head") => (ItemKind::Head, &[("recordName", Want::Name)], &[]),
            ("record", "delete") => (ItemKind::Delete, &[("recordName", Want::Name)], &[]),
            ("record", "write") if path_given => (
                ItemKind::Write,
                &[
                    ("recordName", Want::Name),
                    ("data", Want::Any),
                    ("path", Want::String),
                ],
                &[("version", Want::Version)],
            ),
            ("record", "write") => (
                ItemKind::Write,
                &[("recordName", Want::Name), ("data", Want::Container)],
                &[("version", Want::Version)],
            ),
            ("record", "notify") => (ItemKind::Notify, &[("recordNames", Want::Strings)], &[]),
            ("list", "read") => (ItemKind::Read, &[("listName", Want::Name)], &[]),
            ("list", "delete") => (ItemKind::Delete, &[("listName", Want::Name)], &[]),
            ("list", "write") => (
                ItemKind::Write,
                &[("listName", Want::Name), ("data", Want::Strings)],
                &[("version", Want::Version)],
            ),
            ("presence", "query") => (ItemKind::Presence, &[], &[("names", Want::Strings)]),
            _ => return Err(None),
        };
    for (key, want) in required {
        let value = item.get(*key).ok_or_else(|| {
            Some(format!(
                "property '{key}' is required for topic '{topic_name}'"
            ))
        })?;
        check(value, *want).map_err(|why| Some(format!("property '.{key}' {why}")))?;
    }
    for (key, want) in optional {
        if let Some(value) = item.get(*key) {
            check(value, *want).map_err(|why| Some(format!("property '.{key}' {why}")))?;
        }
    }
    let known = |key: &str| {
        key == "topic"
            || key == "action"
            || required.iter().any(|(k, _)| *k == key)
            || optional.iter().any(|(k, _)| *k == key)
    };
    if let Some(extra) = item.keys().find(|k| !known(k)) {
        return Err(Some(format!(
            "property '{extra}' is not permitted for topic '{topic_name}'"
        )));
    }
    let data = item
        .get("data")
        .map(|d| Bytes::copy_from_slice(d.get().as_bytes()));
    // Replies are matched by this id (and by order: items run one at a time).
    let correlation = Some(Bytes::from(index.to_string()));
    let name = |key: &str| item.get(key).map(|v| bytes_of(v));
    let names = |key: &str| -> Vec<Bytes> {
        item.get(key)
            .and_then(|v| serde_json::from_str::<Vec<String>>(v.get()).ok())
            .unwrap_or_default()
            .into_iter()
            .map(Bytes::from)
            .collect()
    };
    let msg = match kind {
        ItemKind::Emit => Message {
            name: name("eventName"),
            data,
            ..Message::new(topic::EVENT, ea::EMIT)
        },
        ItemKind::Rpc => Message {
            name: name("rpcName"),
            data,
            correlation_id: correlation,
            ..Message::new(topic::RPC, rpc_action::REQUEST)
        },
        ItemKind::Read | ItemKind::Head | ItemKind::Delete => Message {
            name: name("recordName").or_else(|| name("listName")),
            correlation_id: correlation,
            ..Message::new(
                topic::RECORD,
                match kind {
                    ItemKind::Read => ra::READ,
                    ItemKind::Head => ra::HEAD,
                    _ => ra::DELETE,
                },
            )
        },
        ItemKind::Write => {
            // `msg.version || -1`, as the reference writes it: 0 also means "any version".
            let version = item
                .get("version")
                .and_then(|v| serde_json::from_str::<f64>(v.get()).ok())
                .map(|v| v as i32)
                .filter(|v| *v != 0)
                .unwrap_or(-1);
            Message {
                name: name("recordName").or_else(|| name("listName")),
                path: item.get("path").map(|p| bytes_of(p)),
                data,
                version: Some(version),
                is_write_ack: Some(true),
                correlation_id: correlation,
                ..Message::new(
                    topic::RECORD,
                    if path_given {
                        ra::CREATEANDPATCH
                    } else {
                        ra::CREATEANDUPDATE
                    },
                )
            }
        }
        ItemKind::Notify => Message {
            names: names("recordNames"),
            correlation_id: correlation,
            ..Message::new(topic::RECORD, ra::NOTIFY)
        },
        ItemKind::Presence => match item.get("names") {
            Some(_) => Message {
                names: names("names"),
                correlation_id: correlation,
                ..Message::new(topic::PRESENCE, pa::QUERY)
            },
            None => Message {
                correlation_id: correlation,
                ..Message::new(topic::PRESENCE, pa::QUERY_ALL)
            },
        },
    };
    Ok(Item {
        msg: Box::new(msg),
        kind,
    })
}

/// An item's result as JSON text, and whether it succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemResult {
    pub success: bool,
    pub json: String,
}

impl ItemResult {
    fn ok(json: String) -> ItemResult {
        ItemResult {
            success: true,
            json,
        }
    }

    /// The result of an item the request's timeout cut short.
    pub fn timed_out() -> ItemResult {
        ItemResult {
            success: false,
            json: r#"{"success":false,"error":"Request exceeded timeout before a response was received.","errorTopic":"connection","errorEvent":"HTTP_REQUEST_TIMEOUT"}"#.into(),
        }
    }
}

/// A JSON string literal.
fn quoted(text: &[u8]) -> String {
    serde_json::to_string(&String::from_utf8_lossy(text)).unwrap_or_else(|_| "\"\"".into())
}

/// JSON text the shard sent (record data, RPC data), checked before it is embedded.
fn raw_json(data: Option<&Bytes>) -> String {
    match data {
        Some(d) if crate::core::json::validate(d).is_ok() => String::from_utf8_lossy(d).into(),
        Some(d) => quoted(d),
        None => "null".into(),
    }
}

/// Whether `reply` is an answer to `item` at all: RPC answers carry the item's correlation id,
/// record answers its name (the connection has no subscriptions, so nothing else arrives but
/// answers; this guards against a late one of an earlier item).
fn answers(item: &Item, reply: &Message) -> bool {
    if reply.topic == topic::PARSER || reply.topic == topic::AUTH {
        return true;
    }
    if reply.topic != item.msg.topic {
        return false;
    }
    match item.kind {
        ItemKind::Rpc => {
            reply.correlation_id.is_none() || reply.correlation_id == item.msg.correlation_id
        }
        _ => true,
    }
}

/// The result an item's reply gives it; `None` while the item waits for more (an RPC's accept,
/// the ack of a request).
pub fn result_of(item: &Item, reply: &Message) -> Option<ItemResult> {
    if !answers(item, reply) {
        return None;
    }
    let error = reply.is_error == Some(true) || reply.action >= 100;
    if error || reply.topic == topic::PARSER {
        return Some(error_result(item, reply));
    }
    let json = match (item.kind, reply.action) {
        (ItemKind::Emit, ea::EMIT) if reply.is_ack == Some(true) => r#"{"success":true}"#.into(),
        (ItemKind::Rpc, rpc_action::RESPONSE) => {
            format!(
                r#"{{"data":{},"success":true}}"#,
                raw_json(reply.data.as_ref())
            )
        }
        (ItemKind::Rpc, rpc_action::REQUEST_ERROR) => {
            return Some(ItemResult {
                success: false,
                json: format!(
                    r#"{{"errorTopic":"rpc","error":{},"success":false}}"#,
                    raw_json(reply.data.as_ref())
                ),
            })
        }
        (ItemKind::Read, ra::READ_RESPONSE) => format!(
            r#"{{"version":{},"data":{},"success":true}}"#,
            reply.version.unwrap_or(-1),
            raw_json(reply.data.as_ref())
        ),
        (ItemKind::Head, ra::HEAD_RESPONSE) => format!(
            r#"{{"version":{},"success":true}}"#,
            reply.version.unwrap_or(-1)
        ),
        (ItemKind::Write, ra::WRITE_ACKNOWLEDGEMENT)
        | (ItemKind::Delete, ra::DELETE_SUCCESS)
        | (ItemKind::Notify, ra::NOTIFY) => r#"{"success":true}"#.into(),
        (ItemKind::Presence, pa::QUERY_ALL_RESPONSE) => {
            let users: Vec<String> = reply.names.iter().map(|n| quoted(n)).collect();
            format!(r#"{{"users":[{}],"success":true}}"#, users.join(","))
        }
        (ItemKind::Presence, pa::QUERY_RESPONSE) => format!(
            r#"{{"users":{},"success":true}}"#,
            raw_json(reply.data.as_ref())
        ),
        _ => return None,
    };
    Some(ItemResult::ok(json))
}

/// deepstream's topic names, lower case, as `errorTopic` gives them.
fn topic_key(topic: i32) -> &'static str {
    match topic {
        topic::PARSER => "parser",
        topic::CONNECTION => "connection",
        topic::AUTH => "auth",
        topic::EVENT => "event",
        topic::RECORD => "record",
        topic::RPC => "rpc",
        topic::PRESENCE => "presence",
        _ => "unknown",
    }
}

/// An action's name as the reference prints it, or its number.
fn action_name(topic: i32, action: i32) -> String {
    crate::protocol::names::action_name(topic, action)
        .map_or_else(|| action.to_string(), str::to_string)
}

fn is_denied(reply: &Message) -> bool {
    matches!(
        (reply.topic, reply.action),
        (topic::EVENT, ea::MESSAGE_DENIED)
            | (topic::RECORD, ra::MESSAGE_DENIED)
            | (topic::RPC, rpc_action::MESSAGE_DENIED)
            | (topic::PRESENCE, pa::MESSAGE_DENIED)
    )
}

/// deepstream's `errorToJIF`: the error's topic and action, and what each kind of error adds.
fn error_result(item: &Item, reply: &Message) -> ItemResult {
    let name = String::from_utf8_lossy(reply.name.as_deref().unwrap_or_default()).into_owned();
    // An emit is permissioned apart in the reference, with a result of its own.
    if item.kind == ItemKind::Emit && is_denied(reply) {
        return ItemResult {
            success: false,
            json: r#"{"success":false,"error":"Message denied. Action 'emit' is not permitted.","errorEvent":"MESSAGE_DENIED","errorAction":"emit","errorTopic":"event"}"#.into(),
        };
    }
    let mut json = format!(
        r#"{{"errorTopic":"{}","errorEvent":{},"success":false"#,
        topic_key(reply.topic),
        reply.action
    );
    let record = reply.topic == topic::RECORD;
    if is_denied(reply) {
        let original = reply.original_action.unwrap_or(item.msg.action);
        let _ = write!(
            json,
            r#","action":{original},"error":{}"#,
            quoted(
                format!(
                    "Message denied. Action \"{}\" is not permitted.",
                    action_name(reply.topic, original)
                )
                .as_bytes()
            )
        );
    } else if record && matches!(reply.action, ra::VERSION_EXISTS | ra::INVALID_VERSION) {
        let version = reply.version.unwrap_or(-1);
        let what = if reply.action == ra::VERSION_EXISTS {
            "exists"
        } else {
            "is not valid"
        };
        let _ = write!(
            json,
            r#","error":{},"currentVersion":{version},"currentData":{}"#,
            quoted(
                format!("Record update failed. Version {version} {what} for record \"{name}\".")
                    .as_bytes()
            ),
            raw_json(reply.data.as_ref())
        );
    } else if record && reply.action == ra::RECORD_NOT_FOUND {
        let _ = write!(
            json,
            r#","error":{}"#,
            quoted(format!("Record read failed. Record \"{name}\" could not be found.").as_bytes())
        );
    } else if reply.topic == topic::RPC && reply.action == rpc_action::NO_RPC_PROVIDER {
        let _ = write!(
            json,
            r#","error":{}"#,
            quoted(format!("No provider was available to handle the RPC \"{name}\".").as_bytes())
        );
    } else if reply.topic == topic::RPC && reply.action == rpc_action::RESPONSE_TIMEOUT {
        json.push_str(r#","error":"The RPC response timeout was exceeded by the provider.""#);
    } else {
        let _ = write!(
            json,
            r#","error":{},"errorParams":{}"#,
            quoted(
                format!(
                    "An error occurred: {}.",
                    action_name(reply.topic, reply.action)
                )
                .as_bytes()
            ),
            if name.is_empty() {
                "null".to_string()
            } else {
                quoted(name.as_bytes())
            }
        );
        if let Some(data) = &reply.data {
            let _ = write!(json, r#","errorData":{}"#, raw_json(Some(data)));
        }
    }
    json.push('}');
    ItemResult {
        success: false,
        json,
    }
}

/// The response body: every item's result in request order, and the overall result.
pub fn response_body(results: &[ItemResult]) -> String {
    let succeeded = results.iter().filter(|r| r.success).count();
    let result = if succeeded == results.len() {
        "SUCCESS"
    } else if succeeded == 0 {
        "FAILURE"
    } else {
        "PARTIAL_SUCCESS"
    };
    let mut out =
        String::with_capacity(32 + results.iter().map(|r| r.json.len() + 1).sum::<usize>());
    let _ = write!(out, r#"{{"result":"{result}","body":["#);
    for (i, r) in results.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&r.json);
    }
    out.push_str("]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(body: &str) -> Result<Vec<Item>, Refusal> {
        parse_request(body.as_bytes(), true).and_then(|r| r.items)
    }

    #[test]
    fn request_level_refusals_say_what_the_reference_says() {
        let refuse = |body: &str| parse_request(body.as_bytes(), true).unwrap_err().text;
        assert_eq!(
            refuse("{}"),
            "Invalid message: the \"body\" parameter must exist."
        );
        assert_eq!(
            refuse(r#"{"body":[]}"#),
            "Invalid message: the \"body\" parameter must be a non-empty array of Objects."
        );
        assert!(refuse("{bad").starts_with("Failed to parse body of request"));
        assert!(refuse("null").starts_with("Failed to parse body of request"));
        assert_eq!(
            refuse(r#"{"authData":"x","body":[{}]}"#),
            "Invalid message: the \"authData\" parameter must be an object"
        );
        assert_eq!(
            refuse(r#"{"token":"","body":[{}]}"#),
            "Invalid message: the \"token\" parameter must be a non-empty string"
        );
        let no_auth_data = parse_request(br#"{"authData":{},"body":[{}]}"#, false).unwrap_err();
        assert!(no_auth_data
            .text
            .starts_with("Authentication using authData is disabled"));
    }

    #[test]
    fn auth_data_wins_over_the_token() {
        let r = parse_request(br#"{"token":"t","authData":{"a":1},"body":[{}]}"#, true).unwrap();
        assert_eq!(r.auth_data, r#"{"a":1}"#);
        let r = parse_request(br#"{"token":"t","body":[{}]}"#, true).unwrap();
        assert_eq!(r.auth_data, r#"{"token":"t"}"#);
        let r = parse_request(br#"{"body":[{}]}"#, true).unwrap();
        assert_eq!(r.auth_data, "{}");
    }

    #[test]
    fn item_refusals_name_the_index() {
        let refuse = |body: &str| items(body).unwrap_err().text;
        assert_eq!(
            refuse(r#"{"body":[{"topic":"event","action":"emit","eventName":"x"},{"topic":"event","action":"emit"}]}"#),
            "Failed to parse JIF object at index 1. Reason: property 'eventName' is required for topic 'event'"
        );
        assert_eq!(
            refuse(r#"{"body":[{"topic":"nope","action":"emit"}]}"#),
            "Failed to parse JIF object at index 0."
        );
        assert!(refuse(
            r#"{"body":[{"topic":"record","action":"read","recordName":"a","data":{}}]}"#
        )
        .contains("'data' is not permitted"));
        assert!(refuse(
            r#"{"body":[{"topic":"record","action":"write","recordName":"a","data":5}]}"#
        )
        .contains("'.data'"));
        assert!(refuse(r#"{"body":[{"topic":"record","action":"write","recordName":"a","data":{},"version":-2}]}"#)
            .contains("'.version'"));
        assert!(
            refuse(r#"{"body":[{"topic":"record","action":"read","recordName":""}]}"#)
                .contains("'.recordName'")
        );
        assert!(refuse(
            r#"{"body":[{"topic":"list","action":"write","listName":"l","data":[1]}]}"#
        )
        .contains("'.data'"));
        assert!(refuse(r#"{"body":[5]}"#).starts_with("Failed to parse JIF object at index 0."));
    }

    #[test]
    fn items_become_the_reference_messages() {
        let parsed = items(
            r#"{"body":[
            {"topic":"event","action":"emit","eventName":"e","data":{"b":1, "a":2}},
            {"topic":"rpc","action":"make","rpcName":"r"},
            {"topic":"record","action":"write","recordName":"w","data":{"x":1},"version":0},
            {"topic":"record","action":"write","recordName":"w","path":"a.b","data":7,"version":3},
            {"topic":"record","action":"notify","recordNames":["a","b"]},
            {"topic":"list","action":"write","listName":"l","data":["x"]},
            {"topic":"presence","action":"query"},
            {"topic":"presence","action":"query","names":["u"]}
        ]}"#,
        )
        .unwrap();
        let m = |i: usize| &parsed[i].msg;
        assert_eq!((m(0).topic, m(0).action), (topic::EVENT, ea::EMIT));
        // The data goes on exactly as written.
        assert_eq!(m(0).data.as_deref(), Some(&br#"{"b":1, "a":2}"#[..]));
        assert_eq!(m(1).action, rpc_action::REQUEST);
        assert!(m(1).correlation_id.is_some());
        assert_eq!((m(2).action, m(2).version), (ra::CREATEANDUPDATE, Some(-1)));
        assert_eq!(m(2).is_write_ack, Some(true));
        assert_eq!((m(3).action, m(3).version), (ra::CREATEANDPATCH, Some(3)));
        assert_eq!(m(3).path.as_deref(), Some(&b"a.b"[..]));
        assert_eq!(m(4).names.len(), 2);
        assert_eq!(m(5).name.as_deref(), Some(&b"l"[..]));
        assert_eq!(m(6).action, pa::QUERY_ALL);
        assert_eq!(m(7).action, pa::QUERY);
        assert_eq!(parsed[7].kind, ItemKind::Presence);
    }

    fn item(kind: ItemKind, topic_: i32, action: i32) -> Item {
        Item {
            msg: Box::new(Message {
                name: Some(Bytes::from_static(b"n")),
                correlation_id: Some(Bytes::from_static(b"0")),
                ..Message::new(topic_, action)
            }),
            kind,
        }
    }

    #[test]
    fn replies_become_results() {
        let read = item(ItemKind::Read, topic::RECORD, ra::READ);
        let reply = Message {
            name: Some(Bytes::from_static(b"n")),
            version: Some(3),
            data: Some(Bytes::from_static(br#"{"x":1}"#)),
            ..Message::new(topic::RECORD, ra::READ_RESPONSE)
        };
        let r = result_of(&read, &reply).unwrap();
        assert_eq!(r.json, r#"{"version":3,"data":{"x":1},"success":true}"#);
        let missing = Message {
            name: Some(Bytes::from_static(b"n")),
            is_error: Some(true),
            ..Message::new(topic::RECORD, ra::RECORD_NOT_FOUND)
        };
        assert_eq!(
            result_of(&read, &missing).unwrap().json,
            r#"{"errorTopic":"record","errorEvent":107,"success":false,"error":"Record read failed. Record \"n\" could not be found."}"#
        );
        let write = item(ItemKind::Write, topic::RECORD, ra::CREATEANDUPDATE);
        let exists = Message {
            name: Some(Bytes::from_static(b"n")),
            version: Some(1),
            data: Some(Bytes::from_static(br#"{"x":1}"#)),
            is_error: Some(true),
            ..Message::new(topic::RECORD, ra::VERSION_EXISTS)
        };
        assert_eq!(
            result_of(&write, &exists).unwrap().json,
            r#"{"errorTopic":"record","errorEvent":102,"success":false,"error":"Record update failed. Version 1 exists for record \"n\".","currentVersion":1,"currentData":{"x":1}}"#
        );
        let rpc = item(ItemKind::Rpc, topic::RPC, rpc_action::REQUEST);
        let accept = Message {
            correlation_id: Some(Bytes::from_static(b"0")),
            ..Message::new(topic::RPC, rpc_action::ACCEPT)
        };
        assert_eq!(
            result_of(&rpc, &accept),
            None,
            "an accept is not the answer"
        );
        let response = Message {
            correlation_id: Some(Bytes::from_static(b"0")),
            data: Some(Bytes::from_static(b"42")),
            ..Message::new(topic::RPC, rpc_action::RESPONSE)
        };
        assert_eq!(
            result_of(&rpc, &response).unwrap().json,
            r#"{"data":42,"success":true}"#
        );
        let other = Message {
            correlation_id: Some(Bytes::from_static(b"9")),
            ..response.clone()
        };
        assert_eq!(result_of(&rpc, &other), None, "another item's answer");
        let denied = Message {
            original_action: Some(ra::CREATEANDUPDATE),
            is_error: Some(true),
            ..Message::new(topic::RECORD, ra::MESSAGE_DENIED)
        };
        assert_eq!(
            result_of(&write, &denied).unwrap().json,
            r#"{"errorTopic":"record","errorEvent":115,"success":false,"action":16,"error":"Message denied. Action \"CREATEANDUPDATE\" is not permitted."}"#
        );
        let emit = item(ItemKind::Emit, topic::EVENT, ea::EMIT);
        let emit_denied = Message {
            is_error: Some(true),
            ..Message::new(topic::EVENT, ea::MESSAGE_DENIED)
        };
        assert!(!result_of(&emit, &emit_denied).unwrap().success);
    }

    #[test]
    fn the_overall_result_counts_successes() {
        let ok = ItemResult::ok(r#"{"success":true}"#.into());
        let bad = ItemResult::timed_out();
        assert!(response_body(&[ok.clone(), ok.clone()]).starts_with(r#"{"result":"SUCCESS""#));
        assert!(
            response_body(&[ok.clone(), bad.clone()]).starts_with(r#"{"result":"PARTIAL_SUCCESS""#)
        );
        assert!(response_body(&[bad]).starts_with(r#"{"result":"FAILURE""#));
    }
}
