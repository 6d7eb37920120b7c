//! Counters and latency histograms shared by the loader's threads, and the final report.

use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Nanoseconds since the loader started, on a clock every thread shares.
pub fn now_ns(start: Instant) -> u64 {
    start.elapsed().as_nanos() as u64
}

#[derive(Default)]
pub struct Counters {
    pub offered: AtomicU64,
    pub delivered: AtomicU64,
    pub errors: AtomicU64,
    pub conflicts: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Latencies in microseconds; each thread records locally and merges at the end.
pub struct Latencies(Mutex<Histogram<u64>>);

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).expect("histogram"))
}

impl Latencies {
    pub fn new() -> Arc<Latencies> {
        Arc::new(Latencies(Mutex::new(histogram())))
    }

    pub fn merge(&self, local: &Histogram<u64>) {
        if let Ok(mut h) = self.0.lock() {
            let _ = h.add(local);
        }
    }

    pub fn snapshot(&self) -> Histogram<u64> {
        self.0
            .lock()
            .map(|h| h.clone())
            .unwrap_or_else(|_| histogram())
    }
}

/// One line of results: a name and its value, printed as a table or as JSON.
pub struct Report {
    pub scenario: String,
    pub rows: Vec<(String, f64)>,
}

impl Report {
    pub fn new(scenario: &str) -> Report {
        Report {
            scenario: scenario.into(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, name: &str, value: f64) {
        self.rows.push((name.into(), value));
    }

    pub fn latency(&mut self, prefix: &str, h: &Histogram<u64>) {
        if h.is_empty() {
            return;
        }
        for (label, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)] {
            self.row(
                &format!("{prefix} {label} (us)"),
                h.value_at_quantile(q) as f64,
            );
        }
        self.row(&format!("{prefix} max (us)"), h.max() as f64);
    }

    pub fn print(&self, json: bool) {
        if json {
            let fields: Vec<String> = self
                .rows
                .iter()
                .map(|(k, v)| {
                    format!(
                        "\"{}\":{}",
                        k.replace('"', ""),
                        if v.fract() == 0.0 {
                            format!("{v:.0}")
                        } else {
                            format!("{v:.3}")
                        }
                    )
                })
                .collect();
            println!(
                "{{\"scenario\":\"{}\",{}}}",
                self.scenario,
                fields.join(",")
            );
            return;
        }
        println!("{}", self.scenario);
        for (k, v) in &self.rows {
            println!("  {k:<28} {v:>14.1}");
        }
    }
}
