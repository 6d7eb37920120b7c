//! The Prometheus text exposition format (version 0.0.4) of the summed counters: names in
//! Prometheus' conventions (`corestream_..._total`, `_seconds`), per shard where it helps.

use crate::protocol::names::{action_name, topic_name};
use crate::shard::metrics::{ByAction, Metrics};
use std::fmt::Write as _;

/// The build this server is, for `corestream_build_info`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const COMMIT: &str = env!("CORESTREAM_COMMIT");

/// Reads one value of a shard's gauges.
type ReadGauge = fn(&crate::shard::metrics::ShardGauges) -> u64;

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn by_action(out: &mut String, name: &str, help: &str, counts: &ByAction) {
    family(out, name, "counter", help);
    for ((topic, action), n) in counts.iter() {
        let topic = topic_name(topic).unwrap_or("UNKNOWN");
        let action = action_name_of(topic, action);
        let _ = writeln!(out, "{name}{{topic=\"{topic}\",action=\"{action}\"}} {n}");
    }
}

fn action_name_of(topic: &str, action: i32) -> String {
    let number = match topic {
        "PARSER" => 1,
        "CONNECTION" => 2,
        "AUTH" => 3,
        "EVENT" => 4,
        "RECORD" => 5,
        "RPC" => 6,
        "PRESENCE" => 7,
        _ => 0,
    };
    action_name(number, action).map_or_else(|| action.to_string(), str::to_string)
}

/// A label value: backslash, quote and newline escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Everything as one scrape's text.
pub fn exposition(m: &Metrics, shards: usize, problems: &[(&'static str, u64)]) -> String {
    let mut out = String::with_capacity(8 * 1024);
    family(
        &mut out,
        "corestream_build_info",
        "gauge",
        "The running build.",
    );
    let _ = writeln!(
        out,
        "corestream_build_info{{version=\"{VERSION}\",commit=\"{}\"}} 1",
        label(COMMIT)
    );
    family(
        &mut out,
        "corestream_shards",
        "gauge",
        "Shards (pinned cores) serving.",
    );
    let _ = writeln!(out, "corestream_shards {shards}");
    let counters: [(&str, &str, u64); 10] = [
        (
            "corestream_connections_opened_total",
            "Connections opened (sockets and HTTP API requests).",
            m.connections_opened,
        ),
        (
            "corestream_connections_closed_total",
            "Connections closed.",
            m.connections_closed,
        ),
        (
            "corestream_http_api_requests_total",
            "HTTP API requests that reached their login.",
            m.api_requests,
        ),
        (
            "corestream_slow_consumer_closes_total",
            "Connections cut off because their outgoing buffer was full.",
            m.slow_consumer_closes,
        ),
        (
            "corestream_dropped_peer_messages_total",
            "Messages between shards that were dropped (a bug if ever non-zero).",
            m.dropped_peer_messages,
        ),
        (
            "corestream_cluster_published_total",
            "Messages this node published to the cluster bus.",
            m.bus_published,
        ),
        (
            "corestream_cluster_received_total",
            "Messages this node received from other nodes over the cluster bus.",
            m.bus_received,
        ),
        (
            "corestream_store_operations_total",
            "Record store operations (cache and storage together).",
            m.store_operations,
        ),
        (
            "corestream_store_errors_total",
            "Record store operations that failed.",
            m.store_errors,
        ),
        (
            "corestream_deliveries_total",
            "Messages fanned out to subscribers.",
            m.deliveries,
        ),
    ];
    for (name, help, value) in counters {
        family(&mut out, name, "counter", help);
        let _ = writeln!(out, "{name} {value}");
    }
    family(
        &mut out,
        "corestream_logins_total",
        "counter",
        "Logins by endpoint and result.",
    );
    for (endpoint, result, n) in [
        ("websocket", "accepted", m.logins_accepted),
        ("websocket", "refused", m.logins_refused),
        ("http", "accepted", m.api_logins_accepted),
        ("http", "refused", m.api_logins_refused),
    ] {
        let _ = writeln!(
            out,
            "corestream_logins_total{{endpoint=\"{endpoint}\",result=\"{result}\"}} {n}"
        );
    }
    by_action(
        &mut out,
        "corestream_messages_received_total",
        "Client messages received, by topic and action.",
        &m.messages_in,
    );
    by_action(
        &mut out,
        "corestream_messages_sent_total",
        "Messages built for clients (replies; fan-out is in deliveries), by topic and action.",
        &m.messages_out,
    );
    let gauges: [(&str, &str, ReadGauge); 4] = [
        (
            "corestream_connections",
            "Connections open, per shard.",
            |g| g.connections,
        ),
        (
            "corestream_records_in_memory",
            "Records held in memory by their owner shard.",
            |g| g.records_in_memory,
        ),
        (
            "corestream_shard_deliveries_total",
            "Messages fanned out to subscribers, per shard.",
            |g| g.deliveries,
        ),
        (
            "corestream_peer_queue_messages",
            "Messages queued for other shards, not sent yet.",
            |g| g.peer_queue,
        ),
    ];
    for (name, help, read) in gauges {
        let kind = if name.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        };
        family(&mut out, name, kind, help);
        for g in &m.shards {
            let _ = writeln!(out, "{name}{{shard=\"{}\"}} {}", g.shard, read(g));
        }
    }
    let name = "corestream_store_operation_duration_seconds";
    family(
        &mut out,
        name,
        "histogram",
        "Time record store operations took, as the shard waited for them.",
    );
    let mut cumulative = 0;
    for (i, n) in m.store_latency_us.iter().enumerate() {
        cumulative += n;
        let le = (1u64 << i) as f64 / 1e6;
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
    let _ = writeln!(out, "{name}_sum {}", m.store_latency_sum_us as f64 / 1e6);
    let _ = writeln!(out, "{name}_count {cumulative}");
    family(
        &mut out,
        "corestream_log_problems_total",
        "counter",
        "Warnings and errors logged (or suppressed by the level), by event.",
    );
    for (event, n) in problems {
        let _ = writeln!(
            out,
            "corestream_log_problems_total{{event=\"{}\"}} {n}",
            label(event)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::message::{record_action, topic};

    #[test]
    fn every_line_is_a_comment_or_a_sample() {
        let mut m = Metrics::default();
        m.messages_in.add(topic::RECORD, record_action::READ);
        m.record_store_latency(3);
        m.record_store_latency(1500);
        m.shards.push(crate::shard::metrics::ShardGauges {
            shard: 1,
            connections: 4,
            ..Default::default()
        });
        let text = exposition(&m, 2, &[("A \"B\"", 2)]);
        for line in text.lines() {
            assert!(
                line.starts_with('#')
                    || line
                        .rsplit_once(' ')
                        .is_some_and(|(_, v)| v.parse::<f64>().is_ok()),
                "{line}"
            );
        }
        assert!(
            text.contains("corestream_messages_received_total{topic=\"RECORD\",action=\"READ\"} 1")
        );
        assert!(text.contains("corestream_connections{shard=\"1\"} 4"));
        assert!(
            text.contains("corestream_store_operation_duration_seconds_bucket{le=\"0.000004\"} 1")
        );
        assert!(text.contains("corestream_store_operation_duration_seconds_bucket{le=\"+Inf\"} 2"));
        assert!(text.contains("corestream_store_operation_duration_seconds_count 2"));
        assert!(text.contains("event=\"A \\\"B\\\"\""));
    }
}
