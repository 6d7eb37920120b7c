//! Cache and storage written in Rust: deepstream's cache and storage plugins (`get`, `set`,
//! `delete` by record name) as one trait. A server built with `Server::builder(..).cache(..)` or
//! `.storage(..)` uses it in place of the config's choice, layered as deepstream layers them
//! (reads try the cache, then storage; writes go to both).
//!
//! The plugin runs on the connector thread (a tokio runtime), never on a shard, and every call
//! is bounded by the config's `record.cacheRetrievalTimeout` / `storageRetrievalTimeout`: a
//! plugin that does not answer in time fails that operation (the client hears the reference's
//! error), it never stalls the server.

use super::remote::Connector;
use super::{Layer, StorageError, StoreJob, StoreResult, StoredRecord};
use crate::auth::plugin::BoxFuture;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;

/// A record as a store keeps it: its version and its data as JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub version: i32,
    /// JSON text (an object or an array), kept and given back byte for byte.
    pub data: String,
}

/// Keeps records by name: deepstream's cache and storage interface.
///
/// ```
/// use corestream::{BoxFuture, Record, Storage};
/// use std::collections::HashMap;
/// use std::sync::Mutex;
///
/// /// Records in a map: a cache that lives as long as the process.
/// #[derive(Default)]
/// struct MapCache(Mutex<HashMap<String, Record>>);
///
/// impl Storage for MapCache {
///     fn get(&self, name: String) -> BoxFuture<Result<Option<Record>, String>> {
///         let found = self.0.lock().map_err(|e| e.to_string()).map(|m| m.get(&name).cloned());
///         Box::pin(async move { found })
///     }
///     fn set(&self, name: String, record: Record) -> BoxFuture<Result<(), String>> {
///         let done = self.0.lock().map_err(|e| e.to_string()).map(|mut m| {
///             m.insert(name, record);
///         });
///         Box::pin(async move { done })
///     }
///     fn delete(&self, name: String) -> BoxFuture<Result<(), String>> {
///         let done = self.0.lock().map_err(|e| e.to_string()).map(|mut m| {
///             m.remove(&name);
///         });
///         Box::pin(async move { done })
///     }
/// }
/// ```
pub trait Storage: Send + Sync + 'static {
    /// Named in the start line.
    fn description(&self) -> String {
        "a custom store plugin".into()
    }

    /// The record `name`, or `None` if it holds none. An error is the reason, logged and
    /// answered to the client as the reference's read error.
    fn get(&self, name: String) -> BoxFuture<Result<Option<Record>, String>>;

    /// Keeps `record` as `name`'s (a newer version over an older one).
    fn set(&self, name: String, record: Record) -> BoxFuture<Result<(), String>>;

    /// Forgets `name`.
    fn delete(&self, name: String) -> BoxFuture<Result<(), String>>;
}

/// A store plugin in the config's cache or storage place (compared by identity).
#[derive(Clone)]
pub struct PluginStore {
    plugin: Arc<dyn Storage>,
    layer: Layer,
    timeout: Duration,
}

impl PluginStore {
    pub fn new(plugin: Arc<dyn Storage>, layer: Layer, timeout: Duration) -> PluginStore {
        PluginStore {
            plugin,
            layer,
            timeout,
        }
    }

    pub fn description(&self) -> String {
        self.plugin.description()
    }

    /// The same plugin with another time limit per operation.
    pub fn with_timeout(&self, timeout: Duration) -> PluginStore {
        PluginStore {
            timeout,
            ..self.clone()
        }
    }

    async fn bounded<T>(&self, call: BoxFuture<Result<T, String>>) -> Result<T, StorageError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(why)) => Err(StorageError::Other(why)),
            Err(_) => Err(StorageError::Timeout(self.layer)),
        }
    }

    async fn run_one(&self, job: StoreJob) -> StoreResult {
        let text = |name: &Bytes| String::from_utf8_lossy(name).into_owned();
        match job {
            StoreJob::Load { name } | StoreJob::Refresh { name } => {
                let result = self
                    .bounded(self.plugin.get(text(&name)))
                    .await
                    .map(|found| {
                        found.map(|r| StoredRecord {
                            version: r.version,
                            data: Bytes::from(r.data),
                        })
                    });
                StoreResult::Loaded { name, result }
            }
            StoreJob::Head { name } => {
                let result = self
                    .bounded(self.plugin.get(text(&name)))
                    .await
                    .map(|found| found.map_or(-1, |r| r.version));
                StoreResult::Headed { name, result }
            }
            StoreJob::Write { name, record } => {
                let call = match record {
                    Some(record) => {
                        let data = String::from_utf8_lossy(&record.data).into_owned();
                        self.plugin.set(
                            text(&name),
                            Record {
                                version: record.version,
                                data,
                            },
                        )
                    }
                    None => self.plugin.delete(text(&name)),
                };
                let result = self.bounded(call).await;
                StoreResult::Written { name, result }
            }
        }
    }
}

impl PartialEq for PluginStore {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.plugin, &other.plugin) && self.layer == other.layer
    }
}

impl std::fmt::Debug for PluginStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.plugin.description())
    }
}

/// How many batches a shard may have in flight against a plugin.
const PLUGIN_CONCURRENCY: usize = 4;

impl Connector for PluginStore {
    fn run(
        self: Arc<Self>,
        jobs: Vec<StoreJob>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<StoreResult>> + Send>> {
        Box::pin(async move {
            // In order: a batch may hold a write and a read of one name.
            let mut results = Vec::with_capacity(jobs.len());
            for job in jobs {
                results.push(self.run_one(job).await);
            }
            results
        })
    }

    fn concurrency(&self) -> usize {
        PLUGIN_CONCURRENCY
    }
}
