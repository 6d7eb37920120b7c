//! Per-shard counters: plain integers the shard bumps as it works (no atomics, no locks on the
//! hot path), summed over the shards on demand (`Shard::request_metrics`, answered over the
//! mesh). Exporters (monitoring, Prometheus) read the sums.

/// Topics with their own rows; higher ones share the last.
const TOPICS: usize = 11;
/// Actions with their own columns; higher ones share the last.
const ACTIONS: usize = 160;

/// Counts by `(topic, action)` in a flat table: one add per message.
#[derive(Clone, PartialEq, Eq)]
pub struct ByAction(Box<[u64; TOPICS * ACTIONS]>);

impl Default for ByAction {
    fn default() -> Self {
        ByAction(Box::new([0; TOPICS * ACTIONS]))
    }
}

impl std::fmt::Debug for ByAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

fn slot(topic: i32, action: i32) -> usize {
    let t = usize::try_from(topic).unwrap_or(0).min(TOPICS - 1);
    let a = usize::try_from(action).unwrap_or(0).min(ACTIONS - 1);
    t * ACTIONS + a
}

impl ByAction {
    #[inline]
    pub fn add(&mut self, topic: i32, action: i32) {
        let i = slot(topic, action);
        if let Some(n) = self.0.get_mut(i) {
            *n += 1;
        }
    }

    pub fn get(&self, topic: i32, action: i32) -> u64 {
        self.0.get(slot(topic, action)).copied().unwrap_or(0)
    }

    /// Every non-zero count as `((topic, action), count)`.
    pub fn iter(&self) -> impl Iterator<Item = ((i32, i32), u64)> + '_ {
        self.0
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, n)| (((i / ACTIONS) as i32, (i % ACTIONS) as i32), *n))
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    fn merge(&mut self, other: &ByAction) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0.iter()) {
            *mine += theirs;
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metrics {
    pub connections_opened: u64,
    pub connections_closed: u64,
    pub logins_accepted: u64,
    pub logins_refused: u64,
    /// HTTP API requests that reached the login, and their logins.
    pub api_requests: u64,
    pub api_logins_accepted: u64,
    pub api_logins_refused: u64,
    /// What each shard holds right now, filled in when the counters are gathered.
    pub shards: Vec<ShardGauges>,
    /// Client messages handled, by topic and action.
    pub messages_in: ByAction,
    /// Messages the shard built for clients, by topic and action (fan-out frames are counted
    /// once per receiver in `deliveries`).
    pub messages_out: ByAction,
    pub deliveries: u64,
    /// Messages for a shard that does not exist: a bug, counted and logged, never silent.
    pub dropped_peer_messages: u64,
    pub slow_consumer_closes: u64,
    /// Login and logout notifications dropped because the webhook fell behind.
    pub session_events_dropped: u64,
    pub store_operations: u64,
    pub store_errors: u64,
    /// Store operation latency: buckets of powers of two microseconds (`[i]` counts those
    /// under `2^i` µs), so percentiles can be read without a histogram allocation per shard.
    pub store_latency_us: [u64; 24],
    /// The sum of those latencies (µs), for the histogram's `_sum`.
    pub store_latency_sum_us: u64,
    /// Messages this node published to the cluster bus, and messages it received from it.
    pub bus_published: u64,
    pub bus_received: u64,
}

/// One shard's state at the time its counters were gathered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardGauges {
    pub shard: u16,
    /// Connections open on this shard (sockets and HTTP API requests).
    pub connections: u64,
    /// Records this shard owns that are in memory.
    pub records_in_memory: u64,
    /// Deliveries this shard made since it started (a counter, per shard).
    pub deliveries: u64,
    /// Messages queued for other shards, not sent yet.
    pub peer_queue: u64,
}

impl Metrics {
    /// Adds another shard's counts to these.
    pub fn merge(&mut self, other: &Metrics) {
        self.connections_opened += other.connections_opened;
        self.connections_closed += other.connections_closed;
        self.logins_accepted += other.logins_accepted;
        self.logins_refused += other.logins_refused;
        self.api_requests += other.api_requests;
        self.api_logins_accepted += other.api_logins_accepted;
        self.api_logins_refused += other.api_logins_refused;
        self.shards.extend(other.shards.iter().cloned());
        self.shards.sort_by_key(|s| s.shard);
        self.messages_in.merge(&other.messages_in);
        self.messages_out.merge(&other.messages_out);
        self.deliveries += other.deliveries;
        self.dropped_peer_messages += other.dropped_peer_messages;
        self.slow_consumer_closes += other.slow_consumer_closes;
        self.bus_published += other.bus_published;
        self.bus_received += other.bus_received;
        self.session_events_dropped += other.session_events_dropped;
        self.store_operations += other.store_operations;
        self.store_errors += other.store_errors;
        self.store_latency_sum_us += other.store_latency_sum_us;
        for (mine, theirs) in self.store_latency_us.iter_mut().zip(other.store_latency_us) {
            *mine += theirs;
        }
    }

    pub fn record_store_latency(&mut self, micros: u64) {
        let bucket = (64 - micros.leading_zeros() as usize).min(self.store_latency_us.len() - 1);
        self.store_latency_us[bucket] += 1;
        self.store_latency_sum_us = self.store_latency_sum_us.saturating_add(micros);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_action_merge_and_clamp() {
        let mut a = Metrics::default();
        a.messages_in.add(5, 3);
        a.messages_in.add(5, 3);
        a.messages_in.add(99, 999);
        a.record_store_latency(0);
        a.record_store_latency(1500);
        let mut b = Metrics::default();
        b.messages_in.add(5, 3);
        b.deliveries = 7;
        b.merge(&a);
        assert_eq!(b.messages_in.get(5, 3), 3);
        assert_eq!(
            b.messages_in.get(10, 159),
            1,
            "out of range shares the last slot"
        );
        assert_eq!(b.messages_in.total(), 4);
        assert_eq!(b.deliveries, 7);
        assert_eq!(b.store_latency_us[0], 1);
        assert_eq!(b.store_latency_us[11], 1, "1500 µs is under 2^11");
        assert_eq!(
            b.messages_in.iter().collect::<Vec<_>>(),
            vec![((5, 3), 3), ((10, 159), 1)]
        );
    }
}
