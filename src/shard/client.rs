//! Client messages by topic and action: what the connection's shard does itself (subscriptions,
//! acks, presence queries) and what the owner shard of the name does (writes, emits, RPC).

use super::msg::{Kind, MsgContext, Refs, ShardMsg};
use super::ops::{Op, Route};
use super::replies::{
    ack, denied, error_reply, invalid_data, invalid_data_action, refused, ws_frame,
};
use super::Shard;
use crate::core::ids::ConnId;
use crate::core::records::{
    apply_write, check_path, Change, StoredRecord, WriteOutcome, EMPTY_OBJECT,
};
use crate::permission::rules::{RuleType, User};
use crate::protocol::message::{
    event_action as ea, parser_action, presence_action as pa, record_action as ra, rpc_action,
    topic, Message,
};
use bytes::Bytes;
use std::sync::Arc;

impl Shard {
    pub(super) fn on_client_message(
        &mut self,
        local: u32,
        mut msg: Box<Message>,
        ctx: MsgContext,
        now: u64,
    ) {
        let from = self.conn_id(local);
        let op = Op::of(&msg);
        let Some(refs) = self.gate(op, local, &mut msg, ctx) else {
            return;
        };
        // The reference checks permissions first and then finds no handler for the topic.
        if !self.config.enabled_features.serves(msg.topic) {
            let reply = Message {
                original_topic: Some(msg.topic),
                ..Message::new(topic::PARSER, parser_action::UNKNOWN_TOPIC)
            };
            self.send_local(local, &reply);
            return;
        }
        // The connection's part; what is not answered here goes where `op.route()` says.
        match op {
            Op::Ping => {
                let pong = crate::protocol::message::connection_action::PONG;
                self.send_local(local, &Message::new(topic::CONNECTION, pong));
                return;
            }
            Op::ConnectionOther => return,
            Op::Subscribe { kind, on } => {
                let held: fn(&super::ConnExtras) -> &ahash::AHashSet<Bytes> = match kind {
                    Kind::Event => |e| &e.subscriptions[Kind::Event as usize],
                    Kind::Record => |e| &e.subscriptions[Kind::Record as usize],
                };
                if on && !self.subscriptions_within_budget(local, &mut msg, held) {
                    return;
                }
                self.bulk_subscribe(kind, local, &msg);
                return;
            }
            Op::RecordSubscribe { .. } => {
                if !self.subscriptions_within_budget(local, &mut msg, |e| {
                    &e.subscriptions[Kind::Record as usize]
                }) {
                    return;
                }
                self.bulk_subscribe(Kind::Record, local, &msg);
            }
            Op::Emit => {
                // An API request learns that its emit passed the permission check.
                if msg.name.is_some()
                    && self.conn_side.conns.get(&local).is_some_and(|c| c.is_api())
                {
                    self.send_local(local, &ack(&msg));
                }
                match msg.name {
                    Some(name) => {
                        let owner = self.owner(&name);
                        let emit = ShardMsg::Emit {
                            name,
                            data: msg.data,
                            from,
                        };
                        self.route(owner, emit);
                    }
                    None => self.send_local(local, &error_reply(&msg, ea::INVALID_MESSAGE_DATA)),
                }
                return;
            }
            Op::RecordWrite { path: true } => {
                // A path that can never apply is refused here, before it travels.
                if let Some(Err(reason)) = msg.path.as_deref().map(check_path) {
                    self.send_local(local, &invalid_data(&msg, &reason));
                    return;
                }
            }
            Op::RecordNotify => {
                self.notify(local, msg);
                return;
            }
            Op::Listen { kind, .. } => {
                self.listen(kind, local, &msg);
                return;
            }
            Op::ListenResponse { .. } => {
                match msg.subscription.clone() {
                    Some(name) => {
                        let owner = self.owner(&name);
                        let op = ShardMsg::Op {
                            msg,
                            from,
                            user: None,
                            refs: None,
                        };
                        self.route(owner, op);
                    }
                    None => {
                        self.send_local(local, &error_reply(&msg, invalid_data_action(msg.topic)))
                    }
                }
                return;
            }
            // In a cluster a provide's or unprovide's ack waits until every node has it (below).
            Op::RpcProvide { .. } if !self.bus.on => self.send_local(local, &ack(&msg)),
            Op::RpcProvide { .. } => {}
            Op::RpcRequest => {
                let user = self
                    .conn_side
                    .conns
                    .get(&local)
                    .map(|c| c.user().clone())
                    .unwrap_or_default();
                msg.requestor_name = self.config.provide_requestor_name.then_some(user);
                msg.requestor_data = None;
            }
            Op::Presence(_) => {
                self.presence(local, msg);
                return;
            }
            Op::UnknownAction => {
                let reply = Message {
                    original_topic: Some(msg.topic),
                    original_action: Some(msg.action),
                    ..Message::new(topic::PARSER, parser_action::UNKNOWN_ACTION)
                };
                self.send_local(local, &reply);
                return;
            }
            Op::UnknownTopic => {
                let reply = Message {
                    original_topic: Some(msg.topic),
                    ..Message::new(topic::PARSER, parser_action::UNKNOWN_TOPIC)
                };
                self.send_local(local, &reply);
                return;
            }
            Op::RecordWrite { path: false }
            | Op::RecordRead
            | Op::RecordHead
            | Op::RecordHeadBulk
            | Op::RecordDelete
            | Op::RpcFromProvider => {}
        }
        // A provide's or unprovide's ack waits until every node has applied it.
        let held_ack = (matches!(op, Op::RpcProvide { .. }) && self.bus.on)
            .then(|| (ws_frame(&ack(&msg)), msg.names.clone()));
        match op.route() {
            Route::Owner => self.route_to_owner(msg, from, refs),
            Route::SplitByOwner => self.split_by_owner(msg, from, refs),
            Route::Local => {}
        }
        if let Some((frame, names)) = held_ack {
            self.ack_once_nodes_know(local, frame, &names);
        }
        let _ = now;
    }

    /// A message about one name goes to that name's owner.
    fn route_to_owner(&mut self, msg: Box<Message>, from: ConnId, refs: Option<Arc<Refs>>) {
        // A provider's answer to a call another node routes goes back to that node.
        let Err(msg) = self.answer_remote_call(msg, from) else {
            return;
        };
        let Some(name) = msg.name.as_ref() else {
            self.send(from, &error_reply(&msg, invalid_data_action(msg.topic)));
            return;
        };
        let owner = self.owner(name);
        self.route(
            owner,
            ShardMsg::Op {
                msg,
                from,
                user: self.op_user(from.local),
                refs,
            },
        );
    }

    /// A bulk message is split into one message per owner shard, each with its own names.
    fn split_by_owner(&mut self, msg: Box<Message>, from: ConnId, refs: Option<Arc<Refs>>) {
        let mut per_shard: Vec<Vec<Bytes>> = vec![Vec::new(); self.shards];
        for name in &msg.names {
            per_shard[self.owner(name)].push(name.clone());
        }
        for (shard, names) in per_shard.into_iter().enumerate() {
            if !names.is_empty() {
                let part = Message {
                    names,
                    ..(*msg).clone()
                };
                self.route(
                    shard,
                    ShardMsg::Op {
                        msg: Box::new(part),
                        from,
                        user: self.op_user(from.local),
                        refs: refs.clone(),
                    },
                );
            }
        }
    }

    fn bulk_subscribe(&mut self, kind: Kind, local: u32, msg: &Message) {
        let subscribe = !matches!(
            (msg.topic, msg.action),
            (topic::EVENT, ea::UNSUBSCRIBE) | (topic::RECORD, ra::UNSUBSCRIBE)
        );
        let mut reply = ack(msg);
        if kind == Kind::Record {
            reply.names = msg.names.clone();
        }
        let token = subscribe.then(|| self.conn_side.held_replies.begin(local));
        let mut replies = vec![super::ws_frame(&reply)];
        for name in &msg.names {
            let changed = if subscribe {
                self.subscribe_local(kind, name, local)
            } else {
                self.unsubscribe_local(kind, name, local)
            };
            if !changed && kind == Kind::Event {
                let action = if subscribe {
                    ea::MULTIPLE_SUBSCRIPTIONS
                } else {
                    ea::NOT_SUBSCRIBED
                };
                let reply = Message {
                    name: Some(name.clone()),
                    ..error_reply(msg, action)
                };
                replies.push(super::ws_frame(&reply));
            }
        }
        let ready = match token {
            Some(token) => self.conn_side.held_replies.finish(token, replies),
            None => Some((local, replies)),
        };
        if let Some((local, replies)) = ready {
            self.send_frames_local(local, replies);
        }
    }

    fn listen(&mut self, kind: Kind, local: u32, msg: &Message) {
        let from = self.conn_id(local);
        let Some(pattern) = msg.name.clone() else {
            self.send_local(local, &error_reply(msg, invalid_data_action(msg.topic)));
            return;
        };
        let is_listen = matches!(
            (msg.topic, msg.action),
            (topic::EVENT, ea::LISTEN) | (topic::RECORD, ra::LISTEN)
        );
        if is_listen && !self.listen_within_budget(kind, local, &pattern) {
            self.send_local(local, &denied(msg, Some(pattern)));
            return;
        }
        let regex = if is_listen {
            let compiled = std::str::from_utf8(&pattern)
                .ok()
                .and_then(|p| crate::core::bounded_regex(p).ok());
            let Some(regex) = compiled else {
                let action = if kind == Kind::Event {
                    ea::INVALID_LISTEN_REGEX
                } else {
                    ra::INVALID_LISTEN_REGEX
                };
                self.send_local(local, &error_reply(msg, action));
                return;
            };
            Some(Arc::new(regex))
        } else {
            None
        };
        self.send_local(
            local,
            &Message {
                name: Some(pattern.clone()),
                ..ack(msg)
            },
        );
        if let Some(c) = self.conn_side.conns.get_mut(&local) {
            let listens = &mut c.extras().listens[kind as usize];
            if is_listen {
                listens.insert(crate::core::detach(&pattern));
            } else {
                listens.remove(&pattern);
            }
        }
        self.publish_listener(kind, &pattern, from, is_listen);
        let change = match regex {
            Some(regex) => ShardMsg::Listen {
                kind,
                pattern,
                regex: Some(regex),
                conn: from,
            },
            None => ShardMsg::Unlisten {
                kind,
                pattern,
                conn: from,
            },
        };
        self.broadcast(change);
    }

    /// Whether a new listen pattern fits this connection's budget and the server's: every name
    /// that gains a subscriber is matched against every distinct pattern.
    fn listen_within_budget(&mut self, kind: Kind, local: u32, pattern: &Bytes) -> bool {
        let limits = &self.config.limits;
        let Some(conn) = self.conn_side.conns.get_mut(&local) else {
            return false;
        };
        let listens = &conn.extras().listens;
        if listens[kind as usize].contains(pattern) {
            return true;
        }
        let held = listens[0].len() + listens[1].len();
        let total: usize = self
            .owner_side
            .listening
            .iter()
            .map(|l| l.pattern_count())
            .sum();
        held < limits.listen_patterns_per_connection && total < limits.listen_patterns
    }

    /// Drops the names of a subscribe that would take the connection past
    /// `limits.subscriptionsPerConnection`, answering each with MESSAGE_DENIED. False when
    /// none is left.
    /// `held` picks the set of names the connection holds of this kind.
    fn subscriptions_within_budget(
        &mut self,
        local: u32,
        msg: &mut Message,
        held: fn(&super::ConnExtras) -> &ahash::AHashSet<Bytes>,
    ) -> bool {
        let limit = self.config.limits.subscriptions_per_connection;
        let Some(conn) = self.conn_side.conns.get_mut(&local) else {
            return false;
        };
        let held = held(conn.extras());
        let mut room = limit.saturating_sub(held.len());
        let mut refused = Vec::new();
        msg.names.retain(|name| {
            if held.contains(name) {
                return true;
            }
            if room == 0 {
                refused.push(name.clone());
                return false;
            }
            room -= 1;
            true
        });
        for name in refused {
            self.send_local(local, &denied(msg, Some(name)));
        }
        !msg.names.is_empty()
    }

    fn presence(&mut self, local: u32, mut msg: Box<Message>) {
        let Some(me) = self.conn_side.conns.get(&local).map(|c| c.user().clone()) else {
            return;
        };
        if msg.action == pa::SUBSCRIBE
            && !self.subscriptions_within_budget(local, &mut msg, |e| &e.presence_users)
        {
            return;
        }
        match msg.action {
            pa::SUBSCRIBE | pa::UNSUBSCRIBE => {
                for user in &msg.names {
                    if msg.action == pa::SUBSCRIBE {
                        self.conn_side.presence_subscribers.add(user, local);
                        if let Some(c) = self.conn_side.conns.get_mut(&local) {
                            c.extras().presence_users.insert(crate::core::detach(user));
                        }
                    } else {
                        self.conn_side.presence_subscribers.remove(user, local);
                        if let Some(extras) = self
                            .conn_side
                            .conns
                            .get_mut(&local)
                            .and_then(|c| c.extras.as_mut())
                        {
                            extras.presence_users.remove(user);
                        }
                    }
                }
                self.send_local(local, &ack(&msg));
            }
            pa::SUBSCRIBE_ALL | pa::UNSUBSCRIBE_ALL => {
                let on = msg.action == pa::SUBSCRIBE_ALL;
                self.conn_side.presence_all.retain(|c| *c != local);
                if on {
                    self.conn_side.presence_all.push(local);
                }
                if let Some(c) = self.conn_side.conns.get_mut(&local) {
                    c.extras().presence_all = on;
                }
                self.send_local(local, &ack(&msg));
            }
            pa::QUERY_ALL => {
                let names = self.online.all_except(&me).cloned().collect();
                self.send_local(
                    local,
                    &Message {
                        names,
                        ..Message::new(topic::PRESENCE, pa::QUERY_ALL_RESPONSE)
                    },
                );
            }
            pa::QUERY => {
                let mut json = String::from("{");
                for (i, user) in msg.names.iter().enumerate() {
                    let name = String::from_utf8_lossy(user);
                    let key =
                        simd_json::to_string(&name.as_ref()).unwrap_or_else(|_| "\"\"".into());
                    if i > 0 {
                        json.push(',');
                    }
                    json.push_str(&format!("{key}:{}", self.online.contains(user)));
                }
                json.push('}');
                let reply = Message {
                    correlation_id: msg.correlation_id.clone(),
                    data: Some(Bytes::from(json)),
                    ..Message::new(topic::PRESENCE, pa::QUERY_RESPONSE)
                };
                self.send_local(local, &reply);
            }
            _ => {
                let reply = Message {
                    original_topic: Some(topic::PRESENCE),
                    original_action: Some(msg.action),
                    ..Message::new(topic::PARSER, parser_action::UNKNOWN_ACTION)
                };
                self.send_local(local, &reply);
            }
        }
    }

    /// The owner shard's part of a client message: records it needs are loaded first, and
    /// records nobody needs any more leave memory afterwards.
    pub(super) fn on_owner_op(
        &mut self,
        msg: Box<Message>,
        from: ConnId,
        user: Option<&User>,
        refs: Option<&Refs>,
        now: u64,
    ) {
        let op = Op::of(&msg);
        if !op.touches_records() {
            return self.handle_owner_op(op, msg, from, user, refs, now);
        }
        // In a cluster the version comes from the bucket with the record.
        if matches!(op, Op::RecordHead | Op::RecordHeadBulk) && !self.bus.on {
            // The version alone: a record not in memory is not loaded for it.
            if !self.versions_ready(&msg, from) {
                return;
            }
            let mut names = msg.names.clone();
            names.extend(msg.name.clone());
            self.handle_owner_op(op, msg, from, user, refs, now);
            for name in names {
                self.owner_side.records.forget_version(&name);
            }
            return;
        }
        if !self.records_ready(&msg, from, user, refs) {
            return;
        }
        let mut names = msg.names.clone();
        names.extend(msg.name.clone());
        self.handle_owner_op(op, msg, from, user, refs, now);
        for name in names {
            let subscribed = self.owner_side.interest[Kind::Record as usize].shards(&name) != 0;
            self.owner_side.records.evict_if_idle(&name, subscribed);
        }
    }

    /// The owner's part of an operation.
    fn handle_owner_op(
        &mut self,
        op: Op,
        msg: Box<Message>,
        from: ConnId,
        user: Option<&User>,
        refs: Option<&Refs>,
        now: u64,
    ) {
        match op {
            Op::ListenResponse { kind } => self.listen_response(kind, msg, from, now),
            Op::RecordSubscribe { create } => {
                for name in &msg.names {
                    let missing = self.owner_side.records.get(name).is_none();
                    if create && missing {
                        let permit = self.owner_permits(
                            user,
                            refs,
                            RuleType::Create,
                            name,
                            msg.action,
                            None,
                            None,
                        );
                        if let Err(why) = permit {
                            self.send(from, &refused(&msg, Some(name.clone()), why));
                            continue;
                        }
                        self.create_by_subscribe(name, from);
                    }
                    let reply = self.read_reply(msg.action, name);
                    self.send(from, &reply);
                    // A subscriber arriving after a provider accepted learns of it too.
                    if self.owner_side.listening[Kind::Record as usize].has_provider(name)
                        || self.listen_cluster.provided_elsewhere(name)
                    {
                        let has = Message {
                            name: Some(name.clone()),
                            ..Message::new(topic::RECORD, ra::SUBSCRIPTION_HAS_PROVIDER)
                        };
                        self.send(from, &has);
                    }
                }
            }
            Op::RecordRead | Op::RecordHead => {
                let Some(name) = msg.name.as_ref() else {
                    return;
                };
                let mut reply = self.read_reply(msg.action, name);
                // deepstream's clients send none; a codec may, to pair the answer with its
                // question (the V3 `has`).
                reply.correlation_id = msg.correlation_id.clone();
                self.send(from, &reply);
            }
            Op::RecordHeadBulk => {
                let versions = msg
                    .names
                    .iter()
                    .map(|n| {
                        (
                            n.clone(),
                            self.owner_side.records.version_of(n).unwrap_or(-1),
                        )
                    })
                    .collect();
                let reply = Message {
                    correlation_id: msg.correlation_id.clone(),
                    versions,
                    ..Message::new(topic::RECORD, ra::HEAD_RESPONSE_BULK)
                };
                self.send(from, &reply);
            }
            Op::RecordDelete => self.delete_record(msg, from, user, refs),
            Op::RecordWrite { .. } => self.write_record(msg, from, user, refs),
            Op::RpcProvide { on } => {
                for name in &msg.names {
                    let changed = if on {
                        self.owner_side.rpc.provide(name, from)
                    } else {
                        self.owner_side.rpc.unprovide(name, from)
                    };
                    if changed {
                        self.publish_provider(name, from, on);
                    }
                    if !changed {
                        let action = if on {
                            rpc_action::MULTIPLE_PROVIDERS
                        } else {
                            rpc_action::NOT_PROVIDED
                        };
                        let reply = Message {
                            name: Some(name.clone()),
                            ..error_reply(&msg, action)
                        };
                        self.send(from, &reply);
                    }
                }
            }
            Op::RpcRequest => self.route_rpc(|rpc, out| rpc.request(msg, from, now, out)),
            Op::RpcFromProvider => {
                self.route_rpc(|rpc, out| rpc.from_provider(msg, from, now, out))
            }
            // Handled on the connection's shard.
            Op::Ping
            | Op::ConnectionOther
            | Op::Subscribe { .. }
            | Op::Emit
            | Op::RecordNotify
            | Op::Listen { .. }
            | Op::Presence(_)
            | Op::UnknownAction
            | Op::UnknownTopic => {}
        }
    }

    fn listen_response(&mut self, kind: Kind, msg: Box<Message>, from: ConnId, now: u64) {
        let (Some(pattern), Some(name)) = (msg.name.as_ref(), msg.subscription.as_ref()) else {
            return;
        };
        let accept = matches!(
            (msg.topic, msg.action),
            (topic::EVENT, ea::LISTEN_ACCEPT) | (topic::RECORD, ra::LISTEN_ACCEPT)
        );
        if self
            .listen_response_to_home(kind, from, pattern, name, accept)
            .is_ok()
        {
            return;
        }
        let mut effects = Vec::new();
        if accept {
            self.owner_side.listening[kind as usize].accept(from, pattern, name, &mut effects);
        } else {
            self.owner_side.listening[kind as usize].reject(from, pattern, name, now, &mut effects);
        }
        self.apply_listen_effects(kind, effects);
    }

    /// Subscribe-create of a missing record makes it (version 0, `{}`), kept like any write:
    /// in the store, and in a cluster in the bucket too, so every node sees it (as the
    /// reference's cache does). The subscriber is answered from memory at once; if another
    /// node made or wrote the record first, the bucket's record replaces it and subscribers
    /// hear of that.
    fn create_by_subscribe(&mut self, name: &Bytes, from: ConnId) {
        let created = StoredRecord {
            version: 0,
            data: Bytes::from_static(EMPTY_OBJECT),
        };
        if self.owner_side.records.cluster.is_none() {
            self.owner_side.records.put(name, Some(created), None);
            return;
        }
        let update = Message {
            name: Some(name.clone()),
            version: Some(0),
            data: Some(Bytes::from_static(EMPTY_OBJECT)),
            ..Message::new(topic::RECORD, ra::UPDATE)
        };
        self.owner_side.records.replace(name, Some(created.clone()));
        self.commit_record(
            name,
            Some(created),
            ws_frame(&update),
            None,
            Some(from),
            || super::records::Waiting::Prefetch,
        );
    }

    /// READ_RESPONSE / HEAD_RESPONSE for one record.
    fn read_reply(&mut self, action: i32, name: &Bytes) -> Message {
        let stored = self.owner_side.records.get(name).cloned();
        let head = matches!(action, ra::HEAD | ra::SUBSCRIBEANDHEAD);
        if action == ra::HEAD {
            // Known from memory or from the store's head, whichever answered.
            let version = self.owner_side.records.version_of(name).unwrap_or(-1);
            return Message {
                name: Some(name.clone()),
                version: Some(version),
                ..Message::new(topic::RECORD, ra::HEAD_RESPONSE)
            };
        }
        match (stored, head) {
            (Some(record), false) => Message {
                name: Some(name.clone()),
                data: Some(record.data),
                version: Some(record.version),
                ..Message::new(topic::RECORD, ra::READ_RESPONSE)
            },
            (record, true) => Message {
                name: Some(name.clone()),
                version: Some(record.map_or(-1, |r| r.version)),
                ..Message::new(topic::RECORD, ra::HEAD_RESPONSE)
            },
            (None, false) => Message {
                name: Some(name.clone()),
                original_action: Some(action),
                is_error: Some(true),
                ..Message::new(topic::RECORD, ra::RECORD_NOT_FOUND)
            },
        }
    }

    fn write_record(
        &mut self,
        msg: Box<Message>,
        from: ConnId,
        user: Option<&User>,
        refs: Option<&Refs>,
    ) {
        let Some(name) = msg.name.clone() else { return };
        let change = match (msg.action, msg.path.clone(), msg.data.clone()) {
            (ra::UPDATE | ra::CREATEANDUPDATE, _, Some(data)) => Change::Replace(data),
            (ra::PATCH | ra::CREATEANDPATCH, Some(path), Some(value)) => {
                Change::Set { path, value }
            }
            (ra::ERASE, Some(path), _) | (ra::PATCH | ra::CREATEANDPATCH, Some(path), None) => {
                Change::Erase { path }
            }
            _ => {
                self.send(from, &error_reply(&msg, ra::INVALID_MESSAGE_DATA));
                return;
            }
        };
        let mut version = msg.version.unwrap_or(-1);
        // `record.storageHotPathPrefixes`: create-and-update writes of these names skip the
        // version check (the last write wins); a patch there is refused, as in the reference.
        let hot_path = matches!(msg.action, ra::CREATEANDUPDATE | ra::CREATEANDPATCH)
            && crate::store::has_prefix(&self.config.store.hot_paths, &name);
        if hot_path {
            if !matches!(change, Change::Replace(_)) {
                self.send(from, &error_reply(&msg, ra::INVALID_PATCH_ON_HOTPATH));
                return;
            }
            version = -1;
        }
        // Rules that do not read `data` are decided before the change is worked out, so a
        // denied write costs no patching; the others see the record as it would become.
        let old_data = self.owner_side.records.get(&name).map(|r| r.data.clone());
        let reads_data = self.owner_write_rules_read_data(user, &name);
        let permits = |shard: &Self, data: Option<&[u8]>| {
            shard.owner_permits(
                user,
                refs,
                RuleType::Write,
                &name,
                msg.action,
                data,
                old_data.as_deref(),
            )?;
            if old_data.is_none() {
                shard.owner_permits(user, refs, RuleType::Create, &name, msg.action, None, None)?;
            }
            Ok(())
        };
        if !reads_data {
            if let Err(why) = permits(self, None) {
                self.send(from, &refused(&msg, Some(name), why));
                return;
            }
        }
        let outcome = apply_write(
            self.owner_side.records.get(&name),
            version,
            &change,
            self.config.max_message_size,
        );
        let write_ack = msg.is_write_ack == Some(true);
        match outcome {
            WriteOutcome::Applied(record) => {
                if reads_data {
                    if let Err(why) = permits(self, Some(&record.data)) {
                        self.send(from, &refused(&msg, Some(name), why));
                        return;
                    }
                }
                let version = record.version;
                // The ack waits for the store; subscribers hear of the write at once.
                let ack = write_ack.then(|| {
                    let reply = Message {
                        name: Some(name.clone()),
                        correlation_id: msg.correlation_id.clone(),
                        is_write_ack: Some(true),
                        ..Message::new(topic::RECORD, ra::WRITE_ACKNOWLEDGEMENT)
                    };
                    (from, reply)
                });
                let retry = || super::records::Waiting::Op {
                    msg: msg.clone(),
                    from,
                    user: user.map(|u| Arc::new(u.clone())),
                    refs: refs.map(|r| Arc::new(r.clone())),
                };
                let out = match change {
                    Change::Replace(data) => Message {
                        data: Some(data),
                        ..Message::new(topic::RECORD, ra::UPDATE)
                    },
                    Change::Set { path, value } => Message {
                        path: Some(path),
                        data: Some(value),
                        ..Message::new(topic::RECORD, ra::PATCH)
                    },
                    Change::Erase { path } => Message {
                        path: Some(path),
                        ..Message::new(topic::RECORD, ra::ERASE)
                    },
                };
                let out = Message {
                    name: Some(name.clone()),
                    version: Some(version),
                    ..out
                };
                self.commit_record(&name, Some(record), ws_frame(&out), ack, Some(from), retry);
            }
            WriteOutcome::VersionExists(current) => {
                let reply = Message {
                    version: Some(current.version),
                    data: Some(current.data),
                    ..error_reply(&msg, ra::VERSION_EXISTS)
                };
                self.send(from, &reply);
            }
            WriteOutcome::InvalidVersion(current) => {
                let mut reply = error_reply(&msg, ra::INVALID_VERSION);
                reply.version = Some(current);
                self.send(from, &reply);
            }
            WriteOutcome::InvalidData(reason) => self.send(from, &invalid_data(&msg, &reason)),
        }
    }

    fn delete_record(
        &mut self,
        msg: Box<Message>,
        from: ConnId,
        user: Option<&User>,
        refs: Option<&Refs>,
    ) {
        let Some(name) = msg.name.clone() else { return };
        let current = self.owner_side.records.get(&name).map(|r| r.data.clone());
        let permit = self.owner_permits(
            user,
            refs,
            RuleType::Delete,
            &name,
            msg.action,
            None,
            current.as_deref(),
        );
        if let Err(why) = permit {
            self.send(from, &refused(&msg, Some(name), why));
            return;
        }
        let deleted = ws_frame(&Message {
            name: Some(name.clone()),
            ..Message::new(topic::RECORD, ra::DELETED)
        });
        let reply = Message {
            name: Some(name.clone()),
            correlation_id: msg.correlation_id.clone(),
            ..Message::new(topic::RECORD, ra::DELETE_SUCCESS)
        };
        let retry = || super::records::Waiting::Op {
            msg: msg.clone(),
            from,
            user: user.map(|u| Arc::new(u.clone())),
            refs: refs.map(|r| Arc::new(r.clone())),
        };
        self.commit_record(&name, None, deleted, Some((from, reply)), Some(from), retry);
    }
}
