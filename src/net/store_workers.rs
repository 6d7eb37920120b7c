//! A shard's store jobs, run on the shard's executor up to the store's `concurrency()` at a
//! time. Order per record is kept by the shard's `RecordCache` (one load and one write in flight
//! per record), so jobs for different records may overlap: a remote store is not one round trip
//! at a time per shard.

use crate::shard::records::{StoreJob, StoreResult};
use crate::store::RecordStore;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

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
                    let job = poll_fn(|cx| {
                        let mut queue = queue.borrow_mut();
                        match queue.jobs.pop_front() {
                            Some(job) => Poll::Ready(job),
                            None => {
                                queue.idle.push(cx.waker().clone());
                                Poll::Pending
                            }
                        }
                    })
                    .await;
                    let started = std::time::Instant::now();
                    let result = run(job, store.as_ref()).await;
                    on_result(result, started.elapsed());
                }
            })
            .detach();
        }
        workers
    }

    /// Queues jobs and wakes as many idle workers.
    pub fn submit(&self, jobs: Vec<StoreJob>) {
        let wake: Vec<Waker> = {
            let mut queue = self.queue.borrow_mut();
            let n = jobs.len().min(queue.idle.len());
            queue.jobs.extend(jobs);
            let at = queue.idle.len() - n;
            queue.idle.split_off(at)
        };
        for waker in wake {
            waker.wake();
        }
    }
}

/// One load, write or delete against the store.
async fn run(job: StoreJob, store: &dyn RecordStore) -> StoreResult {
    match job {
        StoreJob::Load { name } => {
            let result = store.get(&name).await;
            StoreResult::Loaded { name, result }
        }
        StoreJob::Write { name, record } => {
            let result = match record {
                Some(record) => store.set(&name, record.version, record.data).await,
                None => store.delete(&name).await,
            };
            StoreResult::Written { name, result }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{StoreFuture, StoredRecord};
    use bytes::Bytes;
    use std::cell::Cell;

    /// A store that answers after a timer, counting how many operations overlap.
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
    fn jobs_overlap_up_to_the_stores_concurrency_and_every_one_is_answered() {
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
                let jobs = (0..40)
                    .map(|i| StoreJob::Load {
                        name: Bytes::from(format!("r{i}")),
                    })
                    .collect();
                workers.submit(jobs);
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
