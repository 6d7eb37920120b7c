//! CPU work that must not delay a shard's other clients (a TLS handshake's public-key
//! operations): a few threads of their own, unpinned, at a lower scheduling priority (nice 10)
//! than the shards, so a flood of such work takes what the shards leave. A shard awaits the
//! answer on its executor; a full queue is refused, never waited on.

use std::future::Future;
use std::sync::OnceLock;

type Job = Box<dyn FnOnce() + Send>;

/// Jobs waiting for a thread; past this `run` refuses (each shard also bounds its handshakes
/// in progress by `limits.handshakesPerShard`).
const MAX_QUEUED: usize = 4096;
/// The niceness of the pool's threads: the shards (nice 0) get about ten times their share.
const NICE: i32 = 19;

struct Pool {
    jobs: async_channel::Sender<Job>,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let (jobs, queue) = async_channel::bounded::<Job>(MAX_QUEUED);
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 16);
        for i in 0..threads {
            let queue = queue.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("corestream-cpu-{i}"))
                .spawn(move || {
                    // Best effort: without the right to lower its priority the thread still
                    // keeps the work off the shards.
                    lower_priority();
                    while let Ok(job) = queue.recv_blocking() {
                        job();
                    }
                });
            if let Err(e) = spawned {
                crate::log!(
                    crate::log::Level::Error,
                    "CPU_POOL",
                    "cannot start a CPU worker thread: {e}"
                );
            }
        }
        Pool { jobs }
    })
}

/// SCHED_IDLE: a shard's thread that wakes takes the cpu at once (under EEVDF a nice 19
/// thread keeps it until its slice ends, milliseconds); nice 19 where that is refused.
fn lower_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sets the calling thread's (pid 0) policy from a valid, initialised parameter.
    let idle = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } == 0;
    if !idle {
        let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), NICE);
    }
}

/// Runs `work` on the pool; `None` when the queue is full or no thread runs.
pub fn run<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> impl Future<Output = Option<T>> {
    let (answer, answers) = async_channel::bounded(1);
    let job: Job = Box::new(move || {
        let _ = answer.send_blocking(work());
    });
    let queued = pool().jobs.try_send(job).is_ok();
    async move {
        if !queued {
            return None;
        }
        answers.recv().await.ok()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn work_runs_off_the_calling_thread_and_answers() {
        let caller = std::thread::current().id();
        let (thread, sum) = futures_lite::future::block_on(super::run(|| {
            (std::thread::current().id(), (1..=10u32).sum::<u32>())
        }))
        .expect("answered");
        assert_ne!(thread, caller);
        assert_eq!(sum, 55);
    }
}
