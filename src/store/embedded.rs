//! The durable embedded store: one fjall keyspace per shard (so shards never contend), read on
//! the shard itself (a lookup in memory-resident blocks takes microseconds) and written by a
//! committer thread of the shard's own, which takes every batch queued while the last fsync
//! ran and commits them together: one fsync for many writes, and each write's answer only once
//! its commit is on disk. fjall was measured against redb before it was picked
//! (perf/RESULTS.md: group commits of 512 writes, 2.1x the writes per second, a quarter of the
//! p99 commit time).

use super::{through_batch, BatchFuture, RecordStore, StorageError, StoreFuture, StoreJob};
use super::{StoreResult, StoredRecord};
use bytes::Bytes;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

/// The first byte of every stored value: how the rest is laid out.
const FORMAT: u8 = 1;
/// Batches queued for the committer before writers get a busy error (a shard keeps at most
/// `concurrency()` in flight, so this is never reached in practice).
const MAX_QUEUED_BATCHES: usize = 64;
/// Batches a shard keeps in flight: while one commits, the next ones gather writes.
const CONCURRENCY: usize = 4;

type Writes = Vec<(Bytes, Option<StoredRecord>)>;
type Committed = async_channel::Sender<Result<(), String>>;

pub struct EmbeddedStore {
    keyspace: fjall::Keyspace,
    records: fjall::PartitionHandle,
    commits: mpsc::SyncSender<(Writes, Committed)>,
}

/// The file that records how the data directory is partitioned: records are found by the
/// shard that owns their name, so a directory written by N shards must be opened by N.
const LAYOUT_FILE: &str = "corestream-layout";

/// Checks (or, in a new directory, writes) the layout; call once before the shards open.
pub fn check_layout(dir: &Path, shards: usize) -> Result<(), String> {
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("storage: cannot create {}: {e}", dir.display()))?;
    let path = dir.join(LAYOUT_FILE);
    let want = format!("format={FORMAT}\nshards={shards}\n");
    match std::fs::read_to_string(&path) {
        Ok(found) if found == want => Ok(()),
        Ok(found) => Err(format!(
            "storage: {} holds data written by a server with a different layout ({}); start \
             with the same --shards, or use a new directory",
            dir.display(),
            found.trim().replace('\n', ", ")
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
                return Err(format!(
                    "storage: {} is not empty and holds no corestream data",
                    dir.display()
                ));
            }
            std::fs::write(&path, want)
                .map_err(|e| format!("storage: cannot write {}: {e}", path.display()))
        }
        Err(e) => Err(format!("storage: cannot read {}: {e}", path.display())),
    }
}

impl EmbeddedStore {
    /// Opens shard `shard`'s keyspace under `dir` and starts its committer thread.
    pub fn open(dir: &Path, shard: usize) -> Result<EmbeddedStore, String> {
        let path: PathBuf = dir.join(format!("shard-{shard}"));
        let keyspace = fjall::Config::new(&path)
            .flush_workers(1)
            .compaction_workers(1)
            .open()
            .map_err(|e| format!("storage: cannot open {}: {e}", path.display()))?;
        let records = keyspace
            .open_partition("records", fjall::PartitionCreateOptions::default())
            .map_err(|e| format!("storage: cannot open {}: {e}", path.display()))?;
        let (commits, queue) = mpsc::sync_channel(MAX_QUEUED_BATCHES);
        let (ks, part) = (keyspace.clone(), records.clone());
        std::thread::Builder::new()
            .name(format!("corestream-commit-{shard}"))
            .spawn(move || commit_loop(&ks, &part, &queue))
            .map_err(|e| format!("storage: cannot start the committer thread: {e}"))?;
        Ok(EmbeddedStore {
            keyspace,
            records,
            commits,
        })
    }

    fn read(&self, name: &[u8]) -> Result<Option<StoredRecord>, StorageError> {
        let value = self
            .records
            .get(name)
            .map_err(|e| StorageError::Unavailable(e.to_string()))?;
        value.map(|v| decode(&v)).transpose()
    }

    async fn write(&self, writes: Writes) -> Result<(), StorageError> {
        if writes.is_empty() {
            return Ok(());
        }
        let (done, committed) = async_channel::bounded(1);
        self.commits.try_send((writes, done)).map_err(|e| match e {
            mpsc::TrySendError::Full(_) => {
                StorageError::Unavailable("too many commits queued".into())
            }
            mpsc::TrySendError::Disconnected(_) => {
                StorageError::Unavailable("the committer thread stopped".into())
            }
        })?;
        match committed.recv().await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StorageError::Unavailable(e)),
            Err(_) => Err(StorageError::Unavailable(
                "the committer thread stopped".into(),
            )),
        }
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        // The committer ends when the channel closes; what it committed is on disk already.
        let _ = self.keyspace.persist(fjall::PersistMode::SyncAll);
    }
}

/// Commits every batch queued since the last commit in one go, then fsyncs once.
fn commit_loop(
    keyspace: &fjall::Keyspace,
    records: &fjall::PartitionHandle,
    queue: &mpsc::Receiver<(Writes, Committed)>,
) {
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        while let Ok(more) = queue.try_recv() {
            group.push(more);
        }
        let mut batch = keyspace.batch();
        for (writes, _) in &group {
            for (name, record) in writes {
                match record {
                    Some(record) => batch.insert(records, name.as_ref(), encode(record)),
                    None => batch.remove(records, name.as_ref()),
                }
            }
        }
        let outcome = batch
            .commit()
            .and_then(|()| keyspace.persist(fjall::PersistMode::SyncData))
            .map_err(|e| format!("commit failed: {e}"));
        for (_, done) in group {
            let _ = done.send_blocking(outcome.clone());
        }
    }
}

fn encode(record: &StoredRecord) -> Vec<u8> {
    let mut value = Vec::with_capacity(5 + record.data.len());
    value.push(FORMAT);
    value.extend_from_slice(&record.version.to_le_bytes());
    value.extend_from_slice(&record.data);
    value
}

fn decode(value: &[u8]) -> Result<StoredRecord, StorageError> {
    match value {
        [FORMAT, a, b, c, d, data @ ..] => Ok(StoredRecord {
            version: i32::from_le_bytes([*a, *b, *c, *d]),
            data: Bytes::copy_from_slice(data),
        }),
        _ => Err(StorageError::Corrupt("unknown value format".into())),
    }
}

impl RecordStore for EmbeddedStore {
    fn get<'a>(&'a self, name: &'a [u8]) -> StoreFuture<'a, Option<StoredRecord>> {
        Box::pin(std::future::ready(self.read(name)))
    }

    fn set<'a>(&'a self, name: &'a [u8], version: i32, data: Bytes) -> StoreFuture<'a, ()> {
        through_batch::write(self, name, Some(StoredRecord { version, data }))
    }

    fn delete<'a>(&'a self, name: &'a [u8]) -> StoreFuture<'a, ()> {
        through_batch::write(self, name, None)
    }

    fn run_batch<'a>(&'a self, jobs: Vec<StoreJob>) -> BatchFuture<'a> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(jobs.len());
            let mut writes = Vec::new();
            let mut written = Vec::new();
            for (at, job) in jobs.into_iter().enumerate() {
                match job {
                    StoreJob::Load { name } | StoreJob::Refresh { name } => {
                        let result = self.read(&name);
                        out.push(StoreResult::Loaded { name, result });
                    }
                    StoreJob::Head { name } => {
                        let result = self.read(&name).map(|r| r.map_or(-1, |r| r.version));
                        out.push(StoreResult::Headed { name, result });
                    }
                    StoreJob::Write { name, record } => {
                        written.push(at);
                        writes.push((name.clone(), record));
                        // Answered below, once the commit is on disk.
                        out.push(StoreResult::Written {
                            name,
                            result: Ok(()),
                        });
                    }
                }
            }
            if let Err(error) = self.write(writes).await {
                for at in written {
                    if let Some(StoreResult::Written { result, .. }) = out.get_mut(at) {
                        *result = Err(error.clone());
                    }
                }
            }
            out
        })
    }

    fn concurrency(&self) -> usize {
        CONCURRENCY
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::block_on;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("corestream-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn records_survive_reopening_and_deletes_stay_deleted() {
        let dir = scratch("embedded-reopen");
        check_layout(&dir, 1).unwrap();
        {
            let store = EmbeddedStore::open(&dir, 0).unwrap();
            block_on(store.set(b"a", 3, Bytes::from_static(b"{\"x\":1}"))).unwrap();
            block_on(store.set(b"b", 1, Bytes::from_static(b"[]"))).unwrap();
            block_on(store.delete(b"b")).unwrap();
        }
        let store = EmbeddedStore::open(&dir, 0).unwrap();
        assert_eq!(
            block_on(store.get(b"a")).unwrap(),
            Some(StoredRecord {
                version: 3,
                data: Bytes::from_static(b"{\"x\":1}")
            })
        );
        assert_eq!(block_on(store.get(b"b")).unwrap(), None);
        assert_eq!(block_on(store.head(b"a")).unwrap(), 3);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_directory_written_with_other_shards_is_refused() {
        let dir = scratch("embedded-layout");
        check_layout(&dir, 2).unwrap();
        check_layout(&dir, 2).unwrap();
        let err = check_layout(&dir, 3).unwrap_err();
        assert!(err.contains("shards=2"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn unknown_bytes_are_reported_as_corrupt() {
        assert!(matches!(decode(b"\x09abc"), Err(StorageError::Corrupt(_))));
        assert!(matches!(decode(b""), Err(StorageError::Corrupt(_))));
    }
}
