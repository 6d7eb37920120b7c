//! A deployment moves between deepstream and corestream on the same Redis and PostgreSQL, both
//! ways: the reference deepstream 7.0.2 with `@deepstream/cache-redis` 2.0.9 and
//! `@deepstream/storage-postgres` 3.0.4 writes records that corestream then reads with the same
//! versions and data, and the other way round; once from the cache, and once with the cache
//! emptied so that the records come from PostgreSQL.
//!
//! Needs ../shared (the reference), Redis and PostgreSQL; says it skipped without them, and
//! fails instead under CI.

mod common;

use common::{service, Server};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The reference's install with the two connector plugins beside it (made once, kept in
/// target/).
fn peer_home(shared: &Path) -> PathBuf {
    let home = Path::new(env!("CARGO_TARGET_TMPDIR")).join("peer-with-connectors");
    let plugins = home.join("node_modules/@deepstream/storage-postgres");
    if plugins.exists() {
        return home;
    }
    std::fs::create_dir_all(&home).expect("peer home");
    for file in ["package.json", "package-lock.json"] {
        std::fs::copy(shared.join("peer").join(file), home.join(file)).expect("copy");
    }
    let ok = Command::new("cp")
        .arg("-r")
        .arg(shared.join("peer/uws-absent"))
        .arg(&home)
        .status()
        .expect("cp")
        .success();
    assert!(ok);
    let npm = |args: &[&str]| {
        let ok = Command::new("npm")
            .args(args)
            .args(["--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&home)
            .status()
            .expect("npm")
            .success();
        assert!(ok, "npm {args:?} in {}", home.display());
    };
    npm(&["install"]);
    npm(&[
        "install",
        "--no-save",
        "@deepstream/cache-redis@2.0.9",
        "@deepstream/storage-postgres@3.0.4",
    ]);
    home
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The reference deepstream, stopped (by its PID) when dropped.
struct Reference {
    child: Child,
    port: u16,
}

impl Reference {
    fn start(shared: &Path, home: &Path, dir: &Path, layers: &str) -> Reference {
        let port = free_port();
        let config = dir.join("reference.yml");
        std::fs::write(
            &config,
            format!(
                "serverName: reference\nshowLogo: false\nlogger:\n  type: default\n  options:\n    \
                 colors: false\n    logLevel: WARN\nhttpServer:\n  type: default\n  options:\n    \
                 host: 127.0.0.1\n    port: {port}\nconnectionEndpoints:\n  - type: ws-binary\n    \
                 options:\n      urlPath: /deepstream\nauth:\n  - type: none\n{layers}"
            ),
        )
        .expect("config");
        let child = Command::new("bash")
            .arg(shared.join("peer/run.sh"))
            .arg(&config)
            .env("PEER_HOME", home)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("reference");
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the reference did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        // Its connectors connect after the port opens.
        std::thread::sleep(Duration::from_millis(1500));
        Reference { child, port }
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/deepstream", self.port)
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs tests/node/durable/records.mjs against `url`; returns `<name> → (version, json)` of
/// the lines starting with `tag`.
fn records(url: &str, args: &[&str], tag: &str) -> BTreeMap<String, (i64, serde_json::Value)> {
    let home = common::node_home();
    let output = Command::new("timeout")
        .arg("60")
        .arg("node")
        .arg(home.join("durable/records.mjs"))
        .args(args)
        .env("DS_URL", url)
        .env("DS_CLIENT_HOME", &home)
        .output()
        .expect("node");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let mut out = BTreeMap::new();
    for line in stdout.lines() {
        let mut parts = line.splitn(4, ' ');
        if parts.next() != Some(tag) {
            continue;
        }
        if let (Some(name), Some(version), Some(json)) = (parts.next(), parts.next(), parts.next())
        {
            let data = serde_json::from_str(json).expect("json");
            out.insert(name.to_string(), (version.parse().expect("version"), data));
        }
    }
    assert!(!out.is_empty(), "no {tag} lines from {args:?}: {stdout}");
    out
}

#[test]
fn records_move_between_the_reference_and_corestream_on_the_same_redis_and_postgres() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    if !service("redis", 6379) || !service("postgres", 5432) {
        return;
    }
    let home = peer_home(&shared);
    let tag = format!("cs_compat_{}_{}", std::process::id(), fastrand::u32(..));
    let (prefix, schema) = (format!("{tag}:"), tag.clone());
    let _cleanup = common::Scratch(tag.clone());
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(&tag);
    std::fs::create_dir_all(&dir).expect("dir");
    let layers = format!(
        "cache:\n  name: redis\n  options:\n    host: 127.0.0.1\n    port: 6379\n    \
         keyPrefix: '{prefix}'\nstorage:\n  name: postgres\n  options:\n    host: 127.0.0.1\n    \
         port: 5432\n    user: postgres\n    database: test\n    schema: {schema}\n    \
         writeInterval: 20\n"
    );
    let ours = dir.join("corestream.yml");
    std::fs::write(
        &ours,
        format!("connectionEndpoints:\n  - type: ws-binary\n{layers}"),
    )
    .expect("config");
    let corestream = || Server::start(&["--cores", "2", "-c", ours.to_str().expect("path")]);

    for (from_cache, prefix_of_names) in [(true, "a"), (false, "b")] {
        // deepstream writes, corestream reads.
        let written = {
            let reference = Reference::start(&shared, &home, &dir, &layers);
            records(&reference.url(), &["put", prefix_of_names, "6", "3"], "PUT")
        };
        if !from_cache {
            common::redis_delete_prefix(&prefix);
        }
        let read = {
            let server = corestream();
            records(&server.url(), &["read", prefix_of_names, "6"], "GOT")
        };
        assert_eq!(
            read, written,
            "corestream reading what deepstream wrote (cache: {from_cache})"
        );

        // corestream writes, deepstream reads.
        let names = format!("{prefix_of_names}2");
        let written = {
            let server = corestream();
            records(&server.url(), &["put", &names, "6", "3"], "PUT")
        };
        if !from_cache {
            common::redis_delete_prefix(&prefix);
        }
        let read = {
            let reference = Reference::start(&shared, &home, &dir, &layers);
            records(&reference.url(), &["read", &names, "6"], "GOT")
        };
        assert_eq!(
            read, written,
            "deepstream reading what corestream wrote (cache: {from_cache})"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
