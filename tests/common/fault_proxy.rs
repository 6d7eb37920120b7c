//! A TCP fault proxy between a node and a service: every connection through it is passed on,
//! cut, stalled or delayed, as the test says, from one moment to the next.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    /// Bytes pass as they come.
    Pass,
    /// Every connection is closed, and new ones are closed as they arrive.
    Cut,
    /// Connections stay open but nothing passes either way (a hung peer or a dead route).
    Stall,
    /// Each chunk waits this long before it is passed on.
    Delay(Duration),
}

struct Shared {
    fault: Mutex<Fault>,
    /// Bumped by every cut: pumps of an older generation close their connection.
    generation: AtomicU64,
    stop: AtomicBool,
}

impl Shared {
    fn fault(&self) -> Fault {
        self.fault.lock().map(|f| *f).unwrap_or(Fault::Cut)
    }
}

pub struct FaultProxy {
    pub port: u16,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

/// How often a pump looks at the fault while it waits for bytes.
const POLL: Duration = Duration::from_millis(20);

impl FaultProxy {
    /// A proxy on a free loopback port in front of `127.0.0.1:upstream`.
    pub fn start(upstream: u16) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy port");
        let port = listener.local_addr().expect("proxy address").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let shared = Arc::new(Shared {
            fault: Mutex::new(Fault::Pass),
            generation: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let acceptor = {
            let shared = shared.clone();
            std::thread::spawn(move || accept(listener, upstream, shared))
        };
        FaultProxy {
            port,
            shared,
            acceptor: Some(acceptor),
        }
    }

    pub fn set(&self, fault: Fault) {
        if fault == Fault::Cut {
            self.shared.generation.fetch_add(1, Ordering::SeqCst);
        }
        if let Ok(mut f) = self.shared.fault.lock() {
            *f = fault;
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn accept(listener: TcpListener, upstream: u16, shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            Err(_) => continue,
        };
        if shared.fault() == Fault::Cut {
            drop(client);
            continue;
        }
        let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
            continue;
        };
        let generation = shared.generation.load(Ordering::SeqCst);
        for (from, to) in [
            (client.try_clone(), server.try_clone()),
            (server.try_clone(), client.try_clone()),
        ] {
            if let (Ok(from), Ok(to)) = (from, to) {
                let shared = shared.clone();
                std::thread::spawn(move || pump(from, to, shared, generation));
            }
        }
    }
}

/// Moves bytes one way until either side closes, the connection is cut or the proxy stops.
fn pump(mut from: TcpStream, mut to: TcpStream, shared: Arc<Shared>, generation: u64) {
    let _ = from.set_read_timeout(Some(POLL));
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        if shared.generation.load(Ordering::SeqCst) != generation {
            break;
        }
        match shared.fault() {
            Fault::Stall => {
                std::thread::sleep(POLL);
                continue;
            }
            Fault::Cut => break,
            Fault::Pass | Fault::Delay(_) => {}
        }
        let n = match from.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => break,
        };
        // Bytes read just before a stall or a cut are held or dropped with the connection.
        loop {
            match shared.fault() {
                Fault::Stall if shared.generation.load(Ordering::SeqCst) == generation => {
                    std::thread::sleep(POLL)
                }
                Fault::Delay(delay) => {
                    std::thread::sleep(delay);
                    break;
                }
                _ => break,
            }
        }
        if shared.generation.load(Ordering::SeqCst) != generation
            || to.write_all(&chunk[..n]).is_err()
        {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
