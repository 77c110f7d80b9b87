//! A session that ends normally in a cluster leaves the directory on every node.

use oort_e2e::TIMEOUT;
use oort_e2e::backend::CallbackKind;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::api::v1_send;
use crate::{CONVERGE, cluster, connect, wait_owner_everywhere};

/// A client of n2 closes with 1000: n2 answers the close, sends the close callback, and every
/// node's replica drops the session; a send through another node then answers `not_found`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_normal_close_removes_the_session_from_every_replica() {
    let (_nats, cluster) = cluster(&["n1", "n2", "n3"], 3, "").await;
    cluster.wait_converged(3, 3, CONVERGE).await;
    let client = connect(&cluster, "n2", "goodbye").await;
    wait_owner_everywhere(&cluster, "goodbye", Some("n2")).await;
    let answer = client.close(1000).await.expect("n2 answers the close");
    assert_eq!(answer.code, CloseCode::Normal);
    cluster
        .backend
        .wait_for(CallbackKind::Close, "goodbye", 1, TIMEOUT)
        .await;
    wait_owner_everywhere(&cluster, "goodbye", None).await;
    assert_eq!(
        v1_send(&cluster, "n1", &["goodbye"], "too late").await,
        ["not_found"]
    );
}
