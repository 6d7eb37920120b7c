//! Records in a cluster (docs/CLUSTER.md). The cluster's key-value bucket holds each record's
//! authoritative version; an owner shard keeps the records in use in memory with the bucket
//! revision they were read or written at. A write is worked out against memory as on a node
//! alone, then written to the bucket only if the bucket still holds that revision
//! (compare-and-set): accepted, it reaches local subscribers, the store and, over the bus, the
//! other nodes that want the record; beaten by another node's write, the record is replaced
//! by the bucket's and the write is handled again (a versioned write then gets VERSION_EXISTS
//! with the cluster's data). Messages about a record wait while its write is being decided,
//! so one node never has two in flight for one record; once it is decided, the writes that
//! waited are gathered into one compare-and-set (`Gather`), so a busy record costs one bucket
//! round trip per batch, not per write.

use super::cluster_record_state::{
    Gather, Proposal, Proposed, RECHECKS_PER_ROUND, RECHECK_EVERY_MS,
};
use super::msg::Kind;
use super::waiting::Waiting;
use super::Shard;
use crate::cluster::{BusOut, CasResult, KvRecord, RecordChange};
use crate::core::ids::ConnId;
use crate::protocol::message::{record_action as ra, topic, Message};
use crate::store::{StorageError, StoreResult, StoredRecord};
use bytes::Bytes;

impl Shard {
    /// Accepts a record write (`None`: a delete) worked out against memory: at once on a node
    /// alone, after the bucket's compare-and-set in a cluster. `retry` is the message, to be
    /// handled again if another node wrote first.
    pub(super) fn commit_record(
        &mut self,
        name: &Bytes,
        record: Option<StoredRecord>,
        frame: Bytes,
        ack: Option<(ConnId, Message)>,
        from: Option<ConnId>,
        retry: impl FnOnce() -> Waiting,
    ) {
        let Some(cluster) = self.owner_side.records.cluster.as_mut() else {
            self.owner_side.records.put(name, record, ack);
            self.fan_out(Kind::Record, name, frame, from);
            return;
        };
        let write = Proposed {
            record: record.clone(),
            frame,
            ack,
            from,
            retry: retry(),
        };
        if let Some(gather) = cluster.gathering.as_mut().filter(|g| g.name == name) {
            // Applied to memory now, so the next gathered write is worked out on top of it.
            gather.writes.push(write);
            self.owner_side.records.replace(name, record);
            return;
        }
        let expected = cluster.revisions.get(name.as_ref()).copied().unwrap_or(0);
        let key = crate::core::detach(name);
        let proposal = Proposal {
            expected,
            writes: vec![write],
            before: None,
            waiting: Vec::new(),
        };
        cluster.proposing.insert(key.clone(), proposal);
        self.push_bus_request(BusOut::Cas {
            name: key,
            expected,
            record,
        });
    }

    /// Handles again the messages that waited for a record's write, gathering the writes
    /// among them into one compare-and-set. Gathering stops at the first message whose answer
    /// could depend on writes not yet accepted (a read, a delete, a write with a version that
    /// is not the next, a write whose permission rules read the record): it and the rest wait
    /// for the gathered writes.
    fn resume_gathering(&mut self, name: &Bytes, waiting: Vec<Waiting>, now: u64) {
        let before = self.owner_side.records.get(name).cloned();
        let Some(cluster) = self.owner_side.records.cluster.as_mut() else {
            return;
        };
        cluster.gathering = Some(Gather {
            name: crate::core::detach(name),
            before,
            writes: Vec::new(),
        });
        let mut items = waiting.into_iter();
        let mut left = Vec::new();
        while let Some(item) = items.next() {
            let gathered = self.gathered_count(name);
            if gathered > 0 && !self.gatherable(name, &item) {
                left.push(item);
                left.extend(items.by_ref());
                break;
            }
            self.resume(item, now);
        }
        let Some(cluster) = self.owner_side.records.cluster.as_mut() else {
            return;
        };
        let Some(gather) = cluster.gathering.take() else {
            return;
        };
        let Some(last) = gather.writes.last() else {
            for item in left {
                self.resume(item, now);
            }
            // Kept in memory while gathering; without subscribers nothing keeps it fresh.
            let subscribed = self.owner_side.interest[Kind::Record as usize].shards(name) != 0;
            self.owner_side.records.evict_if_idle(name, subscribed);
            return;
        };
        let record = last.record.clone();
        let expected = cluster.revisions.get(name.as_ref()).copied().unwrap_or(0);
        let key = crate::core::detach(name);
        let proposal = Proposal {
            expected,
            writes: gather.writes,
            before: Some(gather.before),
            waiting: left,
        };
        cluster.proposing.insert(key.clone(), proposal);
        self.push_bus_request(BusOut::Cas {
            name: key,
            expected,
            record,
        });
    }

    fn gathered_count(&self, name: &[u8]) -> usize {
        self.owner_side
            .records
            .cluster
            .as_ref()
            .and_then(|c| c.gathering.as_ref())
            .filter(|g| g.name == name)
            .map_or(0, |g| g.writes.len())
    }

    /// Whether `item` can be answered on top of writes not yet accepted: an update, patch or
    /// erase of this record whose version is the next or -1, under rules that do not read the
    /// record.
    fn gatherable(&self, name: &Bytes, item: &Waiting) -> bool {
        let Waiting::Op { msg, user, .. } = item else {
            return false;
        };
        let write = matches!(
            msg.action,
            ra::UPDATE | ra::PATCH | ra::ERASE | ra::CREATEANDUPDATE | ra::CREATEANDPATCH
        );
        if msg.topic != topic::RECORD || !write || msg.name.as_ref() != Some(name) {
            return false;
        }
        let current = self.owner_side.records.get(name).map_or(0, |r| r.version);
        let version = msg.version.unwrap_or(-1);
        (version == -1 || i64::from(version) == i64::from(current) + 1)
            && !self.owner_write_rules_read_data(user.as_deref(), name)
    }

    /// The bucket's answer to a read.
    pub(super) fn on_bucket_read(
        &mut self,
        name: Bytes,
        result: Result<KvRecord, String>,
        now: u64,
    ) {
        match result {
            Ok(found) if !found.in_bucket => {
                // From before the cluster, if anywhere: the store has it.
                self.set_revision(&name, 0);
                self.owner_side.records.load_from_store(name);
            }
            Ok(found) => {
                self.set_revision(&name, found.revision);
                let result = StoreResult::Loaded {
                    name,
                    result: Ok(found.record),
                };
                self.on_store_result(result, now);
            }
            Err(error) => {
                let result = StoreResult::Loaded {
                    name,
                    result: Err(StorageError::Other(error)),
                };
                self.on_store_result(result, now);
            }
        }
    }

    /// A record just loaded (from the bucket or the store): a change another node published
    /// meanwhile is newer, if there is one.
    pub(super) fn newest_loaded(
        &mut self,
        name: &Bytes,
        loaded: Option<StoredRecord>,
    ) -> Option<StoredRecord> {
        let Some(cluster) = self.owner_side.records.cluster.as_mut() else {
            return loaded;
        };
        let Some(change) = cluster.early.remove(name.as_ref()) else {
            return loaded;
        };
        let known = cluster.revisions.get(name.as_ref()).copied().unwrap_or(0);
        if change.revision > known {
            cluster
                .revisions
                .insert(crate::core::detach(name), change.revision);
            return change.record;
        }
        loaded
    }

    /// A change another node published while storage was read again for a notify, or while
    /// this node's write was decided: memory kept its record meanwhile, so the change applies
    /// to it as usual (if it is newer).
    pub(super) fn apply_early_change(&mut self, name: &Bytes) {
        let Some(cluster) = self.owner_side.records.cluster.as_mut() else {
            return;
        };
        if let Some(change) = cluster.early.remove(name.as_ref()) {
            let frames = Some((change.previous, change.frames));
            self.apply_remote(name, change.revision, change.record, frames);
        }
    }

    /// Every record in memory is suspect: read again from the bucket.
    pub(super) fn suspect_all_records(&mut self) {
        if let Some(cluster) = self.owner_side.records.cluster.as_mut() {
            let held: Vec<Bytes> = cluster.revisions.keys().cloned().collect();
            cluster.suspects.extend(held);
        }
    }

    /// Starts reading suspect records again, a bounded round at a time.
    pub(super) fn recheck_tick(&mut self, now: u64) {
        let Some(cluster) = self.owner_side.records.cluster.as_mut() else {
            return;
        };
        if cluster.suspects.is_empty()
            || now.saturating_sub(cluster.last_recheck) < RECHECK_EVERY_MS
        {
            return;
        }
        cluster.last_recheck = now;
        let mut round: Vec<Bytes> = cluster
            .suspects
            .iter()
            .take(RECHECKS_PER_ROUND)
            .cloned()
            .collect();
        // In name order, not the map's: the simulation replays a seed exactly.
        round.sort_unstable();
        for name in round {
            cluster.suspects.remove(&name);
            // Only records still in memory: the others are read from the bucket when next
            // wanted.
            if cluster.revisions.contains_key(&name) {
                cluster.rechecks.push(name);
            }
        }
    }

    pub(super) fn take_rechecks(&mut self) -> Vec<Bytes> {
        self.owner_side
            .records
            .cluster
            .as_mut()
            .map(|c| std::mem::take(&mut c.rechecks))
            .unwrap_or_default()
    }

    /// The bucket's answer to a recheck: a newer record than memory's is applied as another
    /// node's change would be, and published, since the node that wrote it may never have
    /// (its answer was lost, or so was its publish). Nodes apply it only if it is newer.
    pub(super) fn on_bucket_recheck(&mut self, name: Bytes, result: Result<KvRecord, String>) {
        let Some(cluster) = self.owner_side.records.cluster.as_mut() else {
            return;
        };
        let found = match result {
            Ok(found) if found.in_bucket => found,
            Ok(_) => return,
            Err(_) => {
                // Still unreachable: again on a later round.
                cluster.suspects.insert(name);
                return;
            }
        };
        let Some(known) = cluster.revisions.get(name.as_ref()).copied() else {
            return;
        };
        if found.revision <= known {
            return;
        }
        let change = RecordChange {
            revision: found.revision,
            previous: known,
            record: found.record,
            frames: Vec::new(),
        };
        self.count(|m| m.bus_published += 1);
        self.push_bus_request(BusOut::PublishRecord {
            name: name.clone(),
            change: change.clone(),
        });
        self.take_change(name, change);
    }

    /// The bucket's answer to a compare-and-set.
    pub(super) fn on_bucket_write(&mut self, name: Bytes, result: CasResult, now: u64) {
        let Some(cluster) = self.owner_side.records.cluster.as_mut() else {
            return;
        };
        let Some(proposal) = cluster.proposing.remove(name.as_ref()) else {
            return;
        };
        let Proposal {
            expected,
            writes,
            before,
            waiting,
        } = proposal;
        let losing_since = match &result {
            CasResult::Conflict(_) => *cluster
                .losing_since
                .entry(crate::core::detach(&name))
                .or_insert(now),
            _ => {
                cluster.losing_since.remove(name.as_ref());
                now
            }
        };
        let request_timeout = self
            .config
            .cluster
            .as_ref()
            .map_or(5_000, |c| c.request_timeout_ms);
        match result {
            CasResult::Written(revision) => {
                self.set_revision(&name, revision);
                let mut frames = Vec::with_capacity(writes.len());
                let mut last = None;
                for write in writes {
                    self.owner_side
                        .records
                        .put(&name, write.record.clone(), write.ack);
                    self.fan_out(Kind::Record, &name, write.frame.clone(), write.from);
                    frames.push(write.frame);
                    last = Some(write.record);
                    if let Waiting::Refresh {
                        token, reply_to, ..
                    } = write.retry
                    {
                        self.refresh_done(token, reply_to, None);
                    }
                }
                self.count(|m| m.bus_published += 1);
                self.push_bus_request(BusOut::PublishRecord {
                    name: name.clone(),
                    change: RecordChange {
                        revision,
                        previous: expected,
                        record: last.flatten(),
                        frames,
                    },
                });
                self.apply_early_change(&name);
                self.resume_gathering(&name, waiting, now);
            }
            CasResult::Conflict(current) => {
                // Another node wrote first: take its record (it replaces whatever gathered
                // writes put in memory), then decide again.
                self.apply_remote(&name, current.revision, current.record, None);
                self.apply_early_change(&name);
                let retries = writes.into_iter().map(|w| w.retry);
                let mut again: Vec<Waiting> = retries.chain(waiting).collect();
                if now.saturating_sub(losing_since) >= request_timeout {
                    if let Some(cluster) = self.owner_side.records.cluster.as_mut() {
                        cluster.losing_since.remove(name.as_ref());
                    }
                    let (writes, rest): (Vec<Waiting>, Vec<Waiting>) =
                        again.into_iter().partition(Self::is_record_write);
                    let error = format!(
                        "cluster: other nodes kept writing the record first for {request_timeout} \
                         ms; this write was not taken"
                    );
                    for write in writes {
                        self.refuse_write(write, &error);
                    }
                    again = rest;
                }
                self.resume_gathering(&name, again, now);
            }
            CasResult::Failed(ref error) | CasResult::Unreachable(ref error) => {
                if let Some(before) = before {
                    self.owner_side.records.replace(&name, before);
                }
                for write in writes {
                    self.refuse_write(write.retry, error);
                }
                self.apply_early_change(&name);
                // Writes that waited behind an unanswered compare-and-set have waited as long
                // as it did: asking again, one after another, would answer them only after
                // several timeouts. Anything else (reads of memory) goes on.
                let unreachable = matches!(result, CasResult::Unreachable(_));
                if unreachable {
                    // The bucket may have taken it without answering.
                    if let Some(cluster) = self.owner_side.records.cluster.as_mut() {
                        cluster.suspects.insert(crate::core::detach(&name));
                    }
                }
                for item in waiting {
                    if unreachable && Self::is_record_write(&item) {
                        self.refuse_write(item, error);
                    } else {
                        self.resume(item, now);
                    }
                }
                let subscribed = self.owner_side.interest[Kind::Record as usize].shards(&name) != 0;
                self.owner_side.records.evict_if_idle(&name, subscribed);
            }
        }
    }

    /// A write (or a notify's write) the bucket did not take: RECORD_UPDATE_ERROR with why.
    fn refuse_write(&mut self, write: Waiting, error: &str) {
        match write {
            Waiting::Op { msg, from, .. } => {
                let reply = Message {
                    topic: topic::RECORD,
                    data: Some(Bytes::from(simd_json::to_string(error).unwrap_or_default())),
                    ..super::replies::error_reply(&msg, ra::RECORD_UPDATE_ERROR)
                };
                self.send(from, &reply);
            }
            Waiting::Refresh {
                name,
                token,
                reply_to,
                ..
            } => {
                let failed = Some((name, ra::RECORD_UPDATE_ERROR));
                self.refresh_done(token, reply_to, failed);
            }
            _ => {}
        }
    }

    fn is_record_write(item: &Waiting) -> bool {
        match item {
            Waiting::Op { msg, .. } => {
                msg.topic == topic::RECORD
                    && matches!(
                        msg.action,
                        ra::UPDATE
                            | ra::PATCH
                            | ra::ERASE
                            | ra::CREATEANDUPDATE
                            | ra::CREATEANDPATCH
                            | ra::DELETE
                    )
            }
            Waiting::Refresh { .. } => true,
            _ => false,
        }
    }

    /// Another node's accepted write of a record this node wants.
    pub(super) fn on_record_changed(&mut self, name: Bytes, change: RecordChange) {
        self.count(|m| m.bus_received += 1);
        self.take_change(name, change);
    }

    /// A newer record from the bucket, by another node's change or a recheck: applied now, or
    /// once the record has loaded or this node's write of it is decided.
    fn take_change(&mut self, name: Bytes, change: RecordChange) {
        let records = &mut self.owner_side.records;
        // While the record loads, or while this node's own write of it is being decided, the
        // change waits: applied now, an older write of ours confirmed after it would take the
        // record back (and its subscribers would see the version go down).
        let proposing = records
            .cluster
            .as_ref()
            .is_some_and(|c| c.is_proposing(&name));
        if records.is_loading(&name) || proposing {
            if let Some(cluster) = records.cluster.as_mut() {
                let newer = cluster
                    .early
                    .get(name.as_ref())
                    .is_none_or(|c| c.revision < change.revision);
                if newer {
                    cluster.early.insert(crate::core::detach(&name), change);
                }
            }
            return;
        }
        if !records.is_cached(&name) {
            // Not in memory: the next read asks the bucket.
            return;
        }
        self.apply_remote(
            &name,
            change.revision,
            change.record,
            Some((change.previous, change.frames)),
        );
    }

    /// Takes the bucket's `record` at `revision` if it is newer than memory, and tells local
    /// subscribers: with the writer's `frames` when memory held the revision they replaced,
    /// else with the whole record.
    fn apply_remote(
        &mut self,
        name: &Bytes,
        revision: u64,
        record: Option<StoredRecord>,
        frames: Option<(u64, Vec<Bytes>)>,
    ) {
        let Some(cluster) = self.owner_side.records.cluster.as_ref() else {
            return;
        };
        let known = cluster.revisions.get(name.as_ref()).copied().unwrap_or(0);
        if revision <= known {
            return;
        }
        // No frames: the change was too large to carry them (`cluster::nats`).
        let frames = match frames {
            Some((previous, frames)) if previous == known && !frames.is_empty() => frames,
            _ => vec![super::replies::whole_record_frame(name, record.as_ref())],
        };
        self.set_revision(name, revision);
        self.owner_side.records.replace(name, record);
        for frame in frames {
            self.fan_out(Kind::Record, name, frame, None);
        }
    }

    fn set_revision(&mut self, name: &Bytes, revision: u64) {
        if let Some(cluster) = self.owner_side.records.cluster.as_mut() {
            match cluster.revisions.get_mut(name.as_ref()) {
                Some(known) => *known = revision,
                None => {
                    cluster
                        .revisions
                        .insert(crate::core::detach(name), revision);
                }
            }
        }
    }
}
