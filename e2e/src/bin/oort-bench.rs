//! `oort-bench`: Oort's load generator. See docs/benchmarks.md for the method and figures.

#![allow(clippy::print_stdout)]

use std::time::Duration;

use clap::{Parser, Subcommand};
use oort_e2e::bench::idle::{self, IdleOptions};
use oort_e2e::bench::send::{self, SendOptions};
use oort_e2e::bench::{backend, target::Target};

/// Load scenarios against a real gateway on loopback.
#[derive(Parser)]
#[command(name = "oort-bench")]
struct Cli {
    /// Target a running gateway's connect URL (ws://host:port/connect) instead of spawning one.
    #[arg(long, requires = "api_url")]
    connect_url: Option<String>,
    /// The running gateway's API base URL (http://host:port).
    #[arg(long)]
    api_url: Option<String>,
    /// The running gateway's pid, for memory and CPU figures.
    #[arg(long)]
    gateway_pid: Option<u32>,
    /// Where the built-in callback backend listens (point the gateway's callbacks here).
    #[arg(long, default_value = "127.0.0.1:0")]
    backend_listen: String,
    /// Extra YAML for a spawned gateway's config, e.g. "websocket:\n  read_buffer_size: 1024".
    #[arg(long, default_value = "")]
    extra_config: String,
    /// Spawn a cluster of this many nodes (with its own nats-server) instead of one node; the
    /// load goes to the last node, a follower.
    #[arg(long)]
    cluster: Option<usize>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Idle connections: gateway memory per connection, connect rate, idle CPU.
    Idle {
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        #[arg(long, default_value_t = 200)]
        concurrency: usize,
        /// Seconds to hold the connections while measuring idle CPU.
        #[arg(long, default_value_t = 10)]
        hold: u64,
    },
    /// Send throughput through /send (one session per request) or /v1/send/batch.
    Send {
        #[arg(long, default_value_t = 100)]
        sessions: usize,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Seconds to send for.
        #[arg(long, default_value_t = 10)]
        duration: u64,
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Messages per /v1/send/batch request (omit for /send).
        #[arg(long)]
        batch: Option<usize>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let backend = backend::start(&cli.backend_listen).await?;
    eprintln!("callback backend on http://{backend}");
    let target = match (cli.connect_url, cli.api_url) {
        (Some(connect_url), Some(api_url)) => {
            Target::external(connect_url, api_url, cli.gateway_pid)
        }
        _ => match cli.cluster {
            Some(size) => Target::spawn_cluster(backend, size, &cli.extra_config).await?,
            None => Target::spawn(backend, &cli.extra_config).await?,
        },
    };
    let report = match cli.scenario {
        Scenario::Idle {
            connections,
            concurrency,
            hold,
        } => {
            let options = IdleOptions {
                connections,
                concurrency,
                hold: Duration::from_secs(hold),
            };
            serde_json::to_value(idle::run(&target, &options).await?)?
        }
        Scenario::Send {
            sessions,
            concurrency,
            duration,
            size,
            batch,
        } => {
            let options = SendOptions {
                sessions,
                concurrency,
                duration: Duration::from_secs(duration),
                payload_size: size,
                batch,
            };
            serde_json::to_value(send::run(&target, &options).await?)?
        }
    };
    eprintln!("{}", serde_json::to_string_pretty(&report)?);
    println!("{report}");
    Ok(())
}
