//! A stale unregister never removes a newer registration, across nodes. The race that makes
//! an unregister stale is forced rather than hoped for: node F's NATS user loses the right to
//! publish control requests, so the unregister of a session that ended on F waits in F's queue
//! while the same key registers on node G; then F is let through and its unregister, now older
//! than G's registration, is committed.

use oort_e2e::TIMEOUT;
use oort_e2e::backend::CallbackKind;
use oort_e2e::cluster::{FAST_TIMINGS, NodeExtras, TestCluster};
use oort_e2e::nats::NatsServer;
use oort_e2e::nats::node_users::{Fence, NodeUsers};

use crate::{CONVERGE, connect, owner_seen_by, wait_owner_everywhere};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_unregister_committed_after_a_newer_registration_elsewhere_is_ignored() {
    let names = ["n1", "n2", "n3"];
    let users = NodeUsers::new(&names);
    let mut nats = NatsServer::start_with(&users.config(&[])).await;
    let mut cluster = TestCluster::new(vec![nats.url()], FAST_TIMINGS).await;
    for name in names {
        let extras = NodeExtras {
            cluster_lines: users.cluster_lines(name),
            ..NodeExtras::default()
        };
        cluster.add_with(name, 3, extras).await;
    }
    let leader = cluster.wait_converged(3, 3, CONVERGE).await;
    // Neither is the leader, which commits its own writes without a control request.
    let followers: Vec<String> = cluster
        .running()
        .into_iter()
        .filter(|name| *name != leader)
        .collect();
    let (fenced, other) = (followers[0].as_str(), followers[1].as_str());
    let moving = connect(&cluster, fenced, "moving").await;
    // A witness: its unregister queues behind "moving"'s, so once it is gone from a replica,
    // "moving"'s unregister has been applied there too.
    let witness = connect(&cluster, fenced, "witness").await;
    wait_owner_everywhere(&cluster, "moving", Some(fenced)).await;
    wait_owner_everywhere(&cluster, "witness", Some(fenced)).await;

    // F cannot send directory writes to the leader any more.
    let control_subjects = format!("oort.{}.ctl.>", cluster.name());
    let fence = Fence {
        publish: vec![control_subjects],
        ..Fence::default()
    };
    nats.reconfigure(&users.config(&[(fenced, fence)])).await;
    // Both sessions end normally on F. The close callback comes after the unregister was
    // queued, so both unregisters now wait behind the fence.
    for (key, client) in [("moving", moving), ("witness", witness)] {
        client.close(1000).await;
        cluster
            .backend
            .wait_for(CallbackKind::Close, key, 1, TIMEOUT)
            .await;
    }
    assert_eq!(
        owner_seen_by(&cluster, &leader, "moving").await.as_deref(),
        Some(fenced),
        "the fence held F's unregister back (else the test proves nothing)"
    );
    // The key registers on G: its 101 means the registration is committed, so F's queued
    // unregister of the same key is older than it.
    let _newer = connect(&cluster, other, "moving").await;

    // F is let through: its retried unregisters are committed now, after G's registration.
    nats.reconfigure(&users.config(&[])).await;
    wait_owner_everywhere(&cluster, "witness", None).await;
    for node in cluster.running() {
        assert_eq!(
            owner_seen_by(&cluster, &node, "moving").await.as_deref(),
            Some(other),
            "{node}'s replica after the stale unregister was applied"
        );
    }
}
