//! The session directory at scale (docs/scale.md): synthetic sessions (no sockets) registered
//! through the real cluster path of three `oort` processes (the registrar's group commit, raft
//! over a real nats-server, fsync, every replica's apply), up to a million keys and more.
//!
//! Reported per step: registrations/s and commit latency; memory per directory entry on each
//! node (RSS growth over the entries added); NATS bytes per registration; the snapshot's size
//! and build time (the nodes log them); at chosen sizes, how long a new node takes to catch up
//! (a snapshot install); and, in this process, what a send-path lookup costs at the final size
//! and what an entry costs in memory with nothing else around it.

use std::time::{Duration, Instant};

use oort_common::cluster::DirectoryCommand;
use oort_common::{Epoch, NodeId, SessionKey};
use oort_router::directory::Directory;
use serde::Serialize;
use serde_json::Value;

use super::channel_api::json_of;
use super::procfs;
use crate::cluster::{NodeExtras, TestCluster};
use crate::nats::NatsServer;
use crate::wait::eventually;

/// Bound on forming the cluster, on one step's registrations and on a learner's catch-up.
const BOUND: Duration = Duration::from_secs(600);

/// What to run.
pub struct DirectoryOptions {
    /// Entries at the end.
    pub sessions: u64,
    /// Entries added per step (figures are reported after each).
    pub step: u64,
    /// Sizes at which a new node joins and its catch-up is timed.
    pub learner_at: Vec<u64>,
    /// `cluster.snapshot_every` (raft entries between snapshots; a group commit of ~1,500
    /// registrations is one entry).
    pub snapshot_every: u64,
}

/// The figures after one step.
#[derive(Debug, Serialize)]
pub struct DirectoryStep {
    pub entries: u64,
    pub registrations_per_s: f64,
    pub commit_p50_ms: f64,
    pub commit_p99_ms: f64,
    /// RSS growth since the start divided by the entries, per node.
    pub bytes_per_entry_per_node: Vec<f64>,
    /// nats-server's bytes in plus out over the step, per registration.
    pub nats_bytes_per_registration: f64,
    /// The leader's latest snapshot.
    pub snapshot_bytes: u64,
    pub snapshot_build_ms: Option<u64>,
    /// A new node's time from start to applying the leader's last index, and its snapshot
    /// install (decode and swap), when one joined at this size.
    pub learner_catch_up_ms: Option<f64>,
    pub learner_install_ms: Option<u64>,
}

/// The whole run.
#[derive(Debug, Serialize)]
pub struct DirectoryReport {
    pub scenario: &'static str,
    pub steps: Vec<DirectoryStep>,
    /// In this process: a `Directory` of `sessions` entries (keys `s<n>`, 3 owners).
    pub in_process_bytes_per_entry: f64,
    pub in_process_key_bytes: f64,
    pub lookup_ns: f64,
}

pub async fn run(options: &DirectoryOptions) -> anyhow::Result<DirectoryReport> {
    let nats = NatsServer::start_monitored().await;
    let monitor = nats
        .monitor_url()
        .ok_or_else(|| anyhow::anyhow!("nats-server has no monitoring port"))?;
    let extra = format!(
        "  synthetic_sessions: true\n  snapshot_every: {}\n",
        options.snapshot_every
    );
    let mut cluster = TestCluster::new(vec![nats.url()], &extra).await;
    for name in ["n1", "n2", "n3"] {
        cluster.add(name, 3).await;
    }
    let leader = cluster.wait_converged(3, 3, BOUND).await;
    let http = crate::http_client_builder().timeout(BOUND).build()?;
    let nodes = ["n1", "n2", "n3"];
    let pids: Vec<u32> = nodes
        .iter()
        .map(|name| cluster.node(name).process().pid())
        .collect();
    let rss_at_start: Vec<u64> = pids
        .iter()
        .map(|pid| procfs::rss_bytes(*pid).unwrap_or(0))
        .collect();
    let mut steps = Vec::new();
    let mut entries = 0;
    while entries < options.sessions {
        let count = options.step.min(options.sessions - entries);
        let nats_before = nats_bytes(&http, &monitor).await?;
        // Through n3: a follower unless it leads, so writes take the forwarding path.
        let answer = json_of(
            http.post(format!(
                "{}/v1/cluster/synthetic-sessions",
                cluster.node("n3").api_url()
            ))
            .body(
                serde_json::json!({ "prefix": "s", "start": entries, "count": count }).to_string(),
            )
            .send()
            .await?,
        )
        .await?;
        let registered = answer["registered"].as_u64().unwrap_or(0);
        anyhow::ensure!(
            registered == count,
            "registered {registered} of {count}: {answer}"
        );
        entries += count;
        wait_for_entries(&cluster, &nodes, entries).await;
        let nats_after = nats_bytes(&http, &monitor).await?;
        let bytes_per_entry_per_node = pids
            .iter()
            .zip(&rss_at_start)
            .map(|(pid, start)| {
                procfs::rss_bytes(*pid).unwrap_or(0).saturating_sub(*start) as f64 / entries as f64
            })
            .collect();
        let status = cluster.status(&leader).await.unwrap_or_default();
        let mut step = DirectoryStep {
            entries,
            registrations_per_s: answer["per_second"].as_f64().unwrap_or(0.0),
            commit_p50_ms: answer["commit_ms"]["p50"].as_f64().unwrap_or(0.0),
            commit_p99_ms: answer["commit_ms"]["p99"].as_f64().unwrap_or(0.0),
            bytes_per_entry_per_node,
            nats_bytes_per_registration: nats_after.saturating_sub(nats_before) as f64
                / count as f64,
            snapshot_bytes: status["snapshot_bytes"].as_u64().unwrap_or(0),
            snapshot_build_ms: last_logged(&cluster, &leader, "snapshot built"),
            learner_catch_up_ms: None,
            learner_install_ms: None,
        };
        if options.learner_at.contains(&entries) {
            let (catch_up, install) = time_a_learner(&mut cluster, &leader, entries).await;
            step.learner_catch_up_ms = Some(catch_up);
            step.learner_install_ms = install;
        }
        eprintln!("{}", serde_json::to_string(&step)?);
        steps.push(step);
    }
    drop(cluster);
    let (in_process_bytes_per_entry, in_process_key_bytes, lookup_ns) =
        in_process(options.sessions);
    Ok(DirectoryReport {
        scenario: "directory",
        steps,
        in_process_bytes_per_entry,
        in_process_key_bytes,
        lookup_ns,
    })
}

/// Waits until every node's replica holds `entries` sessions.
async fn wait_for_entries(cluster: &TestCluster, nodes: &[&str], entries: u64) {
    for node in nodes {
        eventually(
            BOUND,
            &format!("{node} to hold {entries} entries"),
            || async {
                let status = cluster.status(node).await?;
                (status["sessions"].as_u64() == Some(entries)).then_some(())
            },
        )
        .await;
    }
}

/// Starts a new node, times it until it applied the leader's last index, stops it again.
async fn time_a_learner(
    cluster: &mut TestCluster,
    leader: &str,
    entries: u64,
) -> (f64, Option<u64>) {
    let status = cluster.status(leader).await.unwrap_or_default();
    let target = status["last_log_index"].as_u64().unwrap_or(0);
    let name = format!("learner{entries}");
    let started = Instant::now();
    cluster.add_with(&name, 3, NodeExtras::default()).await;
    eventually(BOUND, &format!("{name} to catch up"), || async {
        let status = cluster.status(&name).await?;
        (status["applied_index"].as_u64()? >= target
            && status["sessions"].as_u64() == Some(entries))
        .then_some(())
    })
    .await;
    let catch_up = started.elapsed().as_secs_f64() * 1000.0;
    let install = last_logged(cluster, &name, "snapshot installed");
    cluster.stop(&name).await;
    (catch_up, install)
}

/// The `elapsed_ms` of the last log line of `node` with `message`.
fn last_logged(cluster: &TestCluster, node: &str, message: &str) -> Option<u64> {
    cluster
        .node(node)
        .process()
        .logs()
        .iter()
        .rev()
        .filter(|line| line.contains(message))
        .find_map(|line| {
            let json: Value = serde_json::from_str(line).ok()?;
            json["fields"]["elapsed_ms"].as_u64()
        })
}

/// nats-server's bytes in plus out.
async fn nats_bytes(http: &reqwest::Client, monitor: &str) -> anyhow::Result<u64> {
    let varz = json_of(http.get(format!("{monitor}/varz")).send().await?).await?;
    Ok(varz["in_bytes"].as_u64().unwrap_or(0) + varz["out_bytes"].as_u64().unwrap_or(0))
}

/// A directory of `entries` keys built here: RSS growth per entry (keys included), the key
/// bytes per entry, and the nanoseconds per `owner` lookup (the send path's read of its
/// replica).
fn in_process(entries: u64) -> (f64, f64, f64) {
    let own = std::process::id();
    let nodes: Vec<NodeId> = ["n1", "n2", "n3"].map(NodeId::from).to_vec();
    let mut directory = Directory::default();
    for node in &nodes {
        directory.apply(&DirectoryCommand::NodeUp {
            node: node.clone(),
            epoch: Epoch(1),
        });
    }
    let before = procfs::rss_bytes(own).unwrap_or(0);
    let mut key_bytes = 0;
    for (chunk_index, start) in (0..entries).step_by(1_500).enumerate() {
        let sessions: Vec<(SessionKey, Epoch)> = (start..(start + 1_500).min(entries))
            .map(|n| (SessionKey::from(format!("s{n}")), Epoch(2)))
            .collect();
        key_bytes += sessions
            .iter()
            .map(|(k, _)| k.as_str().len())
            .sum::<usize>();
        directory.apply(&DirectoryCommand::Register {
            node: nodes[chunk_index % nodes.len()].clone(),
            sessions,
        });
    }
    let grown = procfs::rss_bytes(own).unwrap_or(0).saturating_sub(before) as f64;
    // A scattered order, as sends come: a multiplicative walk over the keys.
    let mut n: u64 = 0x9e37_79b9;
    let probes: Vec<String> = (0..entries.min(1_000_000))
        .map(|_| {
            n = n.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            format!("s{}", (n >> 11) % entries)
        })
        .collect();
    let started = Instant::now();
    let found = probes
        .iter()
        .filter(|key| directory.owner(key).is_some())
        .count();
    let elapsed = started.elapsed().as_nanos() as f64 / probes.len().max(1) as f64;
    assert_eq!(found, probes.len(), "every key is in the directory");
    (
        grown / entries as f64,
        key_bytes as f64 / entries as f64,
        elapsed,
    )
}
