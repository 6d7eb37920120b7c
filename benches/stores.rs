//! The durable embedded store: reading a record that is not in the owner's memory (a lookup in
//! a shard's fjall keyspace holding 100,000 records), and a group commit of 512 writes with its
//! fsync. Besides criterion's means, the read's p50/p99 over 100,000 single reads are printed,
//! since the target is a tail latency (≤ 50 µs p99).

use bytes::Bytes;
use corestream::store::{EmbeddedStore, RecordStore, StoreJob};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use futures_lite::future::block_on;
use std::hint::black_box;

const RECORDS: usize = 100_000;

fn name(i: usize) -> Bytes {
    Bytes::from(format!("bench/user-{i:08}/profile"))
}

fn open(dir: &std::path::Path) -> EmbeddedStore {
    let _ = std::fs::remove_dir_all(dir);
    corestream::store::check_embedded_layout(dir, 1).expect("layout");
    let store = EmbeddedStore::open(dir, 0).expect("open");
    let data = Bytes::from(format!(r#"{{"name":"user","pad":"{}"}}"#, "x".repeat(100)));
    for chunk in (0..RECORDS).collect::<Vec<_>>().chunks(4096) {
        let jobs = chunk
            .iter()
            .map(|i| StoreJob::Write {
                name: name(*i),
                record: Some(corestream::store::StoredRecord {
                    version: 1,
                    data: data.clone(),
                }),
            })
            .collect();
        block_on(store.run_batch(jobs));
    }
    store
}

fn embedded(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("corestream-bench-{}", std::process::id()));
    let store = open(&dir);
    let mut samples: Vec<u128> = (0..RECORDS)
        .map(|i| {
            let key = name((i * 7919) % RECORDS);
            let started = std::time::Instant::now();
            let found = block_on(store.get(&key)).expect("read");
            let took = started.elapsed().as_nanos();
            assert!(found.is_some());
            took
        })
        .collect();
    samples.sort_unstable();
    eprintln!(
        "embedded store, read of a record not in memory: p50 {} ns, p99 {} ns, max {} ns",
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100],
        samples[samples.len() - 1]
    );
    let mut group = c.benchmark_group("embedded store");
    group.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    group.bench_function("read a record not in memory", |b| {
        b.iter(|| {
            i = (i + 7919) % RECORDS;
            black_box(block_on(store.get(&name(i))).expect("read"))
        })
    });
    group.throughput(Throughput::Elements(512));
    let data = Bytes::from_static(
        br#"{"n":1,"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#,
    );
    let mut round = 0usize;
    group.bench_function("group commit of 512 writes (fsync)", |b| {
        b.iter_batched(
            || {
                round += 1;
                (0..512)
                    .map(|k| StoreJob::Write {
                        name: name((round * 512 + k) % RECORDS),
                        record: Some(corestream::store::StoredRecord {
                            version: 2,
                            data: data.clone(),
                        }),
                    })
                    .collect::<Vec<_>>()
            },
            |jobs| black_box(block_on(store.run_batch(jobs))),
            BatchSize::SmallInput,
        )
    });
    group.finish();
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(4));
    targets = embedded
}
criterion_main!(benches);
