//! What every connection of a shard shares: the shard itself, its pump, the per-shard read and
//! write buffers, the budgets every listener draws from (`net::admission`), and the connections
//! paused for a backlog.

use super::backlog::Backlog;
use super::config_state::AdminState;
use super::mesh::Pump;
use super::park::Parking;
use super::Runtime;
use crate::shard::Shard;
use bytes::{Bytes, BytesMut};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

/// The most one read takes from a socket.
pub(super) const READ_CHUNK: usize = 16 * 1024;
/// Read buffers a shard keeps for reuse, and the largest it keeps.
const POOLED_BUFFERS: usize = 256;
const POOLED_MAX: usize = 4 * READ_CHUNK;
/// What every connection of a shard shares, behind one pointer per connection.
pub struct ShardIo {
    pub shard: Rc<RefCell<Shard>>,
    pub pump: Pump,
    pub runtime: Runtime,
    /// Connections alive (handshake to close), for shutdown.
    pub live: Cell<usize>,
    /// Sockets in their handshake right now (`limits.handshakesPerShard`, `net::admission`).
    pub(super) handshaking: Cell<usize>,
    /// HTTP API requests being worked on (`limits.httpRequestsPerShard`).
    pub api_requests: Cell<usize>,
    /// Bytes buffered for connections not logged in (`limits.unauthenticatedBytesPerShard`).
    pub(super) unauthenticated_bytes: Cell<usize>,
    /// Every read lands here first; a connection keeps only what it read.
    pub(super) scratch: RefCell<Box<[u8]>>,
    pub(super) pool: RefCell<Vec<BytesMut>>,
    /// Frames being moved from an outbox to its socket.
    pub(super) frames: RefCell<Vec<Bytes>>,
    /// Several frames joined into one write.
    pub(super) joined: RefCell<Vec<u8>>,
    /// What other endpoints' connections were sent lately, in their protocols.
    pub(super) transcoded: RefCell<crate::codec::Transcoded>,
    /// Where quiet sockets wait; `None` when parking is off.
    pub(super) parking: Option<Rc<Parking>>,
    /// Whether any shard is too far behind to take more client input.
    pub(super) backlog: Arc<Backlog>,
    /// Whether this shard's queue for a peer is long (`Shard::backlog_flag`).
    pub(super) backlogged: Rc<Cell<bool>>,
    /// `httpServer.options.ssl`: every socket speaks TLS first.
    pub(super) tls: Option<Arc<rustls::ServerConfig>>,
    /// Monitoring outputs, shared by every shard.
    pub monitor: Arc<super::monitor::MonitorState>,
    /// The config in force for admin changes, shared by every shard.
    pub admin: Arc<AdminState>,
    /// Connections that stopped reading for the backlog, to wake when it has cleared.
    pub(super) paused: RefCell<Vec<Waker>>,
    /// The task that wakes them, while it waits for the first.
    pub(super) resumer: RefCell<Option<Waker>>,
}

impl ShardIo {
    pub fn new(
        shard: Rc<RefCell<Shard>>,
        pump: Pump,
        runtime: Runtime,
        parking: Option<Rc<Parking>>,
        backlog: Arc<Backlog>,
        monitor: Arc<super::monitor::MonitorState>,
        admin: Arc<AdminState>,
    ) -> Rc<ShardIo> {
        let backlogged = shard.borrow().backlog_flag();
        let tls = shard.borrow().config().tls.as_ref().map(|t| t.0.clone());
        Rc::new(ShardIo {
            shard,
            pump,
            runtime,
            live: Cell::new(0),
            handshaking: Cell::new(0),
            api_requests: Cell::new(0),
            unauthenticated_bytes: Cell::new(0),
            scratch: RefCell::new(vec![0; READ_CHUNK].into_boxed_slice()),
            pool: RefCell::default(),
            frames: RefCell::default(),
            joined: RefCell::default(),
            transcoded: RefCell::default(),
            parking,
            backlog,
            backlogged,
            tls,
            monitor,
            admin,
            paused: RefCell::default(),
            resumer: RefCell::default(),
        })
    }

    /// `limits.unauthenticatedBytesPerShard`.
    pub(super) fn unauthenticated_budget(&self) -> usize {
        self.shard
            .borrow()
            .config()
            .limits
            .unauthenticated_bytes_per_shard
    }

    /// True while client input must wait: this shard's queue for a peer is long, or some shard
    /// has too much it has not handled yet.
    pub(super) fn must_wait(&self) -> bool {
        self.backlog.any_behind() || self.backlogged.get()
    }

    /// A connection stops reading until the backlog clears.
    pub(super) fn pause(&self, waker: &Waker) {
        self.paused.borrow_mut().push(waker.clone());
        if let Some(resumer) = self.resumer.borrow_mut().take() {
            resumer.wake();
        }
    }

    /// Wakes paused connections once nothing is behind (checked every millisecond while any
    /// waits; idle otherwise).
    pub async fn resume_paused(self: Rc<Self>, stopping: Arc<AtomicBool>) {
        while !stopping.load(Ordering::Relaxed) {
            if self.paused.borrow().is_empty() {
                let io = self.clone();
                let first = std::future::poll_fn(|cx| {
                    if io.paused.borrow().is_empty() {
                        *io.resumer.borrow_mut() = Some(cx.waker().clone());
                        return Poll::Pending;
                    }
                    Poll::Ready(())
                });
                let stop = async {
                    while !stopping.load(Ordering::Relaxed) {
                        glommio::timer::sleep(Duration::from_millis(100)).await;
                    }
                };
                futures_lite::future::or(first, stop).await;
                continue;
            }
            glommio::timer::sleep(Duration::from_millis(1)).await;
            if !self.must_wait() {
                for waker in self.paused.borrow_mut().drain(..) {
                    waker.wake();
                }
            }
        }
    }

    pub(super) fn take_buffer(&self) -> BytesMut {
        self.pool
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| BytesMut::with_capacity(READ_CHUNK))
    }

    /// Keeps an emptied buffer for another connection; one still holding bytes is not kept,
    /// nor one grown large by a big message (the pool must not pin `maxMessageSize` buffers).
    pub(super) fn put_buffer(&self, mut buf: BytesMut) {
        let mut pool = self.pool.borrow_mut();
        if buf.is_empty() && pool.len() < POOLED_BUFFERS {
            buf.clear();
            // Gets the whole allocation back once the frames split off it are gone.
            buf.reserve(READ_CHUNK);
            if buf.capacity() <= POOLED_MAX {
                pool.push(buf);
            }
        }
    }
}
