//! The default store: a map per shard; a record costs its name and its bytes. It is also
//! deepstream's default cache in front of storage, for the names storage does not keep.

use super::{RecordStore, StoreFuture, StoredRecord};
use ahash::AHashMap;
use bytes::Bytes;

#[derive(Default)]
pub struct MemoryStore {
    records: std::cell::RefCell<AHashMap<Bytes, StoredRecord>>,
}

impl RecordStore for MemoryStore {
    fn get<'a>(&'a self, name: &'a [u8]) -> StoreFuture<'a, Option<StoredRecord>> {
        let found = self.records.borrow().get(name).cloned();
        Box::pin(std::future::ready(Ok(found)))
    }

    fn set<'a>(&'a self, name: &'a [u8], version: i32, data: Bytes) -> StoreFuture<'a, ()> {
        // Both may be slices of a read buffer: keep only their own bytes.
        let record = StoredRecord {
            version,
            data: crate::core::detach(&data),
        };
        self.records
            .borrow_mut()
            .insert(crate::core::detach(name), record);
        Box::pin(std::future::ready(Ok(())))
    }

    fn delete<'a>(&'a self, name: &'a [u8]) -> StoreFuture<'a, ()> {
        self.records.borrow_mut().remove(name);
        Box::pin(std::future::ready(Ok(())))
    }

    fn head<'a>(&'a self, name: &'a [u8]) -> StoreFuture<'a, i32> {
        let version = self.records.borrow().get(name).map_or(-1, |r| r.version);
        Box::pin(std::future::ready(Ok(version)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::block_on;

    #[test]
    fn the_v2_api_round_trips_and_head_and_bulk_follow_it() {
        let store = MemoryStore::default();
        block_on(store.set(b"a", 3, Bytes::from_static(b"{\"x\":1}"))).unwrap();
        assert_eq!(
            block_on(store.get(b"a")).unwrap(),
            Some(StoredRecord {
                version: 3,
                data: Bytes::from_static(b"{\"x\":1}")
            })
        );
        assert_eq!(block_on(store.head(b"a")).unwrap(), 3);
        assert_eq!(block_on(store.head(b"b")).unwrap(), -1);
        let jobs = ["a", "b"].map(|n| crate::store::StoreJob::Load {
            name: Bytes::from_static(n.as_bytes()),
        });
        let bulk = block_on(store.run_batch(jobs.to_vec()));
        assert!(matches!(
            &bulk[0],
            crate::store::StoreResult::Loaded {
                result: Ok(Some(_)),
                ..
            }
        ));
        assert!(matches!(
            &bulk[1],
            crate::store::StoreResult::Loaded {
                result: Ok(None),
                ..
            }
        ));
        block_on(store.delete(b"a")).unwrap();
        assert_eq!(block_on(store.get(b"a")).unwrap(), None);
        assert_eq!(store.concurrency(), 1);
    }
}
