//! A connection's bounded queue of outgoing WebSocket frames, shared by the shard (which fills it)
//! and the connection's task (which drains it). Too slow a reader is cut off, not buffered. It
//! also carries when the client was last heard from, so the shard can drop silent sockets
//! without a timer per connection.

use bytes::Bytes;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::Waker;

/// The reason a connection is closed with when its outgoing buffer is full.
pub const SLOW_CONSUMER: &str = "slow consumer: outgoing buffer full";

/// The reason every connection is closed with when the server stops.
pub const SHUTDOWN: &str = "server shutting down";

/// The close "code" of an aborted connection: no close frame is sent.
pub const ABORTED: u16 = 0;

#[derive(Clone, Default)]
pub struct Outbox(Rc<RefCell<Inner>>);

/// Most connections have at most one frame queued at a time, so the first waits inline and only
/// a burst allocates (and frees on drain): an idle connection holds no queue memory.
#[derive(Default)]
struct Inner {
    first: Option<Bytes>,
    // Boxed so that every connection's outbox spends 8 bytes, not 32, on a queue that only
    // bursts use (they allocate either way).
    #[allow(clippy::box_collection)]
    rest: Option<Box<VecDeque<Bytes>>>,
    bytes: usize,
    limit: usize,
    /// Set once: the close code and reason to send after what is queued. Boxed: only a
    /// closing connection pays for it.
    closing: Option<Box<(u16, &'static str)>>,
    /// The connection's task, woken by a frame to send or a close.
    waker: Option<Waker>,
    /// Milliseconds (server clock) when the client last sent bytes.
    heard_at: u64,
    pub park: Park,
}

/// Whether the connection's socket waits in the shard's set of quiet sockets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Park {
    #[default]
    Active,
    /// The shard asked the connection to park when it next can.
    Requested,
    Parked,
    /// Parked, and the socket has bytes: the connection runs actively again.
    Readable,
}

impl Inner {
    fn clear(&mut self) {
        self.first = None;
        self.rest = None;
        self.bytes = 0;
    }

    fn wake(&mut self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }
}

impl Outbox {
    pub fn new(limit: usize, now: u64) -> Self {
        Outbox(Rc::new(RefCell::new(Inner {
            limit,
            heard_at: now,
            ..Default::default()
        })))
    }

    /// Queues a frame. Past the byte limit the queue is dropped and the connection closed.
    pub fn push(&self, frame: Bytes) {
        let mut inner = self.0.borrow_mut();
        if inner.closing.is_some() {
            return;
        }
        if inner.bytes + frame.len() > inner.limit {
            inner.clear();
            drop(inner);
            self.close(crate::protocol::ws::CLOSE_POLICY, SLOW_CONSUMER);
            return;
        }
        inner.bytes += frame.len();
        if inner.first.is_none() {
            inner.first = Some(frame);
        } else {
            inner.rest.get_or_insert_with(Box::default).push_back(frame);
        }
        inner.wake();
    }

    /// Asks the connection to send what is queued, then a close frame, and to stop reading.
    pub fn close(&self, code: u16, reason: &'static str) {
        let mut inner = self.0.borrow_mut();
        if inner.closing.is_none() {
            inner.closing = Some(Box::new((code, reason)));
            // The server's own reasons (slow consumer, heartbeat, limits) are worth an
            // operator's look; a client's own close and shutdown are not.
            if !reason.is_empty() && code != crate::protocol::ws::CLOSE_NORMAL && reason != SHUTDOWN
            {
                crate::log!(
                    crate::log::Level::Info,
                    "CONNECTION_CLOSED",
                    "a connection was closed with {code}: {reason}"
                );
            }
        }
        inner.wake();
    }

    /// The socket is gone: drop what is queued and stop without a close frame.
    pub fn abort(&self) {
        {
            let mut inner = self.0.borrow_mut();
            inner.clear();
            inner.closing = Some(Box::new((ABORTED, "")));
        }
        self.close(ABORTED, "");
    }

    pub fn closing(&self) -> Option<(u16, &'static str)> {
        self.0.borrow().closing.as_deref().copied()
    }

    /// Moves every queued frame into `into`, oldest first. With nothing queued and no close
    /// asked for, `waker` is woken by the next push or close.
    pub fn drain(&self, into: &mut Vec<Bytes>, waker: &Waker) {
        let mut inner = self.0.borrow_mut();
        into.extend(inner.first.take());
        into.extend(inner.rest.take().into_iter().flat_map(|rest| *rest));
        inner.bytes = 0;
        if into.is_empty() && inner.closing.is_none() {
            inner.waker = Some(waker.clone());
        }
    }

    /// Wakes `waker` on the next push or close, without draining.
    pub fn watch(&self, waker: &Waker) {
        self.0.borrow_mut().waker = Some(waker.clone());
    }

    /// Forgets the waiting task: it is running and will look at the queue itself.
    pub fn unwatch(&self) {
        self.0.borrow_mut().waker = None;
    }

    pub fn queued_bytes(&self) -> usize {
        self.0.borrow().bytes
    }

    /// The client sent bytes at `now`.
    pub fn heard(&self, now: u64) {
        self.0.borrow_mut().heard_at = now;
    }

    pub fn heard_at(&self) -> u64 {
        self.0.borrow().heard_at
    }

    pub fn park_state(&self) -> Park {
        self.0.borrow().park
    }

    pub fn set_park_state(&self, park: Park) {
        self.0.borrow_mut().park = park;
    }

    /// The parked socket has bytes; wakes the connection to read them.
    pub fn mark_readable(&self) {
        let mut inner = self.0.borrow_mut();
        if inner.park == Park::Parked {
            inner.park = Park::Readable;
            inner.wake();
        }
    }

    /// Asks a quiet connection to park its socket; wakes it so it does.
    pub fn request_park(&self) {
        let mut inner = self.0.borrow_mut();
        if inner.park == Park::Active {
            inner.park = Park::Requested;
            inner.wake();
        }
    }

    /// Frames queued, for tests and the sans-I/O harness.
    pub fn take_all(&self) -> Vec<Bytes> {
        let mut inner = self.0.borrow_mut();
        let mut all = Vec::new();
        all.extend(inner.first.take());
        all.extend(inner.rest.take().into_iter().flat_map(|rest| *rest));
        inner.bytes = 0;
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_outbox_stays_small() {
        // Every connection holds one. With the Rc's two counts this is a 120-byte allocation,
        // a 128-byte block for glibc (it was 136 bytes, a 144-byte block, before `closing` was
        // boxed); see the memory per idle connection in perf/RESULTS.md.
        assert!(std::mem::size_of::<RefCell<Inner>>() <= 104);
    }

    #[test]
    fn a_full_queue_closes_the_connection() {
        let outbox = Outbox::new(10, 0);
        outbox.push(Bytes::from_static(b"12345"));
        outbox.push(Bytes::from_static(b"12345"));
        assert_eq!(outbox.queued_bytes(), 10);
        outbox.push(Bytes::from_static(b"1"));
        assert_eq!(outbox.queued_bytes(), 0);
        assert_eq!(outbox.closing().map(|c| c.0), Some(1008));
        outbox.push(Bytes::from_static(b"1"));
        assert!(outbox.take_all().is_empty());
    }

    #[test]
    fn frames_come_out_in_order_and_a_drained_queue_holds_nothing() {
        let outbox = Outbox::new(100, 0);
        for frame in [&b"a"[..], b"b", b"c"] {
            outbox.push(Bytes::copy_from_slice(frame));
        }
        let mut out = Vec::new();
        outbox.drain(&mut out, std::task::Waker::noop());
        assert_eq!(out, vec![&b"a"[..], b"b", b"c"]);
        assert_eq!(outbox.queued_bytes(), 0);
        assert!(outbox.0.borrow().rest.is_none());
        outbox.push(Bytes::from_static(b"d"));
        assert_eq!(outbox.take_all(), vec![&b"d"[..]]);
    }

    #[test]
    fn an_empty_drain_waits_for_the_next_push() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        struct Count(AtomicUsize);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let outbox = Outbox::new(100, 0);
        outbox.drain(&mut Vec::new(), &waker);
        outbox.push(Bytes::from_static(b"x"));
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        outbox.push(Bytes::from_static(b"y"));
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "woken once per wait");
        outbox.heard(42);
        assert_eq!(outbox.heard_at(), 42);
    }
}
