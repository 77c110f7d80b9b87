//! Scenario 1 beyond one process: every connection is an open file on both ends, and a process
//! may hold at most 20,000 here. So 50k or 100k connections are spread evenly over the target's
//! nodes (`--cluster K`), each node's share opened by one worker process (this same binary,
//! `oort-bench idle-worker`); memory and CPU are summed over every node. One worker per node
//! also means no two workers share a destination, so each can let the kernel pick its source
//! ports at connect time from 127.0.0.1 (picking at bind time, from several addresses, slowed
//! connects to 500/s as the port range filled).

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::idle::{IdleOptions, IdleReport};
use super::target::Target;
use super::{Percentiles, clients};

/// Open files a process keeps for everything but its connections.
const OTHER_FILES: usize = 500;

/// How long a worker may take to open its share.
const OPEN_TIMEOUT: Duration = Duration::from_secs(600);

/// Connections one process (a worker, or a gateway) can hold. `OORT_BENCH_CLIENTS_PER_PROCESS`
/// lowers it, so that a test can take the worker path with a few hundred connections.
pub fn clients_per_process() -> usize {
    let from_limit = super::procfs::open_file_limit()
        .unwrap_or(1024)
        .saturating_sub(OTHER_FILES)
        .max(1);
    std::env::var("OORT_BENCH_CLIENTS_PER_PROCESS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .map_or(from_limit, |wanted| wanted.clamp(1, from_limit))
}

/// What a worker prints once its clients are open.
#[derive(Debug, Serialize, Deserialize)]
pub struct WorkerReport {
    pub connected: usize,
    pub failures: usize,
    /// Each client's TCP connect to 101, in milliseconds.
    pub connect_times_ms: Vec<f64>,
}

/// The worker: opens `connections` clients, answers the gateway's pings, prints a
/// [`WorkerReport`] line, and holds the clients until its standard input closes.
pub async fn worker(
    connect_url: &str,
    connections: usize,
    concurrency: usize,
    prefix: &str,
    durable: bool,
) -> anyhow::Result<()> {
    let mut opened =
        clients::open_with(connect_url, connections, concurrency, prefix, durable).await?;
    let connected = opened.clients.len();
    let readers = clients::hold(std::mem::take(&mut opened.clients));
    let report = WorkerReport {
        connected,
        failures: opened.failures,
        connect_times_ms: opened
            .connect_times
            .iter()
            .map(|t| t.as_secs_f64() * 1000.0)
            .collect(),
    };
    let line = serde_json::to_string(&report)?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{line}")?;
        stdout.flush()?;
    }
    // The parent closes our standard input when it has measured.
    tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin(), &mut std::io::sink()))
        .await??;
    for reader in readers {
        reader.abort();
    }
    Ok(())
}

/// Opens `options.connections` through one worker per node, the nodes sharing them evenly (at
/// most `per_process` each).
pub async fn run(
    target: &Target,
    options: &IdleOptions,
    per_process: usize,
) -> anyhow::Result<IdleReport> {
    let nodes = &target.nodes;
    anyhow::ensure!(!nodes.is_empty(), "no node to connect to");
    let per_node = options.connections.div_ceil(nodes.len());
    anyhow::ensure!(
        per_node <= per_process,
        "{} connections need at least {} gateway processes (each holds at most {per_process} \
         with this machine's open-file limit): run with --cluster {}",
        options.connections,
        options.connections.div_ceil(per_process),
        options.connections.div_ceil(per_process),
    );
    let rss_before = target.rss_bytes();
    let started = Instant::now();
    let mut workers = Vec::new();
    let mut remaining = options.connections;
    for (index, node) in nodes.iter().enumerate() {
        let share = per_node.min(remaining);
        remaining -= share;
        if share == 0 {
            continue;
        }
        let connect_url = format!("{}/connect", node.replacen("http://", "ws://", 1));
        let prefix = format!("idle-n{index}");
        workers.push(spawn_worker(&connect_url, share, options, &prefix).await?);
    }
    let mut reports = Vec::new();
    for (child, lines) in &mut workers {
        let line = tokio::time::timeout(OPEN_TIMEOUT, lines.next_line())
            .await
            .context("a worker took too long to open its clients")??
            .context("a worker ended before reporting")?;
        reports.push(serde_json::from_str::<WorkerReport>(&line)?);
        anyhow::ensure!(child.id().is_some(), "a worker exited early");
    }
    let opened_in = started.elapsed();
    let cpu_before = target.cpu_seconds();
    let held_since = Instant::now();
    tokio::time::sleep(options.hold).await;
    let held = held_since.elapsed();
    let cpu_after = target.cpu_seconds();
    let rss_after = target.rss_bytes();
    for (mut child, _) in workers {
        // Closing its standard input tells the worker to finish.
        drop(child.stdin.take());
        let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
    }
    let connected: usize = reports.iter().map(|r| r.connected).sum();
    let mut connect_times: Vec<Duration> = reports
        .iter()
        .flat_map(|r| r.connect_times_ms.iter())
        .map(|ms| Duration::from_secs_f64(ms / 1000.0))
        .collect();
    Ok(IdleReport {
        scenario: "idle",
        connections: connected,
        durable: options.durable,
        failures: reports.iter().map(|r| r.failures).sum(),
        connect_rate_per_s: connected as f64 / opened_in.as_secs_f64(),
        connect_time: Percentiles::of(&mut connect_times),
        rss_before_bytes: rss_before,
        rss_after_bytes: rss_after,
        rss_per_connection_bytes: super::idle::per_connection(rss_before, rss_after, connected),
        idle_cpu_percent: super::idle::cpu_percent(cpu_before, cpu_after, held),
        hold_s: held.as_secs_f64(),
    })
}

type WorkerLines = tokio::io::Lines<BufReader<tokio::process::ChildStdout>>;

async fn spawn_worker(
    connect_url: &str,
    connections: usize,
    options: &IdleOptions,
    prefix: &str,
) -> anyhow::Result<(Child, WorkerLines)> {
    let mut command = Command::new(std::env::current_exe()?);
    command
        .args(["idle-worker", "--connect-url", connect_url])
        .args(["--connections", &connections.to_string()])
        .args(["--concurrency", &options.concurrency.to_string()])
        .args(["--prefix", prefix]);
    if options.durable {
        command.arg("--durable");
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start a worker process")?;
    let stdout = child.stdout.take().context("worker without stdout")?;
    Ok((child, BufReader::new(stdout).lines()))
}
