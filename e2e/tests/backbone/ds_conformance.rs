//! The official Durable Streams conformance suite against three nodes at once: each request of
//! the suite goes to the next node in turn, so one stream is created through one node, appended
//! to through another and read through the third (see e2e/durable-streams/conformance.test.mjs).
//! Any node must serve any stream as if it were the only one. Optional groups (forks,
//! idempotent producers, subscriptions) are printed, not required.

use std::time::Duration;

use oort_e2e::cluster::{FAST_TIMINGS, TestCluster};
use oort_e2e::conformance::Suite;
use oort_e2e::nats::NatsServer;

use crate::CONVERGE;

#[tokio::test]
async fn oort_cluster_passes_the_conformance_suite_through_every_node() {
    let nats = NatsServer::start().await;
    let mut cluster = TestCluster::new(vec![nats.url()], FAST_TIMINGS).await;
    let token = format!("{:032x}", rand::random::<u128>());
    cluster.set_api_token(&token);
    cluster
        .top_level
        .push_str("streams:\n  long_poll_timeout: 1s\n");
    for name in ["n1", "n2", "n3"] {
        cluster.add(name, 3).await;
    }
    cluster.wait_converged(3, 3, CONVERGE).await;

    let urls: Vec<String> = ["n1", "n2", "n3"]
        .into_iter()
        .map(|name| cluster.node(name).api_url())
        .collect();
    let report = Suite::new(urls)
        .token(&token)
        .long_poll(Duration::from_secs(1))
        .run()
        .await
        .expect("the suite runs");
    // Oort builds idempotent producers; forks and subscriptions are known gaps.
    report.assert_passed_with(&["Idempotent Producer"]);
}
