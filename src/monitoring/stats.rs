//! deepstream's monitoring stats: what happened since the last read (the reference resets its
//! counts on every read), from the shards' counters, which only grow.

use crate::protocol::names::{action_name, topic_name};
use crate::shard::metrics::{ByAction, Metrics};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Counters that only grow, with what they were at the last read.
#[derive(Debug, Default)]
pub struct StatsWindow {
    from_ms: u64,
    last: Metrics,
    last_problems: Vec<(&'static str, u64)>,
}

/// Counts between two reads.
pub struct Delta<'a> {
    pub now: &'a Metrics,
    pub before: &'a Metrics,
}

impl Delta<'_> {
    fn by_action(
        now: &ByAction,
        before: &ByAction,
    ) -> BTreeMap<&'static str, BTreeMap<String, u64>> {
        let mut out: BTreeMap<&'static str, BTreeMap<String, u64>> = BTreeMap::new();
        for ((topic, action), n) in now.iter() {
            let n = n.saturating_sub(before.get(topic, action));
            if n == 0 {
                continue;
            }
            let Some(topic_key) = topic_name(topic) else {
                continue;
            };
            let action_key =
                action_name(topic, action).map_or_else(|| action.to_string(), str::to_string);
            *out.entry(topic_key)
                .or_default()
                .entry(action_key)
                .or_default() += n;
        }
        out
    }
}

fn json_map(out: &mut String, map: &BTreeMap<&'static str, BTreeMap<String, u64>>) {
    out.push('{');
    for (i, (topic, actions)) in map.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "\"{topic}\":{{");
        for (j, (action, n)) in actions.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            let _ = write!(out, "\"{action}\":{n}");
        }
        out.push('}');
    }
    out.push('}');
}

impl StatsWindow {
    pub fn new(now_ms: u64) -> StatsWindow {
        StatsWindow {
            from_ms: now_ms,
            ..StatsWindow::default()
        }
    }

    /// The stats since the last read as deepstream's JSON (`from`, `to`, `clusterSize`,
    /// `stateMetrics`, `errors`, `received`, `send`, `logins`); the window starts again.
    pub fn take(
        &mut self,
        now_ms: u64,
        current: &Metrics,
        problems: &[(&'static str, u64)],
    ) -> String {
        let delta = Delta {
            now: current,
            before: &self.last,
        };
        let mut out = format!(
            "{{\"from\":{},\"to\":{now_ms},\"clusterSize\":1,\"stateMetrics\":{{}},\"errors\":{{",
            self.from_ms
        );
        let mut first = true;
        for (event, n) in problems {
            let before = self
                .last_problems
                .iter()
                .find(|(e, _)| e == event)
                .map_or(0, |(_, n)| *n);
            if *n > before {
                if !first {
                    out.push(',');
                }
                first = false;
                let _ = write!(
                    out,
                    "{}:{}",
                    serde_json::to_string(event).unwrap_or_default(),
                    n - before
                );
            }
        }
        out.push_str("},\"received\":");
        json_map(
            &mut out,
            &Delta::by_action(&delta.now.messages_in, &delta.before.messages_in),
        );
        out.push_str(",\"send\":");
        json_map(
            &mut out,
            &Delta::by_action(&delta.now.messages_out, &delta.before.messages_out),
        );
        out.push_str(",\"logins\":{");
        let logins = [
            (
                "websocket",
                current.logins_accepted - self.last.logins_accepted.min(current.logins_accepted),
                current.logins_refused - self.last.logins_refused.min(current.logins_refused),
            ),
            (
                "http",
                current.api_logins_accepted
                    - self
                        .last
                        .api_logins_accepted
                        .min(current.api_logins_accepted),
                current.api_logins_refused
                    - self.last.api_logins_refused.min(current.api_logins_refused),
            ),
        ];
        let mut first = true;
        for (kind, allowed, declined) in logins {
            if allowed + declined == 0 {
                continue;
            }
            if !first {
                out.push(',');
            }
            first = false;
            let _ = write!(
                out,
                "\"{kind}\":{{\"allowed\":{allowed},\"declined\":{declined}}}"
            );
        }
        out.push_str("}}");
        self.from_ms = now_ms;
        self.last = current.clone();
        self.last_problems = problems.to_vec();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::message::{record_action, topic};

    #[test]
    fn each_read_has_what_happened_since_the_last() {
        let mut window = StatsWindow::new(1000);
        let mut m = Metrics::default();
        m.messages_in.add(topic::RECORD, record_action::READ);
        m.messages_in.add(topic::RECORD, record_action::READ);
        m.logins_accepted = 2;
        m.api_logins_refused = 1;
        let first = window.take(2000, &m, &[("AUTH_ERROR", 3)]);
        let v: serde_json::Value = serde_json::from_str(&first).unwrap();
        assert_eq!(v["from"], 1000);
        assert_eq!(v["to"], 2000);
        assert_eq!(v["received"]["RECORD"]["READ"], 2);
        assert_eq!(v["errors"]["AUTH_ERROR"], 3);
        assert_eq!(v["logins"]["websocket"]["allowed"], 2);
        assert_eq!(v["logins"]["http"]["declined"], 1);
        m.messages_in.add(topic::RECORD, record_action::READ);
        let second: serde_json::Value =
            serde_json::from_str(&window.take(3000, &m, &[("AUTH_ERROR", 3)])).unwrap();
        assert_eq!(second["from"], 2000);
        assert_eq!(second["received"]["RECORD"]["READ"], 1);
        assert_eq!(second["errors"], serde_json::json!({}));
        assert_eq!(second["logins"], serde_json::json!({}));
    }
}
