//! The one table of client actions: `(topic, action)` decoded once into an `Op`, which knows
//! where the message is handled, what the connection's shard checks, which rules the owner
//! runs and whether the owner needs the records loaded. Adding a client action means a
//! variant here and its arms in the two handlers (`client.rs`: connection side, owner side).

use super::msg::Kind;
use crate::permission::rules::{RuleType, Section};
use crate::protocol::message::{
    connection_action, event_action as ea, presence_action as pa, record_action as ra, rpc_action,
    topic, Message,
};

/// What a client message asks for. Payload-free: the `Box<Message>` stays the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Ping,
    /// Other CONNECTION messages after login: nothing to do.
    ConnectionOther,
    /// Event subscribe or unsubscribe (`on`), or record unsubscribe.
    Subscribe {
        kind: Kind,
        on: bool,
    },
    /// Record subscribe with a read, a head, or a read that creates the record.
    RecordSubscribe {
        create: bool,
    },
    Emit,
    RecordRead,
    RecordHead,
    RecordHeadBulk,
    RecordDelete,
    /// UPDATE and CREATEANDUPDATE (`path: false`), PATCH, ERASE and CREATEANDPATCH.
    RecordWrite {
        path: bool,
    },
    RecordNotify,
    Listen {
        kind: Kind,
        on: bool,
    },
    ListenResponse {
        kind: Kind,
    },
    RpcProvide {
        on: bool,
    },
    RpcRequest,
    /// ACCEPT, REJECT, RESPONSE and REQUEST_ERROR from a provider.
    RpcFromProvider,
    Presence(PresenceOp),
    UnknownAction,
    UnknownTopic,
}

/// Presence actions, by what the permission check looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceOp {
    /// SUBSCRIBE and QUERY name users: each is checked.
    Users,
    /// SUBSCRIBE_ALL and QUERY_ALL: one check.
    Everyone,
    /// Unsubscribes and the rest: nothing to check.
    Other,
}

/// Where an operation is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// On the connection's shard.
    Local,
    /// On the shard that owns the message's name.
    Owner,
    /// A bulk message: split by the owners of its names.
    SplitByOwner,
}

/// What the connection's shard checks before handling a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checks {
    pub section: Section,
    pub types: &'static [RuleType],
    /// Each of the message's `names` is checked (else its `name`).
    pub bulk: bool,
}

impl Op {
    pub fn of(msg: &Message) -> Op {
        use Kind::{Event, Record};
        match (msg.topic, msg.action) {
            (topic::CONNECTION, connection_action::PING) => Op::Ping,
            (topic::CONNECTION, _) => Op::ConnectionOther,
            (topic::EVENT, ea::SUBSCRIBE) => Op::Subscribe {
                kind: Event,
                on: true,
            },
            (topic::EVENT, ea::UNSUBSCRIBE) => Op::Subscribe {
                kind: Event,
                on: false,
            },
            (topic::RECORD, ra::UNSUBSCRIBE) => Op::Subscribe {
                kind: Record,
                on: false,
            },
            (topic::RECORD, ra::SUBSCRIBECREATEANDREAD) => Op::RecordSubscribe { create: true },
            (topic::RECORD, ra::SUBSCRIBEANDREAD | ra::SUBSCRIBEANDHEAD) => {
                Op::RecordSubscribe { create: false }
            }
            (topic::EVENT, ea::EMIT) => Op::Emit,
            (topic::RECORD, ra::READ) => Op::RecordRead,
            (topic::RECORD, ra::HEAD) => Op::RecordHead,
            (topic::RECORD, ra::HEAD_BULK) => Op::RecordHeadBulk,
            (topic::RECORD, ra::DELETE) => Op::RecordDelete,
            (topic::RECORD, ra::UPDATE | ra::CREATEANDUPDATE) => Op::RecordWrite { path: false },
            (topic::RECORD, ra::PATCH | ra::ERASE | ra::CREATEANDPATCH) => {
                Op::RecordWrite { path: true }
            }
            (topic::RECORD, ra::NOTIFY) => Op::RecordNotify,
            (topic::EVENT, ea::LISTEN) => Op::Listen {
                kind: Event,
                on: true,
            },
            (topic::EVENT, ea::UNLISTEN) => Op::Listen {
                kind: Event,
                on: false,
            },
            (topic::RECORD, ra::LISTEN) => Op::Listen {
                kind: Record,
                on: true,
            },
            (topic::RECORD, ra::UNLISTEN) => Op::Listen {
                kind: Record,
                on: false,
            },
            (topic::EVENT, ea::LISTEN_ACCEPT | ea::LISTEN_REJECT) => {
                Op::ListenResponse { kind: Event }
            }
            (topic::RECORD, ra::LISTEN_ACCEPT | ra::LISTEN_REJECT) => {
                Op::ListenResponse { kind: Record }
            }
            (topic::RPC, rpc_action::PROVIDE) => Op::RpcProvide { on: true },
            (topic::RPC, rpc_action::UNPROVIDE) => Op::RpcProvide { on: false },
            (topic::RPC, rpc_action::REQUEST) => Op::RpcRequest,
            (
                topic::RPC,
                rpc_action::ACCEPT
                | rpc_action::REJECT
                | rpc_action::RESPONSE
                | rpc_action::REQUEST_ERROR,
            ) => Op::RpcFromProvider,
            (topic::PRESENCE, pa::SUBSCRIBE | pa::QUERY) => Op::Presence(PresenceOp::Users),
            (topic::PRESENCE, pa::SUBSCRIBE_ALL | pa::QUERY_ALL) => {
                Op::Presence(PresenceOp::Everyone)
            }
            (topic::PRESENCE, _) => Op::Presence(PresenceOp::Other),
            (topic::EVENT | topic::RECORD | topic::RPC, _) => Op::UnknownAction,
            _ => Op::UnknownTopic,
        }
    }

    pub fn route(self) -> Route {
        match self {
            Op::Emit
            | Op::RecordRead
            | Op::RecordHead
            | Op::RecordDelete
            | Op::RecordWrite { .. }
            | Op::ListenResponse { .. }
            | Op::RpcRequest
            | Op::RpcFromProvider => Route::Owner,
            Op::RecordSubscribe { .. } | Op::RecordHeadBulk | Op::RpcProvide { .. } => {
                Route::SplitByOwner
            }
            Op::Ping
            | Op::ConnectionOther
            | Op::Subscribe { .. }
            | Op::RecordNotify
            | Op::Listen { .. }
            | Op::Presence(_)
            | Op::UnknownAction
            | Op::UnknownTopic => Route::Local,
        }
    }

    /// The rules the connection's shard checks, if any.
    pub fn checks(self) -> Option<Checks> {
        use RuleType::*;
        let (section, types, bulk): (Section, &'static [RuleType], bool) = match self {
            Op::Subscribe {
                kind: Kind::Event,
                on: true,
            } => (Section::Event, &[Subscribe], true),
            Op::Emit => (Section::Event, &[Publish], false),
            Op::Listen { kind, on: true } => (section_of(kind), &[Listen], false),
            Op::RecordSubscribe { .. } | Op::RecordHeadBulk => (Section::Record, &[Read], true),
            Op::RecordRead | Op::RecordHead => (Section::Record, &[Read], false),
            Op::RecordNotify => (Section::Record, &[Notify], true),
            Op::RpcProvide { on: true } => (Section::Rpc, &[Provide], true),
            Op::RpcRequest => (Section::Rpc, &[Request], false),
            Op::Presence(PresenceOp::Users) => (Section::Presence, &[Allow], true),
            Op::Presence(PresenceOp::Everyone) => (Section::Presence, &[Allow], false),
            _ => return None,
        };
        Some(Checks {
            section,
            types,
            bulk,
        })
    }

    /// Record rules the owner runs (it has `oldData` and knows whether the record exists); the
    /// connection's shard fetches the records they read with `_()` beforehand.
    pub fn owner_rules(self) -> &'static [RuleType] {
        match self {
            Op::RecordWrite { .. } => &[RuleType::Write, RuleType::Create],
            Op::RecordDelete => &[RuleType::Delete],
            Op::RecordSubscribe { create: true } => &[RuleType::Create],
            _ => &[],
        }
    }

    /// Whether the owner needs the message's records loaded from the store first.
    pub fn touches_records(self) -> bool {
        matches!(
            self,
            Op::RecordSubscribe { .. }
                | Op::RecordRead
                | Op::RecordHead
                | Op::RecordHeadBulk
                | Op::RecordDelete
                | Op::RecordWrite { .. }
        )
    }
}

fn section_of(kind: Kind) -> Section {
    match kind {
        Kind::Event => Section::Event,
        Kind::Record => Section::Record,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_topic_and_action_decodes_to_one_operation() {
        let mut seen = std::collections::HashSet::new();
        for t in 0..16 {
            for action in 0..200 {
                let op = Op::of(&Message::new(t, action));
                // Whatever has checks or owner rules is handled where its rules can run.
                if !op.owner_rules().is_empty() || op.touches_records() {
                    assert_ne!(op.route(), Route::Local, "{op:?}");
                }
                if let Some(checks) = op.checks() {
                    assert!(!checks.types.is_empty());
                }
                seen.insert(format!("{op:?}"));
            }
        }
        assert!(seen.len() >= 25, "{seen:?}");
        assert_eq!(
            Op::of(&Message::new(topic::RECORD, ra::PATCH)),
            Op::RecordWrite { path: true }
        );
        assert_eq!(Op::of(&Message::new(99, 1)), Op::UnknownTopic);
        assert_eq!(Op::of(&Message::new(topic::RPC, 250)), Op::UnknownAction);
    }
}
