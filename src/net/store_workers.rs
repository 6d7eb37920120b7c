//! A shard's store jobs, run on the shard's executor in batches, up to the store's
//! `concurrency()` batches at a time. A worker takes every job queued (up to `MAX_BATCH`) as one
//! batch: one round trip to a remote store, one commit to a durable one, however many records.
//! Order per record is kept by the shard's `RecordCache` (one load and one write in flight per
//! record), so batches may overlap.

use crate::store::{RecordStore, StoreJob, StoreResult};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

/// Jobs one batch takes at most.
const MAX_BATCH: usize = 1024;

/// Takes up to `MAX_BATCH` jobs of the first job's kind (reads or writes), leaving the others
/// in order: a read never waits for the writes of its batch (a storage that groups writes for
/// `writeInterval` would hold it that long). The shard's `RecordCache` never has a read and a
/// write of one record queued at once, so nothing is reordered for a record.
fn take_batch(jobs: &mut VecDeque<StoreJob>) -> Vec<StoreJob> {
    let writes = |job: &StoreJob| matches!(job, StoreJob::Write { .. });
    let Some(kind) = jobs.front().map(writes) else {
        return Vec::new();
    };
    let mut batch = Vec::with_capacity(jobs.len().min(MAX_BATCH));
    // The usual case costs only the batch: the jobs of one kind at the front.
    while batch.len() < MAX_BATCH && jobs.front().is_some_and(|j| writes(j) == kind) {
        batch.extend(jobs.pop_front());
    }
    if batch.len() < MAX_BATCH && !jobs.is_empty() {
        let mut rest = VecDeque::with_capacity(jobs.len());
        for job in jobs.drain(..) {
            if batch.len() < MAX_BATCH && writes(&job) == kind {
                batch.push(job);
            } else {
                rest.push_back(job);
            }
        }
        *jobs = rest;
    }
    batch
}

/// What runs after each job: hand the result, and how long the store took, to the shard.
pub type OnResult = Rc<dyn Fn(StoreResult, std::time::Duration)>;

#[derive(Default)]
struct Queue {
    jobs: VecDeque<StoreJob>,
    idle: Vec<Waker>,
}

/// The worker tasks of one shard and their queue.
#[derive(Clone)]
pub struct StoreWorkers {
    queue: Rc<RefCell<Queue>>,
}

impl StoreWorkers {
    /// Spawns `store.concurrency()` workers (at least one) on the current executor.
    pub fn start(store: Rc<dyn RecordStore>, on_result: OnResult) -> StoreWorkers {
        let workers = StoreWorkers {
            queue: Rc::default(),
        };
        for _ in 0..store.concurrency().max(1) {
            let (queue, store, on_result) =
                (workers.queue.clone(), store.clone(), on_result.clone());
            glommio::spawn_local(async move {
                loop {
                    let batch = poll_fn(|cx| {
                        let mut queue = queue.borrow_mut();
                        if queue.jobs.is_empty() {
                            queue.idle.push(cx.waker().clone());
                            return Poll::Pending;
                        }
                        Poll::Ready(take_batch(&mut queue.jobs))
                    })
                    .await;
                    let started = std::time::Instant::now();
                    let results = store.run_batch(batch).await;
                    let took = started.elapsed();
                    for result in results {
                        on_result(result, took);
                    }
                }
            })
            .detach();
        }
        workers
    }

    /// Queues jobs and wakes an idle worker for each batch's worth.
    pub fn submit(&self, jobs: Vec<StoreJob>) {
        if jobs.is_empty() {
            return;
        }
        let wake: Vec<Waker> = {
            let mut queue = self.queue.borrow_mut();
            queue.jobs.extend(jobs);
            let n = queue.jobs.len().div_ceil(MAX_BATCH).min(queue.idle.len());
            let at = queue.idle.len() - n;
            queue.idle.split_off(at)
        };
        for waker in wake {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_takes_one_kind_of_job_and_leaves_the_rest_in_order() {
        let load = |n: &'static str| StoreJob::Load {
            name: Bytes::from_static(n.as_bytes()),
        };
        let write = |n: &'static str| StoreJob::Write {
            name: Bytes::from_static(n.as_bytes()),
            record: None,
        };
        let mut jobs: VecDeque<StoreJob> = [load("a"), write("b"), load("c"), write("d")]
            .into_iter()
            .collect();
        assert_eq!(take_batch(&mut jobs), vec![load("a"), load("c")]);
        assert_eq!(take_batch(&mut jobs), vec![write("b"), write("d")]);
        assert!(take_batch(&mut jobs).is_empty());
    }
    use crate::store::{StoreFuture, StoredRecord};
    use bytes::Bytes;
    use std::cell::Cell;

    /// A store that answers after a timer, counting how many operations overlap (the default
    /// `run_batch` runs a batch's jobs one after the other, so that is how many batches).
    struct SlowStore {
        running: Cell<usize>,
        most: Cell<usize>,
    }

    impl RecordStore for SlowStore {
        fn get<'a>(&'a self, _name: &'a [u8]) -> StoreFuture<'a, Option<StoredRecord>> {
            Box::pin(async move {
                self.running.set(self.running.get() + 1);
                self.most.set(self.most.get().max(self.running.get()));
                glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
                self.running.set(self.running.get() - 1);
                Ok(None)
            })
        }
        fn set<'a>(&'a self, _: &'a [u8], _: i32, _: Bytes) -> StoreFuture<'a, ()> {
            Box::pin(std::future::ready(Ok(())))
        }
        fn delete<'a>(&'a self, _: &'a [u8]) -> StoreFuture<'a, ()> {
            Box::pin(std::future::ready(Ok(())))
        }
        fn concurrency(&self) -> usize {
            8
        }
    }

    #[test]
    fn batches_overlap_up_to_the_stores_concurrency_and_every_job_is_answered() {
        let most = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(|| async {
                let store = Rc::new(SlowStore {
                    running: Cell::new(0),
                    most: Cell::new(0),
                });
                let answered = Rc::new(RefCell::new(Vec::new()));
                let seen = answered.clone();
                let on_result: OnResult = Rc::new(move |result, _| {
                    if let StoreResult::Loaded { name, result } = result {
                        assert_eq!(result, Ok(None));
                        seen.borrow_mut().push(name);
                    }
                });
                let workers = StoreWorkers::start(store.clone(), on_result);
                // One job at a time, letting a worker pick each up: batches then overlap.
                for i in 0..40 {
                    workers.submit(vec![StoreJob::Load {
                        name: Bytes::from(format!("r{i}")),
                    }]);
                    futures_lite::future::yield_now().await;
                }
                while answered.borrow().len() < 40 {
                    glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
                }
                store.most.get()
            })
            .expect("executor")
            .join()
            .expect("ran");
        assert_eq!(most, 8, "as many at once as the store allows, no more");
    }
}
