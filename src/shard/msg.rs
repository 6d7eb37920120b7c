//! What shards tell each other. Payloads are `Bytes`: reference counted, never copied across.

use crate::core::ids::ConnId;
use crate::permission::rules::User;
use crate::protocol::message::Message;
use bytes::Bytes;
use regex::Regex;
use std::sync::Arc;

/// Records read by `_()` rules, parsed; `None` where the record does not exist.
pub type Refs = Vec<(String, Option<simd_json::OwnedValue>)>;

/// What a client message carries while it is handled: the `_()` records fetched for its rules
/// and how many rounds of fetching it has waited (none for a fresh message).
#[derive(Debug, Default)]
pub struct MsgContext {
    pub refs: Refs,
    pub rounds: u32,
}

pub use crate::core::Kind;

#[derive(Debug, Clone)]
pub enum ShardMsg {
    /// A client's message for the owner of its name (emit, record write or read, RPC, listen
    /// accept/reject); bulk messages carry only the names this owner owns.
    Op {
        msg: Box<Message>,
        from: ConnId,
        user: Option<Arc<User>>,
        refs: Option<Arc<Refs>>,
    },
    /// To the owner: the stored data of records a permission rule elsewhere reads with `_()`.
    RuleRead {
        names: Vec<String>,
        token: u64,
        reply_to: u16,
    },
    /// The answer to `RuleRead`.
    RuleData {
        token: u64,
        records: Vec<(String, Option<Bytes>)>,
    },
    /// The hot path of events, without a boxed message: emit `data` on `name`.
    Emit {
        name: Bytes,
        data: Option<Bytes>,
        from: ConnId,
    },
    /// Shard `shard` gained its first or lost its last local subscriber of `name`. With
    /// `confirm`, the owner answers `InterestApplied` so the subscriber's ack can wait for it.
    Interest {
        kind: Kind,
        name: Bytes,
        shard: u16,
        on: bool,
        confirm: Option<u64>,
    },
    /// The owner applied an `Interest` that asked for confirmation.
    InterestApplied { token: u64 },
    /// To an owner, after a provide it handles: answer `InterestApplied { token }` to `shard`
    /// once every node has what the owner announced before it.
    Barrier {
        shard: u16,
        token: u64,
        names: Vec<Bytes>,
    },
    /// An encoded frame for every local subscriber of `name` but `exclude`.
    Deliver {
        kind: Kind,
        name: Bytes,
        frame: Bytes,
        exclude: Option<ConnId>,
    },
    /// An encoded frame for one connection.
    ToConn { conn: ConnId, frame: Bytes },
    /// A listener added or removed on every shard (patterns must be known where names live).
    Listen {
        kind: Kind,
        pattern: Bytes,
        regex: Option<Arc<Regex>>,
        conn: ConnId,
    },
    Unlisten {
        kind: Kind,
        pattern: Bytes,
        conn: ConnId,
    },
    /// To the owner of a user name: one of its connections logged in or closed.
    /// `reply` is the login answer, sent by the owner once every shard has been told the user is
    /// online, so a client never learns of its login before presence queries can see it.
    PresenceLogin {
        user: Bytes,
        login: bool,
        reply: Option<(ConnId, Bytes)>,
    },
    /// From the owner to every shard: the user went online or offline.
    /// `login` names the connection whose login caused it: each shard acknowledges to the owner.
    PresenceChanged {
        user: Bytes,
        online: bool,
        login: Option<ConnId>,
    },
    /// A shard has applied a user's going online; the owner answers the login after all have.
    PresenceApplied { user: Bytes, login: ConnId },
    /// A connection closed: drop whatever this shard holds for it.
    ConnClosed { conn: ConnId },
    /// To the owner: records changed outside the server (`record.notify`); read them again
    /// from the store and tell their subscribers. Answered with `Refreshed`.
    Refresh {
        names: Vec<Bytes>,
        token: u64,
        reply_to: u16,
    },
    /// The owner has read them again; the names it could not read, with the error action.
    Refreshed {
        token: u64,
        failed: Vec<(Bytes, i32)>,
    },
    /// Asks a shard for its counters, to be summed on `reply_to`.
    MetricsRequest { token: u64, reply_to: u16 },
    MetricsReply {
        token: u64,
        metrics: Box<super::metrics::Metrics>,
    },
    /// An operator's request of every shard (`shard::admin`), answered to `reply_to`.
    AdminRequest {
        token: u64,
        reply_to: u16,
        op: super::admin::AdminOp,
    },
    AdminReply {
        token: u64,
        answer: Box<super::admin::AdminAnswer>,
    },
}
