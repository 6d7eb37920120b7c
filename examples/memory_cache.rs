//! A cache plugin that keeps records in a map in memory, deepstream's in-memory cache example,
//! on corestream as a library.
//!
//! `cargo run --example memory_cache -- --port 6020`: records live in the plugin's map while the
//! process runs (there is no storage behind it), so a record nobody is subscribed to any more
//! is read back from the plugin. Prints `listening on HOST:PORT` once it accepts.

mod common;

use corestream::{BoxFuture, Record, Storage};
use std::collections::HashMap;
use std::sync::Mutex;

/// Records by name. A `Mutex` is enough: the plugin is called from one connector thread.
#[derive(Default)]
struct MemoryCache {
    records: Mutex<HashMap<String, Record>>,
}

impl MemoryCache {
    /// Runs `change` on the map; a map poisoned by a panic elsewhere is an error, not a panic.
    fn with<T>(&self, change: impl FnOnce(&mut HashMap<String, Record>) -> T) -> Result<T, String> {
        let mut records = self.records.lock().map_err(|e| e.to_string())?;
        Ok(change(&mut records))
    }
}

impl Storage for MemoryCache {
    fn description(&self) -> String {
        "memory_cache (a map in the plugin)".into()
    }

    fn get(&self, name: String) -> BoxFuture<Result<Option<Record>, String>> {
        let found = self.with(|records| records.get(&name).cloned());
        Box::pin(async move { found })
    }

    fn set(&self, name: String, record: Record) -> BoxFuture<Result<(), String>> {
        let done = self.with(|records| {
            // Never an older version over a newer one.
            if records
                .get(&name)
                .is_none_or(|held| held.version <= record.version)
            {
                records.insert(name, record);
            }
        });
        Box::pin(async move { done })
    }

    fn delete(&self, name: String) -> BoxFuture<Result<(), String>> {
        let done = self.with(|records| {
            records.remove(&name);
        });
        Box::pin(async move { done })
    }
}

fn main() -> std::process::ExitCode {
    common::run(common::server().map(|server| server.cache(MemoryCache::default())))
}
