//! What a node of a cluster keeps per record beside memory: bucket revisions, the writes being
//! decided by the bucket's compare-and-set and what waits for them, and the records to read
//! again (docs/CLUSTER.md; the work itself is in `cluster_records`).

use super::waiting::Waiting;
use crate::cluster::RecordChange;
use crate::core::ids::ConnId;
use crate::protocol::message::Message;
use crate::store::StoredRecord;
use ahash::{AHashMap, AHashSet};
use bytes::Bytes;

/// One write worked out against memory, for the bucket to take or refuse.
pub struct Proposed {
    pub(super) record: Option<StoredRecord>,
    /// What local subscribers get once it is accepted.
    pub(super) frame: Bytes,
    pub(super) ack: Option<(ConnId, Message)>,
    /// The writer, who does not hear of its own write; `None` for a notify's.
    pub(super) from: Option<ConnId>,
    /// The message itself (or the notify), handled again if another node wrote first.
    pub(super) retry: Waiting,
}

/// Writes waiting for the bucket's compare-and-set, in order: one, or several gathered.
pub struct Proposal {
    pub(super) expected: u64,
    pub(super) writes: Vec<Proposed>,
    /// What memory held before gathered writes were applied to it (they are put in memory as
    /// they are gathered, so each is worked out on the one before); restored if the bucket
    /// cannot be written. `None` for a single write, which leaves memory alone.
    pub(super) before: Option<Option<StoredRecord>>,
    /// Messages about the record that arrived meanwhile.
    pub(super) waiting: Vec<Waiting>,
}

/// Writes to one record being gathered while the messages that waited for its last write are
/// handled again.
pub(super) struct Gather {
    pub(super) name: Bytes,
    pub(super) before: Option<StoredRecord>,
    pub(super) writes: Vec<Proposed>,
}

/// Messages that may wait for one record's write to be decided before new ones are refused.
pub(super) const MAX_WAITING_PER_PROPOSAL: usize = 10_000;

#[derive(Default)]
pub struct ClusterRecords {
    /// The bucket revision of each record in memory (0: the bucket has never held it).
    pub(super) revisions: AHashMap<Bytes, u64>,
    pub(super) proposing: AHashMap<Bytes, Proposal>,
    /// Records to read from the bucket.
    pub(super) reads: Vec<Bytes>,
    /// Changes other nodes published while a record was loading: the newest, by name.
    pub(super) early: AHashMap<Bytes, RecordChange>,
    pub(super) gathering: Option<Gather>,
    /// Records in memory that may be older than the bucket's: a write whose answer was lost
    /// (the bucket may have taken it, and no node heard of it), or changes lost while NATS was
    /// away. Read again from the bucket (`Recheck`) on the next tick.
    pub(super) suspects: AHashSet<Bytes>,
    pub(super) rechecks: Vec<Bytes>,
    pub(super) last_recheck: u64,
    /// Records whose writes from this node keep losing to other nodes' (each conflict is
    /// handled again on the newer record): since when. Past the request timeout the writes
    /// are refused rather than tried again, so a write's answer stays bounded under any
    /// contention (a slow bucket and busy writers elsewhere could starve it for ever).
    pub(super) losing_since: AHashMap<Bytes, u64>,
}

/// How often suspect records are read again, at most.
pub(super) const RECHECK_EVERY_MS: u64 = 250;
/// Records read again per round, at most.
pub(super) const RECHECKS_PER_ROUND: usize = 1_000;

impl ClusterRecords {
    pub fn is_proposing(&self, name: &[u8]) -> bool {
        self.proposing.contains_key(name)
    }

    /// Writes to `name` are being gathered: it stays in memory, where they are applied.
    pub fn is_gathering(&self, name: &[u8]) -> bool {
        self.gathering.as_ref().is_some_and(|g| g.name == name)
    }

    pub fn forget(&mut self, name: &[u8]) {
        self.revisions.remove(name);
        self.suspects.remove(name);
        self.losing_since.remove(name);
    }

    pub fn read(&mut self, names: impl IntoIterator<Item = Bytes>) {
        self.reads.extend(names);
    }

    /// Parks `waiting` behind the record's write being decided; gives it back if there is none.
    pub fn wait_for_proposal(&mut self, name: &[u8], waiting: Waiting) -> Result<(), Waiting> {
        match self.proposing.get_mut(name) {
            Some(proposal) if proposal.waiting.len() < MAX_WAITING_PER_PROPOSAL => {
                proposal.waiting.push(waiting);
                Ok(())
            }
            _ => Err(waiting),
        }
    }
}
