//! Formation and growth: bootstrap_expect nodes form exactly one cluster; later nodes join as
//! learners.

use std::collections::BTreeSet;
use std::time::Instant;

use crate::{CONVERGE, cluster, members};

/// Three runs of three nodes started together: each time one leader, the same three voters
/// everywhere, every node ready. Two clusters would show as two leaders or two member sets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_form_one_cluster_every_time() {
    for run in 0..3 {
        let started = Instant::now();
        let (_nats, cluster) = cluster(&["n1", "n2", "n3"], 3, "").await;
        let leader = cluster.wait_converged(3, 3, CONVERGE).await;
        eprintln!(
            "run {run}: formed with leader {leader} in {:?}",
            started.elapsed()
        );
        let expected: BTreeSet<(String, String)> = ["n1", "n2", "n3"]
            .iter()
            .map(|n| (n.to_string(), "voter".to_string()))
            .collect();
        for node in ["n1", "n2", "n3"] {
            let seen: BTreeSet<(String, String)> =
                members(&cluster, node).await.into_iter().collect();
            assert_eq!(seen, expected, "run {run}: {node}'s members");
        }
    }
}

/// A fourth and a fifth node join as learners; the voters stay three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn later_nodes_join_as_learners() {
    let (_nats, mut cluster) = cluster(&["n1", "n2", "n3"], 3, "").await;
    cluster.wait_converged(3, 3, CONVERGE).await;
    cluster.add("n4", 3).await;
    cluster.add("n5", 3).await;
    cluster.wait_converged(5, 3, CONVERGE).await;
    for node in ["n1", "n4", "n5"] {
        let roles = members(&cluster, node).await;
        let learners: Vec<&str> = roles
            .iter()
            .filter(|(_, role)| role == "learner")
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(
            learners,
            ["n4", "n5"],
            "{node} sees the newcomers as learners"
        );
    }
}
