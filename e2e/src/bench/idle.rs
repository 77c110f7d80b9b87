//! Scenario 1: idle connections. Opens N clients, holds them, and reports the gateway's
//! resident memory per connection, the connect rate, and its CPU use while idle.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::target::Target;
use super::{Percentiles, clients, procfs};

/// Scenario parameters.
pub struct IdleOptions {
    /// Connections to open.
    pub connections: usize,
    /// Connects in flight at once.
    pub concurrency: usize,
    /// How long to hold them idle while measuring CPU.
    pub hold: Duration,
    /// Clients offer the `oort.v1` subprotocol (an idle session with an empty replay buffer).
    pub durable: bool,
}

/// Results.
#[derive(Debug, Serialize)]
pub struct IdleReport {
    pub scenario: &'static str,
    pub connections: usize,
    pub durable: bool,
    pub failures: usize,
    pub connect_rate_per_s: f64,
    pub connect_time: Option<Percentiles>,
    pub rss_before_bytes: Option<u64>,
    pub rss_after_bytes: Option<u64>,
    pub rss_per_connection_bytes: Option<f64>,
    pub idle_cpu_percent: Option<f64>,
    pub hold_s: f64,
}

/// Runs the scenario in this process, or, for more connections than one process can hold (each
/// is an open file), in worker processes spread over the target's nodes.
pub async fn run(target: &Target, options: &IdleOptions) -> anyhow::Result<IdleReport> {
    let per_process = super::idle_workers::clients_per_process();
    if options.connections > per_process {
        return super::idle_workers::run(target, options, per_process).await;
    }
    run_here(target, options).await
}

async fn run_here(target: &Target, options: &IdleOptions) -> anyhow::Result<IdleReport> {
    let rss_before = target.pid.and_then(|pid| procfs::rss_bytes(pid).ok());
    let mut opened = clients::open_with(
        &target.connect_url,
        options.connections,
        options.concurrency,
        "idle",
        options.durable,
    )
    .await?;
    let connected = opened.clients.len();
    let readers = clients::hold(std::mem::take(&mut opened.clients));
    let cpu_before = target.pid.and_then(|pid| procfs::cpu_seconds(pid).ok());
    let held_since = Instant::now();
    tokio::time::sleep(options.hold).await;
    let held = held_since.elapsed();
    let cpu_after = target.pid.and_then(|pid| procfs::cpu_seconds(pid).ok());
    let rss_after = target.pid.and_then(|pid| procfs::rss_bytes(pid).ok());
    for reader in readers {
        reader.abort();
    }
    Ok(IdleReport {
        scenario: "idle",
        connections: connected,
        durable: options.durable,
        failures: opened.failures,
        connect_rate_per_s: connected as f64 / opened.elapsed.as_secs_f64(),
        connect_time: Percentiles::of(&mut opened.connect_times),
        rss_before_bytes: rss_before,
        rss_after_bytes: rss_after,
        rss_per_connection_bytes: per_connection(rss_before, rss_after, connected),
        idle_cpu_percent: cpu_percent(cpu_before, cpu_after, held),
        hold_s: held.as_secs_f64(),
    })
}

/// Resident memory gained per connection.
pub(super) fn per_connection(
    before: Option<u64>,
    after: Option<u64>,
    connections: usize,
) -> Option<f64> {
    match (before, after) {
        (Some(before), Some(after)) if connections > 0 => {
            Some(after.saturating_sub(before) as f64 / connections as f64)
        }
        _ => None,
    }
}

/// CPU seconds used over `held`, as a percentage of one core.
pub(super) fn cpu_percent(before: Option<f64>, after: Option<f64>, held: Duration) -> Option<f64> {
    Some((after? - before?) / held.as_secs_f64() * 100.0)
}
