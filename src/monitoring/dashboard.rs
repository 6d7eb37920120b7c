//! The numbers behind the live dashboard page, as JSON: counters that only grow (the page
//! works out rates between two reads) and what each shard holds now.

use crate::protocol::names::topic_name;
use crate::shard::metrics::Metrics;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The upper bound (ms) of the histogram bucket holding the `q` quantile of store latencies;
/// `None` without samples.
pub fn store_quantile_ms(m: &Metrics, q: f64) -> Option<f64> {
    let total: u64 = m.store_latency_us.iter().sum();
    if total == 0 {
        return None;
    }
    let wanted = (total as f64 * q).ceil() as u64;
    let mut seen = 0;
    for (i, n) in m.store_latency_us.iter().enumerate() {
        seen += n;
        if seen >= wanted.max(1) {
            return Some((1u64 << i) as f64 / 1000.0);
        }
    }
    None
}

/// The dashboard's JSON at `now_ms` (wall clock).
pub fn json(m: &Metrics, shards: usize, now_ms: u64) -> String {
    let mut by_topic: BTreeMap<&str, u64> = BTreeMap::new();
    for ((topic, _), n) in m.messages_in.iter() {
        *by_topic
            .entry(topic_name(topic).unwrap_or("OTHER"))
            .or_default() += n;
    }
    let mut out = format!(
        "{{\"time\":{now_ms},\"shards\":{shards},\"clusterNodes\":1,\"connectionsOpened\":{},\"connectionsClosed\":{},\"deliveries\":{},\"storeOperations\":{},\"storeErrors\":{},\"storeP99Ms\":{},\"slowConsumerCloses\":{},\"messagesIn\":{{",
        m.connections_opened,
        m.connections_closed,
        m.deliveries,
        m.store_operations,
        m.store_errors,
        store_quantile_ms(m, 0.99).map_or_else(|| "null".into(), |v| v.to_string()),
        m.slow_consumer_closes,
    );
    for (i, (topic, n)) in by_topic.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "\"{topic}\":{n}");
    }
    out.push_str("},\"perShard\":[");
    for (i, g) in m.shards.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            "{{\"shard\":{},\"connections\":{},\"recordsInMemory\":{},\"deliveries\":{},\"peerQueue\":{}}}",
            g.shard, g.connections, g.records_in_memory, g.deliveries, g.peer_queue
        );
    }
    out.push_str("]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_json() {
        let mut m = Metrics::default();
        assert_eq!(store_quantile_ms(&m, 0.99), None);
        for _ in 0..99 {
            m.record_store_latency(100);
        }
        m.record_store_latency(5000);
        assert_eq!(store_quantile_ms(&m, 0.99), Some(0.128));
        assert_eq!(store_quantile_ms(&m, 1.0), Some(8.192));
        m.messages_in.add(4, 2);
        let v: serde_json::Value = serde_json::from_str(&json(&m, 2, 7)).unwrap();
        assert_eq!(v["messagesIn"]["EVENT"], 1);
        assert_eq!(v["shards"], 2);
    }
}
