//! corestream-load: a deepstream load generator speaking the protobuf protocol itself.

mod scenarios;
mod stats;
mod wire;

use clap::{Parser, Subcommand};
use scenarios::Common;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "corestream-load",
    about = "Load generator for deepstream-protocol servers"
)]
struct Cli {
    /// Server to load (corestream or the reference deepstream).
    #[arg(long, global = true, default_value = "ws://127.0.0.1:6020/deepstream")]
    url: String,
    /// Servers the subscribers of fanout and records connect to, in turn (other nodes of a
    /// cluster); publishers and writers stay on --url.
    #[arg(long, global = true, value_delimiter = ',')]
    subscriber_urls: Vec<String>,
    /// Cpus the loader runs on, one executor each.
    #[arg(long, global = true, value_delimiter = ',', default_value = "0")]
    cpus: Vec<usize>,
    /// Seconds of load (every run is bounded by this).
    #[arg(long, global = true, default_value_t = 10)]
    duration: u64,
    /// Print one JSON object instead of a table.
    #[arg(long, global = true)]
    json: bool,
    /// The endpoint's protocol (fanout runs on all; the other scenarios need binary). Point
    /// --url at the endpoint's path (/deepstream-v3, /deepstream-json, /deepstream-frame).
    #[arg(long, global = true, value_enum, default_value = "binary")]
    protocol: wire::Protocol,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// P publishers emit on T names at a target rate to S subscribers of every name.
    Fanout {
        #[arg(long, default_value_t = 1)]
        publishers: usize,
        #[arg(long, default_value_t = 50)]
        subscribers: usize,
        #[arg(long, default_value_t = 1)]
        names: usize,
        /// Emits per second, all publishers together.
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        /// Approximate bytes of event data.
        #[arg(long, default_value_t = 64)]
        payload: usize,
    },
    /// W writers update their records (whole and path) with S subscribers of every record.
    Records {
        #[arg(long, default_value_t = 1)]
        writers: usize,
        #[arg(long, default_value_t = 50)]
        subscribers: usize,
        /// Writes per second, all writers together.
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        /// Share of writes sent as path patches instead of whole updates.
        #[arg(long, default_value_t = 0.5)]
        patch_ratio: f64,
    },
    /// Callers make requests to providers, each caller keeping `inflight` requests open.
    Rpc {
        #[arg(long, default_value_t = 1)]
        providers: usize,
        #[arg(long, default_value_t = 8)]
        callers: usize,
        #[arg(long, default_value_t = 1)]
        inflight: usize,
    },
    /// Writers keep one acknowledged write in flight on each of `inflight` records.
    AckedWrites {
        #[arg(long, default_value_t = 4)]
        writers: usize,
        #[arg(long, default_value_t = 64)]
        inflight: usize,
        /// Approximate bytes of record data.
        #[arg(long, default_value_t = 100)]
        payload: usize,
    },
    /// Connections connect and log in as fast as possible, `concurrency` at a time.
    Connect {
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Stop after this many logins (or at the duration).
        #[arg(long, default_value_t = 1_000_000)]
        count: u64,
    },
    /// Hold N idle logged-in connections; with --server-pid, the server's memory per connection.
    Idle {
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        #[arg(long)]
        server_pid: Option<u32>,
        /// Connections per source address (127.0.0.1, .2, ...), below the ephemeral port range.
        #[arg(long, default_value_t = 20_000)]
        per_source: usize,
        /// Seconds the connections stay quiet before the second memory reading (the first is
        /// taken after one second), so a server that parks quiet sockets shows both states.
        #[arg(long, default_value_t = 8)]
        quiet: u64,
        /// Connect in this many equal waves, each followed by the quiet wait and readings: with
        /// more than one, memory a server freed after earlier waves went quiet is reused by
        /// later ones, as in a server whose connections arrive over time rather than at once.
        #[arg(long, default_value_t = 1)]
        waves: usize,
    },
}

fn main() {
    let cli = Cli::parse();
    let target = match wire::Target::parse(&cli.url) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let run = format!(
        "load-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    );
    wire::set_protocol(cli.protocol);
    let subscriber_targets = match cli
        .subscriber_urls
        .iter()
        .map(|url| wire::Target::parse(url))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(targets) => targets,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let common = Common {
        target,
        subscriber_targets,
        cpus: cli.cpus,
        duration: Duration::from_secs(cli.duration),
        run,
    };
    let report = match cli.scenario {
        Scenario::Fanout {
            publishers,
            subscribers,
            names,
            rate,
            payload,
        } => scenarios::fanout(
            &common,
            &scenarios::Fanout {
                publishers,
                subscribers,
                names: names.max(1),
                rate,
                payload,
            },
        ),
        Scenario::Records {
            writers,
            subscribers,
            rate,
            patch_ratio,
        } => scenarios::records(
            &common,
            &scenarios::Records {
                writers: writers.max(1),
                subscribers,
                rate,
                patch_ratio,
            },
        ),
        Scenario::Rpc {
            providers,
            callers,
            inflight,
        } => scenarios::rpc(
            &common,
            &scenarios::Rpc {
                providers: providers.max(1),
                callers,
                inflight: inflight.max(1),
            },
        ),
        Scenario::AckedWrites {
            writers,
            inflight,
            payload,
        } => scenarios::acked_writes(
            &common,
            &scenarios::AckedWrites {
                writers: writers.max(1),
                inflight: inflight.max(1),
                payload,
            },
        ),
        Scenario::Connect { concurrency, count } => {
            scenarios::connect(&common, concurrency.max(1), count)
        }
        Scenario::Idle {
            connections,
            server_pid,
            per_source,
            quiet,
            waves,
        } => scenarios::idle(
            &common,
            connections,
            server_pid,
            per_source.max(1),
            Duration::from_secs(quiet.max(1)),
            waves.max(1),
        ),
    };
    report.print(cli.json);
}
