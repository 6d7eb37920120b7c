//! Replays every fuzz input kept in the repository (fuzz/corpus/<target>/ and
//! fuzz/regressions/<target>/) through its target in corestream::fuzzing, so the inputs the
//! fuzzers found stay fixed on the stable toolchain. `WRITE_FUZZ_SEEDS=1 cargo test --test
//! fuzz_corpus` writes the seed corpus again first.

use bytes::Bytes;
use corestream::fuzzing::TARGETS;
use corestream::protocol::message::{
    event_action as ea, presence_action, record_action as ra, rpc_action, topic, Message,
};
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

#[test]
fn every_kept_fuzz_input_passes_its_target() {
    if std::env::var_os("WRITE_FUZZ_SEEDS").is_some() {
        write_seeds();
    }
    let mut replayed = 0;
    for (target, run) in TARGETS {
        for kind in ["corpus", "regressions"] {
            let dir = fuzz_dir().join(kind).join(target);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let input = std::fs::read(entry.path()).unwrap();
                run(&input);
                replayed += 1;
            }
        }
    }
    assert!(
        replayed >= TARGETS.len(),
        "only {replayed} inputs found under fuzz/"
    );
}

fn b(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

/// Client messages of every topic, as seeds.
fn messages() -> Vec<Message> {
    let with = |topic, action| Message::new(topic, action);
    vec![
        Message {
            names: vec![b("e/1"), b("e/2")],
            correlation_id: Some(b("1")),
            ..with(topic::EVENT, ea::SUBSCRIBE)
        },
        Message {
            name: Some(b("e/1")),
            data: Some(b(r#"{"a":1}"#)),
            ..with(topic::EVENT, ea::EMIT)
        },
        Message {
            name: Some(b("^e/.*")),
            correlation_id: Some(b("2")),
            ..with(topic::EVENT, ea::LISTEN)
        },
        Message {
            names: vec![b("r/1")],
            correlation_id: Some(b("3")),
            ..with(topic::RECORD, ra::SUBSCRIBECREATEANDREAD)
        },
        Message {
            name: Some(b("r/1")),
            data: Some(b(r#"{"x":[1,2]}"#)),
            version: Some(-1),
            is_write_ack: Some(true),
            correlation_id: Some(b("4")),
            ..with(topic::RECORD, ra::UPDATE)
        },
        Message {
            name: Some(b("r/1")),
            path: Some(b("x[1]")),
            data: Some(b("5")),
            version: Some(2),
            ..with(topic::RECORD, ra::PATCH)
        },
        Message {
            name: Some(b("r/1")),
            path: Some(b("x")),
            version: Some(3),
            ..with(topic::RECORD, ra::ERASE)
        },
        Message {
            name: Some(b("r/1")),
            ..with(topic::RECORD, ra::READ)
        },
        Message {
            names: vec![b("r/1"), b("r/2")],
            correlation_id: Some(b("5")),
            ..with(topic::RECORD, ra::HEAD_BULK)
        },
        Message {
            name: Some(b("r/1")),
            correlation_id: Some(b("6")),
            ..with(topic::RECORD, ra::DELETE)
        },
        Message {
            names: vec![b("add")],
            correlation_id: Some(b("7")),
            ..with(topic::RPC, rpc_action::PROVIDE)
        },
        Message {
            name: Some(b("add")),
            data: Some(b("[1,2]")),
            correlation_id: Some(b("8")),
            ..with(topic::RPC, rpc_action::REQUEST)
        },
        Message {
            name: Some(b("add")),
            data: Some(b("3")),
            correlation_id: Some(b("8")),
            ..with(topic::RPC, rpc_action::RESPONSE)
        },
        Message {
            names: vec![b("u0")],
            correlation_id: Some(b("9")),
            ..with(topic::PRESENCE, presence_action::SUBSCRIBE)
        },
    ]
}

/// Writes the seed corpus (fuzz/corpus/<target>/seed-*).
fn write_seeds() {
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = fuzz_dir().join("corpus").join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    };
    let encoded: Vec<Bytes> = messages().iter().map(Message::encode).collect();
    for (i, frame) in encoded.iter().enumerate() {
        write("message", &format!("seed-{i}"), frame);
        let mut ws = vec![0x4a];
        ws.extend(corestream::protocol::ws::client_frame(
            2,
            true,
            frame,
            [1, 2, 3, 4],
        ));
        write("ws_frames", &format!("seed-{i}"), &ws);
    }
    let mut session = Vec::new();
    for (i, frame) in encoded.iter().enumerate() {
        session.push((i % 3) as u8);
        session.push(frame.len() as u8);
        session.extend_from_slice(frame);
    }
    write("shard", "seed-session", &session);
    let v3 = [
        "A\x1fREQ\x1f{\"username\":\"u\"}\x1e",
        "E\x1fS\x1fnews\x1eE\x1fEVT\x1fnews\x1fO{\"a\":1}\x1e",
        "R\x1fCR\x1fr\x1eR\x1fU\x1fr\x1f1\x1f{\"x\":1}\x1f{\"writeSuccess\":true}\x1e",
        "R\x1fP\x1fr\x1f2\x1fa.b\x1fN5\x1eR\x1fCU\x1fr\x1f-1\x1fz\x1fS2\x1f{}\x1e",
        "P\x1fREQ\x1fadd\x1fc1\x1fO{\"a\":1}\x1eP\x1fE\x1fboom\x1fadd\x1fc1\x1e",
        "U\x1fQ\x1fQ\x1eU\x1fS\x1f7\x1f[\"a\"]\x1eU\x1fS\x1fS\x1e",
        "E\x1fL\x1fn/.*\x1eE\x1fLA\x1fn/.*\x1fn/1\x1eR\x1fH\x1fr\x1e",
    ];
    for (i, text) in v3.iter().enumerate() {
        write("text_codec", &format!("seed-{i}"), text.as_bytes());
    }
    for (i, json) in [
        r#"{"topic":2,"action":5,"url":"x"}"#,
        r#"{"topic":5,"action":18,"name":"r","version":1,"data":"{\"a\":1}","isWriteAck":true}"#,
        r#"{"topic":4,"action":3,"names":["a","b"],"correlationId":"1"}"#,
        r#"{"topic":5,"action":8,"versions":{"a":1},"parsedData":{"x":[1]}}"#,
    ]
    .iter()
    .enumerate()
    {
        write("json_codec", &format!("seed-{i}"), json.as_bytes());
    }
    for (i, msg) in messages().iter().enumerate() {
        let mut framed = Vec::new();
        corestream::codec::frame::encode(msg, &mut framed);
        write("frame_codec", &format!("seed-{i}"), &framed);
    }
    for (i, packets) in [
        &b"\x82\x08\x00\x05\x00\x03a/b\x01"[..],
        b"\x33\x0c\x00\x03a/b\x00\x07{\"n\":7}",
        b"\xc0\x00\xa2\x05\x00\x09\x00\x01x",
        b"\x30\x07\x00\x01tplain",
    ]
    .iter()
    .enumerate()
    {
        write("mqtt_codec", &format!("seed-{i}"), packets);
    }
    for (i, payload) in cluster_payloads().iter().enumerate() {
        write("cluster_bus", &format!("seed-{i}"), payload);
    }
    write("http_head", "seed-upgrade", b"GET /deepstream HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
    write(
        "http_head",
        "seed-health",
        b"GET /health-check HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    for (i, (path, doc, value)) in [
        ("a.b[2].c", r#"{"a":{"b":[]}}"#, "1"),
        ("x[0x10]", "[]", r#"{"k":[1]}"#),
        ("a[65536]", "{}", "null"),
        ("__proto__.x", "{}", "1"),
    ]
    .iter()
    .enumerate()
    {
        write(
            "json_path",
            &format!("seed-{i}"),
            format!("{path}\0{doc}\0{value}").as_bytes(),
        );
    }
    for (i, (rule, data)) in [
        ("data.secret !== true", r#"{"secret":false,"secret":true}"#),
        (
            "user.data.role === 'admin' || data.owner == user.id",
            r#"{"owner":"alice"}"#,
        ),
        (
            "_('r').x > 1 ? name.startsWith('a/') : $id.match('^x')",
            r#"{"x":2}"#,
        ),
        (
            "data.list.indexOf(3) >= 0 && data.list.length < 10",
            r#"{"list":[1,3]}"#,
        ),
    ]
    .iter()
    .enumerate()
    {
        write(
            "valve",
            &format!("seed-{i}"),
            format!("{rule}\0{data}").as_bytes(),
        );
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (name, file) in [
        ("seed-config", "tests/fixtures/reference/config.yml"),
        (
            "seed-permissions",
            "tests/fixtures/reference/permissions.yml",
        ),
        ("seed-limits", "tests/fixtures/hardening/limits.yml"),
    ] {
        write("config", name, &std::fs::read(root.join(file)).unwrap());
    }
}

/// One payload of every kind the cluster's bus carries.
fn cluster_payloads() -> Vec<Bytes> {
    use corestream::cluster::bus::*;
    use corestream::cluster::{ListenOp, RecordChange};
    use corestream::core::ids::ConnId;
    use corestream::shard::msg::Kind;
    use corestream::store::StoredRecord;
    let conn = ConnId {
        node: 7,
        shard: 1,
        local: 3,
    };
    let record = StoredRecord {
        version: 4,
        data: Bytes::from_static(br#"{"a":1}"#),
    };
    let frames = [Bytes::from_static(b"one"), Bytes::from_static(b"two")];
    let listen = |op| Direct::Listen {
        kind: Kind::Record,
        name: Bytes::from_static(b"r/1"),
        op,
    };
    vec![
        encode_published(b"news", &frames),
        encode_presence(7, b"ann", true),
        encode_node(7),
        encode_provider(7, true, 1, 3, b"add"),
        encode_barrier(7, b"add"),
        encode_listener(7, true, conn, Kind::Event, b"n/.*"),
        encode_direct(
            7,
            &Direct::ToConn {
                shard: 1,
                local: 3,
                frame: Bytes::from_static(b"frame"),
                rpc_call: Some(Bytes::from_static(b"cid")),
            },
        ),
        encode_direct(
            7,
            &Direct::RpcAnswer {
                shard: 1,
                local: 3,
                msg: Bytes::from_static(b"answer"),
            },
        ),
        encode_direct(
            7,
            &listen(ListenOp::Response {
                conn,
                pattern: Bytes::from_static(b"r/.*"),
                accept: true,
            }),
        ),
        encode_direct(7, &listen(ListenOp::HasProvider(true))),
        encode_value(Some(&record)),
        encode_change(
            b"r/1",
            &RecordChange {
                revision: 9,
                previous: 8,
                record: Some(record.clone()),
                frames: frames.to_vec(),
            },
        ),
    ]
}
