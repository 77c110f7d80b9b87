//! A barrier behind the directory writes a node has queued. A node's registrar commits one
//! write at a time, in rounds: the registrations it took, then the unregisters queued so far.
//! A registration made after another registration's 101 therefore goes in a later round than
//! every unregister queued before the first one: once the second is in every replica, those
//! unregisters were committed and applied everywhere before it (in a healthy cluster, where
//! the attempt succeeds).

use oort_e2e::WsClient;
use oort_e2e::cluster::TestCluster;

use crate::{connect, wait_owner_everywhere};

/// Connects two marker sessions on `node`, one after the other, and waits until every replica
/// holds the second. Returns the markers' clients (dropping them is harmless).
pub(crate) async fn behind_queued_writes(
    cluster: &TestCluster,
    node: &str,
    tag: &str,
) -> Vec<WsClient> {
    let first = connect(cluster, node, &format!("{tag}-barrier-1")).await;
    let second_key = format!("{tag}-barrier-2");
    let second = connect(cluster, node, &second_key).await;
    wait_owner_everywhere(cluster, &second_key, Some(node)).await;
    vec![first, second]
}
