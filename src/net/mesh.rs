//! Moves `ShardMsg` batches between shards: one sender task drains the shard's per-peer queues
//! into the mesh (one batch per peer per wake-up), one receiver task per peer feeds the shard.

use super::backlog::Backlog;
use super::store_workers::StoreWorkers;
use super::{Batch, Runtime};
use crate::shard::admin::{AdminAnswer, AdminOp};
use crate::shard::metrics::Metrics;
use crate::shard::Shard;
use crate::store::RecordStore;
use glommio::channels::channel_mesh::{Receivers, Senders};
use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};

/// Called after every piece of shard work: wakes the sender task for messages queued for peers
/// and starts the record-store jobs the work created.
#[derive(Clone)]
pub struct Pump {
    /// Wakes the task that sends the shard's queues to its peers.
    peers: Rc<Signal>,
    shard: Rc<RefCell<Shard>>,
    store: Rc<dyn RecordStore>,
    /// Wakes the task that hands store jobs to the workers.
    stores: Rc<Signal>,
    runtime: Runtime,
    gathering: Rc<Gathering>,
    sessions: Rc<SessionQueue>,
    /// Wakes the task that hands the shard's bus requests to the cluster (in a cluster).
    bus: Rc<Signal>,
}

/// Work waiting for one task: raised by any number of inputs, taken by one wait.
#[derive(Default)]
struct Signal {
    pending: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Signal {
    fn raise(&self) {
        self.pending.set(true);
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }

    /// Returns once raised since the last wait.
    async fn wait(&self) {
        poll_fn(|cx| {
            if self.pending.replace(false) {
                return Poll::Ready(());
            }
            *self.waker.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

/// Logins and logouts waiting for the session webhook, and the task that posts them.
#[derive(Default)]
struct SessionQueue {
    events: RefCell<Vec<String>>,
    waker: RefCell<Option<Waker>>,
}

/// Events posted in one request at most.
const SESSION_BATCH: usize = 1_000;

/// Answers being gathered from every shard for a task on this shard: counter sums
/// (monitoring) and admin answers.
#[derive(Default)]
struct Gathering {
    next_token: Cell<u64>,
    done: RefCell<ahash::AHashMap<u64, Gathered>>,
    waiters: RefCell<ahash::AHashMap<u64, Waker>>,
}

enum Gathered {
    Metrics(Box<Metrics>),
    Admin(Vec<AdminAnswer>),
}

impl Gathering {
    fn token(&self) -> u64 {
        let token = self.next_token.get();
        self.next_token.set(token.wrapping_add(1));
        token
    }

    fn deliver(&self, token: u64, gathered: Gathered) {
        if let Some(waiter) = self.waiters.borrow_mut().remove(&token) {
            self.done.borrow_mut().insert(token, gathered);
            waiter.wake();
        }
    }

    /// Waits for `token`'s answers, at most `timeout`.
    async fn wait(self: Rc<Self>, token: u64, timeout: std::time::Duration) -> Option<Gathered> {
        let done = poll_fn(|cx| {
            if let Some(gathered) = self.done.borrow_mut().remove(&token) {
                return Poll::Ready(Some(gathered));
            }
            self.waiters.borrow_mut().insert(token, cx.waker().clone());
            Poll::Pending
        });
        let late = async {
            glommio::timer::sleep(timeout).await;
            None
        };
        let gathered = futures_lite::future::or(done, late).await;
        self.waiters.borrow_mut().remove(&token);
        self.done.borrow_mut().remove(&token);
        gathered
    }
}

impl Pump {
    pub fn start(
        shard: Rc<RefCell<Shard>>,
        senders: Senders<Batch>,
        mut receivers: Receivers<Batch>,
        runtime: Runtime,
        store: Rc<dyn RecordStore>,
        backlog: Arc<Backlog>,
    ) -> Pump {
        let pump = Pump {
            peers: Rc::default(),
            shard: shard.clone(),
            store,
            stores: Rc::default(),
            runtime: runtime.clone(),
            gathering: Rc::default(),
            sessions: Rc::default(),
            bus: Rc::default(),
        };
        pump.start_session_webhook();
        pump.start_store_worker();
        let me = shard.borrow().id;
        for (_, receiver) in receivers.streams() {
            let (pump, runtime) = (pump.clone(), runtime.clone());
            let backlog = backlog.clone();
            glommio::spawn_local(async move {
                while let Some(batch) = receiver.recv().await {
                    let now = runtime.now_ms();
                    let count = batch.len();
                    let mut entered = pump.enter();
                    for msg in batch {
                        entered.on_peer_msg(msg, now);
                    }
                    drop(entered);
                    backlog.handled(me, count);
                }
            })
            .detach();
        }
        let sender_pump = pump.clone();
        glommio::spawn_local(async move {
            loop {
                sender_pump.peers.wait().await;
                let batches = shard.borrow_mut().take_outgoing();
                for (peer, batch) in batches {
                    // Counted before the send, which waits while the peer's channel is full.
                    backlog.sent(peer, batch.len());
                    if senders.send_to(peer, batch).await.is_err() {
                        return;
                    }
                }
            }
        })
        .detach();
        pump
    }

    /// The shard, for one input. Dropping the guard drains the outputs: auth jobs start,
    /// messages for peers go out, store jobs start. Every input goes through here, so no caller
    /// can forget to.
    pub fn enter(&self) -> Entered<'_> {
        Entered {
            shard: Some(self.shard.borrow_mut()),
            pump: self,
        }
    }

    /// Every shard's counters, summed (each shard answers over the mesh between its other
    /// work; nothing waits on a lock). `None` if they are not all in within `timeout`.
    pub async fn gather_metrics(&self, timeout: std::time::Duration) -> Option<Metrics> {
        match self
            .gather(|shard, token| shard.request_metrics(token), timeout)
            .await
        {
            Some(Gathered::Metrics(sum)) => Some(*sum),
            _ => None,
        }
    }

    /// Every shard's answer to an admin request; `None` if not all are in within `timeout`.
    pub async fn gather_admin(
        &self,
        op: AdminOp,
        timeout: std::time::Duration,
    ) -> Option<Vec<AdminAnswer>> {
        match self
            .gather(|shard, token| shard.request_admin(token, op), timeout)
            .await
        {
            Some(Gathered::Admin(answers)) => Some(answers),
            _ => None,
        }
    }

    /// Sends a request to every shard under a fresh token and waits for the answers. The
    /// waiter is in place before the request, since one shard answers itself at once.
    async fn gather(
        &self,
        request: impl FnOnce(&mut Shard, u64),
        timeout: std::time::Duration,
    ) -> Option<Gathered> {
        let token = self.gathering.token();
        self.gathering
            .waiters
            .borrow_mut()
            .insert(token, Waker::noop().clone());
        request(&mut self.enter(), token);
        self.gathering.clone().wait(token, timeout).await
    }

    /// Posts the shard's logins and logouts to `admin.sessionWebhook`, in batches, in order;
    /// a batch the webhook does not take after its retries is dropped and logged.
    fn start_session_webhook(&self) {
        let Some(settings) = self.config().admin.session_webhook.clone() else {
            return;
        };
        let queue = self.sessions.clone();
        let stopping = self.runtime.stopping.clone();
        glommio::spawn_local(async move {
            while !stopping.load(std::sync::atomic::Ordering::Relaxed) {
                let ready = poll_fn(|cx| {
                    if !queue.events.borrow().is_empty() {
                        return Poll::Ready(());
                    }
                    *queue.waker.borrow_mut() = Some(cx.waker().clone());
                    Poll::Pending
                });
                futures_lite::future::or(
                    ready,
                    glommio::timer::sleep(std::time::Duration::from_millis(200)),
                )
                .await;
                let batch: Vec<String> = {
                    let mut events = queue.events.borrow_mut();
                    let take = events.len().min(SESSION_BATCH);
                    events.drain(..take).collect()
                };
                if batch.is_empty() {
                    continue;
                }
                let body = format!("{{\"events\":[{}]}}", batch.join(","));
                let mut attempt = 0;
                loop {
                    match super::webhook::post(&settings, &body).await {
                        Ok((status, _)) if (200..300).contains(&status) => break,
                        outcome => {
                            if attempt >= settings.retry_attempts {
                                crate::log!(
                                    crate::log::Level::Warn,
                                    "SESSION_WEBHOOK",
                                    "{} login/logout events were not delivered: {:?}",
                                    batch.len(),
                                    outcome.map(|(status, _)| status)
                                );
                                break;
                            }
                            attempt += 1;
                            glommio::timer::sleep(std::time::Duration::from_millis(
                                settings.retry_interval_ms,
                            ))
                            .await;
                        }
                    }
                }
            }
        })
        .detach();
    }

    /// How many shards the server runs.
    pub fn shards(&self) -> usize {
        self.shard.borrow().shards
    }

    /// The shard's config (shared, read-only).
    pub fn config(&self) -> std::sync::Arc<crate::config::Config> {
        self.shard.borrow().config_arc()
    }

    /// Wakes the tasks that drain the shard's outputs (peers' messages, store jobs).
    fn wake(&self) {
        self.peers.raise();
        self.stores.raise();
        self.bus.raise();
    }

    /// Joins the shard to the cluster bus: one task hands the shard's requests to the bus in
    /// order (waiting while the bus's queue is full; the shard pauses client input when its
    /// own queue grows long), one hands what the bus brings to the shard.
    pub fn start_bus(&self, link: crate::cluster::nats::ShardLink) {
        let crate::cluster::nats::ShardLink { out, inbound } = link;
        let pump = self.clone();
        glommio::spawn_local(async move {
            loop {
                pump.bus.wait().await;
                let requests = pump.shard.borrow_mut().take_bus_out();
                if !requests.is_empty() && out.send(requests).await.is_err() {
                    return;
                }
            }
        })
        .detach();
        let pump = self.clone();
        glommio::spawn_local(async move {
            while let Ok(batch) = inbound.recv().await {
                let now = pump.runtime.now_ms();
                let mut shard = pump.enter();
                for arrival in batch {
                    shard.on_bus(arrival, now);
                }
            }
        })
        .detach();
    }

    /// One task per shard hands the store jobs the shard made to the workers, which run up to
    /// the store's concurrency at a time. (glommio runs a freshly spawned task at once, so
    /// spawning one per job from a job would nest them on the stack.)
    fn start_store_worker(&self) {
        let pump = self.clone();
        let on_result = {
            let pump = pump.clone();
            std::rc::Rc::new(move |result, took: std::time::Duration| {
                let now = pump.runtime.now_ms();
                let mut shard = pump.enter();
                shard.record_store_latency(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
                shard.on_store_result(result, now);
            })
        };
        let workers = StoreWorkers::start(pump.store.clone(), on_result);
        glommio::spawn_local(async move {
            loop {
                pump.stores.wait().await;
                let jobs = pump.shard.borrow_mut().take_store_jobs();
                if !jobs.is_empty() {
                    workers.submit(jobs);
                }
            }
        })
        .detach();
    }
}

/// The shard borrowed for one input; see `Pump::enter`.
pub struct Entered<'a> {
    shard: Option<std::cell::RefMut<'a, Shard>>,
    pump: &'a Pump,
}

impl std::ops::Deref for Entered<'_> {
    type Target = Shard;
    fn deref(&self) -> &Shard {
        // Some until the guard drops.
        self.shard.as_deref().unwrap_or_else(|| unreachable!())
    }
}

impl std::ops::DerefMut for Entered<'_> {
    fn deref_mut(&mut self) -> &mut Shard {
        self.shard.as_deref_mut().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        // Every output of the input, taken while the shard is still borrowed.
        let (jobs, gathered, admin, sessions) = match self.shard.as_mut() {
            Some(shard) => (
                shard.take_auth_jobs(),
                shard.take_metrics(),
                shard.take_admin(),
                shard.take_session_events(),
            ),
            None => Default::default(),
        };
        if !sessions.is_empty() {
            let queue = &self.pump.sessions;
            let mut events = queue.events.borrow_mut();
            // The shard bounds what it makes; this bounds what waits for the webhook.
            let room = crate::shard::SESSION_EVENTS_KEPT.saturating_sub(events.len());
            events.extend(sessions.into_iter().take(room));
            drop(events);
            if let Some(waker) = queue.waker.borrow_mut().take() {
                waker.wake();
            }
        }
        let gathering = &self.pump.gathering;
        for (token, sum) in gathered {
            gathering.deliver(token, Gathered::Metrics(Box::new(sum)));
        }
        for (token, answers) in admin {
            gathering.deliver(token, Gathered::Admin(answers));
        }
        // The shard is released before any task that may borrow it starts.
        self.shard = None;
        for job in jobs {
            let pump = self.pump.clone();
            glommio::spawn_local(async move {
                let config = pump.config();
                let plugins = pump.runtime.plugins.as_ref();
                let verdict = super::webhook::verdict(job.work, job.strategy, &config, plugins);
                if let Some(answer) = verdict.await {
                    pump.enter().on_auth_answer(job.local, job.strategy, answer);
                }
            })
            .detach();
        }
        self.pump.wake();
    }
}
