//! Sends routed between nodes over NATS, with real nats-server and `oort` processes: delivery
//! through any node, large fan-outs, node, leader and NATS failures under load, draining nodes,
//! the demo chat across nodes, request ids followed across nodes (issue 4), and the Durable
//! Streams conformance suite through every node (Node.js and `npm ci` in e2e/durable-streams).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod channels;
mod cross_node;
mod delivery;
mod drain_and_demo;
mod ds_conformance;
mod event_feed;
mod faults;
mod hostile;
mod ledger;
mod load;
mod moved;
mod named_streams;
mod nats_interface;
mod owner_answers;
mod rolling;
mod status_cli;
mod traces;
mod users;

use std::time::Duration;

use oort_e2e::cluster::{FAST_TIMINGS, TestCluster};
use oort_e2e::nats::NatsServer;
use oort_e2e::{TIMEOUT, WsClient};
use serde_json::Value;

/// Bound on a cluster converging.
pub const CONVERGE: Duration = Duration::from_secs(30);

/// Three nodes on one nats-server, converged.
pub async fn three_nodes() -> (NatsServer, TestCluster) {
    let nats = NatsServer::start().await;
    let mut cluster = TestCluster::new(vec![nats.url()], FAST_TIMINGS).await;
    for name in ["n1", "n2", "n3"] {
        cluster.add(name, 3).await;
    }
    cluster.wait_converged(3, 3, CONVERGE).await;
    (nats, cluster)
}

/// Connects `key` through `node` (returns after the 101: the registration is committed).
pub async fn connect(cluster: &TestCluster, node: &str, key: &str) -> WsClient {
    WsClient::connect(&cluster.node(node).ws_url(&format!("key={key}"))).await
}

/// kuiperbelt's `/send` through `node` with one header per key; the answer's status and JSON.
pub async fn kb_send(cluster: &TestCluster, node: &str, keys: &[&str], body: &str) -> (u16, Value) {
    let mut request = cluster
        .http()
        .post(format!("{}/send", cluster.node(node).api_url()))
        .body(body.to_owned());
    for key in keys {
        request = request.header("X-Kuiperbelt-Session", *key);
    }
    let response = request.send().await.expect("POST /send");
    let status = response.status().as_u16();
    (
        status,
        serde_json::from_slice(&response.bytes().await.unwrap()).expect("JSON answer"),
    )
}

/// `/v1/send` through `node`: the per-session statuses, in order.
pub async fn v1_send(cluster: &TestCluster, node: &str, keys: &[&str], data: &str) -> Vec<String> {
    v1_send_at(cluster.http(), &cluster.node(node).api_url(), keys, data)
        .await
        .expect("POST /v1/send")
}

/// `/v1/send` to an API base URL; `None` when the request itself failed.
pub async fn v1_send_at(
    http: &reqwest::Client,
    api: &str,
    keys: &[&str],
    data: &str,
) -> Option<Vec<String>> {
    let body = serde_json::json!({ "sessions": keys, "data": data });
    let response = http
        .post(format!("{api}/v1/send"))
        .body(body.to_string())
        .timeout(TIMEOUT)
        .send()
        .await
        .ok()?;
    let answer: Value = serde_json::from_slice(&response.bytes().await.ok()?).ok()?;
    Some(
        answer["results"]
            .as_array()?
            .iter()
            .map(|r| r["status"].as_str().unwrap_or_default().to_owned())
            .collect(),
    )
}

/// `GET /v1/sessions/{key}?replica=true` on `node`: the owner according to that node's own
/// replica of the directory, asking no other node.
pub async fn owner_in_replica(cluster: &TestCluster, node: &str, key: &str) -> Option<String> {
    cluster.owner_in_replica(node, key).await
}
