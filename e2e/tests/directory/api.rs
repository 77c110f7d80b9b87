//! The backend API and health endpoints of a node, as the directory tests use them.

use oort_e2e::cluster::TestCluster;

/// `/v1/send` through `node`: the per-session statuses, in order.
pub(crate) async fn v1_send(
    cluster: &TestCluster,
    node: &str,
    keys: &[&str],
    data: &str,
) -> Vec<String> {
    cluster.v1_send(node, keys, data).await
}

/// The status of `GET /readyz` on `node`.
pub(crate) async fn readiness(cluster: &TestCluster, node: &str) -> u16 {
    cluster.status_code(node, "/readyz").await
}
