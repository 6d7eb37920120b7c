//! The runtime: one pinned glommio executor per shard, a full mesh of bounded channels between
//! them, a listener per shard (SO_REUSEPORT) and a periodic tick.

mod admin;
mod admission;
mod backlog;
mod config_state;
mod conn;
mod cpu_pool;
mod dashboard;
mod http;
mod mesh;
mod monitor;
mod mqtt;
mod park;
mod shard_io;
mod store_workers;
mod tls_socket;
mod webhook;

use crate::config::Config;
use crate::shard::Shard;
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorBuilder, Placement};
use std::cell::RefCell;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How the server runs: which cpus, where it listens.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub cpus: Vec<usize>,
    pub host: String,
    pub port: u16,
}

/// Shared by all shards: the clock origin and the stop flag.
#[derive(Clone)]
pub struct Runtime {
    pub started: Instant,
    pub stopping: Arc<AtomicBool>,
    /// Where authentication plugins run (`None` without one).
    pub plugins: Option<crate::bridge::BridgeHandle>,
}

impl Runtime {
    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

/// Batches of shard messages travel the mesh; one batch per peer per turn of the loop.
pub type Batch = Vec<crate::shard::msg::ShardMsg>;
const MESH_CAPACITY: usize = 1024;
const TICK: Duration = Duration::from_millis(50);
/// How long a start waits for a port that a server which has just stopped still holds.
const PORT_WAIT: Duration = Duration::from_secs(3);
/// How long all shards together may take to listen and join the mesh.
const START_DEADLINE: Duration = Duration::from_secs(10);

/// Runs the server until `stopping` is set. Prints `listening on HOST:PORT` once every shard
/// accepts.
pub fn run(
    config: Config,
    options: ServerOptions,
    stopping: Arc<AtomicBool>,
) -> Result<(), String> {
    // Other crates (the NATS, Redis and PostgreSQL clients) build rustls configs from the
    // process's default provider; with both providers compiled in, rustls cannot pick one.
    crate::tls::install_default_provider();
    let shards = options.cpus.len();
    // Authentication plugins run on a connector thread of their own, kept until the end.
    let plugin_thread = if config
        .auth
        .iter()
        .any(|a| matches!(a, crate::config::AuthConfig::Plugin(_)))
    {
        let bridge = crate::bridge::Bridge::start()
            .map_err(|e| format!("cannot start the plugins' thread: {e}"))?;
        Some(bridge)
    } else {
        None
    };
    let runtime = Runtime {
        started: Instant::now(),
        stopping,
        plugins: plugin_thread.as_ref().map(crate::bridge::Bridge::handle),
    };
    let connectors = Arc::new(crate::store::Connectors::start(&config.store, shards)?);
    let monitor = Arc::new(monitor::MonitorState::new(config.monitoring.clone()));
    let config = Arc::new(config);
    let admin = Arc::new(config_state::AdminState::new(config.clone()));
    let mesh: MeshBuilder<Batch, _> = MeshBuilder::full(shards, MESH_CAPACITY);
    let backlog = Arc::new(backlog::Backlog::new(shards));
    let mut bus = match &config.cluster {
        Some(cluster) => Some(crate::cluster::nats::NatsBus::start(
            cluster,
            &config.server_name,
            shards,
        )?),
        None => None,
    };
    let (port, port_holder) = resolve_port(&options.host, options.port)?;
    let mut handles = Vec::new();
    // Each shard reports whether it listens; a shard whose executor cannot start drops its
    // sender without a word, which the receiver sees.
    let mut started = Vec::new();
    for (id, cpu) in options.cpus.iter().copied().enumerate() {
        let (ready, started_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        started.push(started_rx);
        let admin = admin.clone();
        let bus_link = bus.as_mut().and_then(|bus| bus.link(id));
        let (mesh, config, runtime, host, backlog, connectors, monitor) = (
            mesh.clone(),
            config.clone(),
            runtime.clone(),
            options.host.clone(),
            backlog.clone(),
            connectors.clone(),
            monitor.clone(),
        );
        // The blocking pool runs password hashes and the parked sockets' epoll wait: two
        // threads, so neither waits for the other, left unpinned, so a hash does not take
        // its time from this shard's cpu (glommio's default pins the pool to it).
        let builder = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&format!("shard-{id}"))
            .io_memory(64 << 10)
            .blocking_thread_pool_placement(glommio::PoolPlacement::Unbound(2));
        let handle = builder
            .spawn(move || async move {
                let mqtt = mqtt::bind_all(&config, &host);
                let shard = Rc::new(RefCell::new(Shard::new(id, shards, config)));
                let opened = connectors.open(id).and_then(|store| {
                    let mqtt = mqtt?;
                    Ok((store, bind(&host, port)?, mqtt))
                });
                let result = match opened {
                    Ok((store, listener, mqtt_listeners)) => {
                        let parts = ShardParts {
                            listener,
                            mqtt_listeners,
                            store,
                            changes: connectors.changes(id),
                            mesh,
                            runtime,
                            backlog,
                            monitor,
                            admin,
                            bus: bus_link,
                        };
                        shard_main(shard, parts, ready).await
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e.clone()));
                        Err(e)
                    }
                };
                if let Err(e) = &result {
                    crate::log!(crate::log::Level::Error, "SHARD_FAILED", "shard {id}: {e}");
                }
                result
            })
            .map_err(|e| executor_error(&e.to_string()))?;
        handles.push(handle);
    }
    let mut handles: Vec<Option<_>> = handles.into_iter().map(Some).collect();
    // A shard is ready once it listens and has joined the mesh; one that has not within the
    // deadline makes the start fail, rather than a server that says it listens and never
    // accepts.
    let deadline = Instant::now() + START_DEADLINE;
    for (id, started_rx) in started.into_iter().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        let problem = match started_rx.recv_timeout(left) {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                format!("shard {id} did not start within {START_DEADLINE:?}")
            }
            // The executor never ran: its join says why (locked memory, most often).
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                match handles[id].take().map(|h| h.join()) {
                    Some(Err(e)) => executor_error(&e.to_string()),
                    _ => "a shard stopped before it could listen".to_string(),
                }
            }
        };
        // The shards that did start wait for the missing one in the mesh: leave them.
        runtime.stopping.store(true, Ordering::SeqCst);
        return Err(problem);
    }
    // Every shard listens: the port is held by them now.
    drop(port_holder);
    if !runtime.stopping.load(Ordering::SeqCst) {
        crate::log!(
            crate::log::Level::Info,
            "STARTED",
            "corestream {} \"{}\": {} shards on cpus {:?}, ws-binary on {}:{port}{}, {}; {}",
            env!("CARGO_PKG_VERSION"),
            config.server_name,
            options.cpus.len(),
            options.cpus,
            options.host,
            config.url_path,
            config.store.describe(),
            config.security_summary()
        );
        println!("listening on {}:{port}", options.host);
        use std::io::Write;
        let _ = std::io::stdout().flush();
    }
    let mut failed = None;
    for handle in handles.into_iter().flatten() {
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failed = Some(e),
            Err(e) => failed = Some(executor_error(&e.to_string())),
        }
    }
    // Every shard has stopped: the other nodes hear that this one left now, not after their
    // node timeout (its users leave presence there, logins stop waiting for it).
    if let Some(bus) = &bus {
        bus.leave();
    }
    failed.map_or(Ok(()), Err)
}

/// Whether this process may use io_uring, which every shard runs on: a container's default
/// seccomp profile (Docker's blocks it), `kernel.io_uring_disabled`, or an old kernel say no.
/// One clear line instead of glommio's panic about the kernel version.
pub fn check_io_uring() -> Result<(), String> {
    let mut params = rustix::io_uring::io_uring_params::default();
    // SAFETY: `params` is a zeroed, valid io_uring_params that lives across the call; the
    // ring's descriptor is closed at once (the OwnedFd is dropped) and never mapped.
    match unsafe { rustix::io_uring::io_uring_setup(1, &mut params) } {
        Ok(_ring) => Ok(()),
        Err(e) => Err(format!(
            "io_uring is not available to this process ({e}): corestream needs Linux 5.8+ with \
             io_uring allowed (in Docker, run with the seccomp profile in packaging/; check \
             the sysctl kernel.io_uring_disabled)"
        )),
    }
}

fn executor_error(e: &str) -> String {
    if e.contains("MemLock") || e.to_lowercase().contains("memlock") || e.contains("locked memory")
    {
        return format!("cannot start a shard: io_uring needs locked memory ({e}); raise it with `ulimit -l 8192` (or more)");
    }
    format!("cannot start a shard: {e}")
}

/// Binds this shard's listener on the shared port (SO_REUSEPORT).
pub(crate) fn bind(host: &str, port: u16) -> Result<glommio::net::TcpListener, String> {
    let addr = format!("{host}:{port}")
        .parse::<SocketAddr>()
        .map_err(|e| format!("bad listen address {host}:{port}: {e}"))?;
    let fd = listen_socket(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    // SAFETY: `fd` is a bound, listening TCP socket owned here and by nothing else; its
    // ownership passes to the glommio listener, which closes it when dropped.
    Ok(unsafe { glommio::net::TcpListener::from_raw_fd(fd.into_raw_fd()) })
}

/// A listening socket as glommio makes one (SO_REUSEPORT, backlog 1024), plus TCP_NODELAY,
/// which accepted sockets inherit: one setsockopt less per connection (the connect
/// benchmark's server made 1 per login).
fn listen_socket(addr: SocketAddr) -> std::io::Result<std::os::fd::OwnedFd> {
    let fd = shared_socket(addr, true)?;
    rustix::net::listen(&fd, 1024)?;
    Ok(fd)
}

/// Waits (at most `PORT_WAIT`) until nothing listens on `host:port`. A server that has just
/// stopped can hold its port a little while after it has exited (its io_uring, torn down by the
/// kernel after the process, still holds the listening socket and even completes handshakes),
/// so a restart right after a stop waits for that instead of failing.
fn wait_until_free(host: &str, port: u16) -> Result<(), String> {
    let deadline = Instant::now() + PORT_WAIT;
    loop {
        match std::net::TcpListener::bind((host, port)) {
            Ok(_) => return Ok(()),
            // The bind also fails for connections a stopped server left closing (TIME_WAIT
            // without SO_REUSEADDR, as servers before this check left them): only a server
            // that answers is a server running.
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && !answers(host, port) => {
                return Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {}
            Err(e) => return Err(format!("cannot listen on {host}:{port}: {e}")),
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "port {port} on {host} is already in use (is another server running?)"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether something accepts TCP connections on `host:port` (loopback for a wildcard host).
fn answers(host: &str, port: u16) -> bool {
    let Ok(ip) = host.parse::<std::net::IpAddr>() else {
        return true;
    };
    let ip = match ip {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        other => other,
    };
    std::net::TcpStream::connect_timeout(&SocketAddr::new(ip, port), Duration::from_secs(1)).is_ok()
}

/// A TCP socket bound to `addr` with SO_REUSEPORT and TCP_NODELAY, not listening yet. With
/// `reuse_addr` also SO_REUSEADDR, which accepted sockets inherit: the connections a stopped
/// server leaves closing (TIME_WAIT and the like) then do not make the port look in use to the
/// next start's check (which also sets it; only a listening socket conflicts then).
fn shared_socket(addr: SocketAddr, reuse_addr: bool) -> std::io::Result<std::os::fd::OwnedFd> {
    use rustix::net::{sockopt, AddressFamily, SocketFlags, SocketType};
    let family = if addr.is_ipv6() {
        AddressFamily::INET6
    } else {
        AddressFamily::INET
    };
    let fd = rustix::net::socket_with(family, SocketType::STREAM, SocketFlags::CLOEXEC, None)?;
    sockopt::set_socket_reuseport(&fd, true)?;
    sockopt::set_socket_reuseaddr(&fd, reuse_addr)?;
    sockopt::set_tcp_nodelay(&fd, true)?;
    rustix::net::bind(&fd, &addr)?;
    Ok(fd)
}

/// The port every shard binds, and a socket that holds it until they have.
///
/// A given port is checked first with a socket that does not share it: SO_REUSEPORT would let
/// this server bind beside another one on the same port (say a corestream started twice), and
/// the kernel would split clients between the two.
///
/// `--port 0` asks the kernel for a free port with a socket that shares it (SO_REUSEPORT) and is
/// bound but never listens, so it takes no connections; it is kept until every shard listens.
/// A probe closed at once let another server starting at the same moment be handed the same
/// port and bind beside this one (seen about once in 650 starts of tests run in parallel).
fn resolve_port(host: &str, port: u16) -> Result<(u16, Option<std::os::fd::OwnedFd>), String> {
    if port != 0 {
        return wait_until_free(host, port).map(|()| (port, None));
    }
    let addr = format!("{host}:0")
        .parse::<SocketAddr>()
        .map_err(|e| format!("bad listen address {host}: {e}"))?;
    let free = |e: std::io::Error| format!("cannot find a free port on {host}: {e}");
    // Without SO_REUSEADDR: nothing but the shards' SO_REUSEPORT sockets may bind beside it.
    let holder = shared_socket(addr, false).map_err(free)?;
    let port = rustix::net::getsockname(&holder)
        .ok()
        .and_then(|a| SocketAddr::try_from(a).ok())
        .map(|a| a.port())
        .ok_or_else(|| format!("cannot find a free port on {host}"))?;
    Ok((port, Some(holder)))
}

/// What a shard runs with besides its state.
struct ShardParts {
    listener: glommio::net::TcpListener,
    store: Rc<dyn crate::store::RecordStore>,
    /// Names of records changed outside the server, when the storage's changes are followed.
    changes: Option<async_channel::Receiver<Vec<bytes::Bytes>>>,
    mesh: MeshBuilder<Batch, glommio::channels::channel_mesh::Full>,
    runtime: Runtime,
    backlog: Arc<backlog::Backlog>,
    monitor: Arc<monitor::MonitorState>,
    admin: Arc<config_state::AdminState>,
    /// The `mqtt` endpoints' listeners: (endpoint index, listener).
    mqtt_listeners: Vec<(u8, glommio::net::TcpListener)>,
    /// This shard's ends of the cluster bus (in a cluster).
    bus: Option<crate::cluster::nats::ShardLink>,
}

async fn shard_main(
    shard: Rc<RefCell<Shard>>,
    parts: ShardParts,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) -> Result<(), String> {
    let ShardParts {
        listener,
        mqtt_listeners,
        store,
        changes: parts_changes,
        mesh,
        runtime,
        backlog,
        monitor,
        admin,
        bus,
    } = parts;
    let joined = mesh
        .join()
        .await
        .map_err(|_| "cannot join the shard mesh".to_string());
    let _ = ready.send(joined.as_ref().map(|_| ()).map_err(Clone::clone));
    let (senders, receivers) = joined?;
    let pump = mesh::Pump::start(
        shard.clone(),
        senders,
        receivers,
        runtime.clone(),
        store,
        backlog.clone(),
    );
    if let Some(link) = bus {
        pump.start_bus(link);
    }
    if let Some(changes) = parts_changes {
        let pump = pump.clone();
        glommio::spawn_local(async move {
            while let Ok(names) = changes.recv().await {
                pump.enter().on_external_change(names);
            }
        })
        .detach();
    }
    let ticker = {
        let (pump, runtime) = (pump.clone(), runtime.clone());
        glommio::spawn_local(async move {
            while !runtime.stopping.load(Ordering::Relaxed) {
                glommio::timer::sleep(TICK).await;
                pump.enter().tick(runtime.now_ms());
            }
        })
        .detach()
    };
    let park_after = shard.borrow().config().park_after_ms;
    let parking = match park_after.map(|_| park::Parking::new()) {
        Some(Ok(parking)) => Some(parking),
        Some(Err(e)) => {
            crate::log!(
                crate::log::Level::Warn,
                "PARKING_OFF",
                "cannot park quiet connections (epoll: {e}); they stay active"
            );
            None
        }
        None => None,
    };
    if let Some(parking) = &parking {
        let shard = shard.clone();
        let readable = move |locals: &[u32]| shard.borrow().sockets_readable(locals);
        glommio::spawn_local(parking.clone().watch(readable, runtime.stopping.clone())).detach();
    }
    if shard.borrow().id == 0 {
        monitor.start_logging(&pump, runtime.stopping.clone());
    }
    let io = shard_io::ShardIo::new(
        shard.clone(),
        pump,
        runtime.clone(),
        parking.clone(),
        backlog,
        monitor,
        admin,
    );
    glommio::spawn_local(io.clone().resume_paused(runtime.stopping.clone())).detach();
    for (endpoint, listener) in mqtt_listeners {
        glommio::spawn_local(mqtt::accept(listener, endpoint, io.clone())).detach();
    }
    // Accept errors (out of descriptors, most often) come in floods: one line a second.
    let mut accept_errors = 0u64;
    let mut last_accept_report: Option<Instant> = None;
    loop {
        let accept = async { Some(listener.accept().await) };
        let stop = async {
            while !runtime.stopping.load(Ordering::Relaxed) {
                glommio::timer::sleep(TICK).await;
            }
            None
        };
        match futures_lite::future::or(accept, stop).await {
            Some(Ok(stream)) => {
                glommio::spawn_local(conn::serve(stream, io.clone())).detach();
            }
            Some(Err(e)) => {
                accept_errors += 1;
                if last_accept_report.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    crate::log!(
                        crate::log::Level::Error,
                        "ACCEPT_FAILED",
                        "accept failed ({accept_errors} times so far): {e}"
                    );
                    last_accept_report = Some(Instant::now());
                }
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
            None => break,
        }
    }
    // Shutdown: every connection gets a close frame after what is queued, with a deadline.
    shard.borrow().close_all(
        crate::protocol::ws::CLOSE_GOING_AWAY,
        crate::shard::outbox::SHUTDOWN,
    );
    let deadline = Instant::now() + Duration::from_secs(2);
    while io.live.get() > 0 && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    drop(ticker);
    if let Some(parking) = &parking {
        parking.stop();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{listen_socket, resolve_port};
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn a_free_port_stays_taken_until_the_shards_listen() {
        let (port, holder) = resolve_port("127.0.0.1", 0).unwrap();
        assert!(holder.is_some());
        // Held: no other server can be handed it or bind it without sharing.
        let err = TcpListener::bind(("127.0.0.1", port)).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
        // Shards share it.
        let shard =
            TcpListener::from(listen_socket(format!("127.0.0.1:{port}").parse().unwrap()).unwrap());
        drop(holder);
        let _client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        assert!(shard.accept().is_ok());
        // A given port in use is refused.
        assert!(resolve_port("127.0.0.1", port)
            .unwrap_err()
            .contains("already in use"));
    }

    #[test]
    fn accepted_sockets_inherit_nodelay_from_the_listener() {
        let listener = TcpListener::from(listen_socket("127.0.0.1:0".parse().unwrap()).unwrap());
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        assert!(accepted.nodelay().unwrap());
    }
}
