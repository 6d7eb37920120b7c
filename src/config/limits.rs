//! The `limits` section of `config.yml` (a corestream addition; deepstream has none): the
//! budgets that keep one client, or many that never log in, from taking a shard's memory or
//! time. Every key is optional; a misspelt key is an error, so a budget is never silently off.

use serde::Deserialize;

/// The budgets in force; see docs/LIMITS.md for what a client sees when it reaches one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame a connection may send before it has logged in (bytes).
    pub unauthenticated_max_message_size: usize,
    /// Connections a shard holds that have not logged in yet; more are answered 503.
    pub unauthenticated_connections_per_shard: usize,
    /// Bytes of partly received frames a shard holds for connections not logged in yet; the
    /// connection that goes past it is closed.
    pub unauthenticated_bytes_per_shard: usize,
    /// The whole HTTP request head must arrive within this (ms), however it is dripped.
    pub handshake_timeout_ms: u64,
    /// Sockets a shard has reading their request head at once; more are closed at accept.
    pub handshakes_per_shard: usize,
    /// Listen patterns one connection may hold (events and records together).
    pub listen_patterns_per_connection: usize,
    /// Listen patterns the server holds in all: every new name is matched against each.
    pub listen_patterns: usize,
    /// Event and record subscriptions one connection may hold.
    pub subscriptions_per_connection: usize,
    /// HTTP API requests a shard works on at once; more are answered 503.
    pub http_requests_per_shard: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            unauthenticated_max_message_size: 16 * 1024,
            unauthenticated_connections_per_shard: 10_000,
            unauthenticated_bytes_per_shard: 64 << 20,
            handshake_timeout_ms: 10_000,
            handshakes_per_shard: 1_024,
            listen_patterns_per_connection: 100,
            listen_patterns: 10_000,
            subscriptions_per_connection: 100_000,
            http_requests_per_shard: 1_024,
        }
    }
}

/// The section as written.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub(super) struct LimitsOptions {
    unauthenticated_max_message_size: Option<usize>,
    unauthenticated_connections_per_shard: Option<usize>,
    unauthenticated_bytes_per_shard: Option<usize>,
    handshake_timeout: Option<u64>,
    handshakes_per_shard: Option<usize>,
    listen_patterns_per_connection: Option<usize>,
    listen_patterns: Option<usize>,
    subscriptions_per_connection: Option<usize>,
    http_requests_per_shard: Option<usize>,
}

impl LimitsOptions {
    /// The limits with these options over the defaults; zero is refused (it would lock
    /// every client out), naming the key.
    pub(super) fn apply(self, mut limits: Limits) -> Result<Limits, String> {
        let positive = |key: &str, value: Option<usize>, slot: &mut usize| match value {
            Some(0) => Err(format!("limits.{key} must be at least 1")),
            Some(v) => {
                *slot = v;
                Ok(())
            }
            None => Ok(()),
        };
        positive(
            "unauthenticatedMaxMessageSize",
            self.unauthenticated_max_message_size,
            &mut limits.unauthenticated_max_message_size,
        )?;
        positive(
            "unauthenticatedConnectionsPerShard",
            self.unauthenticated_connections_per_shard,
            &mut limits.unauthenticated_connections_per_shard,
        )?;
        positive(
            "unauthenticatedBytesPerShard",
            self.unauthenticated_bytes_per_shard,
            &mut limits.unauthenticated_bytes_per_shard,
        )?;
        positive(
            "handshakesPerShard",
            self.handshakes_per_shard,
            &mut limits.handshakes_per_shard,
        )?;
        positive(
            "listenPatternsPerConnection",
            self.listen_patterns_per_connection,
            &mut limits.listen_patterns_per_connection,
        )?;
        positive(
            "listenPatterns",
            self.listen_patterns,
            &mut limits.listen_patterns,
        )?;
        positive(
            "subscriptionsPerConnection",
            self.subscriptions_per_connection,
            &mut limits.subscriptions_per_connection,
        )?;
        positive(
            "httpRequestsPerShard",
            self.http_requests_per_shard,
            &mut limits.http_requests_per_shard,
        )?;
        let mut timeout = limits.handshake_timeout_ms as usize;
        positive(
            "handshakeTimeout",
            self.handshake_timeout.map(|t| t as usize),
            &mut timeout,
        )?;
        limits.handshake_timeout_ms = timeout as u64;
        Ok(limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Limits, String> {
        let options: LimitsOptions = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        options.apply(Limits::default())
    }

    #[test]
    fn keys_override_defaults_and_typos_are_errors() {
        let limits = parse("listenPatternsPerConnection: 5\nhandshakeTimeout: 2000").unwrap();
        assert_eq!(limits.listen_patterns_per_connection, 5);
        assert_eq!(limits.handshake_timeout_ms, 2000);
        assert_eq!(limits.listen_patterns, Limits::default().listen_patterns);
        assert!(parse("listenPaterns: 5")
            .unwrap_err()
            .contains("listenPaterns"));
        assert!(parse("listenPatterns: 0")
            .unwrap_err()
            .contains("limits.listenPatterns"));
    }
}
