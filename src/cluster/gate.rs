//! Whether a shard's bus loop may hand NATS something now. async-nats queues what it is given
//! in a bounded channel that nothing drains while the connection is down (or stalled: the
//! socket full), so a publish can wait as long as the outage lasts. The loop also starts the
//! bucket requests that record writes wait for; one publish waiting there would leave those
//! writes unanswered past their timeout (issue 27, defect 5). So the loop hands NATS nothing
//! while the connection is not up, and a send that is not taken within `SEND_WAIT` closes the
//! gate for `BACKOFF`: what it would send meanwhile is lost, and logged, as it is anyway while
//! NATS is away.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// How long a send may wait for async-nats to take it.
pub const SEND_WAIT: Duration = Duration::from_millis(100);
/// How long the gate stays closed after a send was not taken in time.
pub const BACKOFF: Duration = Duration::from_millis(500);

pub struct Gate {
    client: async_nats::Client,
    started: Instant,
    /// Milliseconds since `started` before which nothing is sent.
    closed_until: AtomicU64,
}

/// Why something was not sent.
#[derive(Debug)]
pub enum NotSent {
    /// The connection is down, or a send timed out a moment ago.
    Unreachable,
    /// async-nats did not take it within `SEND_WAIT`.
    TimedOut,
    /// async-nats refused it.
    Refused(String),
}

impl std::fmt::Display for NotSent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotSent::Unreachable => write!(f, "NATS is unreachable"),
            NotSent::TimedOut => write!(f, "NATS did not take it within {SEND_WAIT:?}"),
            NotSent::Refused(e) => write!(f, "{e}"),
        }
    }
}

impl Gate {
    pub fn new(client: async_nats::Client) -> Gate {
        Gate {
            client,
            started: Instant::now(),
            closed_until: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Whether a send would be tried now.
    pub fn open(&self) -> bool {
        let connected = matches!(
            self.client.connection_state(),
            async_nats::connection::State::Connected
        );
        connected && self.now_ms() >= self.closed_until.load(Ordering::Relaxed)
    }

    /// Runs `send` if the gate is open, for at most `SEND_WAIT`.
    pub async fn send<T, E: std::fmt::Display>(
        &self,
        send: impl Future<Output = Result<T, E>>,
    ) -> Result<T, NotSent> {
        if !self.open() {
            return Err(NotSent::Unreachable);
        }
        match tokio::time::timeout(SEND_WAIT, send).await {
            Ok(Ok(sent)) => Ok(sent),
            Ok(Err(e)) => Err(NotSent::Refused(e.to_string())),
            Err(_) => {
                let until = self.now_ms() + BACKOFF.as_millis() as u64;
                self.closed_until.store(until, Ordering::Relaxed);
                Err(NotSent::TimedOut)
            }
        }
    }
}
