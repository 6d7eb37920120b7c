//! The config in force, shared by every shard of the process.

use crate::config::Config;
use std::sync::{Arc, Mutex};

/// The config in force and its generation, shared by every shard: admin changes are made
/// here one at a time, then handed to every shard.
pub struct AdminState {
    current: Mutex<(Arc<Config>, u64)>,
}

impl AdminState {
    pub fn new(config: Arc<Config>) -> AdminState {
        AdminState {
            current: Mutex::new((config, 0)),
        }
    }

    /// Makes a new config from the one in force (or says why not) and numbers it.
    pub(super) fn next(
        &self,
        change: impl FnOnce(&Config) -> Result<Config, String>,
    ) -> Result<(Arc<Config>, u64), String> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let next = Arc::new(change(&current.0)?);
        current.0 = next.clone();
        current.1 += 1;
        Ok((next, current.1))
    }
}
