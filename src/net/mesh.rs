//! Moves `ShardMsg` batches between shards: one sender task drains the shard's per-peer queues
//! into the mesh (one batch per peer per wake-up), one receiver task per peer feeds the shard.

use super::{Batch, Runtime};
use crate::shard::Shard;
use glommio::channels::channel_mesh::{Receivers, Senders};
use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

/// Wakes the sender task when the shard has queued messages for peers.
#[derive(Clone)]
pub struct Pump {
    waker: Rc<RefCell<Option<Waker>>>,
    pending: Rc<Cell<bool>>,
}

impl Pump {
    pub fn start(
        shard: Rc<RefCell<Shard>>,
        senders: Senders<Batch>,
        mut receivers: Receivers<Batch>,
        runtime: Runtime,
    ) -> Pump {
        let pump = Pump {
            waker: Rc::default(),
            pending: Rc::default(),
        };
        for (_, receiver) in receivers.streams() {
            let (shard, pump, runtime) = (shard.clone(), pump.clone(), runtime.clone());
            glommio::spawn_local(async move {
                while let Some(batch) = receiver.recv().await {
                    let now = runtime.now_ms();
                    let mut shard = shard.borrow_mut();
                    for msg in batch {
                        shard.on_peer_msg(msg, now);
                    }
                    drop(shard);
                    pump.wake();
                }
            })
            .detach();
        }
        let sender_pump = pump.clone();
        glommio::spawn_local(async move {
            loop {
                poll_fn(|cx| {
                    if sender_pump.pending.replace(false) {
                        return Poll::Ready(());
                    }
                    *sender_pump.waker.borrow_mut() = Some(cx.waker().clone());
                    Poll::Pending
                })
                .await;
                let batches: Vec<(usize, Batch)> = {
                    let mut shard = shard.borrow_mut();
                    shard
                        .outgoing
                        .iter_mut()
                        .enumerate()
                        .filter(|(_, q)| !q.is_empty())
                        .map(|(peer, q)| (peer, std::mem::take(q)))
                        .collect()
                };
                for (peer, batch) in batches {
                    if senders.send_to(peer, batch).await.is_err() {
                        return;
                    }
                }
            }
        })
        .detach();
        pump
    }

    /// Call after anything that may have queued messages for peers.
    pub fn wake(&self) {
        self.pending.set(true);
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }
}
