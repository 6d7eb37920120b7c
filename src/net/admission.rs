//! What every listener does with a socket whose client has not logged in (issue 28): the
//! WebSocket endpoints, the HTTP API and MQTT, plain or TLS, each take a socket through an
//! `Admission` at accept, so a new endpoint gets every bound by being one:
//! - at most `limits.handshakesPerShard` sockets in their handshake at once (TLS and HTTP head,
//!   or an MQTT CONNECT until its CONNACK); more are closed unread;
//! - at most `limits.unauthenticatedConnectionsPerShard` connections waiting to log in
//!   (`room_for_another_login`): more are refused in the protocol's way;
//! - one absolute deadline from accept (`limits.handshakeTimeout`) for the handshake, which
//!   no drip extends;
//! - the bytes held for clients not logged in (unfinished frames, request bodies, CONNECT
//!   packets) count in one budget per shard, `limits.unauthenticatedBytesPerShard`
//!   (`HeldBytes`; a WebSocket connection's frames count there too, from `conn::Live`).
//!
//! docs/LIMITS.md lists each bound with what each protocol's client sees.

use super::shard_io::ShardIo;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// One socket's place in its shard's budgets until its client has logged in; dropping it
/// gives back what it held.
pub struct Admission {
    io: Rc<ShardIo>,
    deadline: Instant,
    handshaking: bool,
    held: HeldBytes,
}

impl Admission {
    /// At accept: `None` when the shard has as many handshakes in progress as it may (the
    /// socket is then closed unread). The deadline starts now.
    pub fn at_accept(io: &Rc<ShardIo>) -> Option<Admission> {
        let (max_handshakes, timeout) = {
            let shard = io.shard.borrow();
            let limits = &shard.config().limits;
            (limits.handshakes_per_shard, limits.handshake_timeout_ms)
        };
        if io.handshaking.get() >= max_handshakes {
            return None;
        }
        io.handshaking.set(io.handshaking.get() + 1);
        Some(Admission {
            io: io.clone(),
            deadline: Instant::now() + Duration::from_millis(timeout.max(1)),
            handshaking: true,
            held: HeldBytes::new(io),
        })
    }

    /// When the handshake must be done, however slowly its bytes arrive.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether the shard may take one more connection waiting to log in.
    pub fn room_for_another_login(&self) -> bool {
        room_for_another_login(&self.io)
    }

    /// The handshake is over (the socket speaks its protocol, or its client logged in): it
    /// no longer counts among the handshakes in progress.
    pub fn handshake_done(&mut self) {
        if std::mem::take(&mut self.handshaking) {
            self.io
                .handshaking
                .set(self.io.handshaking.get().saturating_sub(1));
        }
    }

    /// Holds `bytes` in place of what this socket held; false once the shard would be past
    /// its budget (the socket must then be closed).
    pub fn hold(&mut self, bytes: usize) -> bool {
        self.held.hold(bytes)
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.handshake_done();
    }
}

/// Whether the shard may take one more connection waiting to log in
/// (`limits.unauthenticatedConnectionsPerShard`).
pub fn room_for_another_login(io: &ShardIo) -> bool {
    let shard = io.shard.borrow();
    shard.awaiting_login() < shard.config().limits.unauthenticated_connections_per_shard
}

/// Bytes held for a client not logged in (an HTTP request body, an MQTT CONNECT), counted in
/// the shard's budget (`limits.unauthenticatedBytesPerShard`, shared with WebSocket frames);
/// given back when dropped.
pub struct HeldBytes {
    io: Rc<ShardIo>,
    held: usize,
}

impl HeldBytes {
    pub fn new(io: &Rc<ShardIo>) -> HeldBytes {
        HeldBytes {
            io: io.clone(),
            held: 0,
        }
    }

    /// Holds `bytes` in place of what was held; false once the shard would be past its budget.
    pub fn hold(&mut self, bytes: usize) -> bool {
        let counter = &self.io.unauthenticated_bytes;
        let total = counter
            .get()
            .saturating_sub(self.held)
            .saturating_add(bytes);
        counter.set(total);
        self.held = bytes;
        total <= self.io.unauthenticated_budget()
    }
}

impl Drop for HeldBytes {
    fn drop(&mut self) {
        let counter = &self.io.unauthenticated_bytes;
        counter.set(counter.get().saturating_sub(self.held));
    }
}
