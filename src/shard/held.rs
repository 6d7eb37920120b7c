//! Replies held back until remote owner shards confirm a subscription: deepstream's contract is
//! that once a client has its subscribe ack, every later emit reaches it, and on several shards
//! the emit may reach the owner before the subscription does unless the ack waits.

use ahash::AHashMap;
use bytes::Bytes;

#[derive(Default)]
pub struct HeldReplies {
    /// The message being handled, while its subscriptions are made: nothing is stored for it
    /// unless a confirmation is awaited, which keeps the common subscribe off the map.
    pub collecting: Option<u64>,
    collecting_for: Held,
    next: u64,
    held: AHashMap<u64, Held>,
}

#[derive(Default)]
struct Held {
    local: u32,
    waiting: u32,
    frames: Vec<Bytes>,
}

impl HeldReplies {
    /// Starts collecting the confirmations one message's subscriptions need.
    pub fn begin(&mut self, local: u32) -> u64 {
        self.next = self.next.wrapping_add(1);
        let token = self.next;
        self.collecting = Some(token);
        self.collecting_for = Held {
            local,
            ..Held::default()
        };
        token
    }

    pub fn expect_confirmation(&mut self, token: u64) {
        if self.collecting == Some(token) {
            self.collecting_for.waiting += 1;
        }
    }

    /// Ends collecting: the replies go out now (returned) if nothing is awaited, else they are
    /// held until the last confirmation.
    pub fn finish(&mut self, token: u64, frames: Vec<Bytes>) -> Option<(u32, Vec<Bytes>)> {
        if self.collecting.take() != Some(token) {
            return None;
        }
        let mut held = std::mem::take(&mut self.collecting_for);
        if held.waiting == 0 {
            return Some((held.local, frames));
        }
        held.frames = frames;
        self.held.insert(token, held);
        None
    }

    /// One confirmation arrived; the replies once it was the last one.
    pub fn confirmed(&mut self, token: u64) -> Option<(u32, Vec<Bytes>)> {
        // Confirmed while its message is still being handled (an owner on this shard whose
        // name needed nothing from the bus): one less to wait for.
        if self.collecting == Some(token) {
            self.collecting_for.waiting = self.collecting_for.waiting.saturating_sub(1);
            return None;
        }
        let held = self.held.get_mut(&token)?;
        held.waiting = held.waiting.saturating_sub(1);
        if held.waiting > 0 {
            return None;
        }
        self.held.remove(&token).map(|h| (h.local, h.frames))
    }

    /// A connection closed: nothing held for it is sent.
    pub fn forget(&mut self, local: u32) {
        if !self.held.is_empty() {
            self.held.retain(|_, h| h.local != local);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_go_out_at_once_when_nothing_is_awaited() {
        let mut held = HeldReplies::default();
        let token = held.begin(7);
        let out = held.finish(token, vec![Bytes::from_static(b"ack")]);
        assert_eq!(out, Some((7, vec![Bytes::from_static(b"ack")])));
        assert!(held.held.is_empty());
        assert_eq!(held.collecting, None);
    }

    #[test]
    fn replies_wait_for_the_last_confirmation() {
        let mut held = HeldReplies::default();
        let token = held.begin(3);
        held.expect_confirmation(token);
        held.expect_confirmation(token);
        assert_eq!(held.finish(token, vec![Bytes::from_static(b"ack")]), None);
        assert_eq!(held.confirmed(token), None);
        assert_eq!(
            held.confirmed(token),
            Some((3, vec![Bytes::from_static(b"ack")]))
        );
        assert_eq!(held.confirmed(token), None, "unknown tokens are ignored");
    }

    #[test]
    fn a_confirmation_while_collecting_counts() {
        let mut held = HeldReplies::default();
        let token = held.begin(4);
        held.expect_confirmation(token);
        held.expect_confirmation(token);
        assert_eq!(held.confirmed(token), None);
        assert_eq!(held.finish(token, vec![Bytes::from_static(b"ack")]), None);
        assert_eq!(
            held.confirmed(token),
            Some((4, vec![Bytes::from_static(b"ack")]))
        );
        let token = held.begin(5);
        held.expect_confirmation(token);
        assert_eq!(held.confirmed(token), None);
        assert_eq!(
            held.finish(token, vec![]),
            Some((5, vec![])),
            "all confirmed before the end: out at once"
        );
    }

    #[test]
    fn a_closed_connection_gets_nothing() {
        let mut held = HeldReplies::default();
        let token = held.begin(3);
        held.expect_confirmation(token);
        held.finish(token, vec![Bytes::from_static(b"ack")]);
        held.forget(3);
        assert_eq!(held.confirmed(token), None);
    }
}
