//! `oort.v1` sessions across nodes, with real nats-server and `oort` processes: a resume on
//! another node takes the session's tail from its previous owner; a crashed owner means a
//! reset; a rolling restart of every node loses nothing for `oort.v1` clients (issue 11).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod away;
mod http;
mod moves;
mod requests;
mod rolling;

use std::time::Duration;

use oort_e2e::cluster::{FAST_TIMINGS, TestCluster};
use oort_e2e::durable_client::DurableClient;
use oort_e2e::nats::NatsServer;
use oort_e2e::{CallbackKind, TIMEOUT};

/// Bound on a cluster converging.
pub const CONVERGE: Duration = Duration::from_secs(30);

/// Three nodes on one nats-server sharing a resume secret, converged.
pub async fn three_nodes() -> (NatsServer, TestCluster) {
    let nats = NatsServer::start().await;
    let mut cluster = TestCluster::new(vec![nats.url()], FAST_TIMINGS).await;
    cluster
        .top_level
        .push_str("session:\n  resume_secret: a-resume-secret-for-tests\n");
    for name in ["n1", "n2", "n3"] {
        cluster.add(name, 3).await;
    }
    cluster.wait_converged(3, 3, CONVERGE).await;
    (nats, cluster)
}

/// The connect URL of `node`, without a query.
pub fn connect_url(cluster: &TestCluster, node: &str) -> String {
    let addr = cluster.node(node).addr.expect("a running node");
    format!("ws://{addr}/connect")
}

/// An `oort.v1` session for `key` through `node`, established.
pub async fn connect(cluster: &TestCluster, node: &str, key: &str) -> DurableClient {
    let client = DurableClient::connect(&cluster.node(node).ws_url(&format!("key={key}")))
        .await
        .expect("an oort.v1 session");
    cluster
        .backend
        .wait_for(CallbackKind::Establish, key, 1, TIMEOUT)
        .await;
    client
}

/// Waits until `node` sees the `oort.v1` session `key` without a connection (lingering).
pub async fn wait_until_away(cluster: &TestCluster, node: &str, key: &str) {
    oort_e2e::eventually(
        TIMEOUT,
        &format!("{node} to notice {key}'s drop"),
        || async {
            let url = format!("{}/v1/sessions/{key}", cluster.node(node).api_url());
            let info = oort_e2e::try_json(cluster.http().get(url)).await?;
            (info["durable"]["connected"] == false).then_some(())
        },
    )
    .await;
}
