//! A deployment moves between deepstream and corestream on the same Redis and PostgreSQL, both
//! ways: the reference deepstream 7.0.2 with `@deepstream/cache-redis` 2.0.9 and
//! `@deepstream/storage-postgres` 3.0.4 writes records that corestream then reads with the same
//! versions and data, and the other way round; once from the cache, and once with the cache
//! emptied so that the records come from PostgreSQL.
//!
//! Needs ../shared (the reference), Redis and PostgreSQL; says it skipped without them, and
//! fails instead under CI.

mod common;

use common::{service, Reference, Server};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

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

/// The reference's config after `httpServer`: the binary endpoint, open auth, then `layers`.
fn ws_and(layers: &str) -> String {
    format!(
        "connectionEndpoints:\n  - type: ws-binary\n    options:\n      urlPath: /deepstream\n\
         auth:\n  - type: none\n{layers}"
    )
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
            let reference = Reference::start(&shared, Some(&home), &dir, &ws_and(&layers));
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
            let reference = Reference::start(&shared, Some(&home), &dir, &ws_and(&layers));
            records(&reference.url(), &["read", &names, "6"], "GOT")
        };
        assert_eq!(
            read, written,
            "deepstream reading what corestream wrote (cache: {from_cache})"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
