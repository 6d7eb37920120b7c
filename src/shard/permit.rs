//! Valve checks for client messages: on the connection's shard for everything that needs only
//! the name, the user, the message data and records read with `_()`; on the owner shard for
//! record writes, deletes and creates (they need the stored record as `oldData`, and whether it
//! exists). Records a rule reads with `_()` are fetched from their owners first: the message
//! waits, then is handled again with them (at most `maxRuleIterations` rounds).

use super::msg::{MsgContext, Refs, ShardMsg};
use super::ops::{Checks, Op};
use super::replies::{refused, Refused};
use super::Shard;
use crate::permission::rules::{Permissions, RuleInput, RuleType, RuleVerdict, Section, User};
use crate::protocol::message::Message;
use ahash::AHashMap;
use bytes::Bytes;
use simd_json::OwnedValue;
use std::sync::Arc;

/// Cached decisions of one connection; cleared when full so it stays bounded. Keyed by section
/// and rule type first, so a lookup borrows the name instead of copying it.
#[derive(Default)]
pub struct DecisionCache {
    by_rule: AHashMap<(Section, RuleType), AHashMap<Bytes, bool>>,
    entries: usize,
}

impl DecisionCache {
    fn get(&self, section: Section, ty: RuleType, name: &[u8]) -> Option<bool> {
        self.by_rule.get(&(section, ty))?.get(name).copied()
    }

    fn insert(&mut self, section: Section, ty: RuleType, name: &[u8], allow: bool) {
        if self.entries >= CACHE_LIMIT {
            self.by_rule.clear();
            self.entries = 0;
        }
        let names = self.by_rule.entry((section, ty)).or_default();
        if names.insert(Bytes::copy_from_slice(name), allow).is_none() {
            self.entries += 1;
        }
    }
}

const CACHE_LIMIT: usize = 4096;
/// Messages waiting for `_()` records, per shard; past this they are refused.
const MAX_WAITING_CHECKS: usize = 10_000;

/// A message waiting for the records its rules read.
pub struct WaitingCheck {
    local: u32,
    msg: Box<Message>,
    refs: Refs,
    waiting: Vec<String>,
    rounds: u32,
    /// A record the rule reads could not be read as JSON.
    unreadable: bool,
}

pub enum Verdict {
    Allow,
    Refuse(Refused),
    /// The rule reads these records with `_()`; ask again once they are known.
    Need(Vec<String>),
}

const DENY: Verdict = Verdict::Refuse(Refused::Denied);

/// JSON as the clients will read it; what cannot be read exactly is `Err`, and a rule that
/// would read it denies.
fn parse_json(bytes: &[u8]) -> Result<OwnedValue, crate::core::json::Unreadable> {
    crate::core::json::parse(bytes)
}

/// `data` / `oldData` for a rule that reads them: absent stays `None`, unreadable is `Err`.
fn parse_for_rule(
    reads: bool,
    bytes: Option<&[u8]>,
) -> Result<Option<OwnedValue>, crate::core::json::Unreadable> {
    match bytes {
        Some(bytes) if reads => parse_json(bytes).map(Some),
        _ => Ok(None),
    }
}

/// One permission question: may the user do `ty` on `name` (with this data, over that old data)?
#[derive(Clone, Copy)]
pub struct Ask<'a> {
    pub section: Section,
    pub ty: RuleType,
    pub name: &'a [u8],
    pub action: i32,
    pub data: Option<&'a [u8]>,
    pub old_data: Option<&'a [u8]>,
}

/// Evaluates the rule that applies; `data` and `old_data` are parsed only if it reads them.
pub fn evaluate(permissions: &Permissions, user: &User, ask: &Ask<'_>, refs: &Refs) -> Verdict {
    let name = String::from_utf8_lossy(ask.name);
    if let Some(plugin) = permissions.plugin() {
        let request = crate::permission::plugin::PermissionRequest {
            user: &String::from_utf8_lossy(&user.id),
            authenticated: user.authenticated,
            section: ask.section,
            action: ask.ty,
            name: &name,
        };
        // A plugin that panics denies (fail closed) instead of taking the shard down.
        let allowed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            plugin.0.can_perform_action(&request)
        }));
        return match allowed {
            Ok(true) => Verdict::Allow,
            Ok(false) => DENY,
            Err(_) => {
                crate::log!(
                    crate::log::Level::Error,
                    "PERMISSION_PLUGIN",
                    "the permission plugin panicked: the action is denied"
                );
                Verdict::Refuse(Refused::Failed)
            }
        };
    }
    let Some(applicable) = permissions.applicable(ask.section, ask.ty, &name) else {
        return DENY;
    };
    let rule = applicable.rule;
    // Data a rule cannot read exactly as a JavaScript receiver would is denied, never guessed.
    let Ok(data) = parse_for_rule(rule.uses_data(), ask.data) else {
        return DENY;
    };
    let Ok(old_data) = parse_for_rule(rule.uses_old_data(), ask.old_data) else {
        return DENY;
    };
    let input = RuleInput {
        user,
        name: &name,
        action: ask.action,
        data: data.as_ref(),
        old_data: old_data.as_ref(),
        refs,
        max_work: permissions.max_work(),
    };
    match applicable.check(&input) {
        RuleVerdict::Allow => Verdict::Allow,
        RuleVerdict::Deny => DENY,
        RuleVerdict::Error(_) => Verdict::Refuse(Refused::Failed),
        RuleVerdict::Need(names) => Verdict::Need(names),
    }
}

impl Shard {
    /// The user to carry to an owner shard, when there are rules to check there.
    pub(super) fn op_user(&self, local: u32) -> Option<Arc<User>> {
        if self.config.permissions.is_open() {
            return None;
        }
        self.conn_side.conns.get(&local).map(|c| c.identity.clone())
    }

    /// One decision, cached per connection when it depends only on the name and the user.
    fn decide(&mut self, local: u32, ask: &Ask<'_>, refs: &Refs) -> Verdict {
        let permissions = self.config.permissions.clone();
        let Some(conn) = self.conn_side.conns.get_mut(&local) else {
            return DENY;
        };
        let cached = conn
            .extras()
            .permission_cache
            .get(ask.section, ask.ty, ask.name);
        if let Some(allow) = cached {
            return if allow { Verdict::Allow } else { DENY };
        }
        let text = String::from_utf8_lossy(ask.name);
        let cacheable = permissions
            .applicable(ask.section, ask.ty, &text)
            .is_none_or(|a| a.rule.cacheable());
        let verdict = evaluate(&permissions, &conn.identity, ask, refs);
        // A failed rule is not cached: each message gets its MESSAGE_PERMISSION_ERROR.
        if cacheable && matches!(verdict, Verdict::Allow | Verdict::Refuse(Refused::Denied)) {
            let allow = matches!(verdict, Verdict::Allow);
            conn.extras()
                .permission_cache
                .insert(ask.section, ask.ty, ask.name, allow);
        }
        verdict
    }

    /// The checks made on the connection's shard before a message is handled. `None` when the
    /// message was refused (and answered) or waits for records its rules read; else the
    /// records fetched for the owner's rules, to travel with the message.
    pub(super) fn gate(
        &mut self,
        op: Op,
        local: u32,
        msg: &mut Message,
        ctx: MsgContext,
    ) -> Option<Option<Arc<Refs>>> {
        if self.config.permissions.is_open() {
            return Some(None);
        }
        let MsgContext { refs, rounds } = ctx;
        let mut need: Vec<String> = Vec::new();
        let mut refusals: Vec<(Bytes, Refused)> = Vec::new();
        let add_need = |names: Vec<String>, need: &mut Vec<String>| {
            for n in names {
                if !need.contains(&n) {
                    need.push(n);
                }
            }
        };
        let checks = op.checks();
        let bulk = checks.is_some_and(|c| c.bulk);
        if let Some(Checks { section, types, .. }) = checks {
            let single = [msg.name.clone().unwrap_or_default()];
            let names: Vec<Bytes> = if bulk {
                msg.names.clone()
            } else {
                single.to_vec()
            };
            for name in &names {
                let mut refusal = None;
                for ty in types {
                    let ask = Ask {
                        section,
                        ty: *ty,
                        name,
                        action: msg.action,
                        data: msg.data.as_deref(),
                        old_data: None,
                    };
                    match self.decide(local, &ask, &refs) {
                        Verdict::Allow => {}
                        Verdict::Refuse(why) => refusal = refusal.or(Some(why)),
                        Verdict::Need(names) => add_need(names, &mut need),
                    }
                }
                if let Some(why) = refusal {
                    refusals.push((name.clone(), why));
                }
            }
        }
        // Records the owner's rules read are fetched here, so the owner can decide at once.
        let name = msg.name.clone().unwrap_or_default();
        let owner_names: Vec<Bytes> = if msg.names.is_empty() {
            vec![name]
        } else {
            msg.names.clone()
        };
        for ty in op.owner_rules() {
            for name in &owner_names {
                let text = String::from_utf8_lossy(name);
                let Some(applicable) =
                    self.config
                        .permissions
                        .applicable(Section::Record, *ty, &text)
                else {
                    continue;
                };
                if !applicable.rule.uses_refs() {
                    continue;
                }
                let identity = self
                    .conn_side
                    .conns
                    .get(&local)
                    .map(|c| c.identity.clone())
                    .unwrap_or_default();
                // Unreadable data: the owner's rule will deny; no records to fetch for it.
                let Ok(data) = parse_for_rule(applicable.rule.uses_data(), msg.data.as_deref())
                else {
                    continue;
                };
                let input = RuleInput {
                    user: &identity,
                    name: &text,
                    action: msg.action,
                    data: data.as_ref(),
                    old_data: None,
                    refs: &refs,
                    max_work: self.config.permissions.max_work(),
                };
                if let RuleVerdict::Need(names) = applicable.check(&input) {
                    add_need(names, &mut need);
                }
            }
        }
        if !need.is_empty() {
            self.wait_for_records(local, Box::new(msg.clone()), refs, need, rounds);
            return None;
        }
        let refs = (!refs.is_empty()).then(|| Arc::new(refs));
        if refusals.is_empty() {
            return Some(refs);
        }
        if !bulk {
            let why = refusals.first().map_or(Refused::Denied, |r| r.1);
            let reply = refused(msg, msg.name.clone(), why);
            self.send_local(local, &reply);
            return None;
        }
        msg.names.retain(|n| !refusals.iter().any(|(r, _)| r == n));
        for (name, why) in refusals {
            let reply = refused(msg, Some(name), why);
            self.send_local(local, &reply);
        }
        (!msg.names.is_empty()).then_some(refs)
    }

    /// Parks a message until the records its rules read have come from their owners.
    fn wait_for_records(
        &mut self,
        local: u32,
        msg: Box<Message>,
        refs: Refs,
        names: Vec<String>,
        rounds: u32,
    ) {
        if rounds >= self.config.permissions.max_rule_iterations()
            || self.conn_side.waiting_checks.len() >= MAX_WAITING_CHECKS
        {
            let reply = refused(&msg, msg.name.clone(), Refused::Failed);
            self.send_local(local, &reply);
            return;
        }
        self.conn_side.next_check = self.conn_side.next_check.wrapping_add(1);
        let token = self.conn_side.next_check;
        let mut per_owner: AHashMap<usize, Vec<String>> = AHashMap::new();
        for name in &names {
            per_owner
                .entry(self.owner(name.as_bytes()))
                .or_default()
                .push(name.clone());
        }
        self.conn_side.waiting_checks.insert(
            token,
            WaitingCheck {
                local,
                msg,
                refs,
                waiting: names,
                rounds: rounds + 1,
                unreadable: false,
            },
        );
        for (owner, names) in per_owner {
            self.route(
                owner,
                ShardMsg::RuleRead {
                    names,
                    token,
                    reply_to: self.id as u16,
                },
            );
        }
    }

    /// An owner's part: the stored data of records a rule elsewhere reads (loaded first).
    pub(super) fn on_rule_read(&mut self, names: Vec<String>, token: u64, reply_to: u16) {
        if let Some(missing) = names
            .iter()
            .find(|n| !self.owner_side.records.is_loaded(n.as_bytes()))
        {
            let missing = Bytes::copy_from_slice(missing.as_bytes());
            let waiting = super::records::Waiting::RuleRead {
                names,
                token,
                reply_to,
            };
            if let Err(super::records::Waiting::RuleRead {
                names,
                token,
                reply_to,
            }) = self.owner_side.records.wait_for(&missing, waiting)
            {
                // Too busy to wait: the rule sees these records as missing rather than hanging.
                let records = names.into_iter().map(|n| (n, None)).collect();
                self.route(usize::from(reply_to), ShardMsg::RuleData { token, records });
            }
            return;
        }
        let records: Vec<(String, Option<Bytes>)> = names
            .into_iter()
            .map(|n| {
                let data = self
                    .owner_side
                    .records
                    .get(n.as_bytes())
                    .map(|r| r.data.clone());
                (n, data)
            })
            .collect();
        for (name, _) in &records {
            let subscribed = self.owner_side.interest[super::msg::Kind::Record as usize]
                .shards(name.as_bytes())
                != 0;
            self.owner_side
                .records
                .evict_if_idle(name.as_bytes(), subscribed);
        }
        self.route(usize::from(reply_to), ShardMsg::RuleData { token, records });
    }

    /// Records arrived for a waiting message; once all are in, it is handled again.
    pub(super) fn on_rule_data(
        &mut self,
        token: u64,
        records: Vec<(String, Option<Bytes>)>,
        now: u64,
    ) {
        let Some(check) = self.conn_side.waiting_checks.get_mut(&token) else {
            return;
        };
        for (name, data) in records {
            check.waiting.retain(|n| *n != name);
            match data.as_deref().map(parse_json) {
                Some(Ok(value)) => check.refs.push((name, Some(value))),
                None => check.refs.push((name, None)),
                // A record a rule reads but cannot read exactly: the rule cannot be evaluated.
                Some(Err(_)) => check.unreadable = true,
            }
        }
        if !check.waiting.is_empty() {
            return;
        }
        let Some(check) = self.conn_side.waiting_checks.remove(&token) else {
            return;
        };
        if !self.conn_side.conns.contains_key(&check.local) {
            return;
        }
        if check.unreadable {
            let reply = refused(&check.msg, check.msg.name.clone(), Refused::Failed);
            self.send_local(check.local, &reply);
            return;
        }
        let ctx = MsgContext {
            refs: check.refs,
            rounds: check.rounds,
        };
        self.on_client_message(check.local, check.msg, ctx, now);
    }

    /// Whether the owner's write or create rule for `name` reads `data` (then the change is
    /// applied before it is checked). No user means no rules.
    pub(super) fn owner_write_rules_read_data(&self, user: Option<&User>, name: &[u8]) -> bool {
        if user.is_none() {
            return false;
        }
        let name = String::from_utf8_lossy(name);
        [RuleType::Write, RuleType::Create].iter().any(|ty| {
            self.config
                .permissions
                .applicable(Section::Record, *ty, &name)
                .is_some_and(|a| a.rule.uses_data())
        })
    }

    /// The owner shard's record checks: write (with the data after the change and the stored
    /// data before it), create when the record does not exist yet, delete. No user means no
    /// rules are configured. Records a rule reads were fetched by the connection's shard.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn owner_permits(
        &self,
        user: Option<&User>,
        refs: Option<&Refs>,
        ty: RuleType,
        name: &[u8],
        action: i32,
        data: Option<&[u8]>,
        old_data: Option<&[u8]>,
    ) -> Result<(), Refused> {
        let Some(user) = user else { return Ok(()) };
        let ask = Ask {
            section: Section::Record,
            ty,
            name,
            action,
            data,
            old_data,
        };
        let none = Refs::new();
        match evaluate(&self.config.permissions, user, &ask, refs.unwrap_or(&none)) {
            Verdict::Allow => Ok(()),
            Verdict::Refuse(why) => Err(why),
            // The connection's shard fetched every record the rule reads; one still missing
            // means the rule cannot be decided, and undecided is refused.
            Verdict::Need(_) => Err(Refused::Failed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::permission::plugin::{Permission, PermissionPlugin, PermissionRequest};

    /// Allows names that start with the user's id, and panics on `boom`.
    struct Prefix;

    impl Permission for Prefix {
        fn can_perform_action(&self, request: &PermissionRequest<'_>) -> bool {
            assert!(request.name != "boom", "a plugin bug");
            request.name.starts_with(request.user)
        }
    }

    #[test]
    fn a_permission_plugin_decides_and_a_panicking_one_denies() {
        let permissions = Permissions::from_plugin(PermissionPlugin(Arc::new(Prefix)));
        let user = User {
            id: Bytes::from_static(b"ann"),
            authenticated: true,
            server_data: None,
        };
        let ask = |name: &'static str| Ask {
            section: Section::Event,
            ty: RuleType::Publish,
            name: name.as_bytes(),
            action: 0,
            data: None,
            old_data: None,
        };
        let verdict = |name| evaluate(&permissions, &user, &ask(name), &Refs::new());
        assert!(matches!(verdict("ann/news"), Verdict::Allow));
        assert!(matches!(
            verdict("bob/news"),
            Verdict::Refuse(Refused::Denied)
        ));
        assert!(matches!(verdict("boom"), Verdict::Refuse(Refused::Failed)));
    }
}
