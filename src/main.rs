//! The corestream command line: `start` runs the server, `check-config` validates config files.

use clap::{Parser, Subcommand};
use corestream::config::Config;
use corestream::Server;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "corestream",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("CORESTREAM_COMMIT"), ")"),
    about = "A thread-per-core realtime server speaking the deepstream protocol"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the server.
    Start {
        /// deepstream config.yml (or .yaml, .json); without it the places deepstream looks are
        /// tried (DEEPSTREAM_CONFIG_DIRECTORY, /etc/deepstream/conf.yml, ./conf/config.yml,
        /// ../conf/config.yml, conf/config.yml beside the binary), then the embedded defaults.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Number of shards, one per core, pinned to cpus 0..N.
        #[arg(long, conflicts_with = "cpus")]
        cores: Option<usize>,
        /// Exact cpus to pin shards to, e.g. 0,2,4.
        #[arg(long, value_delimiter = ',')]
        cpus: Option<Vec<usize>>,
        /// Listen address (default: config's httpServer host, else 0.0.0.0).
        #[arg(long)]
        host: Option<String>,
        /// Listen port; 0 picks a free one (default: config's port, else 6020).
        #[arg(long)]
        port: Option<u16>,
        /// A logged-in connection quiet this long has its socket parked in a shared epoll set,
        /// which saves memory; its next message then takes a little longer. 0 never parks.
        #[arg(long, default_value_t = corestream::config::DEFAULT_PARK_AFTER_MS)]
        park_after_ms: u64,
    },
    /// Loads a config file (or the one `start` would find) and reports what it would run with.
    CheckConfig {
        config: Option<PathBuf>,
        /// Fails on any warning too, so it can gate a deployment.
        #[arg(long)]
        strict: bool,
    },
    /// Prints a users.yml password hash with the file auth settings of a config, as
    /// `deepstream hash` does.
    Hash {
        password: String,
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
}

/// The given config file; else the first one deepstream would find in its default places;
/// else the embedded defaults.
fn load(config: Option<&PathBuf>) -> Result<Config, String> {
    let exe = std::env::current_exe().ok();
    let found = match config {
        Some(path) => Some(path.clone()),
        None => corestream::config::default_location(
            std::env::var_os("DEEPSTREAM_CONFIG_DIRECTORY").map(PathBuf::from),
            exe.as_deref(),
        )?,
    };
    match found {
        Some(path) => {
            eprintln!("config: {}", path.display());
            Config::load(&path).map_err(|e| e.to_string())
        }
        None => {
            eprintln!(
                "config: no config file found: built-in defaults (open auth, no permissions)"
            );
            Ok(Config::default())
        }
    }
}

fn hash(password: &str, config: Option<&PathBuf>) -> Result<(), String> {
    use corestream::config::{AuthConfig, HashSettings};
    let config = load(config)?;
    let settings = config
        .auth
        .iter()
        .find_map(|a| match a {
            AuthConfig::File { hash, .. } => Some(hash.clone()),
            AuthConfig::Open | AuthConfig::Http(_) | AuthConfig::Jwt(_) | AuthConfig::Plugin(_) => {
                None
            }
        })
        .flatten()
        // deepstream's default file auth settings
        .unwrap_or(HashSettings {
            algorithm: "md5".into(),
            iterations: 100,
            key_length: 32,
        });
    println!(
        "Password hash: {}",
        corestream::auth::hash_password(password, &settings)?
    );
    Ok(())
}

fn online_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Start {
            config,
            cores,
            cpus,
            host,
            port,
            park_after_ms,
        } => start(config, cores, cpus, host, port, park_after_ms),
        Command::Hash { password, config } => hash(&password, config.as_ref()),
        Command::CheckConfig { config, strict } => load(config.as_ref()).and_then(|c| {
            for warning in &c.warnings {
                eprintln!("warning: {warning}");
            }
            if strict && !c.warnings.is_empty() {
                return Err(format!(
                    "--strict: {} warning(s); the deployment would not run as written",
                    c.warnings.len()
                ));
            }
            println!(
                "ok: {} listens on {}:{}{}; {}",
                c.server_name,
                c.host,
                c.port,
                c.url_path,
                c.security_summary()
            );
            Ok(())
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn start(
    config: Option<PathBuf>,
    cores: Option<usize>,
    cpus: Option<Vec<usize>>,
    host: Option<String>,
    port: Option<u16>,
    park_after_ms: u64,
) -> Result<(), String> {
    let mut config = load(config.as_ref())?;
    config.park_after_ms = (park_after_ms > 0).then_some(park_after_ms);
    corestream::log::configure(config.log_level, config.log_format);
    for warning in &config.warnings {
        corestream::log!(corestream::log::Level::Warn, "CONFIG", "{warning}");
    }
    let cpus = choose_cpus(cpus, cores, online_cpus())?;
    let host = host.unwrap_or_else(|| config.host.clone());
    let port = port.unwrap_or(config.port);
    let stopping = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stopping.clone())
            .map_err(|e| format!("cannot handle signals: {e}"))?;
    }
    shutdown_deadline(stopping.clone(), std::time::Duration::from_secs(10));
    Server::builder(config)
        .cpus(cpus)
        .host(host)
        .port(port)
        .run(stopping)
        .map_err(|e| e.to_string())
}

/// The cpus to pin shards to: one shard per cpu, each cpu online and named once.
fn choose_cpus(
    cpus: Option<Vec<usize>>,
    cores: Option<usize>,
    available: usize,
) -> Result<Vec<usize>, String> {
    let cpus = match (cpus, cores) {
        (Some(cpus), _) => cpus,
        (None, Some(n)) if n > available => {
            return Err(format!(
                "--cores {n}: this machine has {available} cpus online; two shards on one cpu \
                 would only slow each other down"
            ))
        }
        (None, Some(n)) => (0..n).collect(),
        (None, None) => (0..available).collect(),
    };
    if cpus.is_empty() || cpus.len() > corestream::shard::MAX_SHARDS {
        return Err(format!(
            "between 1 and {} shards are supported",
            corestream::shard::MAX_SHARDS
        ));
    }
    if let Some(bad) = cpus.iter().find(|c| **c >= available) {
        return Err(format!(
            "cpu {bad} is not online (this machine has {available}: 0 to {})",
            available - 1
        ));
    }
    if let Some((_, twice)) = cpus
        .iter()
        .enumerate()
        .find(|(i, c)| cpus[..*i].contains(c))
    {
        return Err(format!("--cpus names cpu {twice} twice"));
    }
    Ok(cpus)
}

/// Once a stop is asked for, the process ends within `grace` even if a shard hangs.
fn shutdown_deadline(stopping: Arc<AtomicBool>, grace: std::time::Duration) {
    std::thread::spawn(move || {
        while !stopping.load(std::sync::atomic::Ordering::Relaxed) {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        std::thread::sleep(grace);
        eprintln!("error: shutdown took longer than {grace:?}; exiting");
        std::process::exit(1);
    });
}

/// jemalloc, because it keeps each size class in its own pages: the ~250-byte poll sources freed
/// when a burst of connections parks leave whole pages it can hand back, where glibc's heap kept
/// them as gaps between live blocks (idle connections: 980 B each against 1,130 B; RPC and
/// fan-out the same or a little faster; perf/RESULTS.md).
#[cfg(test)]
mod tests {
    use super::choose_cpus;

    #[test]
    fn shards_are_one_per_online_cpu() {
        assert_eq!(choose_cpus(None, None, 2), Ok(vec![0, 1]));
        assert_eq!(choose_cpus(None, Some(1), 2), Ok(vec![0]));
        assert!(choose_cpus(None, Some(3), 2)
            .unwrap_err()
            .contains("2 cpus"));
        assert_eq!(choose_cpus(Some(vec![1]), None, 2), Ok(vec![1]));
        assert!(choose_cpus(Some(vec![0, 0]), None, 2)
            .unwrap_err()
            .contains("twice"));
        assert!(choose_cpus(Some(vec![2]), None, 2)
            .unwrap_err()
            .contains("not online"));
        assert!(choose_cpus(Some(vec![]), None, 2).is_err());
    }
}

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
