//! Failover time: a three-node cluster with default timings, its raft leader SIGKILLed, and a
//! client connecting to a survivor again and again until one connect gets its 101 (which
//! means its registration committed at a new leader). The figure is the time from the kill to
//! that 101.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::Percentiles;
use crate::WsClient;
use crate::cluster::TestCluster;
use crate::nats::NatsServer;

/// Bound on forming the cluster and on the whole failover.
const BOUND: Duration = Duration::from_secs(60);

/// One failover.
#[derive(Debug, Serialize)]
pub struct FailoverRun {
    /// The killed leader.
    pub leader: String,
    /// The survivor the client connected to.
    pub survivor: String,
    /// From the SIGKILL to the first successful connect through the survivor.
    pub first_connect_ms: f64,
    /// Connect attempts refused before it (503s while there was no leader).
    pub refused: usize,
}

/// Runs one failover on a fresh cluster with default timings plus `extra` cluster settings.
pub async fn run_once(extra: &str) -> anyhow::Result<FailoverRun> {
    let nats = NatsServer::start().await;
    let mut cluster = TestCluster::new(vec![nats.url()], extra).await;
    for name in ["n1", "n2", "n3"] {
        cluster.add(name, 3).await;
    }
    let leader = cluster.wait_converged(3, 3, BOUND).await;
    let survivor = cluster
        .running()
        .into_iter()
        .find(|name| *name != leader)
        .ok_or_else(|| anyhow::anyhow!("no survivor"))?;
    let url = cluster.node(&survivor).ws_url("key=after-failover");
    let killed = Instant::now();
    cluster.kill(&leader).await;
    let mut refused = 0;
    loop {
        if killed.elapsed() > BOUND {
            anyhow::bail!("no connect succeeded within {BOUND:?} of the leader's kill");
        }
        match WsClient::connect_with(&url, &[]).await {
            Ok(_) => break,
            // Refused (no leader to register with yet): try again at once.
            Err(_) => refused += 1,
        }
    }
    Ok(FailoverRun {
        leader,
        survivor,
        first_connect_ms: killed.elapsed().as_secs_f64() * 1000.0,
        refused,
    })
}

/// The distribution over `runs` failovers.
#[derive(Debug, Serialize)]
pub struct FailoverReport {
    /// The scenario's name.
    pub scenario: &'static str,
    /// Every run.
    pub runs: Vec<FailoverRun>,
    /// Percentiles of the time to the first connect.
    pub first_connect: Option<Percentiles>,
    /// The fastest run.
    pub min_ms: f64,
}

/// Runs `runs` failovers, each on a fresh cluster.
pub async fn run(runs: usize, extra: &str) -> anyhow::Result<FailoverReport> {
    let mut results = Vec::with_capacity(runs);
    for index in 0..runs {
        let run = run_once(extra).await?;
        eprintln!(
            "failover {}: {:.0} ms ({} refused)",
            index + 1,
            run.first_connect_ms,
            run.refused
        );
        results.push(run);
    }
    let mut samples: Vec<Duration> = results
        .iter()
        .map(|run| Duration::from_secs_f64(run.first_connect_ms / 1000.0))
        .collect();
    let min_ms = samples
        .iter()
        .min()
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    Ok(FailoverReport {
        scenario: "failover",
        first_connect: Percentiles::of(&mut samples),
        runs: results,
        min_ms,
    })
}
