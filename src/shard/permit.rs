//! Valve checks for client messages: on the connection's shard for everything that needs only
//! the name, the user and the message data; on the owner shard for record writes, deletes and
//! creates (they need the stored record as `oldData`, and whether it exists).

use super::Shard;
use crate::permission::rules::{RuleType, Section, User};
use crate::protocol::message::{
    event_action, presence_action, record_action, rpc_action, topic, Message,
};
use ahash::AHashMap;
use bytes::Bytes;
use simd_json::OwnedValue;
use std::sync::Arc;

/// Cached decisions of one connection; cleared when full so it stays bounded.
#[derive(Default)]
pub struct DecisionCache(AHashMap<(Section, RuleType, Bytes), bool>);

const CACHE_LIMIT: usize = 4096;

pub fn denied_action(topic: i32) -> i32 {
    match topic {
        topic::EVENT => event_action::MESSAGE_DENIED,
        topic::RECORD => record_action::MESSAGE_DENIED,
        topic::RPC => rpc_action::MESSAGE_DENIED,
        _ => presence_action::MESSAGE_DENIED,
    }
}

/// The reference's MESSAGE_DENIED shape.
pub fn denied(msg: &Message, name: Option<Bytes>) -> Message {
    Message {
        name,
        correlation_id: msg.correlation_id.clone(),
        original_action: Some(msg.action),
        is_error: Some(true),
        is_write_ack: msg.is_write_ack.filter(|w| *w),
        ..Message::new(msg.topic, denied_action(msg.topic))
    }
}

fn parse_json(bytes: &[u8]) -> Option<OwnedValue> {
    simd_json::to_owned_value(&mut bytes.to_vec()).ok()
}

/// One permission question: may the user do `ty` on `name` (with this data, over that old data)?
pub struct Ask<'a> {
    pub section: Section,
    pub ty: RuleType,
    pub name: &'a [u8],
    pub action: i32,
    pub data: Option<&'a [u8]>,
    pub old_data: Option<&'a [u8]>,
}

/// Evaluates the rule that applies; `data` and `old_data` are parsed only if it reads them.
pub fn evaluate(
    permissions: &crate::permission::rules::Permissions,
    user: &User,
    ask: &Ask<'_>,
) -> bool {
    let Ask {
        section,
        ty,
        name,
        action,
        data,
        old_data,
    } = *ask;
    let name = String::from_utf8_lossy(name);
    let Some(applicable) = permissions.applicable(section, ty, &name) else {
        return false;
    };
    let data = if applicable.rule.uses_data() {
        data.and_then(parse_json)
    } else {
        None
    };
    let old_data = if applicable.rule.uses_old_data() {
        old_data.and_then(parse_json)
    } else {
        None
    };
    applicable.eval(
        user,
        &name,
        action,
        data.as_ref(),
        old_data.as_ref(),
        permissions.max_work(),
    )
}

impl Shard {
    /// The user to carry to an owner shard, when there are rules to check there.
    pub(super) fn op_user(&self, local: u32) -> Option<Arc<User>> {
        if self.config.permissions.is_open() {
            return None;
        }
        self.conns.get(&local).map(|c| c.identity.clone())
    }

    /// Whether connection `local` may do `ty` on `name`; decisions that depend only on the
    /// name and the user are cached per connection.
    pub(super) fn permitted(
        &mut self,
        local: u32,
        section: Section,
        ty: RuleType,
        name: &[u8],
        action: i32,
        data: Option<&[u8]>,
    ) -> bool {
        let permissions = self.config.permissions.clone();
        if permissions.is_open() {
            return true;
        }
        let Some(conn) = self.conns.get_mut(&local) else {
            return false;
        };
        let key = (section, ty, Bytes::copy_from_slice(name));
        if let Some(decision) = conn.permission_cache.0.get(&key) {
            return *decision;
        }
        let text = String::from_utf8_lossy(name);
        let cacheable = permissions
            .applicable(section, ty, &text)
            .is_none_or(|a| a.rule.cacheable());
        let ask = Ask {
            section,
            ty,
            name,
            action,
            data,
            old_data: None,
        };
        let decision = evaluate(&permissions, &conn.identity, &ask);
        if cacheable {
            if conn.permission_cache.0.len() >= CACHE_LIMIT {
                conn.permission_cache.0.clear();
            }
            conn.permission_cache.0.insert(key, decision);
        }
        decision
    }

    /// Drops the names of a bulk message that `local` may not use, answering each with
    /// MESSAGE_DENIED. Returns false if none are left.
    pub(super) fn permit_names(
        &mut self,
        local: u32,
        msg: &mut Message,
        section: Section,
        ty: RuleType,
    ) -> bool {
        if self.config.permissions.is_open() {
            return true;
        }
        let names = std::mem::take(&mut msg.names);
        for name in names {
            if self.permitted(local, section, ty, &name, msg.action, None) {
                msg.names.push(name);
            } else {
                let reply = denied(msg, Some(name));
                self.send_local(local, &reply);
            }
        }
        !msg.names.is_empty()
    }

    /// One name's check on the connection's shard, answering MESSAGE_DENIED when it fails.
    pub(super) fn permit(
        &mut self,
        local: u32,
        msg: &Message,
        section: Section,
        ty: RuleType,
        name: &[u8],
    ) -> bool {
        if self.permitted(local, section, ty, name, msg.action, msg.data.as_deref()) {
            return true;
        }
        let reply = denied(msg, msg.name.clone());
        self.send_local(local, &reply);
        false
    }
}

impl Shard {
    /// The checks made on the connection's shard before a message is handled. False when the
    /// message (or every name of a bulk message) was denied and answered.
    pub(super) fn gate(&mut self, local: u32, msg: &mut Message) -> bool {
        use event_action as ea;
        use presence_action as pa;
        use record_action as ra;
        if self.config.permissions.is_open() {
            return true;
        }
        let name = msg.name.clone().unwrap_or_default();
        match (msg.topic, msg.action) {
            (topic::EVENT, ea::SUBSCRIBE) => {
                self.permit_names(local, msg, Section::Event, RuleType::Subscribe)
            }
            (topic::EVENT, ea::EMIT) => {
                self.permit(local, msg, Section::Event, RuleType::Publish, &name)
            }
            (topic::EVENT, ea::LISTEN) => {
                self.permit(local, msg, Section::Event, RuleType::Listen, &name)
            }
            (
                topic::RECORD,
                ra::SUBSCRIBECREATEANDREAD
                | ra::SUBSCRIBEANDREAD
                | ra::SUBSCRIBEANDHEAD
                | ra::HEAD_BULK,
            ) => self.permit_names(local, msg, Section::Record, RuleType::Read),
            (topic::RECORD, ra::READ | ra::HEAD) => {
                self.permit(local, msg, Section::Record, RuleType::Read, &name)
            }
            (topic::RECORD, ra::LISTEN) => {
                self.permit(local, msg, Section::Record, RuleType::Listen, &name)
            }
            (topic::RECORD, ra::NOTIFY) => {
                self.permit_names(local, msg, Section::Record, RuleType::Notify)
            }
            (topic::RPC, rpc_action::PROVIDE) => {
                self.permit_names(local, msg, Section::Rpc, RuleType::Provide)
            }
            (topic::RPC, rpc_action::REQUEST) => {
                self.permit(local, msg, Section::Rpc, RuleType::Request, &name)
            }
            (topic::PRESENCE, pa::SUBSCRIBE | pa::QUERY) => {
                self.permit_names(local, msg, Section::Presence, RuleType::Allow)
            }
            (topic::PRESENCE, pa::SUBSCRIBE_ALL | pa::QUERY_ALL) => {
                self.permit(local, msg, Section::Presence, RuleType::Allow, b"")
            }
            _ => true,
        }
    }
}

impl Shard {
    /// The owner shard's record checks: write (with the data after the change and the stored
    /// data before it), create when the record does not exist yet, delete. No user means no
    /// rules are configured.
    pub(super) fn owner_permits(
        &self,
        user: Option<&User>,
        ty: RuleType,
        name: &[u8],
        action: i32,
        data: Option<&[u8]>,
        old_data: Option<&[u8]>,
    ) -> bool {
        let Some(user) = user else { return true };
        let ask = Ask {
            section: Section::Record,
            ty,
            name,
            action,
            data,
            old_data,
        };
        evaluate(&self.config.permissions, user, &ask)
    }
}
