//! Monitoring on the runtime: the GET endpoints of `http` and `prometheus` monitoring and the
//! `log` monitoring's timer, each reading the shards' counters through the mesh.

use super::mesh::Pump;
use crate::monitoring::{exposition, Monitor, StatsWindow};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a read of the counters waits for every shard.
const GATHER_TIMEOUT: Duration = Duration::from_secs(2);

/// The configured outputs, and for each the counters at its last read (deepstream's stats are
/// what happened since then). Shared by every shard: a read may come in on any of them.
pub struct MonitorState {
    pub monitors: Vec<Monitor>,
    windows: Vec<Mutex<StatsWindow>>,
}

fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl MonitorState {
    pub fn new(monitors: Vec<Monitor>) -> MonitorState {
        let now = epoch_ms();
        let windows = monitors
            .iter()
            .map(|_| Mutex::new(StatsWindow::new(now)))
            .collect();
        MonitorState { monitors, windows }
    }

    /// The GET paths, in the order of `monitors` (an empty path for outputs without one).
    pub fn paths(&self) -> Vec<&str> {
        self.monitors
            .iter()
            .map(|m| m.path().unwrap_or(""))
            .collect()
    }

    /// The answer of output `index`: content type and body; `None` if the shards did not
    /// all answer in time.
    pub async fn read(&self, index: usize, pump: &Pump) -> Option<(&'static str, String)> {
        let monitor = self.monitors.get(index)?;
        let sum = pump.gather_metrics(GATHER_TIMEOUT).await?;
        let problems = crate::log::problems();
        match monitor {
            Monitor::Prometheus { .. } => Some((
                "text/plain; version=0.0.4; charset=utf-8",
                exposition(&sum, pump.shards(), &problems),
            )),
            Monitor::Http { .. } | Monitor::Log { .. } => {
                let mut window = self
                    .windows
                    .get(index)?
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                Some((
                    "application/json; charset=utf-8",
                    window.take(epoch_ms(), &sum, &problems),
                ))
            }
        }
    }

    /// The `log` outputs' timers (run on one shard): the stats every interval, as an INFO
    /// line under the output's key.
    pub fn start_logging(self: &Arc<Self>, pump: &Pump, stopping: Arc<AtomicBool>) {
        for (index, monitor) in self.monitors.iter().enumerate() {
            let Monitor::Log { interval_ms, key } = monitor else {
                continue;
            };
            let (state, pump, stopping) = (self.clone(), pump.clone(), stopping.clone());
            let (interval, key) = (Duration::from_millis(*interval_ms), key.clone());
            glommio::spawn_local(async move {
                while !stopping.load(Ordering::Relaxed) {
                    let mut waited = Duration::ZERO;
                    while waited < interval && !stopping.load(Ordering::Relaxed) {
                        let step = (interval - waited).min(Duration::from_millis(100));
                        glommio::timer::sleep(step).await;
                        waited += step;
                    }
                    if stopping.load(Ordering::Relaxed) {
                        break;
                    }
                    if let Some((_, stats)) = state.read(index, &pump).await {
                        crate::log!(crate::log::Level::Info, "LOG_MONITORING", "{key} {stats}");
                    }
                }
            })
            .detach();
        }
    }
}
