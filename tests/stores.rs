//! Records that survive: the real `@deepstream/client` writes with write acks, the server is
//! killed with SIGKILL mid-stream, restarted, and every acknowledged write must be there with
//! its version; for the durable embedded store and for Redis + PostgreSQL, on one shard and on
//! two. Also `storageExclusionPrefixes`, and `record.notify` after a change made behind the
//! server's back.
//!
//! Redis and PostgreSQL tests use the machine's services with a key prefix and a schema of
//! their own, removed afterwards; without the services they say they skipped, and under CI
//! (`CI` or `CORESTREAM_REQUIRE_SERVICES` set) a missing service fails them.

mod common;

use bytes::Bytes;
use common::{node_home, service, Server};
use corestream::protocol::message::{connection_action, record_action as ra, topic, Message};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn scratch_name(what: &str) -> String {
    format!("cs_{what}_{}_{}", std::process::id(), fastrand::u32(..))
}

fn scratch_dir(what: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(scratch_name(what));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A config file in `dir` with `body` after a ws-binary endpoint.
fn config_file(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("config.yml");
    std::fs::write(&path, body).expect("config");
    path
}

fn start(config: &Path, shards: usize) -> Server {
    Server::start(&[
        "--cores",
        &shards.to_string(),
        "-c",
        config.to_str().expect("utf-8 path"),
    ])
}

/// Runs tests/node/durable/records.mjs with `args` against `server`.
fn client(server: &Server, args: &[&str]) -> Child {
    let home = node_home();
    Command::new("node")
        .arg(home.join("durable/records.mjs"))
        .args(args)
        .env("DS_URL", server.url())
        .env("DS_CLIENT_HOME", &home)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node")
}

/// Lines of a child's stdout, read on a thread so the test can wait with a deadline.
fn lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn run_to_end(server: &Server, args: &[&str]) -> Vec<String> {
    let mut child = client(server, args);
    let out = lines(&mut child);
    let mut all = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Ok(line) = out.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        all.push(line);
    }
    let _ = child.kill();
    let _ = child.wait();
    all
}

/// Writes with acks until `acks` have arrived, kills the server with SIGKILL, restarts it on
/// the same config and checks that every acknowledged write is there: the record's version is
/// at least the acknowledged one, and with that version its data is the acknowledged data.
/// Returns the prefix of the records' names.
fn acknowledged_writes_survive_sigkill(config: &Path, shards: usize, acks: usize) -> String {
    let prefix = scratch_name("durable");
    let server = start(config, shards);
    let mut writer = client(&server, &["write", &prefix, "24"]);
    let out = lines(&mut writer);
    let mut acked: HashMap<String, (i64, i64)> = HashMap::new();
    let mut count = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while count < acks {
        let line = out
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("only {count} acks in 30 s"));
        if let Some((name, version, n)) = parse_ack(&line) {
            acked.insert(name, (version, n));
            count += 1;
        }
    }
    // SIGKILL, with writes in flight.
    drop(server);
    let _ = writer.kill();
    let _ = writer.wait();
    // The acks that arrived before the kill but were not read yet count too.
    while let Ok(line) = out.recv_timeout(Duration::from_millis(200)) {
        if let Some((name, version, n)) = parse_ack(&line) {
            acked.insert(name, (version, n));
        }
    }
    let server = start(config, shards);
    let read = run_to_end(&server, &["read", &prefix, "24"]);
    let mut found: HashMap<String, (i64, serde_json::Value)> = HashMap::new();
    for line in &read {
        let mut parts = line.splitn(4, ' ');
        if parts.next() == Some("GOT") {
            let (name, version, json) = (parts.next(), parts.next(), parts.next());
            let (Some(name), Some(version), Some(json)) = (name, version, json) else {
                continue;
            };
            let data = serde_json::from_str(json).unwrap_or(serde_json::Value::Null);
            found.insert(name.to_string(), (version.parse().unwrap_or(-1), data));
        }
    }
    assert!(!acked.is_empty());
    for (name, (version, n)) in &acked {
        let (stored, data) = found
            .get(name)
            .unwrap_or_else(|| panic!("{name} is gone after the restart: {read:?}"));
        assert!(
            stored >= version,
            "{name}: version {version} was acknowledged, {stored} is stored"
        );
        if stored == version {
            assert_eq!(
                data["n"],
                serde_json::json!(n),
                "{name} at version {version}"
            );
        }
    }
    println!(
        "{} acknowledged writes over {} records survived SIGKILL on {shards} shard(s)",
        count,
        acked.len()
    );
    prefix
}

fn parse_ack(line: &str) -> Option<(String, i64, i64)> {
    let mut parts = line.split(' ');
    if parts.next()? != "ACK" {
        return None;
    }
    let name = parts.next()?.to_string();
    let version = parts.next()?.parse().ok()?;
    let n = parts.next()?.parse().ok()?;
    Some((name, version, n))
}

const ENDPOINT: &str = "connectionEndpoints:\n  - type: ws-binary\n";

#[test]
fn the_embedded_store_keeps_every_acknowledged_write_through_sigkill() {
    for shards in [1, 2] {
        let dir = scratch_dir("embedded");
        let config = config_file(
            &dir,
            &format!(
                "{ENDPOINT}storage:\n  name: embedded\n  options:\n    path: {}\n",
                dir.join("data").display()
            ),
        );
        let _ = acknowledged_writes_survive_sigkill(&config, shards, 1500);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn the_embedded_store_refuses_a_directory_written_with_other_shards() {
    let dir = scratch_dir("embedded-layout");
    let config = config_file(
        &dir,
        &format!(
            "{ENDPOINT}storage:\n  name: embedded\n  options:\n    path: {}\n",
            dir.join("data").display()
        ),
    );
    drop(start(&config, 2));
    let output = Command::new(env!("CARGO_BIN_EXE_corestream"))
        .args([
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--cores",
            "1",
            "-c",
        ])
        .arg(&config)
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("shards=2"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Redis keys of one test, removed when dropped.
struct RedisScratch {
    prefix: String,
}

impl RedisScratch {
    fn new() -> RedisScratch {
        RedisScratch {
            prefix: format!("{}:", scratch_name("redis")),
        }
    }

    fn get(&self, key: &str) -> Option<String> {
        redis::cmd("GET")
            .arg(format!("{}{key}", self.prefix))
            .query(&mut common::redis_connection())
            .expect("GET")
    }
}

impl Drop for RedisScratch {
    fn drop(&mut self) {
        common::redis_delete_prefix(&self.prefix);
    }
}

/// A PostgreSQL schema of one test, dropped when dropped.
struct PgScratch {
    schema: String,
}

impl PgScratch {
    fn new() -> PgScratch {
        PgScratch {
            schema: scratch_name("pg"),
        }
    }

    fn sql(&self, statement: &str) -> String {
        common::psql(statement)
    }

    /// A PostgreSQL connector on this schema of the machine's database, writes flushed each ms.
    fn store(&self) -> std::sync::Arc<corestream::store::postgres::PostgresStorage> {
        use corestream::store::postgres::{PostgresOptions, PostgresStorage};
        let options: serde_yaml::Value = serde_yaml::from_str(&format!(
            "{{host: 127.0.0.1, port: 5432, user: postgres, database: test, \
             schema: {}, writeInterval: 1}}",
            self.schema
        ))
        .expect("yaml");
        let options = PostgresOptions::parse(Some(&options)).expect("options");
        PostgresStorage::new(options, Duration::from_secs(10)).expect("a store")
    }
}

impl Drop for PgScratch {
    fn drop(&mut self) {
        self.sql(&format!(
            "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
            self.schema
        ));
    }
}

fn redis_postgres_config(
    dir: &Path,
    redis: &RedisScratch,
    pg: &PgScratch,
    record: &str,
) -> PathBuf {
    config_file(
        dir,
        &format!(
            "{ENDPOINT}cache:\n  name: redis\n  options:\n    host: 127.0.0.1\n    port: 6379\n    \
             keyPrefix: '{}'\nstorage:\n  name: postgres\n  options:\n    host: 127.0.0.1\n    \
             port: 5432\n    user: postgres\n    database: test\n    schema: {}\n    \
             writeInterval: 20\n{record}",
            redis.prefix, pg.schema
        ),
    )
}

#[test]
fn redis_and_postgres_keep_every_acknowledged_write_through_sigkill() {
    if !service("redis", 6379) || !service("postgres", 5432) {
        return;
    }
    for shards in [1, 2] {
        let (redis, pg, dir) = (RedisScratch::new(), PgScratch::new(), scratch_dir("rp"));
        let config = redis_postgres_config(&dir, &redis, &pg, "");
        let prefix = acknowledged_writes_survive_sigkill(&config, shards, 600);
        // Both layers hold the records, in the reference connectors' layouts: a table per
        // prefix with the rest of the name as the id, and `<name>_v` / `<name>_d` in Redis.
        let rows = pg.sql(&format!(
            "SELECT count(*) FROM \"{}\".\"{prefix}\"",
            pg.schema
        ));
        assert_eq!(rows, "24");
        // A write in flight at the kill may have reached one layer and not the other; both
        // hold a version of every record.
        let version = redis
            .get(&format!("{prefix}/0_v"))
            .expect("version in redis");
        let row = pg.sql(&format!(
            "SELECT version FROM \"{}\".\"{prefix}\" WHERE id = '0'",
            pg.schema
        ));
        assert!(
            version.parse::<i32>().is_ok() && row.parse::<i32>().is_ok(),
            "{version} {row}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn excluded_prefixes_stay_in_the_cache_and_the_rest_reach_both_layers() {
    if !service("redis", 6379) || !service("postgres", 5432) {
        return;
    }
    let (redis, pg, dir) = (RedisScratch::new(), PgScratch::new(), scratch_dir("excl"));
    let config = redis_postgres_config(
        &dir,
        &redis,
        &pg,
        "record:\n  storageExclusionPrefixes: [tmp]\n",
    );
    let server = start(&config, 2);
    let mut writer = client(&server, &["write", "keep", "3"]);
    let keep = lines(&mut writer);
    let mut tmp_writer = client(&server, &["write", "tmp", "3"]);
    let tmp = lines(&mut tmp_writer);
    for (out, what) in [(&keep, "keep"), (&tmp, "tmp")] {
        let mut acks = 0;
        while acks < 30 {
            let line = out
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("{what}: only {acks} acks"));
            acks += usize::from(line.starts_with("ACK"));
        }
    }
    let _ = writer.kill();
    let _ = tmp_writer.kill();
    let _ = writer.wait();
    let _ = tmp_writer.wait();
    // Both in Redis, with the reference's key layout.
    for name in ["keep/0", "tmp/0"] {
        let version = redis.get(&format!("{name}_v")).expect("a version in redis");
        assert!(
            version.parse::<i32>().is_ok_and(|v| v >= 10),
            "{name}: {version}"
        );
        let data = redis.get(&format!("{name}_d")).expect("data in redis");
        assert!(data.contains("\"n\""), "{name}: {data}");
    }
    // Only keep/ in PostgreSQL: table `keep`, row ids without the prefix.
    let rows = pg.sql(&format!(
        "SELECT id || ':' || version FROM \"{}\".\"keep\" ORDER BY id",
        pg.schema
    ));
    assert_eq!(rows.lines().count(), 3, "{rows}");
    assert!(rows.starts_with("0:"), "{rows}");
    let tables = pg.sql(&format!(
        "SELECT string_agg(table_name, ',') FROM information_schema.tables WHERE table_schema = '{}'",
        pg.schema
    ));
    assert_eq!(tables, "keep");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn notify_sends_a_change_made_in_postgres_to_subscribers() {
    if !service("redis", 6379) || !service("postgres", 5432) {
        return;
    }
    for shards in [1, 2] {
        let (redis, pg, dir) = (RedisScratch::new(), PgScratch::new(), scratch_dir("notify"));
        let config = redis_postgres_config(&dir, &redis, &pg, "");
        let server = start(&config, shards);
        // Make the record (and its table) through the server first.
        let mut writer = client(&server, &["write", "ext", "1"]);
        let out = lines(&mut writer);
        let first = out.recv_timeout(Duration::from_secs(20)).expect("an ack");
        assert!(first.starts_with("ACK ext/0 "), "{first}");
        let _ = writer.kill();
        let _ = writer.wait();
        // Its last writes reach PostgreSQL within the 20 ms write interval.
        std::thread::sleep(Duration::from_millis(200));
        let mut watcher = client(&server, &["watch", "ext/0"]);
        let heard = lines(&mut watcher);
        let ready = heard.recv_timeout(Duration::from_secs(20)).expect("ready");
        assert!(ready.starts_with("READY "), "{ready}");
        // Another program changes the row (to the next version, as a writer would: the
        // client takes a jump in versions for a conflict); the server learns of it from notify.
        let current: i32 = ready
            .split(' ')
            .nth(1)
            .and_then(|v| v.parse().ok())
            .expect("a version");
        let next = current + 1;
        pg.sql(&format!(
            "UPDATE \"{}\".\"ext\" SET version = {next}, val = '{{\"from\":\"sql\"}}' WHERE id = '0'",
            pg.schema
        ));
        let notified = run_to_end(&server, &["notify", "ext/0"]);
        assert_eq!(notified, vec!["NOTIFIED".to_string()]);
        let update = heard.recv_timeout(Duration::from_secs(10)).expect("update");
        assert_eq!(update, format!(r#"UPDATE {next} {{"from":"sql"}}"#));
        // The cache was corrected too: Redis holds the new version.
        assert_eq!(redis.get("ext/0_v"), Some(next.to_string()));
        pg.sql(&format!("DELETE FROM \"{}\".\"ext\"", pg.schema));
        let notified = run_to_end(&server, &["notify", "ext/0"]);
        assert_eq!(notified, vec!["NOTIFIED".to_string()]);
        assert_eq!(
            heard.recv_timeout(Duration::from_secs(10)).as_deref(),
            Ok("DELETED")
        );
        let _ = watcher.kill();
        let _ = watcher.wait();
        drop(server);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn with_follow_changes_a_row_changed_in_postgres_reaches_subscribers_without_notify() {
    if !service("redis", 6379) || !service("postgres", 5432) {
        return;
    }
    let (redis, pg, dir) = (RedisScratch::new(), PgScratch::new(), scratch_dir("follow"));
    let config = config_file(
        &dir,
        &format!(
            "{ENDPOINT}cache:\n  name: redis\n  options:\n    host: 127.0.0.1\n    port: 6379\n    \
             keyPrefix: '{}'\nstorage:\n  name: postgres\n  options:\n    host: 127.0.0.1\n    \
             port: 5432\n    user: postgres\n    database: test\n    schema: {}\n    \
             writeInterval: 20\n    followChanges: true\n",
            redis.prefix, pg.schema
        ),
    );
    let server = start(&config, 2);
    let put = run_to_end(&server, &["put", "live", "1", "2"]);
    assert!(
        put.iter().any(|l| l.starts_with("PUT live/0 2 ")),
        "{put:?}"
    );
    let mut watcher = client(&server, &["watch", "live/0"]);
    let heard = lines(&mut watcher);
    let ready = heard.recv_timeout(Duration::from_secs(20)).expect("ready");
    assert!(ready.starts_with("READY 2 "), "{ready}");
    pg.sql(&format!(
        "UPDATE \"{}\".\"live\" SET version = 3, val = '{{\"by\":\"sql\"}}' WHERE id = '0'",
        pg.schema
    ));
    let update = heard.recv_timeout(Duration::from_secs(10)).expect("update");
    assert_eq!(update, r#"UPDATE 3 {"by":"sql"}"#);
    pg.sql(&format!("DELETE FROM \"{}\".\"live\"", pg.schema));
    assert_eq!(
        heard.recv_timeout(Duration::from_secs(10)).as_deref(),
        Ok("DELETED")
    );
    let _ = watcher.kill();
    let _ = watcher.wait();
    // The server's own writes are not followed back as changes: a subscriber hears each once.
    let mut subscriber = common::RawClient::login_with(server.port, "{}");
    subscriber.send(&Message {
        names: vec![Bytes::from_static(b"live/1")],
        correlation_id: Some(Bytes::from_static(b"s")),
        ..Message::new(topic::RECORD, ra::SUBSCRIBECREATEANDREAD)
    });
    assert_eq!(subscriber.expect_message().is_ack, Some(true));
    assert_eq!(subscriber.expect_message().action, ra::READ_RESPONSE);
    let mut writer = common::RawClient::login_with(server.port, "{}");
    for version in 1..=3 {
        writer.send(&Message {
            name: Some(Bytes::from_static(b"live/1")),
            version: Some(version),
            data: Some(Bytes::from(format!(r#"{{"v":{version}}}"#))),
            correlation_id: Some(Bytes::from(version.to_string())),
            is_write_ack: Some(true),
            ..Message::new(topic::RECORD, ra::UPDATE)
        });
        assert_eq!(writer.expect_message().action, ra::WRITE_ACKNOWLEDGEMENT);
        let heard = subscriber.expect_message();
        assert_eq!((heard.action, heard.version), (ra::UPDATE, Some(version)));
    }
    std::thread::sleep(Duration::from_millis(500));
    subscriber.send(&Message::new(topic::CONNECTION, connection_action::PING));
    let next = subscriber.expect_message();
    assert_eq!(
        next.action,
        connection_action::PONG,
        "an echo arrived: {next:?}"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Servers starting together on one database make their schemas and tables at once; the trigger
/// function they share must not fail one of them with "tuple concurrently updated" (the first
/// writes after start were refused that way, one CI run in many).
#[test]
fn servers_starting_together_all_make_their_tables() {
    use corestream::store::{Connector, StoreJob, StoreResult, StoredRecord};
    if !service("postgres", 5432) {
        return;
    }
    const SERVERS: usize = 8;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    for round in 0..3 {
        let scratches: Vec<PgScratch> = (0..SERVERS).map(|_| PgScratch::new()).collect();
        let stores: Vec<_> = scratches.iter().map(PgScratch::store).collect();
        let results = runtime.block_on(async {
            let writes = stores.iter().enumerate().map(|(i, store)| {
                let job = StoreJob::Write {
                    name: Bytes::from(format!("table{}/row", i % 2)),
                    record: Some(StoredRecord {
                        version: 1,
                        data: Bytes::from_static(b"{}"),
                    }),
                };
                tokio::spawn(store.clone().run(vec![job]))
            });
            let mut results = Vec::new();
            for write in writes.collect::<Vec<_>>() {
                results.extend(write.await.expect("a write task"));
            }
            results
        });
        assert_eq!(results.len(), SERVERS);
        for result in results {
            match result {
                StoreResult::Written { result: Ok(()), .. } => {}
                other => panic!("round {round}: {other:?}"),
            }
        }
    }
}

/// Issue 27, defect 1: servers sharing one schema write a record's rows in whatever order their
/// buffered batches reach PostgreSQL. An older version arriving after a newer one must not
/// replace it (nor may a second write of a row waiting in one buffer replace a newer one).
#[test]
fn storage_never_takes_an_older_version_over_a_newer_one() {
    use corestream::store::{Connector, StoreJob, StoreResult, StoredRecord};
    if !service("postgres", 5432) {
        return;
    }
    let pg = PgScratch::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let (first, second) = (pg.store(), pg.store());
    let write = |version: i32| StoreJob::Write {
        name: Bytes::from_static(b"shared/row"),
        record: Some(StoredRecord {
            version,
            data: Bytes::from(format!(r#"{{"v":{version}}}"#)),
        }),
    };
    runtime.block_on(async {
        for (store, jobs) in [
            (&first, vec![write(5)]),
            (&second, vec![write(4)]),
            // One batch: the older write last.
            (&first, vec![write(7), write(6)]),
        ] {
            for result in store.clone().run(jobs).await {
                assert!(
                    matches!(result, StoreResult::Written { result: Ok(()), .. }),
                    "{result:?}"
                );
            }
        }
    });
    assert_eq!(
        pg.sql(&format!(
            "SELECT version || ' ' || val FROM \"{}\".\"shared\" WHERE id = 'row'",
            pg.schema
        ))
        .trim(),
        r#"7 {"v":7}"#
    );
}
