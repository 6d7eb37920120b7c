//! Entry points for the fuzz targets in `fuzz/` and for replaying their corpora in `cargo test`
//! (tests/fuzz_corpus.rs). Each takes untrusted bytes, must never panic, hang or allocate
//! without bound, and checks what must hold of its parser.

use crate::config::Config;
use crate::core::json;
use crate::core::jsonpath::{set_path, Path};
use crate::core::records::{apply_write, Change, StoredRecord};
use crate::protocol::message::{auth_action, connection_action, topic, Message};
use crate::protocol::{http, ws};
use crate::shard::outbox::Outbox;
use crate::shard::Shard;
use bytes::{Bytes, BytesMut};
use std::sync::Arc;

/// A fuzz target: untrusted bytes in, nothing out but panics on a broken invariant.
pub type Target = fn(&[u8]);

/// The targets by name, for the corpus replay.
pub const TARGETS: &[(&str, Target)] = &[
    ("ws_frames", ws_frames),
    ("http_head", http_head),
    ("message", message),
    ("json_path", json_path),
    ("valve", valve),
    ("config", config),
    ("shard", shard),
    ("http_api", http_api),
    ("text_codec", text_codec),
    ("json_codec", json_codec),
    ("frame_codec", frame_codec),
    ("mqtt_codec", mqtt_codec),
    ("cluster_bus", cluster_bus),
];

/// Splits at the first zero byte.
fn split(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[]),
    }
}

/// WebSocket frames arriving in pieces of any size: decoded messages respect the size limit.
pub fn ws_frames(data: &[u8]) {
    let Some((&knobs, bytes)) = data.split_first() else {
        return;
    };
    let max = 16usize << (knobs & 0x0f);
    let step = usize::from(knobs >> 4) + 1;
    let mut decoder = ws::FrameDecoder::new(max);
    let mut buf = BytesMut::new();
    for piece in bytes.chunks(step) {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(ws::WsEvent::Binary(p) | ws::WsEvent::Text(p))) => {
                    assert!(p.len() <= max, "a message over the limit got through")
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
}

/// HTTP request heads: parsing never reads past what it says it consumed.
pub fn http_head(data: &[u8]) {
    if let Ok(Some((_, len))) = http::parse_head(data) {
        assert!(len <= data.len());
    }
}

/// `head \0 body` of a plain HTTP request: routing, origin and admin checks, a chunked body in
/// two pieces, and the JIF body never panic; every item becomes a message that encodes and
/// parses back, and a reply to it gives a result that is JSON.
pub fn http_api(data: &[u8]) {
    use crate::api::{self, admin, jif};
    let (head_bytes, body) = split(data);
    if let Ok(Some((head, _))) = http::parse_head(head_bytes) {
        let config = api::ApiConfig {
            allow_all_origins: false,
            origins: vec!["http://a".into()],
            ..api::ApiConfig::default()
        };
        let _ = api::origin_headers(&config, &head);
        let _ = api::route(&config, "/health-check", &["/metrics"], &head);
        let admin_config = admin::AdminConfig {
            token: Some("0123456789abcdef".into()),
            path: "/admin".into(),
            ..admin::AdminConfig::default()
        };
        let _ = admin::route(&admin_config, &head);
    }
    let mut chunked = http::ChunkedBody::default();
    let mut buf = BytesMut::from(&body[..body.len() / 2]);
    if let Ok(false) = chunked.feed(&mut buf, 1 << 16) {
        buf.extend_from_slice(&body[body.len() / 2..]);
        let _ = chunked.feed(&mut buf, 1 << 16);
    }
    assert!(chunked.body.len() <= 1 << 16);
    let Ok(request) = jif::parse_request(body, true) else {
        return;
    };
    assert!(request.auth_data.starts_with('{'));
    let Ok(items) = request.items else { return };
    for item in items {
        let again = Message::parse(&item.msg.encode()).expect("an item's message parses back");
        assert_eq!(again, *item.msg);
        let reply = Message {
            name: item.msg.name.clone(),
            data: item.msg.data.clone(),
            version: Some(1),
            correlation_id: item.msg.correlation_id.clone(),
            is_error: Some(true),
            ..Message::new(item.msg.topic, 102)
        };
        if let Some(result) = jif::result_of(&item, &reply) {
            let parsed: Result<serde_json::Value, _> = serde_json::from_str(&result.json);
            assert!(parsed.is_ok(), "{}", result.json);
        }
    }
}

/// deepstream protobuf messages: both parsers agree, and what parses re-encodes to an equal
/// message.
pub fn message(data: &[u8]) {
    let frame = Bytes::copy_from_slice(data);
    let parsed = Message::parse(&frame);
    let boxed = Message::parse_boxed(&frame);
    assert_eq!(parsed.is_ok(), boxed.is_ok());
    if let (Ok(msg), Ok(boxed)) = (parsed, boxed) {
        assert_eq!(msg, *boxed);
        let again = Message::parse(&msg.encode()).expect("a re-encoded message parses");
        assert_eq!(again, msg);
    }
}

/// `path \0 document \0 value`: a document the server stores after a patch can always be read
/// back (depth and size stay within the bounds), and a write never panics.
pub fn json_path(data: &[u8]) {
    let (path, rest) = split(data);
    let (doc, value) = split(rest);
    if let Ok(mut root) = json::parse(doc) {
        if let Ok(path) = Path::parse(path) {
            let value = json::parse(value).ok();
            if set_path(&mut root, &path, value).is_ok() {
                let text = simd_json::prelude::Writable::encode(&root);
                json::parse(text.as_bytes()).expect("a patched document reads back");
            }
        }
    }
    let current = json::validate_record(doc).is_ok().then(|| StoredRecord {
        version: 1,
        data: Bytes::copy_from_slice(doc),
    });
    let change = Change::Set {
        path: Bytes::copy_from_slice(path),
        value: Bytes::copy_from_slice(value),
    };
    let _ = apply_write(current.as_ref(), -1, &change, 1 << 20);
}

/// `rule \0 data`: Valve rules parse or are refused, and evaluate within their budget.
pub fn valve(data: &[u8]) {
    let (rule, payload) = split(data);
    let Ok(rule) = std::str::from_utf8(rule) else {
        return;
    };
    let Ok((expr, _)) = crate::permission::js::parse(rule) else {
        return;
    };
    let data = json::parse(payload).ok();
    let user_data = json::parse(br#"{"role":"admin","teams":["a"]}"#).ok();
    let variables = [("$id".to_string(), "x".to_string())];
    let refs = [("r".to_string(), data.clone())];
    let cx = crate::permission::js::Context {
        user_id: "alice",
        authenticated: true,
        user_data: user_data.as_ref(),
        data: data.as_ref(),
        old_data: data.as_ref(),
        now: 0.0,
        action: 1,
        name: "a/b",
        variables: &variables,
        refs: &refs,
    };
    let _ = crate::permission::js::run(&expr, &cx, 3000);
}

/// config.yml and permissions.yml text: loads or is refused with an error.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = Config::parse(&text, std::path::Path::new("/nonexistent"), "fuzz.yml");
    let _ = crate::permission::rules::Permissions::parse(&text, "permissions.yml", 3);
}

/// Two shards and three logged-in clients; the input is a sequence of client frames
/// (`client byte, length byte, bytes`), each handled and settled across the shards.
pub fn shard(data: &[u8]) {
    let config = Arc::new(Config {
        max_outgoing_buffer: 1 << 20,
        ..Config::default()
    });
    let mut shards: Vec<Shard> = (0..2).map(|id| Shard::new(id, 2, config.clone())).collect();
    let store = crate::store::MemoryStore::default();
    let mut clients = Vec::new();
    for i in 0..3u8 {
        let home = usize::from(i % 2);
        let outbox = Outbox::new(1 << 20, 0);
        let local = shards[home].open_conn(outbox.clone(), 0);
        let challenge = Message::new(topic::CONNECTION, connection_action::CHALLENGE);
        let auth = Message {
            data: Some(Bytes::from(format!(r#"{{"username":"u{i}"}}"#))),
            ..Message::new(topic::AUTH, auth_action::REQUEST)
        };
        for msg in [challenge, auth] {
            shards[home].on_client_frame(local, &msg.encode(), 0);
            settle(&mut shards, &store);
        }
        clients.push((home, local, outbox));
    }
    let mut rest = data;
    let mut now = 0;
    while let [who, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (frame, next) = tail.split_at(len);
        rest = next;
        let (home, local, outbox) = &clients[usize::from(*who) % clients.len()];
        shards[*home].on_client_frame(*local, &Bytes::copy_from_slice(frame), now);
        now += 7;
        for shard in &mut shards {
            shard.tick(now);
        }
        settle(&mut shards, &store);
        outbox.take_all();
    }
    for (home, local, _) in &clients {
        shards[*home].close_conn(*local);
    }
    settle(&mut shards, &store);
}

fn settle(shards: &mut [Shard], store: &crate::store::MemoryStore) {
    for _ in 0..64 {
        let mut moved = false;
        for i in 0..shards.len() {
            moved |= shards[i].run_store_jobs_inline(store, 0) > 0;
            for (to, batch) in shards[i].take_outgoing() {
                for msg in batch {
                    moved = true;
                    shards[to].on_peer_msg(msg, 0);
                }
            }
        }
        if !moved {
            return;
        }
    }
}

/// Every message a codec reads of a topic the schema has must survive the protobuf the shard
/// speaks (the shard refuses the others as a binary frame's parse would), and writing any
/// message back in the codec's own form must not fail.
fn check_codec_output(inbound: &[crate::codec::Inbound], write: fn(&Message, &mut Vec<u8>)) {
    for item in inbound {
        if let crate::codec::Inbound::Message(msg) = item {
            if !crate::protocol::message::known_topic(msg.topic) {
                let mut out = Vec::new();
                write(msg, &mut out);
                continue;
            }
            let encoded = msg.encode();
            let parsed = Message::parse(&encoded).expect("a codec's message survives protobuf");
            assert_eq!(parsed.topic, msg.topic);
            assert_eq!(parsed.action, msg.action);
            let mut out = Vec::new();
            write(msg, &mut out);
        }
    }
}

/// The V3 text protocol: any frame is read without panic, every message read is one the shard
/// can take, and the V3 form of it can be written; updates held for a read are let through.
pub fn text_codec(data: &[u8]) {
    let frame = Bytes::copy_from_slice(data);
    let mut out = Vec::new();
    let mut codec = crate::codec::Codec::new(crate::codec::WsCodec::Text, 1 << 20);
    codec.decode(&frame, &mut out);
    check_codec_output(&out, crate::codec::text::encode);
    let mut frames: Vec<Bytes> = out
        .iter()
        .filter_map(|i| match i {
            crate::codec::Inbound::Message(m) => Some(ws::frame(ws::OP_BINARY, &m.encode())),
            crate::codec::Inbound::Reply(_) => None,
        })
        .collect();
    codec.rewrite(&mut frames, &mut crate::codec::Transcoded::default());
}

/// The JSON endpoint: what it reads, written back and read again, is the same message.
pub fn json_codec(data: &[u8]) {
    let mut out = Vec::new();
    crate::codec::json::decode(&Bytes::copy_from_slice(data), &mut out);
    check_codec_output(&out, crate::codec::json::encode);
    for item in out {
        if let crate::codec::Inbound::Message(msg) = item {
            let mut written = Vec::new();
            crate::codec::json::encode(&msg, &mut written);
            let mut again = Vec::new();
            crate::codec::json::decode(&Bytes::from(written), &mut again);
            match again.pop() {
                Some(crate::codec::Inbound::Message(back)) => assert_eq!(back, msg),
                other => panic!("a written message did not read back: {other:?}"),
            }
        }
    }
}

/// The 4.0 framing, split into WebSocket frames at the first zero byte: what it reads, written
/// back and read again, is the same message; partial chunks stay within the size limit.
pub fn frame_codec(data: &[u8]) {
    use crate::codec::frame;
    let (first, second) = split(data);
    let mut partial = frame::Partial::default();
    let mut out = Vec::new();
    for piece in [first, second] {
        frame::decode(&Bytes::copy_from_slice(piece), &mut partial, 4096, &mut out);
    }
    check_codec_output(&out, frame::encode);
    for item in out {
        if let crate::codec::Inbound::Message(msg) = item {
            assert!(msg.data.as_ref().map_or(0, |d| d.len()) <= 4096);
            let mut written = Vec::new();
            frame::encode(&msg, &mut written);
            let mut again = Vec::new();
            frame::decode(
                &Bytes::from(written),
                &mut frame::Partial::default(),
                usize::MAX,
                &mut again,
            );
            match again.pop() {
                Some(crate::codec::Inbound::Message(back)) => assert_eq!(back, msg),
                other => panic!("a written message did not read back: {other:?}"),
            }
        }
    }
}

/// MQTT: a byte stream arriving in pieces (cut at zero bytes) after a valid CONNECT; every
/// message for the shard survives protobuf, answers to each can be written, and a packet past
/// the size limit is an error, not an allocation.
pub fn mqtt_codec(data: &[u8]) {
    use crate::codec::mqtt::{Action, Session};
    let mut session = Session::default();
    let mut buf = BytesMut::new();
    let connect: &[u8] = &[
        0x10, 18, 0, 4, b'M', b'Q', b'T', b'T', 4, 0xC2, 0, 30, 0, 1, b'c', 0, 1, b'u', 0, 0,
    ];
    let mut actions = Vec::new();
    buf.extend_from_slice(connect);
    // The CONNECT must be whole and valid, or nothing after it is ever read (its remaining
    // length was 16 for 18 bytes, and the target fuzzed nothing).
    assert!(
        session.decode(&mut buf, 4096, &mut actions).is_ok() && session.awaiting_login(),
        "the target's CONNECT"
    );
    // The shard's answer to the login: what follows is read as a logged-in session's (until
    // then it would wait unread, MQTT-3.1.4-5).
    let login = Message::new(
        crate::protocol::message::topic::AUTH,
        crate::protocol::message::auth_action::AUTH_SUCCESSFUL,
    );
    session.encode(&login, &mut Vec::new());
    for piece in data.split(|b| *b == 0) {
        buf.extend_from_slice(piece);
        if session.decode(&mut buf, 4096, &mut actions).is_err() {
            break;
        }
        assert!(buf.len() <= 4096 + 5, "a partial packet is bounded");
    }
    for action in actions {
        if let Action::ToShard(msg) = action {
            let parsed = Message::parse(&msg.encode()).expect("protobuf");
            assert_eq!(parsed.topic, msg.topic);
            // The shard's answers: an ack, an error, a delivery.
            let mut out = Vec::new();
            let mut ack = (*msg).clone();
            ack.is_ack = Some(true);
            session.encode(&ack, &mut out);
            session.encode(&msg, &mut out);
        }
    }
}

/// The cluster's bus payloads as anything that can publish on the NATS server may send them
/// (and a bucket's values as anything that can write the bucket): every decoder takes any
/// bytes, and what decodes encodes back to the same meaning.
pub fn cluster_bus(data: &[u8]) {
    use crate::cluster::bus::*;
    let payload = Bytes::copy_from_slice(data);
    if let Some((name, rest)) = decode_published(&payload) {
        if let Some(frames) = decode_frames(rest) {
            let again = encode_published(&name, &frames);
            let (name_again, rest) = decode_published(&again).expect("a published message");
            assert_eq!(name_again, name);
            assert_eq!(decode_frames(rest), Some(frames));
        }
    }
    if let Some((node, user, online)) = decode_presence(&payload) {
        let again = encode_presence(node, &user, online);
        assert_eq!(decode_presence(&again), Some((node, user, online)));
    }
    if let Some((conn, on, name)) = decode_provider(&payload) {
        let again = encode_provider(conn.node, on, conn.shard, conn.local, &name);
        assert_eq!(decode_provider(&again), Some((conn, on, name)));
    }
    if let (Some(name), Some(node)) = (decode_barrier(&payload), decode_node(&payload)) {
        assert_eq!(decode_barrier(&encode_barrier(node, &name)), Some(name));
    }
    if let Some((conn, on, kind, pattern)) = decode_listener(&payload) {
        let again = encode_listener(conn.node, on, conn, kind, &pattern);
        assert_eq!(decode_listener(&again), Some((conn, on, kind, pattern)));
    }
    if let Some((from, direct)) = decode_direct(&payload) {
        let again = encode_direct(from, &direct);
        assert_eq!(decode_direct(&again), Some((from, direct)));
    }
    if let Ok(record) = decode_value(&payload) {
        assert_eq!(decode_value(&encode_value(record.as_ref())), Ok(record));
    }
    if let Some((name, change)) = decode_change(&payload) {
        let again = encode_change(&name, &change);
        assert_eq!(decode_change(&again), Some((name, change)));
    }
}
