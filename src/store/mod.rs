//! The store seam: deepstream's storage V2 API (`set(name, version, data)`, `get` → version and
//! data, `delete`), the cache's `head` (the version alone), batches of jobs (one round trip or
//! one commit for many records), typed errors, and the stores themselves: `MemoryStore` (the
//! default), `EmbeddedStore` (durable, on disk), the Redis cache and PostgreSQL storage
//! connectors (on the connector bridge), and `Layered`, which puts a cache in front of storage
//! as deepstream does. `Connectors` builds what the config asks for. The owner shard's `RecordCache`
//! sits in front of all of them.

mod embedded;
mod layered;
mod memory;
mod open;
mod options;
pub mod plugin;
pub mod postgres;
pub mod redis;
mod remote;

pub use embedded::{check_layout as check_embedded_layout, EmbeddedStore};
pub use layered::Layered;
pub use memory::MemoryStore;
pub use open::{CacheChoice, Connectors, StorageChoice, StoreConfig, DEFAULT_EMBEDDED_PATH};
pub use remote::{Connector, OnBridge};

use bytes::Bytes;
use std::future::Future;
use std::pin::Pin;

pub use crate::core::records::StoredRecord;

/// Which layer a failure came from: a reader hears of a timeout as the reference's
/// CACHE_RETRIEVAL_TIMEOUT or STORAGE_RETRIEVAL_TIMEOUT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    Cache,
    Storage,
}

/// Why a store operation failed; the writer hears of it as the reference's error action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageError {
    /// The store cannot be reached.
    Unavailable(String),
    /// No answer within the layer's retrieval timeout.
    Timeout(Layer),
    /// What it holds for the name cannot be read as a record.
    Corrupt(String),
    Other(String),
}

impl std::fmt::Display for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageError::Unavailable(m) => write!(f, "store unavailable: {m}"),
            StorageError::Timeout(Layer::Cache) => f.write_str("cache timed out"),
            StorageError::Timeout(Layer::Storage) => f.write_str("storage timed out"),
            StorageError::Corrupt(m) => write!(f, "stored record unreadable: {m}"),
            StorageError::Other(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for StorageError {}

/// One operation for a store.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreJob {
    Load {
        name: Bytes,
    },
    /// Read again what changed outside the server: past the cache, straight from storage
    /// (the cache's copy is dropped). Answered as `Loaded`.
    Refresh {
        name: Bytes,
    },
    /// The version alone: a cache answers it without reading the data.
    Head {
        name: Bytes,
    },
    /// `None` deletes.
    Write {
        name: Bytes,
        record: Option<StoredRecord>,
    },
}

impl StoreJob {
    pub fn name(&self) -> &Bytes {
        match self {
            StoreJob::Load { name }
            | StoreJob::Refresh { name }
            | StoreJob::Head { name }
            | StoreJob::Write { name, .. } => name,
        }
    }
}

/// A store's answer to a `StoreJob`.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreResult {
    Loaded {
        name: Bytes,
        result: Result<Option<StoredRecord>, StorageError>,
    },
    /// `-1`: no such record.
    Headed {
        name: Bytes,
        result: Result<i32, StorageError>,
    },
    Written {
        name: Bytes,
        result: Result<(), StorageError>,
    },
}

impl StoreResult {
    /// The answer `job` gets when the store could not run it.
    pub fn failed(job: StoreJob, error: StorageError) -> StoreResult {
        match job {
            StoreJob::Load { name } | StoreJob::Refresh { name } => StoreResult::Loaded {
                name,
                result: Err(error),
            },
            StoreJob::Head { name } => StoreResult::Headed {
                name,
                result: Err(error),
            },
            StoreJob::Write { name, .. } => StoreResult::Written {
                name,
                result: Err(error),
            },
        }
    }

    pub fn is_err(&self) -> bool {
        match self {
            StoreResult::Loaded { result, .. } => result.is_err(),
            StoreResult::Headed { result, .. } => result.is_err(),
            StoreResult::Written { result, .. } => result.is_err(),
        }
    }
}

pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StorageError>> + 'a>>;
/// One answer per job, in the jobs' order.
pub type BatchFuture<'a> = Pin<Box<dyn Future<Output = Vec<StoreResult>> + 'a>>;

/// deepstream's storage V2 API, asynchronous, with batches.
pub trait RecordStore {
    fn get<'a>(&'a self, name: &'a [u8]) -> StoreFuture<'a, Option<StoredRecord>>;
    fn set<'a>(&'a self, name: &'a [u8], version: i32, data: Bytes) -> StoreFuture<'a, ()>;
    fn delete<'a>(&'a self, name: &'a [u8]) -> StoreFuture<'a, ()>;

    /// The version alone (`-1` for none): a cache answers it without the data.
    fn head<'a>(&'a self, name: &'a [u8]) -> StoreFuture<'a, i32> {
        Box::pin(async move { Ok(self.get(name).await?.map_or(-1, |r| r.version)) })
    }

    /// Runs several jobs for different records; a remote store answers them in one round
    /// trip, a durable one in one commit. The default runs them one after the other.
    fn run_batch<'a>(&'a self, jobs: Vec<StoreJob>) -> BatchFuture<'a> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(jobs.len());
            for job in jobs {
                out.push(run_one(self, job).await);
            }
            out
        })
    }

    /// How many batches a shard may have in flight against this store. In-memory stores
    /// answer at once (1); a remote one is worth several round trips at a time.
    fn concurrency(&self) -> usize {
        1
    }
}

/// One job through the V2 API.
pub async fn run_one<S: RecordStore + ?Sized>(store: &S, job: StoreJob) -> StoreResult {
    match job {
        StoreJob::Load { name } | StoreJob::Refresh { name } => {
            let result = store.get(&name).await;
            StoreResult::Loaded { name, result }
        }
        StoreJob::Head { name } => {
            let result = store.head(&name).await;
            StoreResult::Headed { name, result }
        }
        StoreJob::Write { name, record } => {
            let result = match record {
                Some(record) => store.set(&name, record.version, record.data).await,
                None => store.delete(&name).await,
            };
            StoreResult::Written { name, result }
        }
    }
}

/// The V2 API answered through `run_batch` with a batch of one, for stores whose natural
/// unit is the batch.
pub(crate) mod through_batch {
    use super::*;

    pub fn get<'a, S: RecordStore + ?Sized>(
        store: &'a S,
        name: &'a [u8],
    ) -> StoreFuture<'a, Option<StoredRecord>> {
        let job = StoreJob::Load {
            name: Bytes::copy_from_slice(name),
        };
        Box::pin(async move {
            match store.run_batch(vec![job]).await.pop() {
                Some(StoreResult::Loaded { result, .. }) => result,
                _ => Err(StorageError::Other("the store gave no answer".into())),
            }
        })
    }

    pub fn head<'a, S: RecordStore + ?Sized>(store: &'a S, name: &'a [u8]) -> StoreFuture<'a, i32> {
        let job = StoreJob::Head {
            name: Bytes::copy_from_slice(name),
        };
        Box::pin(async move {
            match store.run_batch(vec![job]).await.pop() {
                Some(StoreResult::Headed { result, .. }) => result,
                _ => Err(StorageError::Other("the store gave no answer".into())),
            }
        })
    }

    pub fn write<'a, S: RecordStore + ?Sized>(
        store: &'a S,
        name: &'a [u8],
        record: Option<StoredRecord>,
    ) -> StoreFuture<'a, ()> {
        let job = StoreJob::Write {
            name: Bytes::copy_from_slice(name),
            record,
        };
        Box::pin(async move {
            match store.run_batch(vec![job]).await.pop() {
                Some(StoreResult::Written { result, .. }) => result,
                _ => Err(StorageError::Other("the store gave no answer".into())),
            }
        })
    }
}

/// The V2 API of a store whose natural unit is the batch (each call a batch of one), written
/// inside its `impl RecordStore`.
macro_rules! v2_through_batch {
    () => {
        fn get<'a>(
            &'a self,
            name: &'a [u8],
        ) -> $crate::store::StoreFuture<'a, Option<$crate::store::StoredRecord>> {
            $crate::store::through_batch::get(self, name)
        }

        fn set<'a>(
            &'a self,
            name: &'a [u8],
            version: i32,
            data: bytes::Bytes,
        ) -> $crate::store::StoreFuture<'a, ()> {
            let record = $crate::store::StoredRecord { version, data };
            $crate::store::through_batch::write(self, name, Some(record))
        }

        fn delete<'a>(&'a self, name: &'a [u8]) -> $crate::store::StoreFuture<'a, ()> {
            $crate::store::through_batch::write(self, name, None)
        }

        fn head<'a>(&'a self, name: &'a [u8]) -> $crate::store::StoreFuture<'a, i32> {
            $crate::store::through_batch::head(self, name)
        }
    };
}
pub(crate) use v2_through_batch;

/// deepstream's `storageExclusionPrefixes` (and the like): does `name` start with one of them?
pub fn has_prefix(prefixes: &[String], name: &[u8]) -> bool {
    prefixes.iter().any(|p| name.starts_with(p.as_bytes()))
}
