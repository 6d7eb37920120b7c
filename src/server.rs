//! corestream as a library: a server made from a [`Config`] (deepstream's config.yml, or built
//! in code) with plugins of the caller's own in place of the config's choices.
//!
//! ```no_run
//! use corestream::{Config, Server};
//! use std::sync::atomic::AtomicBool;
//! use std::sync::Arc;
//!
//! let stop = Arc::new(AtomicBool::new(false));
//! Server::builder(Config::default())
//!     .port(6020)
//!     .run(stop)
//!     .expect("the server ran");
//! ```

use crate::auth::plugin::{Authentication, PluginAuth};
use crate::config::{AuthConfig, Config};
use crate::net::ServerOptions;
use crate::permission::plugin::{Permission, PermissionPlugin};
use crate::permission::rules::Permissions;
use crate::store::plugin::{PluginStore, Storage};
use crate::store::{CacheChoice, Layer, StorageChoice};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Why a server did not start, or stopped with an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartError {
    /// This process may not use io_uring (an old kernel, a container's seccomp profile, the
    /// `kernel.io_uring_disabled` sysctl).
    IoUringUnavailable(String),
    /// No shard could be given a cpu: an empty or repeated cpu list.
    Cpus(String),
    /// The server could not start or stopped with an error (a port in use, a store that does
    /// not answer, a shard whose executor failed); the text says which.
    Runtime(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::IoUringUnavailable(why) | StartError::Cpus(why) => f.write_str(why),
            StartError::Runtime(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for StartError {}

/// Starts servers: see [`Server::builder`].
pub struct Server;

impl Server {
    /// A server from `config`, listening where the config says unless told otherwise, with
    /// one shard per online cpu.
    pub fn builder(config: Config) -> ServerBuilder {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        ServerBuilder {
            options: ServerOptions {
                cpus: (0..cpus).collect(),
                host: config.host.clone(),
                port: config.port,
            },
            config,
        }
    }
}

/// A server being put together; [`ServerBuilder::run`] runs it.
pub struct ServerBuilder {
    config: Config,
    options: ServerOptions,
}

impl ServerBuilder {
    /// Listens on `host` (an IP address) instead of the config's.
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.options.host = host.into();
        self
    }

    /// Listens on `port` instead of the config's; 0 takes a free one (printed as
    /// `listening on HOST:PORT` once every shard accepts).
    pub fn port(mut self, port: u16) -> Self {
        self.options.port = port;
        self
    }

    /// Runs one shard per cpu in `cpus`, each pinned to it.
    pub fn cpus(mut self, cpus: Vec<usize>) -> Self {
        self.options.cpus = cpus;
        self
    }

    /// Every login is decided by `plugin`; the config's `auth` strategies are not used (as
    /// deepstream's `server.set('authentication', plugin)`). An admin reload keeps it.
    pub fn authentication(mut self, plugin: impl Authentication) -> Self {
        self.config.auth = vec![AuthConfig::Plugin(PluginAuth(Arc::new(plugin)))];
        self
    }

    /// Every action is decided by `plugin` instead of the config's Valve rules (as
    /// deepstream's `server.set('permission', plugin)`). An admin reload keeps it.
    pub fn permissions(mut self, plugin: impl Permission) -> Self {
        self.config.permissions =
            Arc::new(Permissions::from_plugin(PermissionPlugin(Arc::new(plugin))));
        self.config.permissions_file = None;
        self
    }

    /// Records are kept by `plugin` in the cache's place (in front of storage), instead of
    /// the config's `cache` (as deepstream's `server.set('cache', plugin)`).
    pub fn cache(mut self, plugin: impl Storage) -> Self {
        self.config.store.cache = CacheChoice::Plugin(PluginStore::new(
            Arc::new(plugin),
            Layer::Cache,
            self.config.store.cache_timeout,
        ));
        self
    }

    /// Records are kept by `plugin` in storage's place, instead of the config's `storage`
    /// (as deepstream's `server.set('storage', plugin)`).
    pub fn storage(mut self, plugin: impl Storage) -> Self {
        self.config.store.storage = StorageChoice::Plugin(PluginStore::new(
            Arc::new(plugin),
            Layer::Storage,
            self.config.store.storage_timeout,
        ));
        self
    }

    /// The config the server will run with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Runs the server until `stop` is set (SIGINT and SIGTERM are the caller's to map onto
    /// it), then lets it drain and returns.
    pub fn run(self, stop: Arc<AtomicBool>) -> Result<(), StartError> {
        crate::net::check_io_uring().map_err(StartError::IoUringUnavailable)?;
        let mut seen = std::collections::HashSet::new();
        if self.options.cpus.is_empty() || !self.options.cpus.iter().all(|c| seen.insert(*c)) {
            return Err(StartError::Cpus(format!(
                "every shard needs a cpu of its own: {:?}",
                self.options.cpus
            )));
        }
        crate::net::run(self.config, self.options, stop).map_err(StartError::Runtime)
    }
}
