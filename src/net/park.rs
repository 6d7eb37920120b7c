//! Parks quiet connections: their sockets wait for bytes in one epoll set per shard, watched
//! from glommio's blocking pool, instead of each keeping an io_uring poll (about 500 bytes of
//! glommio state per socket) for as long as it stays quiet.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::os::fd::{AsFd, OwnedFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

use rustix::event::epoll;

/// Readiness reports taken per wait.
const EVENTS_PER_WAIT: usize = 256;
/// The blocking wait returns this often, so a stopping server is not held up.
const WAIT_SLICE: Duration = Duration::from_millis(200);

pub struct Parking {
    epoll: Arc<OwnedFd>,
    /// Sockets in the set; the blocking wait runs only while there are some.
    parked: Cell<usize>,
    /// The watch task, waiting for a first parked socket.
    watcher: RefCell<Option<Waker>>,
}

impl Parking {
    pub fn new() -> std::io::Result<Rc<Parking>> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        Ok(Rc::new(Parking {
            epoll: Arc::new(epoll),
            parked: Cell::new(0),
            watcher: RefCell::default(),
        }))
    }

    /// Adds `fd` to the set until it is readable (or hung up); its readiness is reported with
    /// `token`.
    pub fn park(&self, token: u32, fd: impl AsFd) -> std::io::Result<()> {
        let flags = epoll::EventFlags::IN | epoll::EventFlags::RDHUP | epoll::EventFlags::ONESHOT;
        epoll::add(
            &*self.epoll,
            fd,
            epoll::EventData::new_u64(u64::from(token)),
            flags,
        )?;
        self.parked.set(self.parked.get() + 1);
        if let Some(watcher) = self.watcher.borrow_mut().take() {
            watcher.wake();
        }
        Ok(())
    }

    /// Takes `fd` out of the set, readable or not.
    pub fn unpark(&self, fd: impl AsFd) {
        self.parked.set(self.parked.get().saturating_sub(1));
        // Fails only if the socket is not in the set, which is what we want anyway.
        let _ = epoll::delete(&*self.epoll, fd);
    }

    /// Waits for parked sockets to become readable and hands their tokens to `readable`, while
    /// any are parked and until `stopping`.
    pub async fn watch(self: Rc<Self>, readable: impl Fn(&[u32]), stopping: Arc<AtomicBool>) {
        while !stopping.load(Ordering::Relaxed) {
            poll_fn(|cx| {
                if self.parked.get() == 0 && !stopping.load(Ordering::Relaxed) {
                    *self.watcher.borrow_mut() = Some(cx.waker().clone());
                    Poll::Pending
                } else {
                    Poll::Ready(())
                }
            })
            .await;
            let epoll = self.epoll.clone();
            let ready = glommio::executor()
                .spawn_blocking(move || wait_readable(&epoll))
                .await;
            readable(&ready);
        }
    }

    /// Lets the watch task see `stopping`.
    pub fn stop(&self) {
        if let Some(watcher) = self.watcher.borrow_mut().take() {
            watcher.wake();
        }
    }
}

/// One bounded wait on the set: the tokens of sockets that became readable.
fn wait_readable(epoll: &OwnedFd) -> Vec<u32> {
    let mut events = Vec::with_capacity(EVENTS_PER_WAIT);
    let timeout = rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: WAIT_SLICE.as_nanos() as _,
    };
    match epoll::wait(
        epoll,
        rustix::buffer::spare_capacity(&mut events),
        Some(&timeout),
    ) {
        Ok(_) => events
            .iter()
            .map(|event: &epoll::Event| event.data.u64() as u32)
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_parked_socket_is_reported_once_it_has_bytes() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let server = OwnedFd::from(server);
        let parking = Parking::new().unwrap();
        parking.park(7, &server).unwrap();
        assert_eq!(parking.parked.get(), 1);
        assert!(wait_readable(&parking.epoll).is_empty(), "quiet socket");
        client.write_all(b"x").unwrap();
        assert_eq!(wait_readable(&parking.epoll), vec![7]);
        // One-shot: not reported again until parked again.
        assert!(wait_readable(&parking.epoll).is_empty());
        parking.unpark(&server);
        assert_eq!(parking.parked.get(), 0);
        parking.park(8, &server).unwrap();
        assert_eq!(wait_readable(&parking.epoll), vec![8], "bytes still unread");
    }
}
