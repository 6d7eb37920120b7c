//! What the clients of a fault scenario saw, and the one checker of it all.
//!
//! Writers patch their own field (`w<i>`) of shared records with a number that only grows and
//! keep every answer; subscribers keep every version (and the content it had) they saw; at the
//! end every node and storage are read. The checker holds the promises of issue 27: nothing
//! acknowledged lost, one content per version, no version going backwards at any subscriber,
//! nodes and storage agree, no write unanswered past its bound.

use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// One writer's record of its writes.
#[derive(Default, Debug)]
pub struct WriterLog {
    pub writer: usize,
    /// The highest number acknowledged per record.
    pub acked: BTreeMap<String, u64>,
    /// Acknowledged writes per record.
    pub per_record: BTreeMap<String, usize>,
    pub acks: usize,
    /// Writes refused with an error (RECORD_UPDATE_ERROR and the like): allowed, not kept.
    pub refused: usize,
    /// Writes whose connection died before an answer (a killed node): their fate is unknown.
    pub unknown: usize,
    /// Writes answered later than the bound, or never: (number, how long it waited).
    pub late: Vec<(u64, Duration)>,
    pub slowest: Duration,
}

/// What one subscriber saw of one record, in order: (version, content when known).
#[derive(Default, Debug)]
pub struct SubscriberLog {
    pub node: usize,
    pub seen: BTreeMap<String, Vec<(i32, Option<String>, i32)>>,
    /// A patch that did not follow the version before it (its base is unknown).
    pub gaps: Vec<String>,
}

/// The end state of a record as one reader (a node, or storage) has it.
#[derive(Debug, Clone, PartialEq)]
pub struct Final {
    pub version: i32,
    pub data: Value,
}

#[derive(Default)]
pub struct History {
    pub writers: Vec<WriterLog>,
    pub subscribers: Vec<SubscriberLog>,
    /// Per record: what each node reads at the end (`None`: the read failed).
    pub nodes: BTreeMap<String, Vec<Option<Final>>>,
    /// Per record: storage's row at the end, when the scenario has storage.
    pub storage: BTreeMap<String, Option<Final>>,
    /// Rows seen going to a lower version while the scenario ran, where it was watched.
    pub storage_went_back: Vec<String>,
}

/// The content of a record as text with sorted keys, so equal contents compare equal.
pub fn canonical(value: &Value) -> String {
    value.to_string()
}

impl History {
    /// Every broken promise, one line each (empty: the history is clean).
    pub fn violations(&self) -> Vec<String> {
        let mut broken = self.storage_went_back.clone();
        for writer in &self.writers {
            for (number, waited) in &writer.late {
                broken.push(format!(
                    "writer {}: write {number} answered after {waited:?} (or never)",
                    writer.writer
                ));
            }
        }
        // No version going backwards at any subscriber; one content per version everywhere.
        let mut contents: BTreeMap<(String, i32), String> = BTreeMap::new();
        let mut one_content = |record: &str, version: i32, content: &str, who: &str| {
            let key = (record.to_string(), version);
            match contents.get(&key) {
                Some(known) if known != content => Some(format!(
                    "{record} v{version}: {who} saw {content}, elsewhere {known}"
                )),
                Some(_) => None,
                None => {
                    contents.insert(key, content.to_string());
                    None
                }
            }
        };
        for (i, sub) in self.subscribers.iter().enumerate() {
            for gap in &sub.gaps {
                broken.push(format!("subscriber {i} (node {}): {gap}", sub.node));
            }
            for (record, seen) in &sub.seen {
                for pair in seen.windows(2) {
                    // The same version again (a read answered after a change it holds) is
                    // no step back; its content is held to the one-content rule below.
                    if pair[1].0 < pair[0].0 {
                        broken.push(format!(
                            "subscriber {i} (node {}) saw {record} go from v{} to v{} \
                             (actions {} then {})",
                            sub.node, pair[0].0, pair[1].0, pair[0].2, pair[1].2
                        ));
                    }
                }
                for (version, content, _) in seen {
                    if let Some(content) = content {
                        let who = format!("subscriber {i} (node {})", sub.node);
                        broken.extend(one_content(record, *version, content, &who));
                    }
                }
            }
        }
        for (record, finals) in &self.nodes {
            let mut agreed: Option<&Final> = None;
            for (node, read) in finals.iter().enumerate() {
                let Some(read) = read else {
                    broken.push(format!("node {node} could not read {record} at the end"));
                    continue;
                };
                broken.extend(one_content(
                    record,
                    read.version,
                    &canonical(&read.data),
                    &format!("node {node} at the end"),
                ));
                match agreed {
                    Some(first) if first != read => broken.push(format!(
                        "nodes disagree on {record} at the end: {first:?} and node {node}: {read:?}"
                    )),
                    Some(_) => {}
                    None => agreed = Some(read),
                }
            }
            let Some(end) = agreed else {
                continue;
            };
            // Nothing acknowledged lost: each writer's field holds at least its last acked
            // number, and each acked write took a version of its own.
            let mut acks_total = 0;
            for writer in &self.writers {
                let Some(acked) = writer.acked.get(record) else {
                    continue;
                };
                let field = format!("w{}", writer.writer);
                let kept = end.data.get(&field).and_then(Value::as_u64).unwrap_or(0);
                if kept < *acked {
                    broken.push(format!(
                        "{record}: writer {} had {acked} acknowledged, the end holds {kept}",
                        writer.writer
                    ));
                }
            }
            for writer in &self.writers {
                acks_total += writer.acks_of(record);
            }
            if (end.version as usize) < acks_total {
                broken.push(format!(
                    "{record}: {acks_total} writes acknowledged, the end is at v{}",
                    end.version
                ));
            }
            if let Some(stored) = self.storage.get(record) {
                if stored.as_ref() != Some(end) {
                    broken.push(format!(
                        "storage disagrees on {record}: {stored:?}, the nodes {end:?}"
                    ));
                }
            }
        }
        broken
    }

    /// Panics with every violation, after a summary.
    pub fn check(&self, scenario: &str) {
        let acks: usize = self.writers.iter().map(|w| w.acks).sum();
        let refused: usize = self.writers.iter().map(|w| w.refused).sum();
        let unknown: usize = self.writers.iter().map(|w| w.unknown).sum();
        let slowest = self.writers.iter().map(|w| w.slowest).max();
        let seen: usize = self
            .subscribers
            .iter()
            .flat_map(|s| s.seen.values())
            .map(Vec::len)
            .sum();
        println!(
            "{scenario}: {acks} writes acknowledged, {refused} refused, {unknown} unknown \
             (connection lost), slowest answer {slowest:?}; {seen} versions seen by {} \
             subscribers",
            self.subscribers.len()
        );
        let broken = self.violations();
        assert!(
            broken.is_empty(),
            "{scenario}: {} violations:\n{}",
            broken.len(),
            broken.join("\n")
        );
        assert!(acks > 0, "{scenario}: no write was acknowledged");
    }
}

impl WriterLog {
    /// Acknowledged writes of `record` (counted as they came).
    fn acks_of(&self, record: &str) -> usize {
        self.per_record.get(record).copied().unwrap_or(0)
    }
}
