//! `record.notify(names)`: records changed outside the server are read again from the store,
//! past the cache, and their subscribers get the new state (UPDATE) or DELETED. The
//! connection's shard asks each owner for its names and acks once every owner has answered;
//! names that could not be read get the read's error action first, as in the reference.

use super::msg::ShardMsg;
use super::records::Waiting;
use super::replies::{ack, error_reply};
use super::{Kind, Shard};
use crate::protocol::message::{record_action as ra, Message};
use crate::store::StoredRecord;
use bytes::Bytes;

/// Notifies a shard may have waiting for owners before new ones are refused.
const MAX_PENDING: usize = 4096;
/// `reply_to` of a refresh nobody waits for (a change followed from the storage).
const NO_REPLY: u16 = u16::MAX;

/// A client's notify waiting for its owners.
pub(super) struct PendingNotify {
    local: u32,
    msg: Box<Message>,
    owners_left: usize,
}

/// An owner's part of a notify: names still being read, and those that could not be.
#[derive(Default)]
pub(super) struct Refreshing {
    left: usize,
    failed: Vec<(Bytes, i32)>,
}

impl Shard {
    /// The connection's side: a client's NOTIFY.
    pub(super) fn notify(&mut self, local: u32, msg: Box<Message>) {
        if self.conn_side.notifying.len() >= MAX_PENDING {
            let mut refusal = error_reply(&msg, ra::RECORD_NOTIFY_ERROR);
            refusal.data = serde_json::to_string("too many notifies in flight")
                .ok()
                .map(Bytes::from);
            self.send_local(local, &refusal);
            return;
        }
        let mut by_owner: Vec<Vec<Bytes>> = vec![Vec::new(); self.shards];
        for name in &msg.names {
            let owner = self.owner(name);
            if let Some(names) = by_owner.get_mut(owner) {
                names.push(crate::core::detach(name));
            }
        }
        let owners: Vec<(usize, Vec<Bytes>)> = by_owner
            .into_iter()
            .enumerate()
            .filter(|(_, names)| !names.is_empty())
            .collect();
        if owners.is_empty() {
            self.send_local(local, &ack(&msg));
            return;
        }
        self.conn_side.next_notify = self.conn_side.next_notify.wrapping_add(1);
        let token = self.conn_side.next_notify;
        self.conn_side.notifying.insert(
            token,
            PendingNotify {
                local,
                msg,
                owners_left: owners.len(),
            },
        );
        let reply_to = self.id as u16;
        for (owner, names) in owners {
            self.route(
                owner,
                ShardMsg::Refresh {
                    names,
                    token,
                    reply_to,
                },
            );
        }
    }

    /// The connection's side: an owner has read its names again.
    pub(super) fn on_refreshed(&mut self, token: u64, failed: Vec<(Bytes, i32)>) {
        let Some(pending) = self.conn_side.notifying.get_mut(&token) else {
            return;
        };
        pending.owners_left = pending.owners_left.saturating_sub(1);
        let (local, done) = (pending.local, pending.owners_left == 0);
        let errors: Vec<Message> = failed
            .into_iter()
            .map(|(name, action)| Message {
                name: Some(name),
                ..error_reply(&pending.msg, action)
            })
            .collect();
        for error in &errors {
            self.send_local(local, error);
        }
        if done {
            if let Some(pending) = self.conn_side.notifying.remove(&token) {
                self.send_local(pending.local, &ack(&pending.msg));
            }
        }
    }

    /// The owner's side: rows of these records changed outside the server (followed from
    /// the storage's notifications); read them again as a notify would, answering no one.
    pub fn on_external_change(&mut self, names: Vec<Bytes>) {
        // In a cluster every node hears of every node's writes: a node reads again the records
        // it holds (its subscribers must hear), and the name's home node reads it too, so that
        // a record no node holds still reaches the bucket. Storage's row goes to the bucket only
        // if it is newer, so a node's own write coming back this way changes nothing.
        let cluster = self.owner_side.records.cluster.is_some();
        let mine: Vec<Bytes> = names
            .into_iter()
            .filter(|n| self.owner(n) == self.id)
            .filter(|n| {
                !cluster
                    || self.owner_side.records.is_cached(n)
                    || self.listen_cluster.home(n) == crate::core::ids::LOCAL_NODE
            })
            .collect();
        if !mine.is_empty() {
            self.owner_side.next_external = self.owner_side.next_external.wrapping_add(1);
            let token = self.owner_side.next_external;
            self.on_refresh(mine, token, NO_REPLY);
        }
    }

    /// The owner's side: read `names` again.
    pub(super) fn on_refresh(&mut self, names: Vec<Bytes>, token: u64, reply_to: u16) {
        let key = (reply_to, token);
        self.owner_side.refreshing.insert(
            key,
            Refreshing {
                left: names.len(),
                failed: Vec::new(),
            },
        );
        for name in names {
            let waiting = Waiting::Refresh {
                name: name.clone(),
                token,
                reply_to,
                read: None,
            };
            if self.owner_side.records.refresh(&name, waiting).is_err() {
                // A write or load of it is under way: memory has (or will have) its newest state.
                self.refresh_done(token, reply_to, None);
            }
        }
    }

    /// The owner's side: `name` has been read again; tell its subscribers.
    pub(super) fn refreshed(
        &mut self,
        name: Bytes,
        token: u64,
        reply_to: u16,
        read: Option<Box<Option<StoredRecord>>>,
    ) {
        if self.owner_side.records.cluster.is_some() {
            self.refreshed_in_cluster(name, token, reply_to, read.and_then(|r| *r));
            return;
        }
        let subscribed = self.owner_side.interest[Kind::Record as usize].shards(&name) != 0;
        if subscribed {
            let frame =
                super::replies::whole_record_frame(&name, self.owner_side.records.get(&name));
            self.fan_out(Kind::Record, &name, frame, None);
        }
        self.owner_side.records.evict_if_idle(&name, subscribed);
        self.refresh_done(token, reply_to, None);
    }

    /// A cluster node's side of a refresh: the bucket holds every node's record, so storage's
    /// goes there, to every node's subscribers, if its version is newer than the bucket's
    /// (storage lags the bucket: an older row is a write still on its way, not a change). A
    /// record not in memory is loaded first; one the bucket never held is read from storage
    /// anyway, so its row changes nothing. A row gone from storage deletes nothing: it may not
    /// have been written yet.
    fn refreshed_in_cluster(
        &mut self,
        name: Bytes,
        token: u64,
        reply_to: u16,
        read: Option<StoredRecord>,
    ) {
        let Some(stored) = read else {
            self.refresh_done(token, reply_to, None);
            return;
        };
        let again = |stored: &StoredRecord| Waiting::Refresh {
            name: name.clone(),
            token,
            reply_to,
            read: Some(Box::new(Some(stored.clone()))),
        };
        let records = &mut self.owner_side.records;
        if !records.is_cached(&name) {
            if records.wait_for(&name, again(&stored)).is_err() {
                self.refresh_done(token, reply_to, None);
            }
            return;
        }
        let memory = records.get(&name).map(|r| r.version);
        if memory.is_some_and(|version| stored.version <= version) {
            let subscribed = self.owner_side.interest[Kind::Record as usize].shards(&name) != 0;
            self.owner_side.records.evict_if_idle(&name, subscribed);
            self.refresh_done(token, reply_to, None);
            return;
        }
        let frame = super::replies::whole_record_frame(&name, Some(&stored));
        let retry = || again(&stored);
        self.commit_record(&name, Some(stored.clone()), frame, None, None, retry);
    }

    /// The owner's side: one name of a notify is done; the last one answers the asking shard.
    pub(super) fn refresh_done(&mut self, token: u64, reply_to: u16, failed: Option<(Bytes, i32)>) {
        let key = (reply_to, token);
        let Some(part) = self.owner_side.refreshing.get_mut(&key) else {
            return;
        };
        part.failed.extend(failed);
        part.left = part.left.saturating_sub(1);
        if part.left == 0 {
            if let Some(part) = self.owner_side.refreshing.remove(&key) {
                if reply_to == NO_REPLY {
                    return;
                }
                self.route(
                    usize::from(reply_to),
                    ShardMsg::Refreshed {
                        token,
                        failed: part.failed,
                    },
                );
            }
        }
    }
}
