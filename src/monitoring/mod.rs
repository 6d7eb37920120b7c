//! Monitoring outputs, sans I/O: deepstream's `monitoring` types `http` (a GET path answering
//! its JSON stats) and `log` (the same stats every `logInterval`), and `prometheus` (the text
//! exposition format), all made from the shards' counters summed (`shard::metrics`).

pub mod dashboard;
mod prometheus;
mod stats;

pub use prometheus::exposition;
pub use stats::{Delta, StatsWindow};

pub use crate::config::monitoring::Monitor;
