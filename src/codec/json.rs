//! `ws-json`: deepstream's JSON endpoint. Each text frame is one `Message` as a JSON object
//! with the protobuf message's fields, named as deepstream's `Message` names them (`topic`,
//! `action`, `name`, `names`, `data` as JSON text, `correlationId`, `isAck`, `isError`,
//! `version`, `path`, `isWriteAck`, `subscription`, `originalTopic`, `originalAction`, …).
//! Outgoing messages carry `data` as the JSON text the binary protocol carries and, as the
//! reference sends records, the same value parsed in `parsedData`; acks say `isAck`.

use super::Inbound;
use crate::protocol::message::{parser_action, topic, Message};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

#[derive(Deserialize, Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct JsonMessage {
    topic: i32,
    #[serde(default)]
    action: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    names: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data: Option<String>,
    /// The data parsed, as the reference sends it (for records, in place of `data`); taken
    /// as JSON when a client sends it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parsed_data: Option<Box<serde_json::value::RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    correlation_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    is_ack: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    is_error: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pattern: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subscription: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    original_topic: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    original_action: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    is_write_ack: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    versions: Option<std::collections::BTreeMap<String, i32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    protocol_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sdk_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sdk_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    requestor_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    requestor_data: Option<String>,
}

fn bytes(s: Option<String>) -> Option<Bytes> {
    s.map(Bytes::from)
}

fn text(b: &Option<Bytes>) -> Option<String> {
    b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned())
}

/// Reads one text frame: one message, or the PARSER error the client is owed.
pub fn decode(frame: &Bytes, out: &mut Vec<Inbound>) {
    let parsed: JsonMessage = match serde_json::from_slice(frame) {
        Ok(m) => m,
        Err(e) => {
            let why = serde_json::to_vec(&format!("invalid JSON message: {e}")).unwrap_or_default();
            let reply = Message {
                data: Some(Bytes::from(why)),
                ..Message::new(topic::PARSER, parser_action::MESSAGE_PARSE_ERROR)
            };
            out.push(Inbound::Reply(encode_to_bytes(&reply)));
            return;
        }
    };
    let data = match (parsed.data, parsed.parsed_data) {
        (Some(data), _) => Some(Bytes::from(data)),
        (None, Some(value)) => Some(Bytes::copy_from_slice(value.get().as_bytes())),
        (None, None) => None,
    };
    let msg = Message {
        topic: parsed.topic,
        action: parsed.action,
        data,
        correlation_id: bytes(parsed.correlation_id),
        is_error: parsed.is_error,
        is_ack: parsed.is_ack,
        name: bytes(parsed.name),
        names: parsed
            .names
            .unwrap_or_default()
            .into_iter()
            .map(Bytes::from)
            .collect(),
        pattern: bytes(parsed.pattern),
        subscription: bytes(parsed.subscription),
        original_topic: parsed.original_topic,
        original_action: parsed.original_action,
        is_write_ack: parsed.is_write_ack,
        path: bytes(parsed.path),
        version: parsed.version,
        versions: parsed
            .versions
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (Bytes::from(k), v))
            .collect(),
        url: bytes(parsed.url),
        protocol_version: bytes(parsed.protocol_version),
        sdk_version: bytes(parsed.sdk_version),
        sdk_type: bytes(parsed.sdk_type),
        requestor_name: bytes(parsed.requestor_name),
        requestor_data: bytes(parsed.requestor_data),
    };
    out.push(Inbound::Message(Box::new(msg)));
}

/// The JSON object of a message the shard sent.
pub fn encode(msg: &Message, out: &mut Vec<u8>) {
    let json = JsonMessage {
        topic: msg.topic,
        action: msg.action,
        name: text(&msg.name),
        // Listed even when empty where the reference lists them (who is online).
        names: (!msg.names.is_empty()
            || (msg.topic, msg.action)
                == (
                    topic::PRESENCE,
                    crate::protocol::message::presence_action::QUERY_ALL_RESPONSE,
                ))
            .then(|| {
                msg.names
                    .iter()
                    .map(|n| String::from_utf8_lossy(n).into_owned())
                    .collect()
            }),
        data: text(&msg.data),
        parsed_data: msg
            .data
            .as_ref()
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| serde_json::value::RawValue::from_string(d.to_owned()).ok()),
        correlation_id: text(&msg.correlation_id),
        is_ack: msg.is_ack,
        is_error: msg.is_error,
        pattern: text(&msg.pattern),
        subscription: text(&msg.subscription),
        original_topic: msg.original_topic,
        original_action: msg.original_action,
        is_write_ack: msg.is_write_ack,
        path: text(&msg.path),
        version: msg.version,
        versions: (!msg.versions.is_empty()).then(|| {
            msg.versions
                .iter()
                .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), *v))
                .collect()
        }),
        url: text(&msg.url),
        protocol_version: text(&msg.protocol_version),
        sdk_version: text(&msg.sdk_version),
        sdk_type: text(&msg.sdk_type),
        requestor_name: text(&msg.requestor_name),
        requestor_data: text(&msg.requestor_data),
    };
    // Serialising plain strings and numbers into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &json);
}

fn encode_to_bytes(msg: &Message) -> Bytes {
    let mut out = Vec::new();
    encode(msg, &mut out);
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::message::{event_action, record_action};

    #[test]
    fn reads_and_writes_messages_as_json_objects() {
        let mut out = Vec::new();
        decode(
            &Bytes::from_static(
                br#"{"topic":5,"action":18,"name":"r","version":2,"data":"{\"a\":1}","isWriteAck":true,"correlationId":"k"}"#,
            ),
            &mut out,
        );
        let Some(Inbound::Message(msg)) = out.pop() else {
            panic!("no message")
        };
        assert_eq!(
            (msg.topic, msg.action),
            (topic::RECORD, record_action::UPDATE)
        );
        assert_eq!(msg.version, Some(2));
        assert_eq!(msg.data.as_deref(), Some(&br#"{"a":1}"#[..]));
        assert_eq!(msg.is_write_ack, Some(true));
        let mut written = Vec::new();
        encode(&msg, &mut written);
        let back: serde_json::Value = serde_json::from_slice(&written).expect("json");
        assert_eq!(back["data"], r#"{"a":1}"#);
        assert_eq!(back["correlationId"], "k");
        assert!(back.get("names").is_none());
        assert_eq!(back["parsedData"], serde_json::json!({"a": 1}));
    }

    #[test]
    fn parsed_data_is_taken_as_json() {
        let mut out = Vec::new();
        decode(
            &Bytes::from_static(br#"{"topic":4,"action":2,"name":"e","parsedData":{"n":[1]}}"#),
            &mut out,
        );
        let Some(Inbound::Message(msg)) = out.pop() else {
            panic!("no message")
        };
        assert_eq!(msg.action, event_action::EMIT);
        assert_eq!(msg.data.as_deref(), Some(&br#"{"n":[1]}"#[..]));
    }

    #[test]
    fn garbage_gets_a_parse_error() {
        for bad in [
            &b"garbage"[..],
            b"{\"topic\":\"x\"}",
            b"[]",
            b"{\"action\":1}",
        ] {
            let mut out = Vec::new();
            decode(&Bytes::copy_from_slice(bad), &mut out);
            let Some(Inbound::Reply(reply)) = out.pop() else {
                panic!("no reply")
            };
            let reply: serde_json::Value = serde_json::from_slice(&reply).expect("json");
            assert_eq!(reply["topic"], topic::PARSER);
            assert_eq!(reply["action"], parser_action::MESSAGE_PARSE_ERROR);
        }
    }
}
