//! `ws-frame`: the binary framing of deepstream's 4.0 design (its `urp-js` protocol), one more
//! codec to and from the same `Message`. Each message is an 8-byte header, JSON meta with
//! abbreviated keys, then the payload (the message's data):
//!
//! ```text
//! byte 0: FIN (1 bit) | topic (7 bits)      byte 1: ACK (1 bit) | action (7 bits)
//! bytes 2-4: meta length (24 bits, BE)      bytes 5-7: payload length (24 bits, BE)
//! ```
//! (4.0's notes call the header 6 bytes; its fields and its implementation take 8.) A payload
//! or meta over 2^24 - 1 bytes is split into chunks with the same topic and action, FIN clear
//! on all but the last. Topic and action numbers are those of the protobuf `Message`. Meta keys
//! are 4.0's (`n` name, `m` names, `s` subscription, `c` correlationId, `v` version, `p` path,
//! `u` url, `t` originalTopic, `a` originalAction, `x` protocolVersion) plus corestream's for
//! what 4.0 encoded otherwise: `w` isWriteAck, `E` isError, `P` pattern, `V` versions,
//! `R` requestorName, `D` requestorData, `k` sdkVersion, `K` sdkType.

use super::Inbound;
use crate::protocol::message::{parser_action, topic, Message};
use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const HEADER_LEN: usize = 8;
const CHUNK_MAX: usize = (1 << 24) - 1;

#[derive(Deserialize, Serialize, Default)]
struct Meta {
    #[serde(rename = "n", skip_serializing_if = "Option::is_none", default)]
    name: Option<String>,
    #[serde(rename = "m", skip_serializing_if = "Option::is_none", default)]
    names: Option<Vec<String>>,
    #[serde(rename = "s", skip_serializing_if = "Option::is_none", default)]
    subscription: Option<String>,
    #[serde(rename = "c", skip_serializing_if = "Option::is_none", default)]
    correlation_id: Option<String>,
    #[serde(rename = "v", skip_serializing_if = "Option::is_none", default)]
    version: Option<i32>,
    #[serde(rename = "p", skip_serializing_if = "Option::is_none", default)]
    path: Option<String>,
    #[serde(rename = "u", skip_serializing_if = "Option::is_none", default)]
    url: Option<String>,
    #[serde(rename = "t", skip_serializing_if = "Option::is_none", default)]
    original_topic: Option<i32>,
    #[serde(rename = "a", skip_serializing_if = "Option::is_none", default)]
    original_action: Option<i32>,
    #[serde(rename = "x", skip_serializing_if = "Option::is_none", default)]
    protocol_version: Option<String>,
    #[serde(rename = "w", skip_serializing_if = "Option::is_none", default)]
    is_write_ack: Option<bool>,
    #[serde(rename = "E", skip_serializing_if = "Option::is_none", default)]
    is_error: Option<bool>,
    #[serde(rename = "P", skip_serializing_if = "Option::is_none", default)]
    pattern: Option<String>,
    #[serde(rename = "V", skip_serializing_if = "Option::is_none", default)]
    versions: Option<BTreeMap<String, i32>>,
    #[serde(rename = "R", skip_serializing_if = "Option::is_none", default)]
    requestor_name: Option<String>,
    #[serde(rename = "D", skip_serializing_if = "Option::is_none", default)]
    requestor_data: Option<String>,
    #[serde(rename = "k", skip_serializing_if = "Option::is_none", default)]
    sdk_version: Option<String>,
    #[serde(rename = "K", skip_serializing_if = "Option::is_none", default)]
    sdk_type: Option<String>,
}

fn text(b: &Option<Bytes>) -> Option<String> {
    b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned())
}

fn bytes(s: Option<String>) -> Option<Bytes> {
    s.map(Bytes::from)
}

/// A message split over chunks, while its last chunk has not come.
#[derive(Debug, Default)]
pub struct Partial {
    head: Option<(u8, u8)>,
    meta: BytesMut,
    payload: BytesMut,
}

fn parse_error(why: &str) -> Inbound {
    let reply = Message {
        data: serde_json::to_vec(why).ok().map(Bytes::from),
        ..Message::new(topic::PARSER, parser_action::MESSAGE_PARSE_ERROR)
    };
    let mut out = Vec::new();
    encode(&reply, &mut out);
    Inbound::Reply(Bytes::from(out))
}

/// Reads every message of one binary frame (chunks may continue into later frames, up to
/// `max` bytes of meta and payload together).
pub fn decode(frame: &Bytes, partial: &mut Partial, max: usize, out: &mut Vec<Inbound>) {
    let mut at = 0;
    while at < frame.len() {
        let Some(header) = frame.get(at..at + HEADER_LEN) else {
            out.push(parse_error("a message shorter than its header"));
            *partial = Partial::default();
            return;
        };
        let u24 =
            |b: &[u8]| (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]);
        let (first, second) = (header[0], header[1]);
        let meta_len = u24(&header[2..5]);
        let payload_len = u24(&header[5..8]);
        let body = at + HEADER_LEN;
        let Some(meta) = frame.get(body..body + meta_len) else {
            out.push(parse_error("meta longer than the frame"));
            *partial = Partial::default();
            return;
        };
        let Some(payload) = frame.get(body + meta_len..body + meta_len + payload_len) else {
            out.push(parse_error("payload longer than the frame"));
            *partial = Partial::default();
            return;
        };
        at = body + meta_len + payload_len;
        let head = (first & 0x7f, second);
        if partial.head.is_some_and(|h| h != head) {
            out.push(parse_error("a continuation with another topic or action"));
            *partial = Partial::default();
            continue;
        }
        if partial.meta.len() + partial.payload.len() + meta.len() + payload.len() > max {
            out.push(parse_error("message larger than maxMessageSize"));
            *partial = Partial::default();
            continue;
        }
        let fin = first & 0x80 != 0;
        if !fin || partial.head.is_some() {
            partial.head = Some(head);
            partial.meta.extend_from_slice(meta);
            partial.payload.extend_from_slice(payload);
            if !fin {
                continue;
            }
            let whole = std::mem::take(partial);
            out.push(message(head, &whole.meta, whole.payload.freeze()));
        } else {
            out.push(message(head, meta, frame.slice(body + meta_len..at)));
        }
    }
}

fn message((topic_byte, action_byte): (u8, u8), meta: &[u8], payload: Bytes) -> Inbound {
    let meta: Meta = if meta.is_empty() {
        Meta::default()
    } else {
        match serde_json::from_slice(meta) {
            Ok(meta) => meta,
            Err(e) => return parse_error(&format!("invalid meta: {e}")),
        }
    };
    let msg = Message {
        topic: i32::from(topic_byte),
        action: i32::from(action_byte & 0x7f),
        is_ack: (action_byte & 0x80 != 0).then_some(true),
        data: (!payload.is_empty()).then_some(payload),
        name: bytes(meta.name),
        names: meta
            .names
            .unwrap_or_default()
            .into_iter()
            .map(Bytes::from)
            .collect(),
        subscription: bytes(meta.subscription),
        correlation_id: bytes(meta.correlation_id),
        version: meta.version,
        path: bytes(meta.path),
        url: bytes(meta.url),
        original_topic: meta.original_topic,
        original_action: meta.original_action,
        protocol_version: bytes(meta.protocol_version),
        is_write_ack: meta.is_write_ack,
        is_error: meta.is_error,
        pattern: bytes(meta.pattern),
        versions: meta
            .versions
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (Bytes::from(k), v))
            .collect(),
        requestor_name: bytes(meta.requestor_name),
        requestor_data: bytes(meta.requestor_data),
        sdk_version: bytes(meta.sdk_version),
        sdk_type: bytes(meta.sdk_type),
    };
    Inbound::Message(Box::new(msg))
}

fn put_u24(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8]);
}

/// Appends a message in this framing (several chunks when a part passes 2^24 - 1 bytes).
pub fn encode(msg: &Message, out: &mut Vec<u8>) {
    let meta = Meta {
        name: text(&msg.name),
        names: (!msg.names.is_empty()).then(|| {
            msg.names
                .iter()
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .collect()
        }),
        subscription: text(&msg.subscription),
        correlation_id: text(&msg.correlation_id),
        version: msg.version,
        path: text(&msg.path),
        url: text(&msg.url),
        original_topic: msg.original_topic,
        original_action: msg.original_action,
        protocol_version: text(&msg.protocol_version),
        is_write_ack: msg.is_write_ack,
        is_error: msg.is_error,
        pattern: text(&msg.pattern),
        versions: (!msg.versions.is_empty()).then(|| {
            msg.versions
                .iter()
                .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), *v))
                .collect()
        }),
        requestor_name: text(&msg.requestor_name),
        requestor_data: text(&msg.requestor_data),
        sdk_version: text(&msg.sdk_version),
        sdk_type: text(&msg.sdk_type),
    };
    let meta = serde_json::to_vec(&meta).unwrap_or_default();
    let meta: &[u8] = if meta == b"{}" { &[] } else { &meta };
    let payload = msg.data.as_deref().unwrap_or_default();
    let topic_byte = (msg.topic & 0x7f) as u8;
    let action_byte = (msg.action & 0x7f) as u8 | if msg.is_ack == Some(true) { 0x80 } else { 0 };
    let (mut meta_rest, mut payload_rest) = (meta, payload);
    loop {
        let meta_now = meta_rest.len().min(CHUNK_MAX);
        let payload_now = payload_rest.len().min(CHUNK_MAX);
        let fin = meta_now == meta_rest.len() && payload_now == payload_rest.len();
        out.push(topic_byte | if fin { 0x80 } else { 0 });
        out.push(action_byte);
        put_u24(out, meta_now);
        put_u24(out, payload_now);
        out.extend_from_slice(&meta_rest[..meta_now]);
        out.extend_from_slice(&payload_rest[..payload_now]);
        meta_rest = &meta_rest[meta_now..];
        payload_rest = &payload_rest[payload_now..];
        if fin {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::message::{event_action, record_action};

    fn decoded(bytes: &[u8], partial: &mut Partial) -> Vec<Inbound> {
        let mut out = Vec::new();
        decode(&Bytes::copy_from_slice(bytes), partial, 64 << 20, &mut out);
        out
    }

    #[test]
    fn messages_round_trip_with_abbreviated_meta() {
        let msg = Message {
            name: Some(Bytes::from_static(b"r")),
            version: Some(3),
            path: Some(Bytes::from_static(b"a.b")),
            data: Some(Bytes::from_static(b"5")),
            is_write_ack: Some(true),
            correlation_id: Some(Bytes::from_static(b"9")),
            ..Message::new(topic::RECORD, record_action::PATCH)
        };
        let mut out = Vec::new();
        encode(&msg, &mut out);
        assert_eq!(out[0], 0x80 | 5);
        assert_eq!(out[1], 19);
        let meta_len = usize::from(out[4]);
        assert_eq!(
            &out[8..8 + meta_len],
            br#"{"n":"r","c":"9","v":3,"p":"a.b","w":true}"#
        );
        assert_eq!(&out[8 + meta_len..], b"5");
        let back = decoded(&out, &mut Partial::default());
        assert_eq!(back, vec![Inbound::Message(Box::new(msg))]);
    }

    #[test]
    fn several_messages_in_one_frame_and_acks() {
        let ack = Message {
            is_ack: Some(true),
            correlation_id: Some(Bytes::from_static(b"1")),
            ..Message::new(topic::EVENT, event_action::SUBSCRIBE)
        };
        let mut out = Vec::new();
        encode(&ack, &mut out);
        encode(&Message::new(topic::CONNECTION, 2), &mut out);
        assert_eq!(out[1], 0x80 | 3);
        let back = decoded(&out, &mut Partial::default());
        assert_eq!(back.len(), 2);
        assert_eq!(back[0], Inbound::Message(Box::new(ack)));
    }

    #[test]
    fn chunks_join_across_frames() {
        let mut first = vec![4, 2, 0, 0, 8, 0, 0, 2];
        first.extend_from_slice(br#"{"n":"e"}"#[..8].as_ref());
        // meta {"n":"e"} is 9 bytes: send 8 + payload "12" in a chunk without FIN...
        let mut partial = Partial::default();
        let mut chunk1 = vec![4, 2, 0, 0, 9, 0, 0, 2];
        chunk1.extend_from_slice(br#"{"n":"e"}12"#);
        let mut chunk2 = vec![0x84, 2, 0, 0, 0, 0, 0, 1];
        chunk2.push(b'3');
        assert!(decoded(&chunk1, &mut partial).is_empty());
        let back = decoded(&chunk2, &mut partial);
        let Some(Inbound::Message(msg)) = back.first() else {
            panic!("{back:?}")
        };
        assert_eq!(msg.data.as_deref(), Some(&b"123"[..]));
        assert_eq!(msg.name.as_deref(), Some(&b"e"[..]));
        let _ = first;
    }

    #[test]
    fn bad_frames_get_parse_errors() {
        for bad in [
            &[0x84u8, 2, 0][..],
            &[0x84, 2, 0, 0, 9, 0, 0, 0],
            &[0x84, 2, 0, 0, 2, 0, 0, 0, b'{', b'x'],
        ] {
            let back = decoded(bad, &mut Partial::default());
            assert!(matches!(back.last(), Some(Inbound::Reply(_))), "{bad:?}");
        }
        let mut partial = Partial::default();
        let mut out = Vec::new();
        decode(
            &Bytes::from_static(&[0x04, 2, 0, 0, 0, 0, 0, 3, 1, 2, 3]),
            &mut partial,
            2,
            &mut out,
        );
        assert!(
            matches!(out.last(), Some(Inbound::Reply(_))),
            "over the size limit"
        );
    }

    #[test]
    fn big_payloads_are_split_into_chunks() {
        let data = Bytes::from(vec![b'1'; CHUNK_MAX + 10]);
        let msg = Message {
            name: Some(Bytes::from_static(b"e")),
            data: Some(data.clone()),
            ..Message::new(topic::EVENT, event_action::EMIT)
        };
        let mut out = Vec::new();
        encode(&msg, &mut out);
        assert_eq!(out[0] & 0x80, 0, "first chunk without FIN");
        let back = decoded(&out, &mut Partial::default());
        let Some(Inbound::Message(back)) = back.first() else {
            panic!("no message")
        };
        assert_eq!(back.data.as_ref(), Some(&data));
    }
}
