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
