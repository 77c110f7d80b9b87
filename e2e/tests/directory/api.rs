//! The backend API and health endpoints of a node, as the directory tests use them.

use oort_e2e::cluster::TestCluster;

/// `/v1/send` through `node`: the per-session statuses, in order.
pub(crate) async fn v1_send(
    cluster: &TestCluster,
    node: &str,
    keys: &[&str],
    data: &str,
) -> Vec<String> {
    let body = serde_json::json!({ "sessions": keys, "data": data });
    let response = cluster
        .http()
        .post(format!("{}/v1/send", cluster.node(node).api_url()))
        .body(body.to_string())
        .send()
        .await
        .expect("POST /v1/send");
    assert_eq!(response.status(), 200, "POST /v1/send through {node}");
    let answer: serde_json::Value =
        serde_json::from_slice(&response.bytes().await.expect("the answer")).expect("JSON");
    answer["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|result| result["status"].as_str().expect("a status").to_owned())
        .collect()
}

/// The status of `GET /readyz` on `node`.
pub(crate) async fn readiness(cluster: &TestCluster, node: &str) -> u16 {
    cluster
        .http()
        .get(format!("{}/readyz", cluster.node(node).api_url()))
        .send()
        .await
        .expect("GET /readyz")
        .status()
        .as_u16()
}
