//! deepstream's layering: a write goes to the cache and (unless its name has a
//! `storageExclusionPrefixes` prefix) to storage, at once, and is done when both have it; a
//! read asks the cache first, then storage, and a record found only in storage is put into the
//! cache before the read is answered (so a later write cannot be overtaken by it).

use super::{has_prefix, BatchFuture, RecordStore, StoreJob, StoreResult};
use bytes::Bytes;
use std::rc::Rc;

/// What the cache layer keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheHolds {
    /// A real cache (Redis): every record.
    Everything,
    /// deepstream's default in-process cache, in a server whose owner shards already keep the
    /// records in use: only what storage does not keep (the excluded names), so a record in
    /// storage and not in use costs no memory.
    ExcludedOnly,
}

pub struct Layered {
    cache: Rc<dyn RecordStore>,
    holds: CacheHolds,
    storage: Rc<dyn RecordStore>,
    exclusions: Vec<String>,
}

impl Layered {
    pub fn new(
        cache: Rc<dyn RecordStore>,
        holds: CacheHolds,
        storage: Rc<dyn RecordStore>,
        exclusions: Vec<String>,
    ) -> Layered {
        Layered {
            cache,
            holds,
            storage,
            exclusions,
        }
    }

    fn in_storage(&self, name: &[u8]) -> bool {
        !has_prefix(&self.exclusions, name)
    }

    fn in_cache(&self, name: &[u8]) -> bool {
        self.holds == CacheHolds::Everything || !self.in_storage(name)
    }
}

/// Jobs for one layer and where their answers go in the batch.
#[derive(Default)]
struct Part {
    at: Vec<usize>,
    jobs: Vec<StoreJob>,
}

impl Part {
    fn push(&mut self, at: usize, job: StoreJob) {
        self.at.push(at);
        self.jobs.push(job);
    }
}

impl RecordStore for Layered {
    super::v2_through_batch!();

    fn run_batch<'a>(&'a self, jobs: Vec<StoreJob>) -> BatchFuture<'a> {
        Box::pin(async move {
            let total = jobs.len();
            let mut out: Vec<Option<StoreResult>> = vec![None; total];
            let (mut cache_writes, mut storage_writes) = (Part::default(), Part::default());
            let (mut cache_reads, mut storage_reads) = (Part::default(), Part::default());
            // The cache's copies of what is read again past it.
            let mut invalidate = Vec::new();
            for (at, job) in jobs.into_iter().enumerate() {
                let (in_cache, in_storage) =
                    (self.in_cache(job.name()), self.in_storage(job.name()));
                match job {
                    StoreJob::Write { .. } => {
                        if in_cache {
                            cache_writes.push(at, job.clone());
                        }
                        if in_storage {
                            storage_writes.push(at, job);
                        }
                    }
                    StoreJob::Refresh { name } if in_storage => {
                        if in_cache {
                            invalidate.push(StoreJob::Write {
                                name: name.clone(),
                                record: None,
                            });
                        }
                        storage_reads.push(at, StoreJob::Load { name });
                    }
                    StoreJob::Refresh { name } => cache_reads.push(at, StoreJob::Load { name }),
                    _ if in_cache => cache_reads.push(at, job),
                    _ => storage_reads.push(at, job),
                }
            }
            let writes = async {
                let (cached, stored) = futures_lite::future::zip(
                    self.cache.run_batch(cache_writes.jobs),
                    self.storage.run_batch(storage_writes.jobs),
                )
                .await;
                // A write is done when every layer it went to has it; the first error wins.
                let mut done: Vec<Option<StoreResult>> = vec![None; total];
                let answers = cache_writes.at.into_iter().zip(cached);
                for (at, result) in answers.chain(storage_writes.at.into_iter().zip(stored)) {
                    if let Some(slot) = done.get_mut(at) {
                        if slot.as_ref().is_none_or(|earlier| !earlier.is_err()) {
                            *slot = Some(result);
                        }
                    }
                }
                done.into_iter()
                    .enumerate()
                    .filter_map(|(at, r)| Some((at, r?)))
                    .collect::<Vec<_>>()
            };
            let reads = async {
                let mut done: Vec<(usize, StoreResult)> = Vec::new();
                // A cache that keeps its stale copy is corrected by the promotion below.
                let _ = self.cache.run_batch(invalidate).await;
                let cached = self.cache.run_batch(cache_reads.jobs).await;
                for (at, result) in cache_reads.at.into_iter().zip(cached) {
                    let missing = matches!(
                        &result,
                        StoreResult::Loaded {
                            result: Ok(None),
                            ..
                        } | StoreResult::Headed { result: Ok(-1), .. }
                    );
                    match result {
                        StoreResult::Loaded { name, .. } if missing && self.in_storage(&name) => {
                            storage_reads.push(at, StoreJob::Load { name })
                        }
                        StoreResult::Headed { name, .. } if missing && self.in_storage(&name) => {
                            storage_reads.push(at, StoreJob::Head { name })
                        }
                        found => done.push((at, found)),
                    }
                }
                let stored = self.storage.run_batch(storage_reads.jobs).await;
                let mut promote = Vec::new();
                for (at, result) in storage_reads.at.into_iter().zip(stored) {
                    if let StoreResult::Loaded {
                        name,
                        result: Ok(Some(record)),
                    } = &result
                    {
                        if self.holds == CacheHolds::Everything {
                            promote.push(StoreJob::Write {
                                name: name.clone(),
                                record: Some(record.clone()),
                            });
                        }
                    }
                    done.push((at, result));
                }
                // The reader has its record either way; a cache that did not take it is only
                // slower next time.
                let _ = self.cache.run_batch(promote).await;
                done
            };
            let (written, read) = futures_lite::future::zip(writes, reads).await;
            for (at, result) in written.into_iter().chain(read) {
                if let Some(slot) = out.get_mut(at) {
                    *slot = Some(result);
                }
            }
            out.into_iter()
                .map(|r| r.unwrap_or_else(unreachable_answer))
                .collect()
        })
    }

    fn concurrency(&self) -> usize {
        self.cache.concurrency().max(self.storage.concurrency())
    }
}

/// Every job lands in a part and every part answers each of its jobs; should that ever break,
/// the job still gets an error rather than a panic.
fn unreachable_answer() -> StoreResult {
    StoreResult::Written {
        name: Bytes::new(),
        result: Err(super::StorageError::Other(
            "the layered store lost a job".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemoryStore, StorageError};
    use crate::store::{StoreFuture, StoredRecord};
    use futures_lite::future::block_on;
    use std::cell::Cell;

    fn rec(version: i32, data: &'static str) -> StoredRecord {
        StoredRecord {
            version,
            data: Bytes::from_static(data.as_bytes()),
        }
    }

    fn layered(holds: CacheHolds) -> (Rc<MemoryStore>, Rc<MemoryStore>, Layered) {
        let (cache, storage) = (
            Rc::new(MemoryStore::default()),
            Rc::new(MemoryStore::default()),
        );
        let store = Layered::new(cache.clone(), holds, storage.clone(), vec!["tmp/".into()]);
        (cache, storage, store)
    }

    #[test]
    fn writes_reach_both_layers_except_excluded_names_which_stay_in_the_cache() {
        let (cache, storage, store) = layered(CacheHolds::Everything);
        block_on(store.set(b"a", 1, Bytes::from_static(b"{}"))).unwrap();
        block_on(store.set(b"tmp/x", 2, Bytes::from_static(b"{}"))).unwrap();
        assert_eq!(block_on(cache.get(b"a")).unwrap(), Some(rec(1, "{}")));
        assert_eq!(block_on(storage.get(b"a")).unwrap(), Some(rec(1, "{}")));
        assert_eq!(block_on(cache.get(b"tmp/x")).unwrap(), Some(rec(2, "{}")));
        assert_eq!(block_on(storage.get(b"tmp/x")).unwrap(), None);
        block_on(store.delete(b"a")).unwrap();
        assert_eq!(block_on(storage.get(b"a")).unwrap(), None);
        assert_eq!(block_on(cache.get(b"a")).unwrap(), None);
    }

    #[test]
    fn a_read_found_only_in_storage_is_promoted_to_the_cache() {
        let (cache, storage, store) = layered(CacheHolds::Everything);
        block_on(storage.set(b"b", 7, Bytes::from_static(b"[1]"))).unwrap();
        assert_eq!(block_on(store.get(b"b")).unwrap(), Some(rec(7, "[1]")));
        assert_eq!(block_on(cache.get(b"b")).unwrap(), Some(rec(7, "[1]")));
        assert_eq!(block_on(store.head(b"b")).unwrap(), 7);
        assert_eq!(block_on(store.head(b"none")).unwrap(), -1);
        // Excluded names are never looked for in storage.
        block_on(storage.set(b"tmp/y", 3, Bytes::from_static(b"{}"))).unwrap();
        assert_eq!(block_on(store.get(b"tmp/y")).unwrap(), None);
    }

    #[test]
    fn the_default_cache_keeps_only_what_storage_does_not() {
        let (cache, storage, store) = layered(CacheHolds::ExcludedOnly);
        block_on(store.set(b"a", 1, Bytes::from_static(b"{}"))).unwrap();
        block_on(store.set(b"tmp/x", 1, Bytes::from_static(b"{}"))).unwrap();
        assert_eq!(
            block_on(cache.get(b"a")).unwrap(),
            None,
            "no copy in memory"
        );
        assert_eq!(block_on(storage.get(b"a")).unwrap(), Some(rec(1, "{}")));
        assert_eq!(block_on(store.get(b"a")).unwrap(), Some(rec(1, "{}")));
        assert_eq!(block_on(cache.get(b"a")).unwrap(), None, "not promoted");
        assert_eq!(block_on(store.get(b"tmp/x")).unwrap(), Some(rec(1, "{}")));
    }

    /// A store that fails every operation and counts them.
    #[derive(Default)]
    struct Down(Cell<usize>);

    impl RecordStore for Down {
        fn get<'a>(&'a self, _: &'a [u8]) -> StoreFuture<'a, Option<StoredRecord>> {
            self.0.set(self.0.get() + 1);
            Box::pin(std::future::ready(Err(StorageError::Unavailable(
                "down".into(),
            ))))
        }
        fn set<'a>(&'a self, _: &'a [u8], _: i32, _: Bytes) -> StoreFuture<'a, ()> {
            self.0.set(self.0.get() + 1);
            Box::pin(std::future::ready(Err(StorageError::Unavailable(
                "down".into(),
            ))))
        }
        fn delete<'a>(&'a self, _: &'a [u8]) -> StoreFuture<'a, ()> {
            self.0.set(self.0.get() + 1);
            Box::pin(std::future::ready(Err(StorageError::Unavailable(
                "down".into(),
            ))))
        }
    }

    #[test]
    fn a_failing_layer_fails_the_write_and_a_failing_cache_fails_the_read() {
        let storage_down = Layered::new(
            Rc::new(MemoryStore::default()),
            CacheHolds::Everything,
            Rc::new(Down::default()),
            vec![],
        );
        assert!(block_on(storage_down.set(b"a", 1, Bytes::from_static(b"{}"))).is_err());
        let cache_down = Rc::new(Down::default());
        let store = Layered::new(
            cache_down.clone(),
            CacheHolds::Everything,
            Rc::new(MemoryStore::default()),
            vec![],
        );
        assert!(block_on(store.set(b"a", 1, Bytes::from_static(b"{}"))).is_err());
        // As in the reference: a cache error is the read's error; storage is not asked.
        assert!(block_on(store.get(b"a")).is_err());
        let jobs = vec![
            StoreJob::Load {
                name: Bytes::from_static(b"x"),
            },
            StoreJob::Write {
                name: Bytes::from_static(b"y"),
                record: None,
            },
        ];
        let results = block_on(store.run_batch(jobs));
        assert!(matches!(&results[0], StoreResult::Loaded { name, result: Err(_) } if name == "x"));
        assert!(
            matches!(&results[1], StoreResult::Written { name, result: Err(_) } if name == "y")
        );
    }
}
