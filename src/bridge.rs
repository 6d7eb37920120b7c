//! Where the clients of external systems run: the Redis, PostgreSQL and NATS crates are built on
//! tokio, which must not run on the shard cores. One connector thread (unpinned) holds a tokio
//! runtime; a shard hands it work with `BridgeHandle::submit` (never blocking: a full queue is
//! an error the caller answers), and the answer comes back on a bounded channel that wakes the
//! shard's glommio executor, where a task of the shard's own applies it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Jobs queued for the connector thread; past this `submit` refuses.
pub const MAX_QUEUED: usize = 8192;
/// Jobs the connector thread runs at once.
pub const MAX_IN_FLIGHT: usize = 1024;

/// How long a stopping bridge lets the jobs it runs finish.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// The connector thread. Dropping it stops the thread: it takes no new jobs and gives the
/// running ones `STOP_GRACE` to finish (a handle some shard still holds does not keep it).
pub struct Bridge {
    handle: BridgeHandle,
    runtime: tokio::runtime::Handle,
    stop: Arc<tokio::sync::Notify>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What shards keep to submit work; cheap to clone and `Send`.
#[derive(Clone)]
pub struct BridgeHandle {
    jobs: tokio::sync::mpsc::Sender<Job>,
}

/// Why a job was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitError {
    /// `MAX_QUEUED` jobs are waiting: the caller answers its client with a busy error.
    Busy,
    /// The connector thread has stopped.
    Stopped,
}

impl std::fmt::Display for SubmitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SubmitError::Busy => "the connector thread has too much queued",
            SubmitError::Stopped => "the connector thread has stopped",
        })
    }
}

impl std::error::Error for SubmitError {}

impl Bridge {
    /// Starts the connector thread with its tokio runtime.
    pub fn start() -> std::io::Result<Bridge> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (jobs, mut queue) = tokio::sync::mpsc::channel::<Job>(MAX_QUEUED);
        let runtime_handle = runtime.handle().clone();
        let stop = Arc::new(tokio::sync::Notify::new());
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("corestream-connectors".into())
            .spawn(move || {
                let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
                runtime.block_on(async move {
                    let mut running = tokio::task::JoinSet::new();
                    loop {
                        let next = futures_lite::future::or(async { queue.recv().await }, async {
                            stopped.notified().await;
                            None
                        });
                        let Some(job) = next.await else { break };
                        let Ok(permit) = in_flight.clone().acquire_owned().await else {
                            break;
                        };
                        running.spawn(async move {
                            job.await;
                            drop(permit);
                        });
                        // Finished tasks are collected as we go, so the set stays small.
                        while running.try_join_next().is_some() {}
                    }
                    let drain = async { while running.join_next().await.is_some() {} };
                    let _ = tokio::time::timeout(STOP_GRACE, drain).await;
                });
            })?;
        Ok(Bridge {
            handle: BridgeHandle { jobs },
            runtime: runtime_handle,
            stop,
            thread: Some(thread),
        })
    }

    pub fn handle(&self) -> BridgeHandle {
        self.handle.clone()
    }

    /// Runs a task that lasts as long as the bridge (a connector's listener): it counts
    /// against no job limit, and stopping the bridge ends it.
    pub fn spawn_service(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.runtime.spawn(task);
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        // `notify_one` keeps the permit if the thread is not waiting yet.
        self.stop.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl BridgeHandle {
    /// Runs `work` on the connector thread and sends its answer to `answers`, which the
    /// submitting shard reads on its own executor. Never blocks.
    pub fn submit<T: Send + 'static>(
        &self,
        work: impl Future<Output = T> + Send + 'static,
        answers: async_channel::Sender<T>,
    ) -> Result<(), SubmitError> {
        let job: Job = Box::pin(async move {
            let answer = work.await;
            // A shard that has stopped listening has nothing to apply it to.
            let _ = answers.send(answer).await;
        });
        self.jobs.try_send(job).map_err(|e| match e {
            tokio::sync::mpsc::error::TrySendError::Full(_) => SubmitError::Busy,
            tokio::sync::mpsc::error::TrySendError::Closed(_) => SubmitError::Stopped,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_job_sent_from_a_shard_runs_on_tokio_and_is_answered_on_that_shard() {
        let bridge = Bridge::start().expect("connector thread");
        let handle = bridge.handle();
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let (running2, most2) = (running.clone(), most.clone());
        let shard = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(move || async move {
                let shard_thread = std::thread::current().id();
                let (answers, results) = async_channel::bounded(16);
                for i in 0..64u32 {
                    let (running, most) = (running2.clone(), most2.clone());
                    let work = async move {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        // A tokio timer: this only works inside the connector's runtime.
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        running.fetch_sub(1, Ordering::SeqCst);
                        (i, std::thread::current().id())
                    };
                    handle.submit(work, answers.clone()).expect("submitted");
                }
                let mut seen = Vec::new();
                for _ in 0..64 {
                    let (i, worker) = results.recv().await.expect("answer");
                    assert_ne!(worker, shard_thread, "the work ran off the shard");
                    assert_eq!(
                        std::thread::current().id(),
                        shard_thread,
                        "answered on the shard"
                    );
                    seen.push(i);
                }
                seen.sort_unstable();
                seen
            })
            .expect("executor")
            .join()
            .expect("shard");
        assert_eq!(shard, (0..64).collect::<Vec<_>>());
        assert!(most.load(Ordering::SeqCst) > 1, "jobs ran concurrently");
        drop(bridge);
    }

    #[test]
    fn a_full_queue_refuses_instead_of_blocking() {
        let bridge = Bridge::start().expect("connector thread");
        let handle = bridge.handle();
        let (answers, results) = async_channel::bounded::<()>(1);
        // Nobody reads the answers: the first job blocks its slot, the rest pile up.
        let mut refused = None;
        for n in 0..(MAX_QUEUED + MAX_IN_FLIGHT + 10) {
            if let Err(e) = handle.submit(async {}, answers.clone()) {
                refused = Some((n, e));
                break;
            }
        }
        let (n, e) = refused.expect("refused at some point");
        assert_eq!(e, SubmitError::Busy);
        assert!(n >= MAX_QUEUED, "{n}");
        // Reading the answers lets it drain, and the thread stops when dropped.
        std::thread::spawn(move || while results.recv_blocking().is_ok() {});
        drop(handle);
        drop(answers);
        drop(bridge);
    }

    #[test]
    fn dropping_the_bridge_stops_it_though_a_handle_is_still_held() {
        let bridge = Bridge::start().expect("connector thread");
        let kept = bridge.handle();
        let started = std::time::Instant::now();
        drop(bridge);
        assert!(
            started.elapsed() < STOP_GRACE,
            "stopped at once with nothing running"
        );
        let (answers, _results) = async_channel::bounded::<()>(1);
        assert_eq!(kept.submit(async {}, answers), Err(SubmitError::Stopped));
    }
}
