//! What a send says when the owning node does not answer: `owner_timeout` when the owner may
//! have delivered (it is there but silent: frozen with SIGSTOP), so a retry could deliver twice;
//! `owner_unreachable`, at once, when it certainly did not (the owner is gone: SIGKILL).

use std::time::{Duration, Instant};

use crate::{connect, three_nodes, v1_send};

/// FAST_TIMINGS' route timeout.
const ROUTE_TIMEOUT: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_owner_is_a_timeout_and_a_gone_one_is_unreachable_at_once() {
    let (_nats, mut cluster) = three_nodes().await;
    let _client = connect(&cluster, "n3", "on-n3").await;
    cluster.node("n3").process().signal(19);
    let asked = Instant::now();
    let statuses = v1_send(&cluster, "n1", &["on-n3"], "into the void").await;
    let waited = asked.elapsed();
    cluster.node("n3").process().signal(18);
    assert_eq!(statuses, ["owner_timeout"]);
    assert!(
        waited >= ROUTE_TIMEOUT,
        "it waited for the owner: {waited:?}"
    );

    cluster.kill("n3").await;
    let asked = Instant::now();
    let statuses = v1_send(&cluster, "n1", &["on-n3"], "to nobody").await;
    let waited = asked.elapsed();
    assert_eq!(statuses, ["owner_unreachable"]);
    // NATS answers "no responders" as soon as the owner's connection is gone; half the route
    // timeout leaves room for a loaded machine and still tells the two apart.
    assert!(waited < ROUTE_TIMEOUT / 2, "answered at once: {waited:?}");
}
