//! Hot-path micro benchmarks: WebSocket frames, deepstream messages, record patches, the
//! whole-update fan-out to 1,000 local subscribers, and the routing hash.

use bytes::{Bytes, BytesMut};
use corestream::config::Config;
use corestream::core::ids::owner_of;
use corestream::core::records::{apply_write, Change, StoredRecord};
use corestream::protocol::message::{
    auth_action, connection_action, event_action, record_action, topic, Message,
};
use corestream::protocol::ws::{self, FrameDecoder};
use corestream::shard::outbox::Outbox;
use corestream::shard::{ws_frame, Shard};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::sync::Arc;

fn record_patch() -> Message {
    Message {
        name: Some(Bytes::from_static(b"game/table-42")),
        path: Some(Bytes::from_static(b"players[3].score")),
        data: Some(Bytes::from_static(b"1200")),
        version: Some(17),
        correlation_id: Some(Bytes::from_static(b"17")),
        is_write_ack: Some(true),
        ..Message::new(topic::RECORD, record_action::PATCH)
    }
}

fn websocket(c: &mut Criterion) {
    let payload = record_patch().encode();
    let frame = ws::client_frame(ws::OP_BINARY, true, &payload, [9, 8, 7, 6]);
    let mut group = c.benchmark_group("websocket");
    group.throughput(Throughput::Elements(1));
    group.bench_function("decode masked frame (60 B)", |b| {
        let mut decoder = FrameDecoder::new(1 << 20);
        b.iter(|| {
            let mut buf = BytesMut::from(&frame[..]);
            black_box(decoder.decode(&mut buf).ok().flatten())
        })
    });
    group.bench_function("build server frame (60 B)", |b| {
        b.iter(|| black_box(ws::frame(ws::OP_BINARY, black_box(&payload))))
    });
    group.finish();
}

fn messages(c: &mut Criterion) {
    let patch = record_patch();
    let encoded = patch.encode();
    let emit = Message {
        name: Some(Bytes::from_static(b"prices/EURUSD")),
        data: Some(Bytes::from_static(
            br#"{"bid":1.0842,"ask":1.0843,"t":1732400000000}"#,
        )),
        ..Message::new(topic::EVENT, event_action::EMIT)
    };
    let mut group = c.benchmark_group("message");
    group.throughput(Throughput::Elements(1));
    group.bench_function("parse record patch", |b| {
        b.iter(|| black_box(Message::parse(black_box(&encoded))))
    });
    group.bench_function("encode event emit as ws frame", |b| {
        b.iter(|| black_box(ws_frame(black_box(&emit))))
    });
    group.finish();
}

fn patches(c: &mut Criterion) {
    let players: Vec<String> = (0..8)
        .map(|i| format!(r#"{{"name":"p{i}","score":{}}}"#, i * 100))
        .collect();
    let current = StoredRecord {
        version: 16,
        data: Bytes::from(format!(
            r#"{{"table":42,"stakes":[1,2],"players":[{}]}}"#,
            players.join(",")
        )),
    };
    let set = Change::Set {
        path: Bytes::from_static(b"players[3].score"),
        value: Bytes::from_static(b"1200"),
    };
    let replace = Change::Replace(current.data.clone());
    let mut group = c.benchmark_group("record write");
    group.throughput(Throughput::Elements(1));
    group.bench_function("patch apply (300 B document)", |b| {
        b.iter(|| black_box(apply_write(Some(&current), 17, black_box(&set), 1 << 20)))
    });
    group.bench_function("whole update (validated)", |b| {
        b.iter(|| {
            black_box(apply_write(
                Some(&current),
                17,
                black_box(&replace),
                1 << 20,
            ))
        })
    });
    group.finish();
}

fn login(shard: &mut Shard, user: &str) -> (u32, Outbox) {
    let outbox = Outbox::new(64 << 20, 0);
    let local = shard.open_conn(outbox.clone(), 0);
    shard.on_client_frame(
        local,
        &Message::new(topic::CONNECTION, connection_action::CHALLENGE).encode(),
        0,
    );
    let auth = Message {
        data: Some(Bytes::from(format!(r#"{{"username":"{user}"}}"#))),
        ..Message::new(topic::AUTH, auth_action::REQUEST)
    };
    shard.on_client_frame(local, &auth.encode(), 0);
    outbox.take_all();
    (local, outbox)
}

fn fan_out(c: &mut Criterion) {
    let mut shard = Shard::new(0, 1, Arc::new(Config::default()));
    let name = Bytes::from_static(b"prices/EURUSD");
    let subscribers: Vec<(u32, Outbox)> = (0..1000)
        .map(|i| {
            let (local, outbox) = login(&mut shard, &format!("s{i}"));
            let subscribe = Message {
                correlation_id: Some(Bytes::from_static(b"1")),
                names: vec![name.clone()],
                ..Message::new(topic::RECORD, record_action::SUBSCRIBECREATEANDREAD)
            };
            shard.on_client_frame(local, &subscribe.encode(), 0);
            outbox.take_all();
            (local, outbox)
        })
        .collect();
    let (writer, writer_outbox) = login(&mut shard, "writer");
    let update = Message {
        name: Some(name.clone()),
        version: Some(-1),
        data: Some(Bytes::from_static(br#"{"bid":1.0842,"ask":1.0843}"#)),
        ..Message::new(topic::RECORD, record_action::UPDATE)
    }
    .encode();
    let emit = Message {
        name: Some(name.clone()),
        data: Some(Bytes::from_static(b"1.0842")),
        ..Message::new(topic::EVENT, event_action::EMIT)
    }
    .encode();
    let mut group = c.benchmark_group("fan-out to 1,000 local subscribers");
    group.throughput(Throughput::Elements(1000));
    let store = corestream::store::MemoryStore::default();
    group.bench_function("record update", |b| {
        b.iter(|| {
            shard.on_client_frame(writer, &update, 0);
            shard.run_store_jobs_inline(&store, 0);
            for (_, outbox) in &subscribers {
                black_box(outbox.take_all());
            }
        })
    });
    for (local, _) in &subscribers {
        let subscribe = Message {
            correlation_id: Some(Bytes::from_static(b"1")),
            names: vec![name.clone()],
            ..Message::new(topic::EVENT, event_action::SUBSCRIBE)
        };
        shard.on_client_frame(*local, &subscribe.encode(), 0);
    }
    for (_, outbox) in &subscribers {
        outbox.take_all();
    }
    group.bench_function("event emit", |b| {
        b.iter(|| {
            shard.on_client_frame(writer, &emit, 0);
            for (_, outbox) in &subscribers {
                black_box(outbox.take_all());
            }
        })
    });
    group.finish();
    writer_outbox.take_all();
}

fn routing(c: &mut Criterion) {
    c.bench_function("routing hash (owner of a 20 B name, 8 shards)", |b| {
        b.iter(|| black_box(owner_of(black_box(b"game/table-42/state"), 8)))
    });
}

criterion_group!(benches, websocket, messages, patches, fan_out, routing);
criterion_main!(benches);
