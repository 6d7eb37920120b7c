//! A connection's bounded queue of outgoing WebSocket frames, shared by the shard (which fills it)
//! and the connection's writer (which drains it). Too slow a reader is cut off, not buffered.

use bytes::Bytes;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::Waker;

/// The close "code" of an aborted connection: no close frame is sent.
pub const ABORTED: u16 = 0;

#[derive(Clone, Default)]
pub struct Outbox(Rc<RefCell<Inner>>);

#[derive(Default)]
struct Inner {
    frames: VecDeque<Bytes>,
    bytes: usize,
    limit: usize,
    /// Set once: the close code and reason to send after what is queued.
    closing: Option<(u16, &'static str)>,
    writer: Option<Waker>,
    reader: Option<Waker>,
}

impl Outbox {
    pub fn new(limit: usize) -> Self {
        Outbox(Rc::new(RefCell::new(Inner {
            limit,
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
            inner.frames.clear();
            inner.bytes = 0;
            drop(inner);
            self.close(
                crate::protocol::ws::CLOSE_POLICY,
                "slow consumer: outgoing buffer full",
            );
            return;
        }
        inner.bytes += frame.len();
        inner.frames.push_back(frame);
        if let Some(waker) = inner.writer.take() {
            waker.wake();
        }
    }

    /// Asks the writer to send what is queued, then a close frame, and the reader to stop.
    pub fn close(&self, code: u16, reason: &'static str) {
        let mut inner = self.0.borrow_mut();
        if inner.closing.is_none() {
            inner.closing = Some((code, reason));
        }
        if let Some(waker) = inner.writer.take() {
            waker.wake();
        }
        if let Some(waker) = inner.reader.take() {
            waker.wake();
        }
    }

    /// The socket is gone: drop what is queued and stop the writer without a close frame.
    pub fn abort(&self) {
        {
            let mut inner = self.0.borrow_mut();
            inner.frames.clear();
            inner.bytes = 0;
            inner.closing = Some((ABORTED, ""));
        }
        self.close(ABORTED, "");
    }

    pub fn closing(&self) -> Option<(u16, &'static str)> {
        self.0.borrow().closing
    }

    /// Moves every queued frame into `into`; registers the writer's waker if there was none.
    pub fn drain(&self, into: &mut Vec<Bytes>, waker: &Waker) {
        let mut inner = self.0.borrow_mut();
        into.extend(inner.frames.drain(..));
        inner.bytes = 0;
        if into.is_empty() && inner.closing.is_none() {
            inner.writer = Some(waker.clone());
        }
    }

    pub fn watch_close(&self, waker: &Waker) {
        self.0.borrow_mut().reader = Some(waker.clone());
    }

    pub fn queued_bytes(&self) -> usize {
        self.0.borrow().bytes
    }

    /// Frames queued, for tests and the sans-I/O harness.
    pub fn take_all(&self) -> Vec<Bytes> {
        let mut inner = self.0.borrow_mut();
        inner.bytes = 0;
        inner.frames.drain(..).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_closes_the_connection() {
        let outbox = Outbox::new(10);
        outbox.push(Bytes::from_static(b"12345"));
        outbox.push(Bytes::from_static(b"12345"));
        assert_eq!(outbox.queued_bytes(), 10);
        outbox.push(Bytes::from_static(b"1"));
        assert_eq!(outbox.queued_bytes(), 0);
        assert_eq!(outbox.closing().map(|c| c.0), Some(1008));
        outbox.push(Bytes::from_static(b"1"));
        assert!(outbox.take_all().is_empty());
    }
}
