//! The raft-replicated session directory and cluster membership, with real nats-server and
//! real `oort` processes: formation, joins, leader and voter loss, restarts, snapshots, purges
//! and stale unregisters (issue 3).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api;
mod barrier;
mod close;
mod commit;
mod declared_dead;
mod failover;
mod failures;
mod formation;
mod keys;
mod leave;
mod quorum;
mod sessions;
mod stale_unregister;
mod upkeep;

use std::time::Duration;

use oort_e2e::cluster::{FAST_TIMINGS, TestCluster};
use oort_e2e::nats::NatsServer;
use oort_e2e::{TIMEOUT, WsClient, eventually};

/// Bound on a cluster converging after a change.
pub const CONVERGE: Duration = Duration::from_secs(30);

/// A nats-server and a cluster of `names` with `bootstrap_expect` and FAST_TIMINGS plus
/// `extra`, converged with `voters` voters.
pub async fn cluster(
    names: &[&str],
    bootstrap_expect: usize,
    extra: &str,
) -> (NatsServer, TestCluster) {
    let nats = NatsServer::start().await;
    let mut cluster = TestCluster::new(vec![nats.url()], &format!("{FAST_TIMINGS}{extra}")).await;
    for name in names {
        cluster.add(name, bootstrap_expect).await;
    }
    (nats, cluster)
}

/// Connects a client with session key `key` through `node`; returns once the 101 arrived,
/// which means the registration is committed.
pub async fn connect(cluster: &TestCluster, node: &str, key: &str) -> WsClient {
    WsClient::connect(&cluster.node(node).ws_url(&format!("key={key}"))).await
}

/// `GET /v1/sessions/{key}?replica=true` on `node`: the owner according to that node's own
/// replica of the directory (asking no other node, so a replica that lags, a snapshot that
/// lacks the entry or a restarted log that lost it shows), or `None` for 404.
pub async fn owner_seen_by(cluster: &TestCluster, node: &str, key: &str) -> Option<String> {
    cluster.owner_in_replica(node, key).await
}

/// Waits until every running node's replica says `key` is held by `expected` (`None`: by
/// nobody).
pub async fn wait_owner_everywhere(cluster: &TestCluster, key: &str, expected: Option<&str>) {
    eventually(
        CONVERGE,
        &format!("every node to agree on {key}'s owner {expected:?}"),
        || async {
            for node in cluster.running() {
                if owner_seen_by(cluster, &node, key).await.as_deref() != expected {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
}

/// A field of a node's `/v1/cluster` answer.
pub async fn status_field(cluster: &TestCluster, node: &str, field: &str) -> serde_json::Value {
    let status = cluster
        .status(node)
        .await
        .unwrap_or_else(|| panic!("{node} answers /v1/cluster"));
    status[field].clone()
}

/// The members a node lists, as `(name, role)` pairs.
pub async fn members(cluster: &TestCluster, node: &str) -> Vec<(String, String)> {
    let status = cluster.status(node).await.expect("status");
    status["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter(|m| m["role"] == "voter" || m["role"] == "learner")
        .map(|m| {
            (
                m["node"].as_str().unwrap().to_owned(),
                m["role"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Keeps the TIMEOUT import meaningful for modules that bound single waits.
pub const STEP: Duration = TIMEOUT;

/// `/v1/send` of `data` to `keys` through `node`: the per-session statuses, in order.
pub async fn v1_send(cluster: &TestCluster, node: &str, keys: &[&str], data: &str) -> Vec<String> {
    cluster.v1_send(node, keys, data).await
}
