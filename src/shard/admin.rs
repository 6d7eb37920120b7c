//! What an operator asks of every shard (the admin API): the connections each holds, closing a
//! user's sessions, and a new config (reloaded permissions and users, changed settings). Asked
//! like the counters: one request to every shard over the mesh, the answers gathered on the
//! asking shard for the runtime to take (`take_admin`).

use super::{Phase, Shard, ShardMsg};
use crate::config::Config;
use bytes::Bytes;
use std::sync::Arc;

/// Connections one shard lists at most, so an answer stays bounded.
pub const LISTED_PER_SHARD: usize = 10_000;

#[derive(Debug, Clone)]
pub enum AdminOp {
    Connections,
    /// Close every socket of this user, with a reason the client sees.
    CloseUser(Bytes),
    /// Serve with this config from now on (`generation` orders concurrent changes).
    Reconfigure(Arc<Config>, u64),
}

/// One connection as the admin API lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnInfo {
    pub shard: u16,
    pub id: u32,
    /// Empty before login.
    pub user: String,
    /// The endpoint's type: `ws-binary`, `ws-text`, `ws-json`, `ws-frame`, `mqtt` or `http`.
    pub endpoint: &'static str,
    pub logged_in: bool,
    pub opened_at_ms: u64,
    pub queued_bytes: usize,
}

#[derive(Debug, Clone)]
pub enum AdminAnswer {
    Connections {
        listed: Vec<ConnInfo>,
        /// Connections beyond `LISTED_PER_SHARD`.
        more: usize,
    },
    Closed(usize),
    Reconfigured,
}

/// The reason a client sees when an operator closes its session.
pub const CLOSED_BY_ADMIN: &str = "closed by an administrator";

impl Shard {
    /// Asks every shard; the answers come out of `take_admin` under `token`.
    pub fn request_admin(&mut self, token: u64, op: AdminOp) {
        self.admin_gathering
            .insert(token, (self.shards, Vec::new()));
        let reply_to = self.id as u16;
        self.broadcast(ShardMsg::AdminRequest {
            token,
            reply_to,
            op,
        });
    }

    /// Answers gathered from every shard since the last call.
    #[must_use]
    pub fn take_admin(&mut self) -> Vec<(u64, Vec<AdminAnswer>)> {
        std::mem::take(&mut self.admin_done)
    }

    pub(super) fn on_admin_request(&mut self, token: u64, reply_to: u16, op: AdminOp) {
        let answer = match op {
            AdminOp::Connections => {
                let mut listed = Vec::new();
                let all = self.conn_side.conns.len();
                for (local, conn) in self.conn_side.conns.iter().take(LISTED_PER_SHARD) {
                    listed.push(ConnInfo {
                        shard: self.id as u16,
                        id: *local,
                        user: String::from_utf8_lossy(conn.user()).into_owned(),
                        endpoint: if conn.is_api() {
                            "http"
                        } else {
                            self.config
                                .endpoint(conn.endpoint)
                                .map_or("ws-binary", |e| e.protocol.type_name())
                        },
                        logged_in: conn.phase == Phase::Open,
                        opened_at_ms: conn.opened_at,
                        queued_bytes: conn.outbox.queued_bytes(),
                    });
                }
                listed.sort_by_key(|c| c.id);
                AdminAnswer::Connections {
                    more: all - listed.len(),
                    listed,
                }
            }
            AdminOp::CloseUser(user) => {
                let mut closed = 0;
                let targets: Vec<u32> = self
                    .conn_side
                    .conns
                    .iter()
                    .filter(|(_, c)| !c.is_api() && *c.user() == user)
                    .map(|(local, _)| *local)
                    .collect();
                for local in targets {
                    self.close_with(local, crate::protocol::ws::CLOSE_POLICY, CLOSED_BY_ADMIN);
                    closed += 1;
                }
                AdminAnswer::Closed(closed)
            }
            AdminOp::Reconfigure(config, generation) => {
                self.reconfigure(config, generation);
                AdminAnswer::Reconfigured
            }
        };
        self.route(
            usize::from(reply_to),
            ShardMsg::AdminReply {
                token,
                answer: Box::new(answer),
            },
        );
    }

    pub(super) fn on_admin_reply(&mut self, token: u64, answer: AdminAnswer) {
        let Some((left, answers)) = self.admin_gathering.get_mut(&token) else {
            return;
        };
        answers.push(answer);
        *left = left.saturating_sub(1);
        if *left == 0 {
            if let Some((_, answers)) = self.admin_gathering.remove(&token) {
                self.admin_done.push((token, answers));
            }
        }
    }

    /// A new config: the rules, users and settings in it apply to every message from now on.
    /// Permission decisions cached per connection are dropped (they came from the old rules).
    fn reconfigure(&mut self, config: Arc<Config>, generation: u64) {
        if generation <= self.config_generation {
            return;
        }
        self.config_generation = generation;
        self.owner_side
            .rpc
            .set_timeouts(config.rpc_ack_timeout_ms, config.rpc_response_timeout_ms);
        for conn in self.conn_side.conns.values_mut() {
            if let Some(extras) = conn.extras.as_mut() {
                extras.permission_cache = Default::default();
            }
        }
        self.config = config;
    }

    /// Users online (logged in on a socket, anywhere), oldest first, from this shard's replica.
    pub fn online_users(&self) -> Vec<Bytes> {
        self.online.all_except(b"").cloned().collect()
    }
}
