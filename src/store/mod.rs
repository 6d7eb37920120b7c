//! The store seam: deepstream's storage V2 API (`set(name, version, data)`, `get` → version and
//! data, `delete`), the cache's additions (`head`: the version alone, `get_bulk`), typed errors,
//! and the embedded default, a map per shard. Connectors (an embedded durable store, Redis,
//! PostgreSQL) implement these traits; the owner shard's `RecordCache` sits in front of them.

mod memory;

pub use memory::MemoryStore;

use bytes::Bytes;
use std::future::Future;
use std::pin::Pin;

pub use crate::core::records::StoredRecord;

/// Why a store operation failed; the writer hears of it as the reference's error action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageError {
    /// The store cannot be reached.
    Unavailable(String),
    /// No answer in time.
    Timeout,
    /// What it holds for the name cannot be read as a record.
    Corrupt(String),
    Other(String),
}

impl std::fmt::Display for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageError::Unavailable(m) => write!(f, "store unavailable: {m}"),
            StorageError::Timeout => f.write_str("store timed out"),
            StorageError::Corrupt(m) => write!(f, "stored record unreadable: {m}"),
            StorageError::Other(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for StorageError {}

pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StorageError>> + 'a>>;

/// deepstream's storage V2 API, asynchronous.
pub trait RecordStore {
    fn get<'a>(&'a self, name: &'a [u8]) -> StoreFuture<'a, Option<StoredRecord>>;
    fn set<'a>(&'a self, name: &'a [u8], version: i32, data: Bytes) -> StoreFuture<'a, ()>;
    fn delete<'a>(&'a self, name: &'a [u8]) -> StoreFuture<'a, ()>;

    /// The version alone (`-1` for none): a cache answers it without the data.
    fn head<'a>(&'a self, name: &'a [u8]) -> StoreFuture<'a, i32> {
        Box::pin(async move { Ok(self.get(name).await?.map_or(-1, |r| r.version)) })
    }

    /// Several records at once: a remote cache answers them in one round trip.
    fn get_bulk<'a>(&'a self, names: &'a [Bytes]) -> StoreFuture<'a, Vec<Option<StoredRecord>>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(names.len());
            for name in names {
                out.push(self.get(name).await?);
            }
            Ok(out)
        })
    }

    /// How many operations a shard may have in flight against this store. In-memory stores
    /// answer at once (1); a remote one is worth many round trips at a time.
    fn concurrency(&self) -> usize {
        1
    }
}
