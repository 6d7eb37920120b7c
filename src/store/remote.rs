//! A store whose client runs on the connector bridge (tokio): the shard hands a batch to the
//! bridge and awaits the answers on a channel that wakes its own executor. A bridge that is
//! full or gone answers every job with an error at once: the shard never blocks on it.

use super::{BatchFuture, RecordStore, StorageError, StoreJob, StoreResult};
use crate::bridge::BridgeHandle;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// The tokio side of a connector: runs a batch, one answer per job in order. It applies its
/// own timeouts (tokio's timers run there), so an answer always comes.
pub trait Connector: Send + Sync + 'static {
    fn run(
        self: Arc<Self>,
        jobs: Vec<StoreJob>,
    ) -> Pin<Box<dyn Future<Output = Vec<StoreResult>> + Send>>;

    /// Batches a shard may have in flight at once.
    fn concurrency(&self) -> usize;
}

/// The shard side: a `RecordStore` that runs batches on the bridge.
pub struct OnBridge {
    connector: Arc<dyn Connector>,
    bridge: BridgeHandle,
}

impl OnBridge {
    pub fn new(connector: Arc<dyn Connector>, bridge: BridgeHandle) -> OnBridge {
        OnBridge { connector, bridge }
    }
}

impl RecordStore for OnBridge {
    super::v2_through_batch!();

    fn run_batch<'a>(&'a self, jobs: Vec<StoreJob>) -> BatchFuture<'a> {
        Box::pin(async move {
            if jobs.is_empty() {
                return Vec::new();
            }
            // Kept to answer the jobs if the bridge never does.
            let kept = jobs.clone();
            let (answer, answers) = async_channel::bounded(1);
            let work = self.connector.clone().run(jobs);
            let outcome = match self.bridge.submit(work, answer) {
                Ok(()) => answers
                    .recv()
                    .await
                    .map_err(|_| StorageError::Unavailable("the connector thread stopped".into())),
                Err(e) => Err(StorageError::Unavailable(e.to_string())),
            };
            match outcome {
                Ok(results) if results.len() == kept.len() => results,
                Ok(_) => fail_all(
                    kept,
                    StorageError::Other("the connector answered the wrong number of jobs".into()),
                ),
                Err(error) => fail_all(kept, error),
            }
        })
    }

    fn concurrency(&self) -> usize {
        self.connector.concurrency()
    }
}

pub(crate) fn fail_all(jobs: Vec<StoreJob>, error: StorageError) -> Vec<StoreResult> {
    jobs.into_iter()
        .map(|job| StoreResult::failed(job, error.clone()))
        .collect()
}
