//! What waits for a record: a message to handle once it is loaded (or once its write in a
//! cluster is decided).

use super::msg::Refs;
use crate::core::ids::ConnId;
use crate::permission::rules::User;
use crate::protocol::message::Message;
use crate::store::StoredRecord;
use bytes::Bytes;
use std::sync::Arc;

/// Something that needs a record loaded first.
pub enum Waiting {
    Op {
        msg: Box<Message>,
        from: ConnId,
        user: Option<Arc<User>>,
        refs: Option<Arc<Refs>>,
    },
    RuleRead {
        names: Vec<String>,
        token: u64,
        reply_to: u16,
    },
    /// Only started the store job: nothing to do when it is answered.
    Prefetch,
    /// `record.notify`: the record was read again; its subscribers hear of it.
    Refresh {
        name: Bytes,
        token: u64,
        reply_to: u16,
        /// In a cluster, what storage held once read (`None` until then): it goes to the
        /// bucket if it is newer than the bucket's record, which memory keeps meanwhile (and
        /// loads first if it does not hold it: the refresh then waits like any message).
        read: Option<Box<Option<StoredRecord>>>,
    },
}
