//! Losing and restarting nodes: a new leader after the leader dies, a dead voter replaced by a
//! learner, a restarted node keeping its raft log.

use std::time::Instant;

use oort_e2e::eventually;

use crate::{CONVERGE, cluster, connect, members, status_field, wait_owner_everywhere};

/// The leader is SIGKILLed: the others elect a new leader, and a client connecting through a
/// survivor is registered (its 101 means committed) and found by every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_takes_over_and_writes_resume() {
    let (_nats, mut cluster) = cluster(&["n1", "n2", "n3"], 3, "").await;
    let leader = cluster.wait_converged(3, 3, CONVERGE).await;
    let killed_at = Instant::now();
    cluster.kill(&leader).await;
    let survivor = cluster.running()[0].clone();
    let new_leader = eventually(CONVERGE, "a new leader", || async {
        let leader_now = status_field(&cluster, &survivor, "leader").await;
        leader_now
            .as_str()
            .filter(|name| *name != leader)
            .map(str::to_owned)
    })
    .await;
    eprintln!(
        "new leader {new_leader} {:?} after killing {leader}",
        killed_at.elapsed()
    );
    // The dead node is removed after the node timeout; the two survivors remain voters.
    cluster.wait_converged(2, 2, CONVERGE).await;
    let _client = connect(&cluster, &survivor, "after-failover").await;
    wait_owner_everywhere(&cluster, "after-failover", Some(&survivor)).await;
}

/// In a five-node cluster a voter is SIGKILLed: after the node timeout it is removed and a
/// learner is promoted, so there are three voters again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_voter_is_replaced_by_a_learner() {
    let (_nats, mut cluster) = cluster(&["n1", "n2", "n3"], 3, "").await;
    cluster.wait_converged(3, 3, CONVERGE).await;
    cluster.add("n4", 3).await;
    cluster.add("n5", 3).await;
    let leader = cluster.wait_converged(5, 3, CONVERGE).await;
    let voter = ["n1", "n2", "n3"]
        .into_iter()
        .find(|n| *n != leader)
        .unwrap();
    cluster.kill(voter).await;
    cluster.wait_converged(4, 3, CONVERGE).await;
    let roles = members(&cluster, &leader).await;
    assert!(
        roles.iter().all(|(name, _)| name != voter),
        "{voter} was removed: {roles:?}"
    );
    let voters = roles.iter().filter(|(_, role)| role == "voter").count();
    assert_eq!(voters, 3, "a learner was promoted: {roles:?}");
}

/// A follower SIGKILLed and restarted within the node timeout keeps its raft log: right after
/// the restart it already knows entries from before, and it rejoins without an election.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_keeps_its_log_and_does_not_disturb_the_leader() {
    let (_nats, mut cluster) = cluster(&["n1", "n2", "n3"], 3, "").await;
    let leader = cluster.wait_converged(3, 3, CONVERGE).await;
    let follower = ["n1", "n2", "n3"]
        .into_iter()
        .find(|n| *n != leader)
        .unwrap();
    let _clients = [
        connect(&cluster, &leader, "k1").await,
        connect(&cluster, &leader, "k2").await,
    ];
    wait_owner_everywhere(&cluster, "k2", Some(&leader)).await;
    let term = status_field(&cluster, &leader, "term").await;
    let index_before = status_field(&cluster, follower, "last_log_index")
        .await
        .as_u64()
        .unwrap();
    cluster.kill(follower).await;
    cluster.start(follower).await;
    let index_after = status_field(&cluster, follower, "last_log_index")
        .await
        .as_u64()
        .unwrap_or(0);
    assert!(
        index_after >= index_before,
        "the log survived the restart: {index_after} < {index_before}"
    );
    cluster.wait_converged(3, 3, CONVERGE).await;
    assert_eq!(
        status_field(&cluster, &leader, "term").await,
        term,
        "no election was needed"
    );
    assert_eq!(
        crate::owner_seen_by(&cluster, follower, "k1")
            .await
            .as_deref(),
        Some(leader.as_str())
    );
}

/// Every node's view of the membership (checked after each change above) comes from the same
/// log: members reported by each running node agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_agree_across_nodes() {
    let (_nats, cluster) = cluster(&["n1", "n2", "n3"], 3, "").await;
    cluster.wait_converged(3, 3, CONVERGE).await;
    let reference = members(&cluster, "n1").await;
    for node in ["n2", "n3"] {
        assert_eq!(members(&cluster, node).await, reference, "{node}");
    }
}
