//! What the config's `cache:`, `storage:` and `record:` sections ask for, and the stores each
//! shard opens for it: the process-wide parts (`Connectors`: the bridge and the connector
//! clients every shard shares) start once, then each shard opens its own `RecordStore`.

use super::embedded::{check_layout, EmbeddedStore};
use super::layered::{CacheHolds, Layered};
use super::postgres::{PostgresOptions, PostgresStorage};
use super::redis::{RedisCache, RedisOptions};
use super::{Connector, MemoryStore, OnBridge, RecordStore};
use crate::bridge::Bridge;
use serde_yaml::Value;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub enum CacheChoice {
    /// deepstream's default in-process cache.
    Memory,
    Redis(RedisOptions),
    /// A plugin given to `Server::builder(..).cache(..)`.
    Plugin(super::plugin::PluginStore),
}

#[derive(Debug, Clone, PartialEq)]
pub enum StorageChoice {
    /// No storage: records live as long as the process (deepstream's default).
    None,
    /// corestream's durable embedded store in this directory.
    Embedded(PathBuf),
    Postgres(PostgresOptions),
    /// A plugin given to `Server::builder(..).storage(..)`.
    Plugin(super::plugin::PluginStore),
}

/// The record layer as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    pub cache: CacheChoice,
    pub storage: StorageChoice,
    /// `record.storageExclusionPrefixes`: names kept in the cache only.
    pub exclusions: Vec<String>,
    /// `record.storageHotPathPrefixes`.
    pub hot_paths: Vec<String>,
    pub cache_timeout: Duration,
    pub storage_timeout: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            cache: CacheChoice::Memory,
            storage: StorageChoice::None,
            exclusions: Vec::new(),
            hot_paths: Vec::new(),
            cache_timeout: Duration::from_millis(1000),
            storage_timeout: Duration::from_millis(2000),
        }
    }
}

/// Idle records kept in memory per shard in front of the embedded store (a few MB).
pub const IDLE_RECORDS_KEPT: usize = 16_384;

/// The directory the embedded store uses when `options.path` does not say.
pub const DEFAULT_EMBEDDED_PATH: &str = "corestream-data";

impl StoreConfig {
    /// Reads the top-level `cache` and `storage` sections; `dir` resolves a relative path.
    pub fn read_plugins(
        &mut self,
        cache: Option<&Value>,
        storage: Option<&Value>,
        dir: &std::path::Path,
    ) -> Result<(), String> {
        if let Some((name, options)) = plugin(cache, "cache")? {
            self.cache = match name.as_str() {
                "default" | "memory" => CacheChoice::Memory,
                "redis" => CacheChoice::Redis(RedisOptions::parse(options)?),
                other => {
                    return Err(format!(
                        "cache: unknown cache '{other}' (corestream has redis and the default \
                         in-memory cache)"
                    ))
                }
            };
        }
        if let Some((name, options)) = plugin(storage, "storage")? {
            self.storage = match name.as_str() {
                "default" | "none" => StorageChoice::None,
                "embedded" => {
                    let path = super::options::Options::new(options, "storage.options")
                        .text("path")?
                        .unwrap_or_else(|| DEFAULT_EMBEDDED_PATH.to_string());
                    StorageChoice::Embedded(dir.join(path))
                }
                "postgres" | "postgresql" => {
                    StorageChoice::Postgres(PostgresOptions::parse(options)?)
                }
                other => {
                    return Err(format!(
                        "storage: unknown storage '{other}' (corestream has embedded and \
                         postgres)"
                    ))
                }
            };
        }
        Ok(())
    }

    /// Reads the `record` section's store keys.
    pub fn read_record(&mut self, record: &Value) -> Result<(), String> {
        let millis = |key: &str, default: Duration| -> Result<Duration, String> {
            match record.get(key) {
                None | Some(Value::Null) => Ok(default),
                Some(Value::Number(n)) => n
                    .as_u64()
                    .filter(|n| *n > 0)
                    .map(Duration::from_millis)
                    .ok_or_else(|| format!("record.{key} must be a positive number of ms")),
                Some(_) => Err(format!("record.{key} must be a positive number of ms")),
            }
        };
        let prefixes = |key: &str| -> Result<Vec<String>, String> {
            match record.get(key) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Sequence(items)) => items
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_string)
                            .ok_or_else(|| format!("record.{key} must be a list of text"))
                    })
                    .collect(),
                Some(_) => Err(format!("record.{key} must be a list of text")),
            }
        };
        self.cache_timeout = millis("cacheRetrievalTimeout", self.cache_timeout)?;
        self.storage_timeout = millis("storageRetrievalTimeout", self.storage_timeout)?;
        self.exclusions = prefixes("storageExclusionPrefixes")?;
        self.hot_paths = prefixes("storageHotPathPrefixes")?;
        Ok(())
    }

    /// Idle records an owner shard keeps in memory: only in front of the embedded store,
    /// which nothing else writes (a record changed in Redis or PostgreSQL by another program
    /// must be read from there, as the reference reads it, unless the writer calls notify).
    pub fn idle_records_kept(&self) -> usize {
        match self.storage {
            StorageChoice::Embedded(_) => IDLE_RECORDS_KEPT,
            _ => 0,
        }
    }

    /// A short description for the start-up line.
    pub fn describe(&self) -> String {
        let cache = match &self.cache {
            CacheChoice::Memory => "memory".to_string(),
            CacheChoice::Redis(o) => match &o.url {
                Some(_) => "redis (url)".to_string(),
                None => format!("redis {}:{} db {}", o.host, o.port, o.db),
            },
            CacheChoice::Plugin(p) => p.description(),
        };
        let storage = match &self.storage {
            StorageChoice::None => "none".to_string(),
            StorageChoice::Embedded(p) => format!("embedded at {}", p.display()),
            StorageChoice::Postgres(o) => {
                format!("postgres {}:{} schema {}", o.host, o.port, o.schema)
            }
            StorageChoice::Plugin(p) => p.description(),
        };
        format!("cache {cache}, storage {storage}")
    }
}

/// `name` (or, as deepstream 7 also reads it, `type`) and `options` of a plugin section.
fn plugin<'v>(
    value: Option<&'v Value>,
    place: &str,
) -> Result<Option<(String, Option<&'v Value>)>, String> {
    let Some(value) = value else {
        return Ok(None);
    };
    match value {
        Value::Null => Ok(None),
        Value::Mapping(_) => {
            if value.get("path").is_some() {
                return Err(format!(
                    "{place}.path: custom {place} plugins (JavaScript) are not supported"
                ));
            }
            let name = value
                .get("name")
                .or_else(|| value.get("type"))
                .and_then(Value::as_str)
                .unwrap_or("default");
            Ok(Some((name.to_string(), value.get("options"))))
        }
        _ => Err(format!("{place} must be a mapping")),
    }
}

/// What every shard shares: the connector thread and the clients on it.
pub struct Connectors {
    config: StoreConfig,
    // Dropped last: the clients' tasks run on it.
    bridge: Option<Bridge>,
    cache: Option<Arc<dyn Connector>>,
    storage: Option<Arc<dyn Connector>>,
    /// Per shard: names of records changed outside the server (PostgreSQL's `followChanges`).
    changes: Vec<async_channel::Receiver<Vec<bytes::Bytes>>>,
}

/// Batches of changed names a shard may have waiting before more are dropped (with a warning:
/// a subscriber then hears of that change at the next write or notify).
const MAX_QUEUED_CHANGES: usize = 1024;

impl Connectors {
    /// Starts what `config` needs; `shards` is checked against an embedded store's layout.
    pub fn start(config: &StoreConfig, shards: usize) -> Result<Connectors, String> {
        let cache: Option<Arc<dyn Connector>> = match &config.cache {
            CacheChoice::Memory => None,
            CacheChoice::Redis(options) => Some(Arc::new(RedisCache::new(
                options.clone(),
                config.cache_timeout,
            )?)),
            CacheChoice::Plugin(plugin) => {
                Some(Arc::new(plugin.with_timeout(config.cache_timeout)))
            }
        };
        let mut postgres = None;
        let storage: Option<Arc<dyn Connector>> = match &config.storage {
            StorageChoice::Postgres(options) => {
                let storage = PostgresStorage::new(options.clone(), config.storage_timeout)?;
                postgres = Some(storage.clone());
                Some(storage)
            }
            StorageChoice::Embedded(dir) => {
                check_layout(dir, shards)?;
                None
            }
            StorageChoice::Plugin(plugin) => {
                Some(Arc::new(plugin.with_timeout(config.storage_timeout)))
            }
            StorageChoice::None => None,
        };
        let bridge = if cache.is_some() || storage.is_some() {
            Some(Bridge::start().map_err(|e| format!("cannot start the connector thread: {e}"))?)
        } else {
            None
        };
        let mut changes = Vec::new();
        if let (Some(bridge), Some(postgres)) = (&bridge, postgres) {
            if postgres.options().follow_changes {
                let (senders, receivers): (Vec<_>, Vec<_>) = (0..shards)
                    .map(|_| async_channel::bounded(MAX_QUEUED_CHANGES))
                    .unzip();
                changes = receivers;
                let sink: super::postgres::ChangeSink = Arc::new(move |names| {
                    let mut by_shard: Vec<Vec<bytes::Bytes>> = vec![Vec::new(); shards];
                    for name in names {
                        let owner = crate::core::ids::owner_of(&name, shards);
                        if let Some(list) = by_shard.get_mut(owner) {
                            list.push(name);
                        }
                    }
                    for (shard, names) in by_shard.into_iter().enumerate() {
                        let Some(sender) = senders.get(shard) else {
                            continue;
                        };
                        if !names.is_empty() && sender.try_send(names).is_err() {
                            crate::log!(
                                crate::log::Level::Warn,
                                "STORAGE_NOTIFICATIONS",
                                "shard {shard} is behind on followed changes; one was dropped"
                            );
                        }
                    }
                });
                bridge.spawn_service(postgres.follow_changes(sink));
            }
        }
        Ok(Connectors {
            config: config.clone(),
            bridge,
            cache,
            storage,
            changes,
        })
    }

    /// Names of records changed outside the server, for shard `shard` (when followed).
    pub fn changes(&self, shard: usize) -> Option<async_channel::Receiver<Vec<bytes::Bytes>>> {
        self.changes.get(shard).cloned()
    }

    /// The store shard `shard` uses.
    pub fn open(&self, shard: usize) -> Result<Rc<dyn RecordStore>, String> {
        let remote = |c: &Arc<dyn Connector>| -> Result<Rc<dyn RecordStore>, String> {
            let bridge = self
                .bridge
                .as_ref()
                .ok_or("the connector thread is not running")?;
            Ok(Rc::new(OnBridge::new(c.clone(), bridge.handle())))
        };
        let storage: Option<Rc<dyn RecordStore>> = match (&self.config.storage, &self.storage) {
            (StorageChoice::Embedded(dir), _) => Some(Rc::new(EmbeddedStore::open(dir, shard)?)),
            (_, Some(connector)) => Some(remote(connector)?),
            _ => None,
        };
        let (cache, holds): (Rc<dyn RecordStore>, CacheHolds) = match &self.cache {
            Some(connector) => (remote(connector)?, CacheHolds::Everything),
            None => (Rc::new(MemoryStore::default()), CacheHolds::ExcludedOnly),
        };
        Ok(match storage {
            // The default cache would keep nothing: storage alone.
            Some(storage) if self.cache.is_none() && self.config.exclusions.is_empty() => storage,
            Some(storage) => Rc::new(Layered::new(
                cache,
                holds,
                storage,
                self.config.exclusions.clone(),
            )),
            // No storage: the cache alone (the default: a map per shard).
            None => cache,
        })
    }
}
