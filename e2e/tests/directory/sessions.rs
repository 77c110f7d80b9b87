//! The directory's contents: a late joiner catches up through a snapshot, a dead node's
//! sessions are purged, and a key registered on another node stays there.

use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use oort_e2e::eventually;

use crate::barrier::behind_queued_writes;
use crate::{CONVERGE, cluster, connect, status_field, wait_owner_everywhere};

/// With snapshots every 20 entries, enough registrations purge the leader's log behind a
/// snapshot; a node that joins afterwards can only catch up through the snapshot, and then
/// knows the sessions registered before it existed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_joiner_catches_up_through_a_snapshot() {
    let (_nats, mut cluster) = cluster(&["n1", "n2", "n3"], 3, "  snapshot_every: 20\n").await;
    let leader = cluster.wait_converged(3, 3, CONVERGE).await;
    let mut clients = Vec::new();
    for index in 0..60 {
        // One at a time, so each registration is its own log entry.
        clients.push(connect(&cluster, &leader, &format!("early-{index}")).await);
    }
    let purged = eventually(
        CONVERGE,
        "the leader to purge its log behind a snapshot",
        || async {
            status_field(&cluster, &leader, "purged_index")
                .await
                .as_u64()
                .filter(|index| *index > 0)
        },
    )
    .await;
    cluster.add("late", 3).await;
    cluster.wait_converged(4, 3, CONVERGE).await;
    let applied = status_field(&cluster, "late", "applied_index")
        .await
        .as_u64()
        .unwrap_or(0);
    assert!(
        applied > purged,
        "the late joiner applied past the purged log ({applied} <= {purged})"
    );
    assert!(
        status_field(&cluster, "late", "snapshot_index")
            .await
            .as_u64()
            .is_some(),
        "it holds a snapshot"
    );
    for index in [0, 30, 59] {
        let key = format!("early-{index}");
        assert_eq!(
            crate::owner_seen_by(&cluster, "late", &key)
                .await
                .as_deref(),
            Some(leader.as_str()),
            "{key}"
        );
    }
    drop(clients);
}

/// A node is SIGKILLed with clients on it: after the node timeout every other node answers 404
/// for its sessions, and lists it as not up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_sessions_are_purged() {
    let (_nats, mut cluster) = cluster(&["n1", "n2", "n3"], 3, "").await;
    cluster.wait_converged(3, 3, CONVERGE).await;
    let _clients = [
        connect(&cluster, "n3", "on-n3-a").await,
        connect(&cluster, "n3", "on-n3-b").await,
    ];
    let _survivor = connect(&cluster, "n1", "on-n1").await;
    wait_owner_everywhere(&cluster, "on-n3-b", Some("n3")).await;
    cluster.kill("n3").await;
    wait_owner_everywhere(&cluster, "on-n3-a", None).await;
    wait_owner_everywhere(&cluster, "on-n3-b", None).await;
    wait_owner_everywhere(&cluster, "on-n1", Some("n1")).await;
    let status = cluster.status("n1").await.unwrap();
    let n3_up = status["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["node"] == "n3")
        .any(|m| m["up"] == true);
    assert!(!n3_up, "n3 is not up any more: {status}");
}

/// Key K connects on n1, then again on n2: the later registration wins. n1 closes the older
/// connection (1000), and whatever n1 queued for the key afterwards leaves n2's registration in
/// every replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_registered_on_another_node_closes_the_older_connection_and_stays_there() {
    let (_nats, cluster) = cluster(&["n1", "n2", "n3"], 3, "").await;
    cluster.wait_converged(3, 3, CONVERGE).await;
    let mut older = connect(&cluster, "n1", "moving").await;
    wait_owner_everywhere(&cluster, "moving", Some("n1")).await;
    let _newer = connect(&cluster, "n2", "moving").await;
    let frame = older
        .closed()
        .await
        .expect("the older connection gets a close frame");
    assert_eq!(frame.code, CloseCode::Normal);
    let _barrier = behind_queued_writes(&cluster, "n1", "moving").await;
    for node in cluster.running() {
        assert_eq!(
            crate::owner_seen_by(&cluster, &node, "moving")
                .await
                .as_deref(),
            Some("n2"),
            "{node}'s replica"
        );
    }
}
