//! The cluster seam: what crosses between nodes, sans-I/O. A shard asks the bus for things
//! (`BusOut`: interest in a name while it has subscribers, a frame published to a name) and
//! hears back (`BusIn`); `bus` says how names become NATS subjects and what a message carries;
//! `nats` runs it over NATS on a connector thread. A node without `clusterNode` has no bus: it runs alone, exactly as before.

pub mod bus;
mod gate;
pub mod nats;

use crate::core::ids::{ConnId, NodeId};
use crate::core::Kind;
use crate::store::StoredRecord;
use bytes::Bytes;

/// A record as the cluster's key-value bucket holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvRecord {
    /// The bucket's revision of the record's key (0: never written there).
    pub revision: u64,
    /// `None`: deleted, or never written.
    pub record: Option<StoredRecord>,
    /// The key was never written to the bucket: the record may still be in the store,
    /// from before the cluster.
    pub in_bucket: bool,
}

/// How a compare-and-set of a record ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CasResult {
    /// Written; the record's new revision.
    Written(u64),
    /// Another node wrote first: the record as the bucket has it now.
    Conflict(KvRecord),
    /// The bucket refused this write (too large to cross): the writes behind it may go on.
    Failed(String),
    /// The bucket did not answer in time or could not be asked: the writes that waited behind
    /// this one have waited as long, and get the same error rather than wait again.
    Unreachable(String),
}

/// Record writes accepted by the bucket in one compare-and-set, for the other nodes whose
/// clients subscribe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordChange {
    pub revision: u64,
    /// The revision it replaced: a node that holds it can apply `frames` as they are; any
    /// other sends its subscribers the whole record.
    pub previous: u64,
    /// The record after the writes; `None`: deleted.
    pub record: Option<StoredRecord>,
    /// What the writer's node sent its own subscribers, one per write in order (an update,
    /// patch, erase or delete).
    pub frames: Vec<Bytes>,
}

/// Listening in a cluster: what nodes tell the home node of a name (the one that decides who
/// provides it) and what the home tells them. Connections are of the sending node, except in
/// `Offer` and `Removed`, which name a connection of the receiving node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenOp {
    /// The sender gained its first (`true`) or lost its last subscriber of the name.
    Interest(bool),
    /// A listener of the sender accepted (`true`) or rejected the name under `pattern`.
    Response {
        conn: ConnId,
        pattern: Bytes,
        accept: bool,
    },
    /// A listener of the sender provides the name: said to a name's new home.
    Claim { conn: ConnId, pattern: Bytes },
    /// SUBSCRIPTION_FOR_PATTERN_REMOVED for a listener of the receiver.
    Removed { conn: ConnId, pattern: Bytes },
    /// The name has (or no longer has) a provider, for the receiver's subscribers.
    HasProvider(bool),
}

/// What a shard asks of the bus. Each owner shard asks only about the names it owns, so the
/// order of one shard's requests is the order per name.
#[derive(Debug, Clone, PartialEq)]
pub enum BusOut {
    /// This node wants what other nodes publish to `name` (`on`), or no longer. With
    /// `confirm`, `BusIn::Confirmed` follows once the bus routes the name here: a subscriber's
    /// ack waits for it, so an emit made anywhere after the ack reaches it.
    Interest {
        kind: Kind,
        name: Bytes,
        on: bool,
        confirm: Option<u64>,
    },
    /// A frame for the subscribers of `name` on every other node that wants it.
    Publish {
        kind: Kind,
        name: Bytes,
        frame: Bytes,
    },
    /// Read a record from the cluster's bucket.
    Read { name: Bytes },
    /// Read a record this node holds from the bucket again: a write's answer was lost, or
    /// changes may have been lost while NATS was away (`BusIn::Rechecked`).
    Recheck { name: Bytes },
    /// Write a record (`None`: delete) if the bucket still holds revision `expected`.
    Cas {
        name: Bytes,
        expected: u64,
        record: Option<StoredRecord>,
    },
    /// A record write the bucket accepted, for the other nodes that want the record.
    PublishRecord { name: Bytes, change: RecordChange },
    /// A user went online on this node (its first connection here) or offline (its last).
    /// With `confirm`, `BusIn::PresenceConfirmed` follows once every other node has it.
    Presence {
        user: Bytes,
        online: bool,
        confirm: Option<ConnId>,
    },
    /// A connection here began (`on`) or stopped providing RPC `name`, for every node.
    RpcProvider { name: Bytes, conn: ConnId, on: bool },
    /// A frame for a connection of another node (`conn.node`). `rpc_call` is the correlation
    /// id of an RPC request this node routes to that connection: its answers come back here.
    ToConn {
        conn: ConnId,
        frame: Bytes,
        rpc_call: Option<Bytes>,
    },
    /// A provider's answer (accept, response, error, reject) to a call routed by node `node`.
    RpcAnswer {
        node: NodeId,
        msg: Box<crate::protocol::message::Message>,
        from: ConnId,
    },
    /// Once every live node has applied the provider changes this shard announced for
    /// `names` before it, `BusIn::BarrierPassed` (for a held ack on `shard`, `token`).
    Barrier {
        shard: u16,
        token: u64,
        names: Vec<Bytes>,
    },
    /// An empty answer to another node's request (see `BusIn::AnswerOnceApplied`).
    Answer { reply: String },
    /// A connection here began (`on`) or stopped listening to `pattern`, for every node.
    Listener {
        kind: Kind,
        pattern: Bytes,
        conn: ConnId,
        on: bool,
    },
    /// Listening business about `name` for node `node`.
    Listen {
        node: NodeId,
        kind: Kind,
        name: Bytes,
        op: ListenOp,
    },
}

/// What the bus tells a shard.
#[derive(Debug, Clone)]
pub enum BusIn {
    /// Another node published `frame` to `name`, which this node wants.
    Published {
        kind: Kind,
        name: Bytes,
        frame: Bytes,
    },
    /// The interest that asked for confirmation `token` is in force.
    Confirmed { token: u64 },
    /// The answer to `BusOut::Read`.
    Read {
        name: Bytes,
        result: Result<KvRecord, String>,
    },
    /// The answer to `BusOut::Recheck`.
    Rechecked {
        name: Bytes,
        result: Result<KvRecord, String>,
    },
    /// This node's connection to NATS is back after an outage: what it published or was sent
    /// meanwhile may be lost.
    Reconnected,
    /// The answer to `BusOut::Cas`.
    Cas { name: Bytes, result: CasResult },
    /// Another node's write of a record this node wants.
    RecordChanged { name: Bytes, change: RecordChange },
    /// A user went online or offline on another node.
    RemotePresence {
        node: NodeId,
        user: Bytes,
        online: bool,
    },
    /// Another node has not been heard from within `nodeTimeout`: drop what it held.
    NodeGone { node: NodeId },
    /// A node joined or came back: say again who is online here.
    SyncRequested,
    /// Every other node has the presence change that asked for confirmation for `login`.
    PresenceConfirmed { login: ConnId },
    /// A connection of another node provides RPC `name` (`on`), or no longer.
    RemoteProvider { name: Bytes, conn: ConnId, on: bool },
    /// A frame another node sends a connection of this shard; `rpc_call` as in `BusOut`,
    /// with the node that routes the call.
    ToConn {
        local: u32,
        frame: Bytes,
        rpc_call: Option<(NodeId, Bytes)>,
    },
    /// A provider elsewhere answered a call this node routes (`from` is on another node).
    RpcAnswer {
        msg: Box<crate::protocol::message::Message>,
        from: ConnId,
    },
    /// A connection of another node began (`on`) or stopped listening to `pattern`
    /// (`regex`: the pattern compiled, once per node; `None` if it does not compile).
    RemoteListener {
        kind: Kind,
        pattern: Bytes,
        regex: Option<std::sync::Arc<regex::Regex>>,
        conn: ConnId,
        on: bool,
    },
    /// Every live node has what was announced before `BusOut::Barrier`.
    BarrierPassed { shard: u16, token: u64 },
    /// Another node waits to hear that this shard has applied what it sent before: answer
    /// on `reply` (`BusOut::Answer`). Queued behind that, so answered once it is applied.
    AnswerOnceApplied { reply: String },
    /// Node `from` about `name` (see `ListenOp`).
    Listen {
        from: NodeId,
        kind: Kind,
        name: Bytes,
        op: ListenOp,
    },
    /// The nodes in the cluster now, this one (`me`) among them; `settle_ms`: how long nodes
    /// may take to agree on it.
    Members {
        me: NodeId,
        nodes: Vec<NodeId>,
        settle_ms: u64,
    },
}
