//! The durable embedded store: one fjall keyspace per shard (so shards never contend), read on
//! the shard itself (a lookup in memory-resident blocks takes microseconds) and written by a
//! committer thread of the shard's own, which takes every batch queued while the last fsync
//! ran and commits them together: one fsync for many writes, and each write's answer only once
//! its commit is on disk. fjall was measured against redb before it was picked
//! (perf/RESULTS.md: group commits of 512 writes, 2.1x the writes per second, a quarter of the
//! p99 commit time).
//!
//! A full disk: a batch is refused (its writers get RECORD_UPDATE_ERROR) while the file system
//! has less room than twice the batch plus `DISK_RESERVE` (room for the keyspace's own
//! flushes), so the journal is never torn by a write the disk cannot take (fjall 2.11's
//! recovery of a torn journal cuts the end marker of the batch before it, which the next
//! recovery then drops: an acknowledged write lost). A commit that fails anyway makes fjall
//! refuse every later one; so the committer then opens the keyspace again before the next
//! (at most every `REOPEN_EVERY`) and flushes what it recovered into a segment at once. Writes
//! resume by themselves once there is room; the failure is logged once, counted, and reported
//! by the readiness answer (`crate::health`) until a commit succeeds again.

use super::{through_batch, BatchFuture, RecordStore, StorageError, StoreFuture, StoreJob};
use super::{StoreResult, StoredRecord};
use bytes::Bytes;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, RwLock};
use std::time::{Duration, Instant};

/// The first byte of every stored value: how the rest is laid out.
const FORMAT: u8 = 1;
/// Batches queued for the committer before writers get a busy error (a shard keeps at most
/// `concurrency()` in flight, so this is never reached in practice).
const MAX_QUEUED_BATCHES: usize = 64;
/// Batches a shard keeps in flight: while one commits, the next ones gather writes.
const CONCURRENCY: usize = 4;
/// After a failed commit, how often the keyspace is opened again at most.
const REOPEN_EVERY: Duration = Duration::from_millis(500);
/// Room kept free on the store's file system beside a batch: two memtables' flushes.
const DISK_RESERVE: u64 = 32 << 20;

type Writes = Vec<(Bytes, Option<StoredRecord>)>;
type Committed = async_channel::Sender<Result<(), String>>;

pub struct EmbeddedStore {
    /// `None` while the committer opens the keyspace again (reads then fail as unavailable).
    handles: Arc<RwLock<Option<Handles>>>,
    commits: mpsc::SyncSender<(Writes, Committed)>,
}

struct Handles {
    keyspace: fjall::Keyspace,
    records: fjall::PartitionHandle,
}

impl Handles {
    fn open(path: &Path) -> Result<Handles, String> {
        let keyspace = fjall::Config::new(path)
            .flush_workers(1)
            .compaction_workers(1)
            .open()
            .map_err(|e| format!("storage: cannot open {}: {e}", path.display()))?;
        let records = keyspace
            .open_partition("records", fjall::PartitionCreateOptions::default())
            .map_err(|e| format!("storage: cannot open {}: {e}", path.display()))?;
        Ok(Handles { keyspace, records })
    }
}

type Shared = RwLock<Option<Handles>>;

fn shared(handles: &Shared) -> std::sync::RwLockReadGuard<'_, Option<Handles>> {
    handles.read().unwrap_or_else(|e| e.into_inner())
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
        let handles = Arc::new(RwLock::new(Some(Handles::open(&path)?)));
        let (commits, queue) = mpsc::sync_channel(MAX_QUEUED_BATCHES);
        let committer = Committer {
            path,
            shard,
            handles: handles.clone(),
            failed: false,
            poisoned: false,
            last_reopen: None,
        };
        std::thread::Builder::new()
            .name(format!("corestream-commit-{shard}"))
            .spawn(move || committer.run(&queue))
            .map_err(|e| format!("storage: cannot start the committer thread: {e}"))?;
        Ok(EmbeddedStore { handles, commits })
    }

    fn read(&self, name: &[u8]) -> Result<Option<StoredRecord>, StorageError> {
        let handles = shared(&self.handles);
        let Some(handles) = handles.as_ref() else {
            return Err(StorageError::Unavailable(
                "the embedded store is being opened again".into(),
            ));
        };
        let value = handles
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
        if let Some(handles) = shared(&self.handles).as_ref() {
            let _ = handles.keyspace.persist(fjall::PersistMode::SyncAll);
        }
    }
}

/// The committer thread of one shard's keyspace.
struct Committer {
    path: PathBuf,
    shard: usize,
    handles: Arc<Shared>,
    /// The last batch was refused or failed (reported down until one commits).
    failed: bool,
    /// A commit failed inside fjall, which then refuses every later one: the keyspace is
    /// opened again before the next.
    poisoned: bool,
    last_reopen: Option<Instant>,
}

impl Committer {
    /// Commits every batch queued since the last commit in one go, then fsyncs once.
    fn run(mut self, queue: &mpsc::Receiver<(Writes, Committed)>) {
        while let Ok(first) = queue.recv() {
            let mut group = vec![first];
            while let Ok(more) = queue.try_recv() {
                group.push(more);
            }
            let outcome = self.room_for(&group).and_then(|()| {
                if self.poisoned && self.last_reopen.is_none_or(|t| t.elapsed() >= REOPEN_EVERY) {
                    self.last_reopen = Some(Instant::now());
                    self.reopen();
                }
                let committed = self.commit(&group);
                self.poisoned = committed.is_err();
                committed
            });
            self.report(&outcome);
            for (_, done) in group {
                let _ = done.send_blocking(outcome.clone());
            }
        }
    }

    fn commit(&self, group: &[(Writes, Committed)]) -> Result<(), String> {
        let handles = shared(&self.handles);
        let Some(Handles { keyspace, records }) = handles.as_ref() else {
            return Err("the embedded store could not be opened again".into());
        };
        let mut batch = keyspace.batch();
        for (writes, _) in group {
            for (name, record) in writes {
                match record {
                    Some(record) => batch.insert(records, name.as_ref(), encode(record)),
                    None => batch.remove(records, name.as_ref()),
                }
            }
        }
        batch
            .commit()
            .and_then(|()| keyspace.persist(fjall::PersistMode::SyncData))
            .map_err(|e| format!("commit failed: {e}"))
    }

    /// Whether the file system has room for the group's writes, with the reserve.
    fn room_for(&self, group: &[(Writes, Committed)]) -> Result<(), String> {
        let bytes = group
            .iter()
            .flat_map(|(writes, _)| writes)
            .map(|(name, record)| name.len() + record.as_ref().map_or(0, |r| r.data.len() + 5))
            .sum::<usize>() as u64;
        // Unknown (an odd file system): the commit says.
        let Ok(stat) = rustix::fs::statvfs(&self.path) else {
            return Ok(());
        };
        let free = stat.f_bavail.saturating_mul(stat.f_frsize);
        let need = bytes.saturating_mul(2).saturating_add(DISK_RESERVE);
        if free < need {
            return Err(format!(
                "the disk is full: {free} bytes free on {}, {need} needed",
                self.path.display()
            ));
        }
        Ok(())
    }

    /// Drops the keyspace (fjall refuses every commit after a failed journal write) and
    /// opens it again: it recovers what was committed from its journal, and flushes that into
    /// a segment at once (a recovered journal with a torn tail has lost the end marker of its
    /// last batch, which the next recovery would drop).
    fn reopen(&self) {
        let old = self
            .handles
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        drop(old);
        let opened = Handles::open(&self.path).and_then(|handles| {
            handles
                .records
                .rotate_memtable_and_wait()
                .map_err(|e| format!("storage: cannot flush what was recovered: {e}"))?;
            Ok(handles)
        });
        let error = opened.as_ref().err().cloned();
        *self.handles.write().unwrap_or_else(|e| e.into_inner()) = opened.ok();
        if let Some(error) = error {
            crate::log!(
                crate::log::Level::Warn,
                "EMBEDDED_STORE",
                "shard {}: the embedded store could not be opened again yet: {error}",
                self.shard
            );
        }
    }

    /// Logs (once) and reports the store going down or coming back.
    fn report(&mut self, outcome: &Result<(), String>) {
        let part = format!("embedded store (shard {})", self.shard);
        match outcome {
            Ok(()) if self.failed => {
                self.failed = false;
                if crate::health::back(&part) {
                    crate::log!(
                        crate::log::Level::Info,
                        "EMBEDDED_STORE_BACK",
                        "shard {}: the embedded store takes writes again",
                        self.shard
                    );
                }
            }
            Ok(()) => {}
            Err(error) => {
                self.failed = true;
                if crate::health::down(&part, error) {
                    crate::log!(
                        crate::log::Level::Error,
                        "EMBEDDED_STORE_FAILED",
                        "shard {}: the embedded store cannot commit writes ({error}); they are \
                         refused until it can",
                        self.shard
                    );
                }
            }
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
