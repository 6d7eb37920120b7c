//! The connection lifecycle as the reference runs it: challenge, login, then normal messages.

use super::{Phase, Shard, ShardMsg};

/// Login work the runtime does away from the shard's turn; its answer comes back through
/// `Shard::on_auth_answer`.
#[derive(Debug, Clone)]
pub struct AuthJob {
    pub local: u32,
    pub strategy: usize,
    pub work: AuthWork,
}

#[derive(Debug, Clone)]
pub enum AuthWork {
    /// Ask the strategy (a webhook or a plugin) about this login: the webhook's JSON body,
    /// `{"connectionData": .., "authData": ..}`.
    Ask(String),
    /// Check a password hash (on the blocking pool: pbkdf2 takes milliseconds).
    Password(auth::PasswordCheck),
}
use crate::auth;
use crate::protocol::message::{
    auth_action, connection_action, parser_action, topic, Message, ParseError,
};
use crate::protocol::ws;
use bytes::Bytes;

fn parse_error_text(error: &ParseError) -> &'static str {
    match error {
        ParseError::Malformed(_) | ParseError::BadLength | ParseError::BadField(_) => {
            "\"malformed protobuf message\""
        }
        ParseError::MissingTopic => "\"message without a topic\"",
        ParseError::UnknownTopic(_) => "\"unknown topic\"",
    }
}

impl Shard {
    /// One binary WebSocket message from connection `local`.
    pub fn on_client_frame(&mut self, local: u32, frame: &Bytes, now: u64) {
        self.now = self.now.max(now);
        let Some(phase) = self.conn_side.conns.get(&local).map(|c| c.phase) else {
            return;
        };
        let msg = match Message::parse_boxed(frame) {
            Ok(msg) => msg,
            Err(error) => {
                let reply = match error {
                    ParseError::UnknownTopic(t) => Message {
                        original_topic: Some(t),
                        ..Message::new(topic::PARSER, parser_action::UNKNOWN_TOPIC)
                    },
                    _ => Message {
                        data: Some(Bytes::from_static(parse_error_text(&error).as_bytes())),
                        ..Message::new(topic::PARSER, parser_action::MESSAGE_PARSE_ERROR)
                    },
                };
                self.send_local(local, &reply);
                return;
            }
        };
        self.on_message_in_phase(local, phase, msg, now);
    }

    /// One message a codec of another endpoint (V3 text, JSON, 4.0 framing, MQTT) read from
    /// connection `local`. It is handled as the binary frame carrying it: what protobuf cannot
    /// carry (a topic the schema lacks, a field the topic has not) is refused or dropped exactly
    /// as for a ws-binary client, so no endpoint reaches the shard with what another cannot.
    pub fn on_client_message_of(&mut self, local: u32, msg: Box<Message>, now: u64) {
        self.on_client_frame(local, &msg.encode(), now);
    }

    fn on_message_in_phase(&mut self, local: u32, phase: Phase, msg: Box<Message>, now: u64) {
        self.count(|m| m.messages_in.add(msg.topic, msg.action));
        match phase {
            Phase::AwaitChallenge => self.on_challenge(local, &msg),
            Phase::AwaitAuth => self.on_auth(local, &msg),
            // The client waits for the answer; anything else meanwhile is out of turn.
            Phase::Authenticating => {
                let reply = Message {
                    original_topic: Some(msg.topic),
                    original_action: Some(msg.action),
                    ..Message::new(topic::AUTH, auth_action::INVALID_MESSAGE)
                };
                self.send_local(local, &reply);
            }
            Phase::Open => {
                self.on_client_message(local, msg, super::msg::MsgContext::default(), now)
            }
            Phase::Closed => {}
        }
    }

    /// The auth data of an HTTP API request: the strategies run as for a socket's login, and
    /// AUTH_SUCCESSFUL or AUTH_UNSUCCESSFUL arrives in its outbox.
    pub fn api_login(&mut self, local: u32, auth_data: simd_json::OwnedValue) {
        self.count(|m| m.api_requests += 1);
        self.continue_auth(local, auth_data, 0, None);
    }

    /// One item of a logged-in HTTP API request, as the message it stands for.
    pub fn on_api_message(&mut self, local: u32, msg: Box<Message>, now: u64) {
        self.now = self.now.max(now);
        let open = self
            .conn_side
            .conns
            .get(&local)
            .is_some_and(|c| c.is_api() && c.phase == Phase::Open);
        if open {
            self.count(|m| m.messages_in.add(msg.topic, msg.action));
            self.on_client_message(local, msg, super::msg::MsgContext::default(), now);
        }
    }

    /// A text frame: deepstream's binary endpoint cannot read it.
    pub fn on_client_text(&mut self, local: u32) {
        let reply = Message {
            data: Some(Bytes::from_static(
                b"\"text frames are not supported, use binary\"",
            )),
            ..Message::new(topic::PARSER, parser_action::INVALID_MESSAGE)
        };
        self.send_local(local, &reply);
    }

    fn on_challenge(&mut self, local: u32, msg: &Message) {
        if msg.topic == topic::CONNECTION && msg.action == connection_action::PING {
            return;
        }
        if msg.topic == topic::CONNECTION && msg.action == connection_action::CHALLENGE {
            if let Some(conn) = self.conn_side.conns.get_mut(&local) {
                conn.phase = Phase::AwaitAuth;
            }
            self.send_local(
                local,
                &Message::new(topic::CONNECTION, connection_action::ACCEPT),
            );
            return;
        }
        let reply = Message {
            original_topic: Some(msg.topic),
            original_action: Some(msg.action),
            ..Message::new(topic::CONNECTION, connection_action::INVALID_MESSAGE)
        };
        self.send_local(local, &reply);
    }

    fn on_auth(&mut self, local: u32, msg: &Message) {
        if msg.topic == topic::CONNECTION && msg.action == connection_action::PING {
            return;
        }
        if msg.topic != topic::AUTH {
            let reply = Message {
                original_topic: Some(msg.topic),
                original_action: Some(msg.action),
                ..Message::new(topic::AUTH, auth_action::INVALID_MESSAGE)
            };
            self.send_local(local, &reply);
            return;
        }
        let auth_data = (msg.action == auth_action::REQUEST)
            .then_some(msg.data.as_ref())
            .flatten()
            .and_then(|d| simd_json::to_owned_value(&mut d.to_vec()).ok())
            .filter(|v| matches!(v, simd_json::OwnedValue::Object(_)));
        let Some(auth_data) = auth_data else {
            let reply = Message {
                original_action: Some(msg.action),
                ..Message::new(topic::AUTH, auth_action::INVALID_MESSAGE_DATA)
            };
            self.send_local(local, &reply);
            self.close_with(local, ws::CLOSE_POLICY, "invalid auth message");
            return;
        };
        self.continue_auth(local, auth_data, 0, None);
    }

    /// Runs the auth strategies from `start`; a webhook strategy becomes an `AuthJob` for the
    /// runtime, whose answer comes back through `on_auth_answer`.
    fn continue_auth(
        &mut self,
        local: u32,
        auth_data: simd_json::OwnedValue,
        start: usize,
        rejected_with: Option<String>,
    ) {
        match auth::run_from(&self.config.auth, start, &auth_data) {
            auth::Verdict::Accept(login) => self.login_succeeded(local, login),
            auth::Verdict::Reject => self.login_failed(local, rejected_with),
            auth::Verdict::Ask(strategy) => {
                let body = format!(
                    r#"{{"connectionData":{{}},"authData":{}}}"#,
                    simd_json::prelude::Writable::encode(&auth_data)
                );
                self.wait_for_auth(local, strategy, auth_data, AuthWork::Ask(body));
            }
            auth::Verdict::Verify(strategy, check) => {
                self.wait_for_auth(local, strategy, auth_data, AuthWork::Password(check));
            }
        }
    }

    /// The connection waits while the runtime does `work` for strategy `strategy`.
    fn wait_for_auth(
        &mut self,
        local: u32,
        strategy: usize,
        auth_data: simd_json::OwnedValue,
        work: AuthWork,
    ) {
        let Some(conn) = self.conn_side.conns.get_mut(&local) else {
            return;
        };
        conn.phase = Phase::Authenticating;
        conn.extras().pending_auth = Some(auth_data);
        self.conn_side.auth_jobs.push(AuthJob {
            local,
            strategy,
            work,
        });
    }

    /// The answer to an `AuthJob` for connection `local`: accepted, or rejected (with client
    /// data).
    pub fn on_auth_answer(
        &mut self,
        local: u32,
        strategy: usize,
        answer: Result<auth::LoginOk, Option<String>>,
    ) {
        let Some(conn) = self.conn_side.conns.get_mut(&local) else {
            return;
        };
        if conn.phase != Phase::Authenticating {
            return;
        }
        let Some(auth_data) = conn.extras.as_mut().and_then(|e| e.pending_auth.take()) else {
            return;
        };
        conn.phase = Phase::AwaitAuth;
        match answer {
            Ok(login) => self.login_succeeded(local, login),
            Err(client_data) => self.continue_auth(local, auth_data, strategy + 1, client_data),
        }
    }

    /// Webhook calls the runtime must make.
    #[must_use]
    pub fn take_auth_jobs(&mut self) -> Vec<AuthJob> {
        std::mem::take(&mut self.conn_side.auth_jobs)
    }

    fn login_succeeded(&mut self, local: u32, login: auth::LoginOk) {
        let api = self.conn_side.conns.get(&local).is_some_and(|c| c.is_api());
        self.count(|m| {
            if api {
                m.api_logins_accepted += 1;
            } else {
                m.logins_accepted += 1;
            }
        });
        let user = Bytes::from(login.id.clone());
        let identity = crate::permission::rules::User {
            authenticated: user.as_ref() != auth::OPEN_USER.as_bytes(),
            server_data: login
                .server_data
                .as_ref()
                .and_then(|d| simd_json::to_owned_value(&mut d.clone().into_bytes()).ok()),
            id: user.clone(),
        };
        if !api {
            self.session_event("login", local, &user);
        }
        if let Some(conn) = self.conn_side.conns.get_mut(&local) {
            if std::sync::Arc::ptr_eq(&conn.identity, &self.conn_side.anonymous) {
                self.conn_side.awaiting_login -= 1;
            }
            conn.phase = Phase::Open;
            conn.identity = std::sync::Arc::new(identity);
        }
        // An HTTP API login gets the auth endpoint's whole answer, token and all; a
        // WebSocket client only its client data, as in the reference.
        let data = if api {
            Some(Bytes::from(auth::endpoint_answer(&login)))
        } else {
            login.client_data.map(Bytes::from)
        };
        let reply = Message {
            data,
            ..Message::new(topic::AUTH, auth_action::AUTH_SUCCESSFUL)
        };
        // API requests are not in presence, as in the reference.
        if api || user.as_ref() == auth::OPEN_USER.as_bytes() {
            self.send_local(local, &reply);
        } else {
            let owner = self.owner(&user);
            // Sent later, by the owner of the user's presence, as a frame: counted here.
            self.count(|m| m.messages_out.add(reply.topic, reply.action));
            let reply = Some((self.conn_id(local), super::ws_frame(&reply)));
            self.route(
                owner,
                ShardMsg::PresenceLogin {
                    user,
                    login: true,
                    reply,
                },
            );
        }
    }

    fn login_failed(&mut self, local: u32, client_data: Option<String>) {
        let reply = Message {
            data: client_data.map(Bytes::from),
            ..Message::new(topic::AUTH, auth_action::AUTH_UNSUCCESSFUL)
        };
        self.send_local(local, &reply);
        let Some(conn) = self.conn_side.conns.get_mut(&local) else {
            return;
        };
        let max = self.config.max_auth_attempts_of(conn.endpoint);
        conn.auth_attempts = conn.auth_attempts.saturating_add(1);
        if conn.is_api() {
            self.metrics.borrow_mut().api_logins_refused += 1;
        } else {
            self.metrics.borrow_mut().logins_refused += 1;
        }
        crate::log!(
            crate::log::Level::Info,
            "INVALID_AUTH_DATA",
            "a login was refused (attempt {} of {max})",
            conn.auth_attempts
        );
        if u32::from(conn.auth_attempts) >= max {
            self.send_local(
                local,
                &Message::new(topic::AUTH, auth_action::TOO_MANY_AUTH_ATTEMPTS),
            );
            self.close_with(local, ws::CLOSE_POLICY, "too many authentication attempts");
        }
    }

    /// Stops reading from a connection and closes it after what is queued.
    pub(super) fn close_with(&mut self, local: u32, code: u16, reason: &'static str) {
        if let Some(conn) = self.conn_side.conns.get_mut(&local) {
            conn.phase = Phase::Closed;
            conn.outbox.close(code, reason);
        }
    }

    /// Connections past the login deadline are told so and closed; logged-in ones silent for
    /// two heartbeat intervals (at least a second) are dropped, as the reference does; those
    /// quiet for `park_after_ms` are asked to park their sockets. Looks at `SWEEP_BATCH`
    /// connections, going on from where the last sweep stopped.
    pub(super) fn sweep_connections(&mut self, now: u64) {
        let park_after = self.config.park_after_ms;
        let mut unauthenticated = Vec::new();
        let mut pings = Vec::new();
        // At most one visit per connection and sweep.
        for _ in 0..super::SWEEP_BATCH.min(self.conn_side.sweep_order.len()) {
            if self.conn_side.sweep_cursor >= self.conn_side.sweep_order.len() {
                self.conn_side.sweep_cursor = 0;
            }
            let Some(&local) = self.conn_side.sweep_order.get(self.conn_side.sweep_cursor) else {
                break;
            };
            self.conn_side.sweep_cursor += 1;
            let Some(conn) = self.conn_side.conns.get_mut(&local) else {
                continue;
            };
            // API requests are bounded by their own timeout.
            if conn.is_api() || conn.phase == Phase::Closed || conn.outbox.closing().is_some() {
                continue;
            }
            let config = &self.config;
            let heartbeat = config.heartbeat_interval_of(conn.endpoint);
            let silence = heartbeat.saturating_mul(2).max(1000);
            let logging_in = matches!(
                conn.phase,
                Phase::AwaitChallenge | Phase::AwaitAuth | Phase::Authenticating
            );
            // As in the reference, a failed login clears the deadline: a client that waits
            // before it tries again is not cut off meanwhile.
            let deadline_applies = logging_in && conn.auth_attempts == 0;
            let login_deadline = config.unauthenticated_timeout_of(conn.endpoint);
            if deadline_applies && login_deadline.is_some_and(|t| conn.opened_at + t <= now) {
                if !unauthenticated.contains(&local) {
                    unauthenticated.push(local);
                }
                continue;
            }
            let quiet = now.saturating_sub(conn.outbox.heard_at());
            if quiet >= silence {
                conn.outbox.close(ws::CLOSE_GOING_AWAY, "heartbeat timeout");
                continue;
            }
            let server_pings = config
                .endpoint(conn.endpoint)
                .is_some_and(|e| e.protocol.server_pings());
            if server_pings {
                // The V3 client counts only pings as signs of life, however busy it is.
                let extras = conn.extras();
                if now.saturating_sub(extras.pinged_at) >= heartbeat {
                    extras.pinged_at = now;
                    pings.push(local);
                }
            } else if park_after.is_some_and(|after| quiet >= after) && !logging_in {
                conn.outbox.request_park();
            }
        }
        for local in pings {
            self.send_local(
                local,
                &Message::new(topic::CONNECTION, connection_action::PING),
            );
        }
        for local in unauthenticated {
            self.send_local(
                local,
                &Message::new(topic::CONNECTION, connection_action::AUTHENTICATION_TIMEOUT),
            );
            self.close_with(local, ws::CLOSE_POLICY, "not authenticated in time");
        }
    }
}
