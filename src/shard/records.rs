//! The owner shard's records in use: a cache in front of the asynchronous `store::RecordStore`.
//! Messages about a record that is not in memory wait while it loads; writes go to the cache at
//! once (so fan-out does not wait) and to the store in order, one at a time per record, with
//! later writes coalesced; write acks go out when the store has taken the write. A record with no
//! subscribers, no write in flight and nothing waiting leaves memory.

use super::msg::{Refs, ShardMsg};
use super::Shard;
use crate::core::ids::ConnId;
use crate::permission::rules::User;
use crate::protocol::message::{record_action, topic, Message};
use crate::store::{StorageError, StoredRecord};
use ahash::AHashMap;
use bytes::Bytes;
use std::sync::Arc;

pub use crate::store::{StoreJob, StoreResult};

pub use super::waiting::Waiting;

/// Messages that may wait for one record to load before new ones are refused.
const MAX_WAITING_PER_RECORD: usize = 10_000;

/// Versions from heads kept for the messages that asked, at most.
const MAX_HEAD_VERSIONS: usize = 100_000;

/// An answer to send once the store has taken a write.
type Ack = (ConnId, Message);

#[derive(Default)]
struct WriteQueue {
    in_flight_acks: Vec<Ack>,
    next: Option<(Option<StoredRecord>, Vec<Ack>)>,
}

#[derive(Default)]
pub struct RecordCache {
    /// `None`: known not to exist.
    cached: AHashMap<Bytes, Option<StoredRecord>>,
    loading: AHashMap<Bytes, Vec<Waiting>>,
    writing: AHashMap<Bytes, WriteQueue>,
    jobs: Vec<StoreJob>,
    /// Idle records kept in memory, oldest first (none unless the store asks for it): a
    /// record written again soon after is not read back from the store first.
    idle: std::collections::VecDeque<Bytes>,
    idle_set: ahash::AHashSet<Bytes>,
    keep_idle: usize,
    /// HEADs of records not in memory ask the store for the version alone: messages waiting
    /// for one, and the versions answered (kept until the message that asked has used them).
    heading: AHashMap<Bytes, Vec<Waiting>>,
    versions: AHashMap<Bytes, i32>,
    /// In a cluster: what the cluster's bucket says of the records (`shard::cluster_records`).
    pub cluster: Option<Box<super::cluster_record_state::ClusterRecords>>,
}

impl RecordCache {
    /// Records held in memory, names known to be missing included (O(1): read on every
    /// metrics scrape, which must not hold the shard).
    pub fn in_memory(&self) -> usize {
        self.cached.len()
    }
}

/// What a store result asks of the shard.
pub enum RecordEffect {
    /// The record is in: handle this again.
    Resume(Waiting),
    /// An answer for a client: a write ack, or the store's error.
    Reply(ConnId, Box<Message>),
    /// Records a rule on another shard reads could not be loaded.
    RuleReadFailed {
        names: Vec<String>,
        token: u64,
        reply_to: u16,
    },
    /// A record could not be read again for `record.notify`.
    RefreshFailed {
        name: Bytes,
        token: u64,
        reply_to: u16,
        action: i32,
    },
}

impl RecordCache {
    /// Applies a store result to the cache; `subscribed` tells whether a name has subscribers
    /// anywhere (a record without them, and with nothing pending, leaves memory).
    pub fn on_store_result(
        &mut self,
        result: StoreResult,
        subscribed: impl Fn(&[u8]) -> bool,
    ) -> Vec<RecordEffect> {
        let mut effects = Vec::new();
        match result {
            StoreResult::Loaded { name, result } => {
                let waiting = self.loading.remove(&name).unwrap_or_default();
                match result {
                    Ok(record) if self.cluster.is_some() && is_refresh(&waiting) => {
                        // Memory keeps the bucket's record: storage's goes to the bucket only
                        // if it is newer (`Shard::refreshed`).
                        effects.extend(waiting.into_iter().map(|mut item| {
                            if let Waiting::Refresh {
                                read: read @ None, ..
                            } = &mut item
                            {
                                *read = Some(Box::new(record.clone()));
                            }
                            RecordEffect::Resume(item)
                        }));
                    }
                    Ok(record) => {
                        let key = crate::core::map_key(&self.cached, &name);
                        // A refresh replaces what memory held; a load keeps it (nothing
                        // changes a record here while it loads).
                        self.cached.insert(key, record);
                        // No eviction here: a message waiting on several records must find
                        // the ones loaded before it in memory when it checks again.
                        effects.extend(waiting.into_iter().map(RecordEffect::Resume));
                    }
                    Err(error) => {
                        for item in waiting {
                            effects.push(match item {
                                Waiting::Op { msg, from, .. } => RecordEffect::Reply(
                                    from,
                                    Box::new(store_error(&msg, load_error_action(&error), &error)),
                                ),
                                Waiting::RuleRead {
                                    names,
                                    token,
                                    reply_to,
                                } => RecordEffect::RuleReadFailed {
                                    names,
                                    token,
                                    reply_to,
                                },
                                Waiting::Refresh {
                                    name,
                                    token,
                                    reply_to,
                                    ..
                                } => RecordEffect::RefreshFailed {
                                    name,
                                    token,
                                    reply_to,
                                    action: load_error_action(&error),
                                },
                                Waiting::Prefetch => continue,
                            });
                        }
                    }
                }
            }
            StoreResult::Headed { name, result } => {
                let waiting = self.heading.remove(&name).unwrap_or_default();
                match result {
                    Ok(version) => {
                        if !waiting.is_empty() {
                            // Versions of messages that failed are never used: a bound keeps
                            // them from piling up (a message that finds its version gone asks
                            // again).
                            if self.versions.len() >= MAX_HEAD_VERSIONS {
                                self.versions.clear();
                            }
                            self.versions.insert(name, version);
                        }
                        effects.extend(waiting.into_iter().map(RecordEffect::Resume));
                    }
                    Err(error) => {
                        for item in waiting {
                            if let Waiting::Op { msg, from, .. } = item {
                                let reply = store_error(&msg, load_error_action(&error), &error);
                                effects.push(RecordEffect::Reply(from, Box::new(reply)));
                            }
                        }
                    }
                }
            }
            StoreResult::Written { name, result } => {
                let Some(mut queue) = self.writing.remove(&name) else {
                    return effects;
                };
                for (to, ack) in std::mem::take(&mut queue.in_flight_acks) {
                    let reply = match &result {
                        Ok(()) => ack,
                        Err(error) => store_error(&ack, record_action::RECORD_UPDATE_ERROR, error),
                    };
                    effects.push(RecordEffect::Reply(to, Box::new(reply)));
                }
                if let Some((record, mut acks)) = queue.next.take() {
                    if let Err(error) = &result {
                        // The writes queued behind a failed one have waited as long as it did:
                        // they get its error now rather than after a timeout of their own.
                        // Their record is still written, so the store catches up when it can.
                        for (to, ack) in acks.drain(..) {
                            let reply =
                                store_error(&ack, record_action::RECORD_UPDATE_ERROR, error);
                            effects.push(RecordEffect::Reply(to, Box::new(reply)));
                        }
                    }
                    self.writing.insert(
                        name.clone(),
                        WriteQueue {
                            in_flight_acks: acks,
                            next: None,
                        },
                    );
                    self.jobs.push(StoreJob::Write { name, record });
                } else {
                    let subscribed = subscribed(&name);
                    self.evict_if_idle(&name, subscribed);
                }
            }
        }
        effects
    }

    /// In memory and settled: a record whose write the cluster is still deciding, or whose
    /// row a cluster node is reading again for a notify, counts as not loaded, so messages
    /// about it wait for the outcome.
    pub fn is_loaded(&self, name: &[u8]) -> bool {
        self.cached.contains_key(name)
            && (self.cluster.is_none() || !(self.is_proposing(name) || self.is_refreshing(name)))
    }

    /// Replaces a record in memory without writing it anywhere (another node wrote it).
    pub fn replace(&mut self, name: &Bytes, record: Option<StoredRecord>) {
        let key = crate::core::map_key(&self.cached, name);
        self.cached.insert(
            key,
            record.map(|r| StoredRecord {
                version: r.version,
                data: crate::core::detach(&r.data),
            }),
        );
    }

    /// Whether memory holds `name` (as a record or as known to be missing).
    pub fn is_cached(&self, name: &[u8]) -> bool {
        self.cached.contains_key(name)
    }

    /// Whether `name` is being loaded.
    pub fn is_loading(&self, name: &[u8]) -> bool {
        self.loading.contains_key(name)
    }

    /// Starts loading `name` from the store (the cluster's bucket has never held it).
    pub fn load_from_store(&mut self, name: Bytes) {
        self.jobs.push(StoreJob::Load { name });
    }

    /// Drops a record from memory (and, in a cluster, what is known of its revision).
    fn uncache(&mut self, name: &[u8]) {
        self.cached.remove(name);
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.forget(name);
        }
    }

    /// The record, if loaded and existing.
    pub fn get(&self, name: &[u8]) -> Option<&StoredRecord> {
        self.cached.get(name).and_then(Option::as_ref)
    }

    /// Writes (or with `None` deletes) in memory now and in the store in order; `ack` is sent
    /// when the store has it.
    pub fn put(&mut self, name: &Bytes, record: Option<StoredRecord>, ack: Option<Ack>) {
        let key = crate::core::map_key(&self.cached, name);
        self.cached.insert(
            key,
            record.as_ref().map(|r| StoredRecord {
                version: r.version,
                data: crate::core::detach(&r.data),
            }),
        );
        match self.writing.get_mut(name.as_ref()) {
            Some(queue) => {
                let (slot, acks) = queue.next.get_or_insert_with(|| (None, Vec::new()));
                *slot = record;
                acks.extend(ack);
            }
            None => {
                let key = crate::core::detach(name);
                self.writing.insert(
                    key.clone(),
                    WriteQueue {
                        in_flight_acks: ack.into_iter().collect(),
                        next: None,
                    },
                );
                self.jobs.push(StoreJob::Write { name: key, record });
            }
        }
    }

    /// Parks `waiting` until `name` is loaded, starting the load if needed.
    /// Returns the message back if too many already wait for this record.
    pub fn wait_for(&mut self, name: &Bytes, waiting: Waiting) -> Result<(), Waiting> {
        let waiting = match self.cluster.as_mut() {
            Some(cluster) => match cluster.wait_for_proposal(name, waiting) {
                Ok(()) => return Ok(()),
                Err(waiting) => waiting,
            },
            None => waiting,
        };
        if let Some(cluster) = self.cluster.as_mut() {
            // The bucket first; the store only if the bucket has never held the record.
            let mut reads = Vec::new();
            let parked = enqueue(&mut self.loading, &mut reads, name, waiting, |name| {
                StoreJob::Load { name }
            });
            cluster.read(reads.into_iter().map(|job| job.name().clone()));
            return parked;
        }
        let job = |name| StoreJob::Load { name };
        enqueue(&mut self.loading, &mut self.jobs, name, waiting, job)
    }

    /// The version of `name` if known without asking the store: from memory, or from a head
    /// answered for a waiting message. `-1`: no such record.
    pub fn version_of(&self, name: &[u8]) -> Option<i32> {
        match self.cached.get(name) {
            Some(record) => Some(record.as_ref().map_or(-1, |r| r.version)),
            None => self.versions.get(name).copied(),
        }
    }

    /// Parks `waiting` until the version of `name` is known: with the record if it is loading
    /// anyway, else from a head job (the version alone: a cache answers it without the data).
    pub fn wait_for_version(&mut self, name: &Bytes, waiting: Waiting) -> Result<(), Waiting> {
        if self.loading.contains_key(name.as_ref()) {
            return self.wait_for(name, waiting);
        }
        let job = |name| StoreJob::Head { name };
        enqueue(&mut self.heading, &mut self.jobs, name, waiting, job)
    }

    /// A version answered by a head has been used.
    pub fn forget_version(&mut self, name: &[u8]) {
        if !self.heading.contains_key(name) {
            self.versions.remove(name);
        }
    }

    /// Reads `name` again past the cache (`record.notify`), unless a write or a load of it is
    /// under way: then memory holds the newest state already, or soon will. Returns the
    /// waiting item back when there is nothing to do.
    pub fn refresh(&mut self, name: &Bytes, waiting: Waiting) -> Result<(), Waiting> {
        if self.busy(name) {
            return Err(waiting);
        }
        if self.cluster.is_none() {
            self.uncache(name);
        }
        let key = crate::core::detach(name);
        self.loading.insert(key.clone(), vec![waiting]);
        self.jobs.push(StoreJob::Refresh { name: key });
        Ok(())
    }

    /// Storage is being read again for a notify of `name` (past the bucket, in a cluster).
    pub fn is_refreshing(&self, name: &[u8]) -> bool {
        self.loading.get(name).is_some_and(|w| is_refresh(w))
    }

    /// Starts loading `name` unless it is loaded or on its way.
    pub fn prefetch(&mut self, name: &Bytes) {
        if !self.cached.contains_key(name.as_ref()) && !self.loading.contains_key(name.as_ref()) {
            let key = crate::core::detach(name);
            self.loading.insert(key.clone(), Vec::new());
            match self.cluster.as_mut() {
                Some(cluster) => cluster.read([key]),
                None => self.jobs.push(StoreJob::Load { name: key }),
            }
        }
    }

    pub fn take_jobs(&mut self) -> Vec<StoreJob> {
        std::mem::take(&mut self.jobs)
    }

    /// A cache that keeps up to `keep_idle` idle records in memory.
    pub fn keeping_idle(keep_idle: usize) -> RecordCache {
        RecordCache {
            keep_idle,
            ..RecordCache::default()
        }
    }

    fn busy(&self, name: &[u8]) -> bool {
        self.writing.contains_key(name)
            || self.loading.contains_key(name)
            || self
                .cluster
                .as_ref()
                .is_some_and(|c| c.is_proposing(name) || c.is_gathering(name))
    }

    fn is_proposing(&self, name: &[u8]) -> bool {
        self.cluster.as_ref().is_some_and(|c| c.is_proposing(name))
    }

    /// Drops a record from memory when nothing needs it there (or, when idle records are
    /// kept, the oldest idle one once there are too many).
    pub fn evict_if_idle(&mut self, name: &[u8], subscribed: bool) {
        if subscribed || self.busy(name) || !self.cached.contains_key(name) {
            return;
        }
        if self.keep_idle == 0 {
            self.uncache(name);
            return;
        }
        if !self.idle_set.contains(name) {
            // The map's own key: already detached from any read buffer.
            if let Some((key, _)) = self.cached.get_key_value(name) {
                let key = key.clone();
                self.idle_set.insert(key.clone());
                self.idle.push_back(key);
            }
        }
        while self.idle.len() > self.keep_idle {
            let Some(oldest) = self.idle.pop_front() else {
                break;
            };
            self.idle_set.remove(&oldest);
            // In use again since it went idle: it stays; it comes back here when idle again.
            if !self.busy(&oldest) {
                self.uncache(&oldest);
            }
        }
    }

    pub fn loaded_records(&self) -> usize {
        self.cached.len()
    }
}

/// Adds `waiting` to the list for `name`, starting `job` when it is the first; refuses past
/// `MAX_WAITING_PER_RECORD`.
fn enqueue(
    waiting_for: &mut AHashMap<Bytes, Vec<Waiting>>,
    jobs: &mut Vec<StoreJob>,
    name: &Bytes,
    waiting: Waiting,
    job: impl FnOnce(Bytes) -> StoreJob,
) -> Result<(), Waiting> {
    match waiting_for.get_mut(name.as_ref()) {
        Some(list) if list.len() >= MAX_WAITING_PER_RECORD => return Err(waiting),
        Some(list) => list.push(waiting),
        None => {
            let key = crate::core::detach(name);
            waiting_for.insert(key.clone(), vec![waiting]);
            jobs.push(job(key));
        }
    }
    Ok(())
}

impl Shard {
    /// True if every record `msg` needs is in memory; otherwise the message waits for them.
    pub(super) fn records_ready(
        &mut self,
        msg: &Message,
        from: ConnId,
        user: Option<&User>,
        refs: Option<&Refs>,
    ) -> bool {
        let missing: Vec<Bytes> = msg
            .names
            .iter()
            .chain(msg.name.iter())
            .filter(|n| !self.owner_side.records.is_loaded(n))
            .cloned()
            .collect();
        let Some(name) = missing.first().cloned() else {
            return true;
        };
        // Load them all at once; the message waits on the first and checks again when it is in.
        for other in &missing[1..] {
            self.owner_side.records.prefetch(other);
        }
        let waiting = Waiting::Op {
            msg: Box::new(msg.clone()),
            from,
            user: user.map(|u| Arc::new(u.clone())),
            refs: refs.map(|r| Arc::new(r.clone())),
        };
        let parked = self.owner_side.records.wait_for(&name, waiting);
        self.refuse_if_unparked(parked);
        false
    }

    /// A message that could not wait (too many wait for that record already) is answered.
    fn refuse_if_unparked(&mut self, parked: Result<(), Waiting>) {
        if let Err(Waiting::Op { msg, from, .. }) = parked {
            let error =
                StorageError::Other("too many messages wait for this record to load".into());
            self.send(
                from,
                &store_error(&msg, record_action::RECORD_LOAD_ERROR, &error),
            );
        }
    }

    /// True if the version of every record a HEAD or HEAD_BULK names is known; otherwise the
    /// message waits while the store is asked for the versions alone (no data is loaded).
    pub(super) fn versions_ready(&mut self, msg: &Message, from: ConnId) -> bool {
        let records = &self.owner_side.records;
        let missing: Vec<Bytes> = msg
            .names
            .iter()
            .chain(msg.name.iter())
            .filter(|n| records.version_of(n).is_none())
            .cloned()
            .collect();
        let Some(first) = missing.first().cloned() else {
            return true;
        };
        // All of them at once; the message waits on the first and checks again.
        for other in &missing[1..] {
            let _ = self
                .owner_side
                .records
                .wait_for_version(other, Waiting::Prefetch);
        }
        let waiting = Waiting::Op {
            msg: Box::new(msg.clone()),
            from,
            user: None,
            refs: None,
        };
        let parked = self.owner_side.records.wait_for_version(&first, waiting);
        self.refuse_if_unparked(parked);
        false
    }

    /// The store's answers come back here; the cache works out what they mean
    /// (`RecordCache::on_store_result`) and the shard carries it out.
    pub fn on_store_result(&mut self, result: StoreResult, now: u64) {
        let failed = result.is_err();
        // In a cluster, a change published while the record loaded may be newer.
        let result = match result {
            StoreResult::Loaded {
                name,
                result: Ok(record),
            } if self.owner_side.records.cluster.is_some() => {
                let record = if self.owner_side.records.is_refreshing(&name) {
                    // Memory stays: what another node wrote meanwhile applies to it now.
                    self.apply_early_change(&name);
                    record
                } else {
                    self.newest_loaded(&name, record)
                };
                StoreResult::Loaded {
                    name,
                    result: Ok(record),
                }
            }
            other => other,
        };
        self.count(|m| {
            m.store_operations += 1;
            m.store_errors += u64::from(failed);
        });
        let super::OwnerSide {
            records, interest, ..
        } = &mut self.owner_side;
        let record_interest = &interest[super::msg::Kind::Record as usize];
        let effects = records.on_store_result(result, |name| record_interest.shards(name) != 0);
        for effect in effects {
            match effect {
                RecordEffect::Resume(waiting) => self.resume(waiting, now),
                RecordEffect::Reply(to, msg) => self.send(to, &msg),
                RecordEffect::RefreshFailed {
                    name,
                    token,
                    reply_to,
                    action,
                } => self.refresh_done(token, reply_to, Some((name, action))),
                RecordEffect::RuleReadFailed {
                    names,
                    token,
                    reply_to,
                } => {
                    // Empty bytes are no JSON: the asking shard answers the rule's message
                    // with MESSAGE_PERMISSION_ERROR instead of waiting for ever.
                    let records = names.into_iter().map(|n| (n, Some(Bytes::new()))).collect();
                    self.route(usize::from(reply_to), ShardMsg::RuleData { token, records });
                }
            }
        }
    }

    pub(super) fn resume(&mut self, waiting: Waiting, now: u64) {
        match waiting {
            Waiting::Prefetch => {}
            Waiting::Op {
                msg,
                from,
                user,
                refs,
            } => self.on_owner_op(msg, from, user.as_deref(), refs.as_deref(), now),
            Waiting::Refresh {
                name,
                token,
                reply_to,
                read,
            } => self.refreshed(name, token, reply_to, read),
            Waiting::RuleRead {
                names,
                token,
                reply_to,
            } => self.route(
                self.id,
                ShardMsg::RuleRead {
                    names,
                    token,
                    reply_to,
                },
            ),
        }
    }

    /// Runs the store jobs right here, waiting on each: for tests, benchmarks and stores whose
    /// answers are immediate (the runtime spawns a task per job instead).
    /// Returns how many jobs ran.
    pub fn run_store_jobs_inline(
        &mut self,
        store: &dyn crate::store::RecordStore,
        now: u64,
    ) -> usize {
        let mut ran = 0;
        loop {
            let jobs = self.take_store_jobs();
            if jobs.is_empty() {
                return ran;
            }
            ran += jobs.len();
            for result in futures_lite::future::block_on(store.run_batch(jobs)) {
                self.on_store_result(result, now);
            }
        }
    }

    /// Store jobs for the runtime.
    #[must_use]
    pub fn take_store_jobs(&mut self) -> Vec<StoreJob> {
        self.owner_side.records.take_jobs()
    }
}

/// Whether a load's waiting list is a refresh's storage read: the refresh started it, so it
/// comes first, with nothing read yet (one with its row waits for the bucket's record).
fn is_refresh(waiting: &[Waiting]) -> bool {
    matches!(waiting.first(), Some(Waiting::Refresh { read: None, .. }))
}

/// The reference's answer to a read that failed: a layer that did not answer in time has an
/// action of its own.
fn load_error_action(error: &StorageError) -> i32 {
    match error {
        StorageError::Timeout(crate::store::Layer::Cache) => record_action::CACHE_RETRIEVAL_TIMEOUT,
        StorageError::Timeout(crate::store::Layer::Storage) => {
            record_action::STORAGE_RETRIEVAL_TIMEOUT
        }
        _ => record_action::RECORD_LOAD_ERROR,
    }
}

/// A store failure as the writer (or reader) sees it.
fn store_error(msg: &Message, action: i32, error: &StorageError) -> Message {
    Message {
        topic: topic::RECORD,
        data: Some(Bytes::from(
            simd_json::to_string(&error.to_string()).unwrap_or_default(),
        )),
        ..super::replies::error_reply(msg, action)
    }
}

impl RecordCache {
    /// A cache for a node of a cluster: no idle records stay in memory, since only the records
    /// this node has subscribers for are kept fresh by the bus.
    pub fn in_cluster() -> RecordCache {
        let mut cache = RecordCache::keeping_idle(0);
        cache.cluster = Some(Box::default());
        cache
    }

    /// Bucket reads to start.
    pub fn take_cluster_reads(&mut self) -> Vec<Bytes> {
        self.cluster
            .as_mut()
            .map(|c| std::mem::take(&mut c.reads))
            .unwrap_or_default()
    }
}
