//! The load scenarios. Each spreads its connections over one glommio executor per loader cpu,
//! runs for a bounded time and returns a report.

use crate::stats::{histogram, now_ns, Counters, Latencies, Report};
use crate::wire::{open, put_message, Target, Ticker};
use bytes::Bytes;
use corestream::protocol::message::{event_action, record_action, rpc_action, topic, Message};
use corestream::protocol::ws;
use futures_lite::io::AsyncWriteExt;
use glommio::{LocalExecutorBuilder, Placement};
use hdrhistogram::Histogram;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Settings every scenario shares.
#[derive(Clone)]
pub struct Common {
    pub target: Target,
    /// Where subscribers connect, in turn (a cluster's other nodes); empty: `target`.
    pub subscriber_targets: Vec<Target>,
    pub cpus: Vec<usize>,
    pub duration: Duration,
    /// A prefix unique to this run, so names never collide with earlier runs.
    pub run: String,
}

impl Common {
    /// The server subscriber `i` connects to.
    fn subscriber_target(&self, i: usize) -> &Target {
        match self.subscriber_targets.len() {
            0 => &self.target,
            n => &self.subscriber_targets[i % n],
        }
    }
}

/// Runs `work(executor index)` on one pinned executor per cpu and waits for all of them.
fn on_executors<F, Fut>(cpus: &[usize], work: F)
where
    F: Fn(usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let handles: Vec<_> = cpus
        .iter()
        .enumerate()
        .filter_map(|(i, cpu)| {
            let work = work.clone();
            LocalExecutorBuilder::new(Placement::Fixed(*cpu))
                .io_memory(64 << 10)
                .spawn(move || async move { work(i).await })
                .map_err(|e| eprintln!("cannot start a loader executor on cpu {cpu}: {e}"))
                .ok()
        })
        .collect();
    for handle in handles {
        let _ = handle.join();
    }
}

/// The items of `0..total` that executor `index` of `count` takes.
fn share(total: usize, index: usize, count: usize) -> impl Iterator<Item = usize> {
    (0..total).filter(move |i| i % count == index)
}

async fn wait_for(flag: impl Fn() -> bool) {
    while !flag() {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
}

/// Built once: a searcher per received message showed in the loader's profile.
static TIMESTAMP_KEY: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"t\":"));

/// The timestamp a payload carries as `"t":NANOS`, if any.
fn timestamp(bytes: &[u8]) -> Option<u64> {
    let at = TIMESTAMP_KEY.find(bytes)? + 4;
    let digits = bytes[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    std::str::from_utf8(&bytes[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

/// Decrements a counter when dropped: a task's "I am finished" on every path.
struct Finished(Arc<AtomicUsize>);

impl Drop for Finished {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn progress(label: &str, start: Instant, value: u64) {
    eprintln!("[{:>5.1}s] {label}: {value}", start.elapsed().as_secs_f64());
}

pub struct Fanout {
    pub publishers: usize,
    pub subscribers: usize,
    pub names: usize,
    /// Emits per second from all publishers together.
    pub rate: u64,
    pub payload: usize,
}

pub fn fanout(common: &Common, opts: &Fanout) -> Report {
    let start = Instant::now();
    let counters = Arc::new(Counters::default());
    let latencies = Latencies::new();
    let ready = Arc::new(AtomicUsize::new(0));
    let publishing_done = Arc::new(AtomicBool::new(false));
    let publishers_left = Arc::new(AtomicUsize::new(opts.publishers));
    let subscribers_left = Arc::new(AtomicUsize::new(opts.subscribers));
    let names: Arc<Vec<Bytes>> = Arc::new(
        (0..opts.names)
            .map(|i| Bytes::from(format!("{}/fan/{i}", common.run)))
            .collect(),
    );
    let (p, s, rate, payload) = (opts.publishers, opts.subscribers, opts.rate, opts.payload);
    let duration = common.duration;
    let executors = common.cpus.len();
    let common_c = common.clone();
    let (counters_c, latencies_c, ready_c, done_c, names_c) = (
        counters.clone(),
        latencies.clone(),
        ready.clone(),
        publishing_done.clone(),
        names.clone(),
    );
    let left_c = publishers_left.clone();
    let subs_left_c = subscribers_left.clone();
    let measured_from = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let measured_c = measured_from.clone();
    on_executors(&common.cpus, move |index| {
        let (common, counters, latencies, ready, done, names, measured, left) = (
            common_c.clone(),
            counters_c.clone(),
            latencies_c.clone(),
            ready_c.clone(),
            done_c.clone(),
            names_c.clone(),
            measured_c.clone(),
            left_c.clone(),
        );
        let subs_left = subs_left_c.clone();
        async move {
            let mut tasks = Vec::new();
            for i in share(s, index, executors) {
                let (common, counters, latencies, ready, done, names) = (
                    common.clone(),
                    counters.clone(),
                    latencies.clone(),
                    ready.clone(),
                    done.clone(),
                    names.clone(),
                );
                let finished = Finished(subs_left.clone());
                tasks.push(glommio::spawn_local(async move {
                    let _finished = finished;
                    let Ok((mut stream, mut reader)) =
                        open(common.subscriber_target(i), &format!("sub{i}"), None).await
                    else {
                        Counters::add(&counters.errors, 1);
                        ready.fetch_add(1, Ordering::SeqCst);
                        return;
                    };
                    let subscribe = Message {
                        correlation_id: Some(Bytes::from_static(b"1")),
                        names: names.to_vec(),
                        ..Message::new(topic::EVENT, event_action::SUBSCRIBE)
                    };
                    let _ = crate::wire::send(&mut stream, &subscribe).await;
                    let _ = reader.message(&mut stream).await;
                    ready.fetch_add(1, Ordering::SeqCst);
                    let mut local = histogram();
                    let mut delivered = 0u64;
                    let mut quiet_since: Option<Instant> = None;
                    let mut ticker = Ticker::new(Duration::from_millis(100));
                    loop {
                        let mut got = 0u64;
                        // Every frame of one read arrived at the same time.
                        let arrived = now_ns(start);
                        while let Some((opcode, frame)) = reader.next_frame() {
                            crate::wire::deliveries(opcode, &frame, |emit, bytes| {
                                if emit {
                                    got += 1;
                                    if let Some(t) = timestamp(bytes) {
                                        let _ =
                                            local.record((arrived.saturating_sub(t) / 1000).max(1));
                                    }
                                }
                            });
                        }
                        delivered += got;
                        if got > 0 {
                            Counters::add(&counters.delivered, got);
                            quiet_since = None;
                        }
                        if done.load(Ordering::Relaxed) {
                            let quiet = *quiet_since.get_or_insert_with(Instant::now);
                            if quiet.elapsed() > Duration::from_millis(1500)
                                || start.elapsed() > duration + Duration::from_secs(30)
                            {
                                break;
                            }
                        }
                        if let Some(Err(_)) = ticker.fill(&mut reader, &mut stream).await {
                            break;
                        }
                    }
                    let _ = delivered;
                    latencies.merge(&local);
                }));
            }
            for i in share(p, index, executors) {
                let (common, counters, ready, names, measured, left, done, subs_left) = (
                    common.clone(),
                    counters.clone(),
                    ready.clone(),
                    names.clone(),
                    measured.clone(),
                    left.clone(),
                    done.clone(),
                    subs_left.clone(),
                );
                tasks.push(glommio::spawn_local(async move {
                    let finish = || {
                        if left.fetch_sub(1, Ordering::SeqCst) == 1 {
                            done.store(true, Ordering::SeqCst);
                        }
                    };
                    let Ok((mut stream, _reader)) =
                        open(&common.target, &format!("pub{i}"), None).await
                    else {
                        Counters::add(&counters.errors, 1);
                        finish();
                        return;
                    };
                    wait_for(|| ready.load(Ordering::SeqCst) >= s).await;
                    glommio::timer::sleep(Duration::from_millis(200)).await;
                    let began = Instant::now();
                    if let Ok(mut m) = measured.lock() {
                        m.get_or_insert(began);
                    }
                    let my_rate = rate as f64 / p as f64;
                    let mut sent = 0u64;
                    let mut out = Vec::with_capacity(64 * 1024);
                    let padding = "x".repeat(payload.saturating_sub(30));
                    while began.elapsed() < duration {
                        let due = (began.elapsed().as_secs_f64() * my_rate) as u64;
                        let batch = due.saturating_sub(sent).min(4096);
                        out.clear();
                        for k in 0..batch {
                            let name = names[((sent + k) as usize + i) % names.len()].clone();
                            let data = format!(r#"{{"t":{},"p":"{padding}"}}"#, now_ns(start));
                            let emit = Message {
                                name: Some(name),
                                data: Some(Bytes::from(data)),
                                ..Message::new(topic::EVENT, event_action::EMIT)
                            };
                            put_message(&mut out, &emit);
                        }
                        if batch > 0 {
                            if stream.write_all(&out).await.is_err() {
                                Counters::add(&counters.errors, 1);
                                break;
                            }
                            sent += batch;
                            Counters::add(&counters.offered, batch);
                        } else {
                            glommio::timer::sleep(Duration::from_micros(50)).await;
                        }
                    }
                    finish();
                    // Stay connected until the subscribers have drained.
                    wait_for(|| subs_left.load(Ordering::SeqCst) == 0).await;
                }));
            }
            let is_publisher_executor = share(p, index, executors).count() > 0;
            let progress_task = glommio::spawn_local({
                let counters = counters.clone();
                async move {
                    if index != 0 {
                        return;
                    }
                    loop {
                        glommio::timer::sleep(Duration::from_secs(1)).await;
                        progress(
                            "delivered",
                            start,
                            counters.delivered.load(Ordering::Relaxed),
                        );
                        if done.load(Ordering::Relaxed) {
                            break;
                        }
                    }
                }
            });
            let _ = is_publisher_executor;
            for task in tasks {
                task.await;
            }
            progress_task.cancel().await;
        }
    });
    publishing_done.store(true, Ordering::SeqCst);
    let elapsed = measured_from
        .lock()
        .ok()
        .and_then(|m| *m)
        .map_or(duration, |m| {
            m.elapsed().min(duration + Duration::from_secs(2))
        });
    let offered = counters.offered.load(Ordering::SeqCst);
    let delivered = counters.delivered.load(Ordering::SeqCst);
    let expected = offered * opts.subscribers as u64;
    let mut report = Report::new("fanout");
    report.row("publishers", p as f64);
    report.row("subscribers", s as f64);
    report.row("names", opts.names as f64);
    report.row("target emits/s", rate as f64);
    report.row("offered emits", offered as f64);
    report.row("expected deliveries", expected as f64);
    report.row("delivered", delivered as f64);
    report.row("lost", expected.saturating_sub(delivered) as f64);
    report.row("deliveries/s", delivered as f64 / duration.as_secs_f64());
    report.row("errors", counters.errors.load(Ordering::SeqCst) as f64);
    report.latency("latency", &latencies.snapshot());
    let _ = elapsed;
    report
}

/// State the tasks of one scenario share across executors.
#[derive(Default)]
struct Shared {
    counters: Counters,
    ready: AtomicUsize,
    producers_left: AtomicUsize,
    consumers_left: AtomicUsize,
    done: AtomicBool,
    latencies: Option<Arc<Latencies>>,
}

impl Shared {
    fn new(producers: usize, consumers: usize) -> Arc<Shared> {
        Arc::new(Shared {
            producers_left: AtomicUsize::new(producers),
            consumers_left: AtomicUsize::new(consumers),
            latencies: Some(Latencies::new()),
            ..Default::default()
        })
    }

    fn producer_finished(&self) {
        if self.producers_left.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.done.store(true, Ordering::SeqCst);
        }
    }

    fn merge(&self, local: &Histogram<u64>) {
        if let Some(l) = &self.latencies {
            l.merge(local);
        }
    }

    fn latency(&self) -> Histogram<u64> {
        self.latencies
            .as_ref()
            .map_or_else(histogram, |l| l.snapshot())
    }
}

pub struct Records {
    pub writers: usize,
    pub subscribers: usize,
    pub rate: u64,
    pub patch_ratio: f64,
}

pub fn records(common: &Common, opts: &Records) -> Report {
    let start = Instant::now();
    let shared = Shared::new(opts.writers, opts.subscribers);
    let names: Arc<Vec<Bytes>> = Arc::new(
        (0..opts.writers)
            .map(|i| Bytes::from(format!("{}/rec/{i}", common.run)))
            .collect(),
    );
    let (w, s, rate, patch_ratio, duration, executors) = (
        opts.writers,
        opts.subscribers,
        opts.rate,
        opts.patch_ratio,
        common.duration,
        common.cpus.len(),
    );
    let (common_c, shared_c, names_c) = (common.clone(), shared.clone(), names.clone());
    on_executors(&common.cpus, move |index| {
        let (common, shared, names) = (common_c.clone(), shared_c.clone(), names_c.clone());
        async move {
            let mut tasks = Vec::new();
            for i in share(s, index, executors) {
                let (common, shared, names) = (common.clone(), shared.clone(), names.clone());
                tasks.push(glommio::spawn_local(async move {
                    let result =
                        subscriber_loop(&common, &shared, &names, i, start, duration).await;
                    if result.is_err() {
                        Counters::add(&shared.counters.errors, 1);
                    }
                    shared.consumers_left.fetch_sub(1, Ordering::SeqCst);
                }));
            }
            for i in share(w, index, executors) {
                let (common, shared, names) = (common.clone(), shared.clone(), names.clone());
                tasks.push(glommio::spawn_local(async move {
                    if writer_loop(
                        &common,
                        &shared,
                        &names[i],
                        i,
                        rate as f64 / w as f64,
                        patch_ratio,
                        start,
                        duration,
                        s,
                    )
                    .await
                    .is_err()
                    {
                        Counters::add(&shared.counters.errors, 1);
                    }
                }));
            }
            for task in tasks {
                task.await;
            }
        }
    });
    let c = &shared.counters;
    let offered = c.offered.load(Ordering::SeqCst);
    let delivered = c.delivered.load(Ordering::SeqCst);
    let mut report = Report::new("records");
    report.row("writers", w as f64);
    report.row("subscribers", s as f64);
    report.row("target writes/s", rate as f64);
    report.row("writes", offered as f64);
    report.row("expected deliveries", (offered * s as u64) as f64);
    report.row("delivered", delivered as f64);
    report.row("deliveries/s", delivered as f64 / duration.as_secs_f64());
    report.row("VERSION_EXISTS", c.conflicts.load(Ordering::SeqCst) as f64);
    report.row("errors", c.errors.load(Ordering::SeqCst) as f64);
    report.latency("update latency", &shared.latency());
    report
}

async fn subscriber_loop(
    common: &Common,
    shared: &Shared,
    names: &[Bytes],
    i: usize,
    start: Instant,
    duration: Duration,
) -> std::io::Result<()> {
    let opened = open(common.subscriber_target(i), &format!("rsub{i}"), None).await;
    shared.ready.fetch_add(1, Ordering::SeqCst);
    let (mut stream, mut reader) = opened?;
    let subscribe = Message {
        correlation_id: Some(Bytes::from_static(b"1")),
        names: names.to_vec(),
        ..Message::new(topic::RECORD, record_action::SUBSCRIBECREATEANDREAD)
    };
    crate::wire::send(&mut stream, &subscribe).await?;
    let mut local = histogram();
    let mut quiet_since: Option<Instant> = None;
    let mut ticker = Ticker::new(Duration::from_millis(100));
    loop {
        let mut got = 0;
        // Every frame of one read arrived at the same time.
        let arrived = now_ns(start);
        while let Some((opcode, frame)) = reader.next_frame() {
            if opcode != ws::OP_BINARY {
                continue;
            }
            let Ok(msg) = Message::parse(&frame) else {
                continue;
            };
            let t = match msg.action {
                record_action::UPDATE => msg.data.as_deref().and_then(timestamp),
                record_action::PATCH => msg
                    .data
                    .as_deref()
                    .and_then(|d| std::str::from_utf8(d).ok()?.parse().ok()),
                _ => continue,
            };
            got += 1;
            if let Some(t) = t {
                let _ = local.record((arrived.saturating_sub(t) / 1000).max(1));
            }
        }
        if got > 0 {
            Counters::add(&shared.counters.delivered, got);
            quiet_since = None;
        }
        if shared.done.load(Ordering::Relaxed) {
            let quiet = *quiet_since.get_or_insert_with(Instant::now);
            if quiet.elapsed() > Duration::from_millis(1500)
                || start.elapsed() > duration + Duration::from_secs(30)
            {
                break;
            }
        }
        if let Some(Err(e)) = ticker.fill(&mut reader, &mut stream).await {
            shared.merge(&local);
            return Err(e);
        }
    }
    shared.merge(&local);
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn writer_loop(
    common: &Common,
    shared: &Shared,
    name: &Bytes,
    i: usize,
    rate: f64,
    patch_ratio: f64,
    start: Instant,
    duration: Duration,
    subscribers: usize,
) -> std::io::Result<()> {
    let opened = open(&common.target, &format!("writer{i}"), None).await;
    let (stream, mut reader) = match opened {
        Ok(o) => o,
        Err(e) => {
            shared.producer_finished();
            return Err(e);
        }
    };
    let (mut read_half, mut write_half) = futures_lite::io::split(stream);
    // Conflicts come back on the writer's socket; count them while writing.
    let conflicts = glommio::spawn_local(async move {
        let mut n = 0u64;
        while let Ok(msg) = reader.message(&mut read_half).await {
            if msg.action == record_action::VERSION_EXISTS {
                n += 1;
            }
        }
        n
    })
    .detach();
    wait_for(|| shared.ready.load(Ordering::SeqCst) >= subscribers).await;
    glommio::timer::sleep(Duration::from_millis(300)).await;
    let began = Instant::now();
    let (mut sent, mut version) = (0u64, 0i32);
    let mut out = Vec::with_capacity(64 * 1024);
    let patch_every = if patch_ratio <= 0.0 {
        u64::MAX
    } else {
        (1.0 / patch_ratio).round().max(1.0) as u64
    };
    while began.elapsed() < duration {
        let due = (began.elapsed().as_secs_f64() * rate) as u64;
        let batch = due.saturating_sub(sent).min(4096);
        if batch == 0 {
            glommio::timer::sleep(Duration::from_micros(50)).await;
            continue;
        }
        out.clear();
        for k in 0..batch {
            version += 1;
            let t = now_ns(start);
            let msg = if (sent + k) % patch_every == patch_every - 1 {
                Message {
                    path: Some(Bytes::from_static(b"t")),
                    data: Some(Bytes::from(t.to_string())),
                    ..Message::new(topic::RECORD, record_action::PATCH)
                }
            } else {
                Message {
                    data: Some(Bytes::from(format!(r#"{{"t":{t},"v":{version}}}"#))),
                    ..Message::new(topic::RECORD, record_action::UPDATE)
                }
            };
            put_message(
                &mut out,
                &Message {
                    name: Some(name.clone()),
                    version: Some(version),
                    ..msg
                },
            );
        }
        if write_half.write_all(&out).await.is_err() {
            break;
        }
        sent += batch;
        Counters::add(&shared.counters.offered, batch);
    }
    shared.producer_finished();
    wait_for(|| shared.consumers_left.load(Ordering::SeqCst) == 0).await;
    let _ = write_half.close().await;
    let conflicts = futures_lite::future::or(async { conflicts.await.unwrap_or(0) }, async {
        glommio::timer::sleep(Duration::from_secs(1)).await;
        0
    })
    .await;
    Counters::add(&shared.counters.conflicts, conflicts);
    Ok(())
}

pub struct Rpc {
    pub providers: usize,
    pub callers: usize,
    pub inflight: usize,
}

pub fn rpc(common: &Common, opts: &Rpc) -> Report {
    let start = Instant::now();
    let shared = Shared::new(opts.callers, opts.providers);
    let name = Bytes::from(format!("{}/rpc", common.run));
    let (pv, callers, inflight, duration, executors) = (
        opts.providers,
        opts.callers,
        opts.inflight,
        common.duration,
        common.cpus.len(),
    );
    let (common_c, shared_c) = (common.clone(), shared.clone());
    on_executors(&common.cpus, move |index| {
        let (common, shared, name) = (common_c.clone(), shared_c.clone(), name.clone());
        async move {
            let mut tasks = Vec::new();
            for i in share(pv, index, executors) {
                let (common, shared, name) = (common.clone(), shared.clone(), name.clone());
                tasks.push(glommio::spawn_local(async move {
                    let _ = provider_loop(&common, &shared, &name, i).await;
                }));
            }
            for i in share(callers, index, executors) {
                let (common, shared, name) = (common.clone(), shared.clone(), name.clone());
                tasks.push(glommio::spawn_local(async move {
                    if caller_loop(&common, &shared, &name, i, inflight, pv, start, duration)
                        .await
                        .is_err()
                    {
                        Counters::add(&shared.counters.errors, 1);
                    }
                    shared.producer_finished();
                }));
            }
            for task in tasks {
                task.await;
            }
        }
    });
    let c = &shared.counters;
    let completed = c.delivered.load(Ordering::SeqCst);
    let mut report = Report::new("rpc");
    report.row("providers", pv as f64);
    report.row("callers", callers as f64);
    report.row("in flight per caller", inflight as f64);
    report.row("requests", c.offered.load(Ordering::SeqCst) as f64);
    report.row("responses", completed as f64);
    report.row("round trips/s", completed as f64 / duration.as_secs_f64());
    report.row("errors", c.errors.load(Ordering::SeqCst) as f64);
    report.latency("round trip", &shared.latency());
    report
}

async fn provider_loop(
    common: &Common,
    shared: &Shared,
    name: &Bytes,
    i: usize,
) -> std::io::Result<()> {
    let opened = open(&common.target, &format!("provider{i}"), None).await;
    let (mut stream, mut reader) = match opened {
        Ok(o) => o,
        Err(e) => {
            shared.ready.fetch_add(1, Ordering::SeqCst);
            return Err(e);
        }
    };
    let provide = Message {
        correlation_id: Some(Bytes::from_static(b"p")),
        names: vec![name.clone()],
        ..Message::new(topic::RPC, rpc_action::PROVIDE)
    };
    crate::wire::send(&mut stream, &provide).await?;
    let _ = reader.message(&mut stream).await?;
    shared.ready.fetch_add(1, Ordering::SeqCst);
    let mut out = Vec::with_capacity(64 * 1024);
    let mut ticker = Ticker::new(Duration::from_millis(100));
    loop {
        if shared.done.load(Ordering::Relaxed) {
            return Ok(());
        }
        out.clear();
        while let Some((opcode, frame)) = reader.next_frame() {
            if opcode != ws::OP_BINARY {
                continue;
            }
            let Ok(msg) = Message::parse(&frame) else {
                continue;
            };
            if msg.action != rpc_action::REQUEST {
                continue;
            }
            let base = Message {
                name: msg.name.clone(),
                correlation_id: msg.correlation_id.clone(),
                ..Message::new(topic::RPC, rpc_action::ACCEPT)
            };
            put_message(&mut out, &base);
            put_message(
                &mut out,
                &Message {
                    action: rpc_action::RESPONSE,
                    data: msg.data.clone(),
                    ..base
                },
            );
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
        }
        if let Some(Err(e)) = ticker.fill(&mut reader, &mut stream).await {
            return Err(e);
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn caller_loop(
    common: &Common,
    shared: &Shared,
    name: &Bytes,
    i: usize,
    inflight: usize,
    providers: usize,
    start: Instant,
    duration: Duration,
) -> std::io::Result<()> {
    let (mut stream, mut reader) = open(&common.target, &format!("caller{i}"), None).await?;
    wait_for(|| shared.ready.load(Ordering::SeqCst) >= providers).await;
    glommio::timer::sleep(Duration::from_millis(300)).await;
    let began = Instant::now();
    let mut local = histogram();
    let mut out = Vec::new();
    let mut counter = 0u64;
    // `sent` (ns since start) travels in the correlation id for the round trip's latency.
    let mut request = |out: &mut Vec<u8>, sent: u64| {
        counter += 1;
        let cid = format!("{i}-{counter}-{sent}");
        let msg = Message {
            name: Some(name.clone()),
            correlation_id: Some(Bytes::from(cid)),
            data: Some(Bytes::from_static(b"1")),
            ..Message::new(topic::RPC, rpc_action::REQUEST)
        };
        put_message(out, &msg);
    };
    let first = now_ns(start);
    for _ in 0..inflight {
        request(&mut out, first);
    }
    stream.write_all(&out).await?;
    Counters::add(&shared.counters.offered, inflight as u64);
    let mut outstanding = inflight;
    let mut ticker = Ticker::new(Duration::from_secs(5));
    let mut heard = false;
    while outstanding > 0 {
        out.clear();
        let mut finished = 0u64;
        // One clock read per read: the answers in it arrived, and the requests they make room
        // for leave, at the same time.
        let now = now_ns(start);
        let running = began.elapsed() < duration;
        while let Some((opcode, frame)) = reader.next_frame() {
            heard = true;
            if opcode != ws::OP_BINARY {
                continue;
            }
            let Ok(msg) = Message::parse(&frame) else {
                continue;
            };
            match msg.action {
                rpc_action::ACCEPT => continue,
                rpc_action::RESPONSE => {
                    let sent = msg.correlation_id.as_deref().and_then(|c| {
                        std::str::from_utf8(c)
                            .ok()?
                            .rsplit('-')
                            .next()?
                            .parse::<u64>()
                            .ok()
                    });
                    if let Some(t) = sent {
                        let _ = local.record((now.saturating_sub(t) / 1000).max(1));
                    }
                    finished += 1;
                }
                other => {
                    if shared.counters.errors.fetch_add(1, Ordering::Relaxed) == 0 {
                        eprintln!(
                            "first rpc failure at {:?}: action {other} {:?} cid {:?}",
                            start.elapsed(),
                            msg.data,
                            msg.correlation_id
                        );
                    }
                    finished += 1;
                }
            }
            outstanding -= 1;
            if running {
                request(&mut out, now);
                outstanding += 1;
                Counters::add(&shared.counters.offered, 1);
            }
        }
        Counters::add(&shared.counters.delivered, finished);
        if !out.is_empty() {
            stream.write_all(&out).await?;
        }
        if outstanding == 0 {
            break;
        }
        match ticker.fill(&mut reader, &mut stream).await {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(e),
            // Gives up after a whole period without a byte.
            None if !std::mem::take(&mut heard) => break,
            None => {}
        }
    }
    shared.merge(&local);
    Ok(())
}

pub fn connect(common: &Common, concurrency: usize, count: u64) -> Report {
    let start = Instant::now();
    let shared = Shared::new(0, 0);
    let (duration, executors) = (common.duration, common.cpus.len());
    let (common_c, shared_c) = (common.clone(), shared.clone());
    on_executors(&common.cpus, move |index| {
        let (common, shared) = (common_c.clone(), shared_c.clone());
        async move {
            let mut tasks = Vec::new();
            for i in share(concurrency, index, executors) {
                let (common, shared) = (common.clone(), shared.clone());
                tasks.push(glommio::spawn_local(async move {
                    let mut local = histogram();
                    let mut n = 0u64;
                    while start.elapsed() < duration
                        && shared.counters.offered.fetch_add(1, Ordering::SeqCst) < count
                    {
                        let began = Instant::now();
                        // Many source addresses: one would run out of ephemeral ports to TIME_WAIT.
                        let source = std::net::IpAddr::V4(std::net::Ipv4Addr::new(
                            127,
                            0,
                            1 + (i % 4) as u8,
                            1 + (n % 250) as u8,
                        ));
                        match open(&common.target, &format!("c{i}-{n}"), Some(source)).await {
                            Ok((stream, _)) => {
                                let _ = local.record((began.elapsed().as_micros() as u64).max(1));
                                Counters::add(&shared.counters.delivered, 1);
                                drop(stream);
                            }
                            Err(e) => {
                                if shared.counters.errors.fetch_add(1, Ordering::Relaxed) == 0 {
                                    eprintln!("first failure: {e}");
                                }
                            }
                        }
                        n += 1;
                    }
                    shared.merge(&local);
                }));
            }
            for task in tasks {
                task.await;
            }
        }
    });
    let elapsed = start.elapsed().as_secs_f64();
    let done = shared.counters.delivered.load(Ordering::SeqCst);
    let mut report = Report::new("connect");
    report.row("concurrency", concurrency as f64);
    report.row("logins", done as f64);
    report.row(
        "failures",
        shared.counters.errors.load(Ordering::SeqCst) as f64,
    );
    report.row("logins/s", done as f64 / elapsed);
    report.latency("connect+login", &shared.latency());
    report
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub fn idle(
    common: &Common,
    connections: usize,
    server_pid: Option<u32>,
    per_source: usize,
    quiet: Duration,
    waves: usize,
) -> Report {
    let start = Instant::now();
    let shared = Shared::new(0, 0);
    let before = server_pid.and_then(rss_kib);
    let (duration, executors) = (common.duration, common.cpus.len());
    let (common_c, shared_c) = (common.clone(), shared.clone());
    // Per wave: connections open and server RSS after one second of quiet and after `quiet`.
    let readings = Arc::new(std::sync::Mutex::new(vec![
        (0u64, None::<u64>, None::<u64>);
        waves
    ]));
    let readings_c = readings.clone();
    let wave_size = connections.div_ceil(waves);
    on_executors(&common.cpus, move |index| {
        let (common, shared, readings) = (common_c.clone(), shared_c.clone(), readings_c.clone());
        async move {
            let mut held = Vec::new();
            let mine: Vec<usize> = share(connections, index, executors).collect();
            for wave in 0..waves {
                for &i in mine.iter().filter(|i| *i / wave_size == wave) {
                    let source = std::net::IpAddr::V4(std::net::Ipv4Addr::new(
                        127,
                        0,
                        0,
                        1 + (i / per_source) as u8,
                    ));
                    match open(&common.target, &format!("idle{i}"), Some(source)).await {
                        Ok((stream, _)) => {
                            held.push(stream);
                            Counters::add(&shared.counters.delivered, 1);
                        }
                        Err(_) => Counters::add(&shared.counters.errors, 1),
                    }
                    if i % 5000 == 0 && index == 0 {
                        progress(
                            "connected",
                            start,
                            shared.counters.delivered.load(Ordering::Relaxed),
                        );
                    }
                }
                // Every executor finishes the wave before the quiet wait starts.
                shared.ready.fetch_add(1, Ordering::SeqCst);
                wait_for(|| shared.ready.load(Ordering::SeqCst) >= executors * (wave + 1)).await;
                // Idle means quiet: servers may release per-connection state after a while.
                let first = Duration::from_secs(1);
                glommio::timer::sleep(first).await;
                let open_now = shared.counters.delivered.load(Ordering::SeqCst);
                if index == 0 {
                    if let Ok(mut r) = readings.lock() {
                        r[wave].0 = open_now;
                        r[wave].1 = server_pid.and_then(rss_kib);
                    }
                }
                glommio::timer::sleep(quiet.saturating_sub(first)).await;
                if index == 0 {
                    if let Ok(mut r) = readings.lock() {
                        r[wave].2 = server_pid.and_then(rss_kib);
                    }
                }
            }
            glommio::timer::sleep(duration).await;
            drop(held);
        }
    });
    let open_now = shared.counters.delivered.load(Ordering::SeqCst);
    let mut report = Report::new("idle");
    report.row("connections held", open_now as f64);
    report.row(
        "failures",
        shared.counters.errors.load(Ordering::SeqCst) as f64,
    );
    let readings = readings.lock().map(|r| r.clone()).unwrap_or_default();
    let per_connection = |after: u64, before: u64, count: u64| {
        (after.saturating_sub(before) * 1024) as f64 / count.max(1) as f64
    };
    if let (Some(before), Some(&(count, Some(soon), Some(later)))) = (before, readings.first()) {
        report.row("server RSS before (KiB)", before as f64);
        report.row("server RSS held, quiet 1 s (KiB)", soon as f64);
        report.row("server RSS held, quiet (KiB)", later as f64);
        report.row("quiet seconds", quiet.as_secs_f64());
        report.row(
            "bytes per connection, quiet 1 s",
            per_connection(soon, before, count),
        );
        report.row("bytes per connection", per_connection(later, before, count));
    }
    if let (Some(before), [_, .., (count, _, Some(last))]) = (before, readings.as_slice()) {
        report.row(
            "bytes per connection, after the last wave",
            per_connection(*last, before, *count),
        );
    }
    report
}

pub struct AckedWrites {
    pub writers: usize,
    /// Records per writer, each with one acknowledged write in flight.
    pub inflight: usize,
    /// Approximate bytes of record data.
    pub payload: usize,
}

/// Acknowledged record writes: each writer keeps one write in flight on each of its records
/// (CREATEANDUPDATE with version -1 and a write ack, as `setDataWithAck` sends it) and sends
/// the next when the ack arrives. Measures acks per second and the write-ack latency.
pub fn acked_writes(common: &Common, opts: &AckedWrites) -> Report {
    let start = Instant::now();
    let shared = Shared::new(opts.writers, 0);
    let (writers, inflight, payload, duration, executors) = (
        opts.writers,
        opts.inflight,
        opts.payload,
        common.duration,
        common.cpus.len(),
    );
    let (common_c, shared_c) = (common.clone(), shared.clone());
    on_executors(&common.cpus, move |index| {
        let (common, shared) = (common_c.clone(), shared_c.clone());
        async move {
            let mut tasks = Vec::new();
            for i in share(writers, index, executors) {
                let (common, shared) = (common.clone(), shared.clone());
                tasks.push(glommio::spawn_local(async move {
                    let loop_ =
                        acked_writer_loop(&common, &shared, i, inflight, payload, start, duration);
                    if loop_.await.is_err() {
                        Counters::add(&shared.counters.errors, 1);
                    }
                    shared.producer_finished();
                }));
            }
            for task in tasks {
                task.await;
            }
        }
    });
    let c = &shared.counters;
    let acked = c.delivered.load(Ordering::SeqCst);
    let mut report = Report::new("acked-writes");
    report.row("writers", writers as f64);
    report.row("records in flight per writer", inflight as f64);
    report.row("writes", c.offered.load(Ordering::SeqCst) as f64);
    report.row("acknowledged", acked as f64);
    report.row(
        "acknowledged writes/s",
        acked as f64 / duration.as_secs_f64(),
    );
    report.row("errors", c.errors.load(Ordering::SeqCst) as f64);
    report.latency("write ack", &shared.latency());
    report
}

async fn acked_writer_loop(
    common: &Common,
    shared: &Shared,
    i: usize,
    inflight: usize,
    payload: usize,
    start: Instant,
    duration: Duration,
) -> std::io::Result<()> {
    let (mut stream, mut reader) = open(&common.target, &format!("acked{i}"), None).await?;
    let names: Vec<Bytes> = (0..inflight)
        .map(|k| Bytes::from(format!("{}/ack/{i}/{k}", common.run)))
        .collect();
    let pad = "x".repeat(payload.saturating_sub(24));
    let began = Instant::now();
    let mut local = histogram();
    let mut out = Vec::new();
    let mut counter = 0u64;
    // The record and `sent` (ns since start) travel in the correlation id.
    let mut write = |out: &mut Vec<u8>, k: usize, sent: u64| {
        counter += 1;
        let msg = Message {
            name: Some(names[k].clone()),
            version: Some(-1),
            data: Some(Bytes::from(format!(r#"{{"n":{counter},"p":"{pad}"}}"#))),
            correlation_id: Some(Bytes::from(format!("{k}-{sent}"))),
            is_write_ack: Some(true),
            ..Message::new(topic::RECORD, record_action::CREATEANDUPDATE)
        };
        put_message(out, &msg);
    };
    let first = now_ns(start);
    for k in 0..inflight {
        write(&mut out, k, first);
    }
    stream.write_all(&out).await?;
    Counters::add(&shared.counters.offered, inflight as u64);
    let mut outstanding = inflight;
    let mut ticker = Ticker::new(Duration::from_secs(5));
    let mut heard = false;
    while outstanding > 0 {
        out.clear();
        let mut acked = 0u64;
        let now = now_ns(start);
        let running = began.elapsed() < duration;
        while let Some((opcode, frame)) = reader.next_frame() {
            heard = true;
            if opcode != ws::OP_BINARY {
                continue;
            }
            let Ok(msg) = Message::parse(&frame) else {
                continue;
            };
            let Some((k, sent)) = msg.correlation_id.as_deref().and_then(|c| {
                let (k, sent) = std::str::from_utf8(c).ok()?.split_once('-')?;
                Some((k.parse::<usize>().ok()?, sent.parse::<u64>().ok()?))
            }) else {
                continue;
            };
            if msg.action == record_action::WRITE_ACKNOWLEDGEMENT {
                let _ = local.record((now.saturating_sub(sent) / 1000).max(1));
                acked += 1;
            } else if shared.counters.errors.fetch_add(1, Ordering::Relaxed) == 0 {
                eprintln!(
                    "first write failure at {:?}: action {} {:?}",
                    start.elapsed(),
                    msg.action,
                    msg.data
                );
            }
            outstanding -= 1;
            if running && k < inflight {
                write(&mut out, k, now);
                outstanding += 1;
                Counters::add(&shared.counters.offered, 1);
            }
        }
        Counters::add(&shared.counters.delivered, acked);
        if !out.is_empty() {
            stream.write_all(&out).await?;
        }
        if outstanding == 0 {
            break;
        }
        match ticker.fill(&mut reader, &mut stream).await {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(e),
            None if !std::mem::take(&mut heard) => break,
            None => {}
        }
    }
    shared.merge(&local);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::timestamp;

    #[test]
    fn the_send_time_is_read_from_the_payload() {
        assert_eq!(timestamp(br#"{"t":1234,"pad":"x"}"#), Some(1234));
        assert_eq!(timestamp(br#"{"pad":"x"}"#), None);
        assert_eq!(timestamp(br#"{"t":}"#), None);
    }
}
