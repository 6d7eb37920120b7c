//! A storage plugin that keeps each record in a file of its own, deepstream's simple storage
//! example, on corestream as a library.
//!
//! `cargo run --example file_storage -- --port 6020 --dir records/`: every record is a file
//! `<dir>/<name as hex>.json` holding `{"version": N, "data": ...}`, written to a temporary file
//! and renamed over the old one, so a crash leaves the old record or the new, never half of one.
//! Records survive a restart. Prints `listening on HOST:PORT` once it accepts.
//!
//! Not for production: one file per record (millions of records are millions of files), no
//! fsync (a power cut may lose the last writes), one file system call per operation with no
//! batching, and nothing stops two servers sharing the directory from overwriting each other.
//! The embedded store (`storage: {name: embedded}`) or PostgreSQL do all of that.

mod common;

use corestream::{BoxFuture, Record, Storage};
use std::path::{Path, PathBuf};

struct FileStorage {
    dir: PathBuf,
}

impl FileStorage {
    /// A record's file: its name in hex, so any name is a safe file name.
    fn file(&self, name: &str) -> PathBuf {
        let hex: String = name.bytes().map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("{hex}.json"))
    }
}

/// Runs blocking file work on tokio's blocking pool, off the connector thread.
fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> BoxFuture<Result<T, String>> {
    Box::pin(async move {
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| e.to_string())?
    })
}

fn read(file: &Path) -> Result<Option<Record>, String> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", file.display())),
    };
    let stored: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    let version = stored["version"]
        .as_i64()
        .and_then(|v| i32::try_from(v).ok())
        .ok_or_else(|| format!("{}: no version", file.display()))?;
    Ok(Some(Record {
        version,
        data: stored["data"].to_string(),
    }))
}

impl Storage for FileStorage {
    fn description(&self) -> String {
        format!("file_storage in {}", self.dir.display())
    }

    fn get(&self, name: String) -> BoxFuture<Result<Option<Record>, String>> {
        let file = self.file(&name);
        blocking(move || read(&file))
    }

    fn set(&self, name: String, record: Record) -> BoxFuture<Result<(), String>> {
        let file = self.file(&name);
        blocking(move || {
            // Never an older version over a newer one.
            if read(&file)?.is_some_and(|held| held.version > record.version) {
                return Ok(());
            }
            let text = format!(r#"{{"version":{},"data":{}}}"#, record.version, record.data);
            let temporary = file.with_extension("tmp");
            std::fs::write(&temporary, text).map_err(|e| e.to_string())?;
            std::fs::rename(&temporary, &file).map_err(|e| e.to_string())
        })
    }

    fn delete(&self, name: String) -> BoxFuture<Result<(), String>> {
        let file = self.file(&name);
        blocking(move || match std::fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.to_string()),
            _ => Ok(()),
        })
    }
}

fn main() -> std::process::ExitCode {
    common::run(common::server().and_then(|server| {
        let dir = common::flag("--dir").ok_or("usage: file_storage [--port P] --dir DIR")?;
        std::fs::create_dir_all(&dir).map_err(|e| format!("{dir}: {e}"))?;
        Ok(server.storage(FileStorage { dir: dir.into() }))
    }))
}
