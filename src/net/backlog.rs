//! Backpressure between shards. Every shard counts the messages it has been sent and not yet
//! handled; a shard that falls `BEHIND` messages behind (a peer stalled, or flooded) is marked
//! in one shared mask, and while any bit is set no connection on any shard reads client input,
//! until the shard is back under `CAUGHT_UP`. Mesh messages are always handled, so the pause
//! cannot deadlock, and nothing is dropped: what is queued is bounded by what connections had
//! sent before they were paused.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Messages waiting for one shard past which connections stop reading.
pub const BEHIND: usize = 64 * 1024;
/// ... and below which they read again.
pub const CAUGHT_UP: usize = 16 * 1024;

pub struct Backlog {
    /// Per shard: messages sent to it and not yet handled.
    pending: Vec<AtomicUsize>,
    /// Bit n set: shard n is behind. Written only on crossing a mark, read by every read turn.
    behind: AtomicU64,
}

impl Backlog {
    pub fn new(shards: usize) -> Backlog {
        Backlog {
            pending: (0..shards).map(|_| AtomicUsize::new(0)).collect(),
            behind: AtomicU64::new(0),
        }
    }

    /// `count` messages are on their way to shard `to`.
    pub fn sent(&self, to: usize, count: usize) {
        let Some(pending) = self.pending.get(to) else {
            return;
        };
        let now = pending.fetch_add(count, Ordering::Relaxed) + count;
        if now >= BEHIND {
            self.behind.fetch_or(1 << to, Ordering::Relaxed);
        }
    }

    /// Shard `shard` has handled `count` of them.
    pub fn handled(&self, shard: usize, count: usize) {
        let Some(pending) = self.pending.get(shard) else {
            return;
        };
        let now = pending
            .fetch_sub(count, Ordering::Relaxed)
            .saturating_sub(count);
        if now <= CAUGHT_UP && self.behind.load(Ordering::Relaxed) & (1 << shard) != 0 {
            self.behind.fetch_and(!(1 << shard), Ordering::Relaxed);
        }
    }

    /// True while some shard is behind.
    pub fn any_behind(&self) -> bool {
        self.behind.load(Ordering::Relaxed) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_is_behind_from_the_high_mark_until_the_low_one() {
        let backlog = Backlog::new(2);
        backlog.sent(1, BEHIND - 1);
        assert!(!backlog.any_behind());
        backlog.sent(1, 1);
        assert!(backlog.any_behind());
        backlog.handled(1, BEHIND - CAUGHT_UP - 1);
        assert!(backlog.any_behind(), "still above the low mark");
        backlog.handled(1, 1);
        assert!(!backlog.any_behind());
        backlog.sent(0, 10);
        backlog.handled(0, 10);
        assert!(!backlog.any_behind());
    }
}
