//! The directory's upkeep: unregistrations that could not commit are retried until they are
//! applied, the node table forgets nodes gone for good, a second process with a node's id
//! stays out, and a node the cluster declared dead cannot acknowledge a registration the
//! directory refused.

use std::time::Duration;

use oort_e2e::cluster::NodeExtras;
use oort_e2e::{WsClient, eventually};

use crate::{CONVERGE, cluster, connect, owner_seen_by, status_field, v1_send};

/// A client closes while the cluster has no quorum: its unregistration cannot commit. Once the
/// quorum is back it is committed anyway, and no replica lists the session any more. Before, a
/// failed unregistration was dropped and the entry stayed until its node died.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unregistration_that_failed_is_retried_until_applied() {
    let (_nats, mut cluster) = cluster(&["n1", "n2", "n3"], 3, "").await;
    let leader = cluster.wait_converged(3, 3, CONVERGE).await;
    // The session lives on a follower, and the other two (the leader among them) die: its
    // unregistration then reaches no leader's log at all (a write appended to a leader's log
    // would still commit once the quorum is back, retried or not).
    let holder = ["n1", "n2", "n3"]
        .into_iter()
        .find(|n| *n != leader)
        .unwrap();
    let others: Vec<&str> = ["n1", "n2", "n3"]
        .into_iter()
        .filter(|n| *n != holder)
        .collect();
    let client = connect(&cluster, holder, "short-lived").await;
    eventually(CONVERGE, "every replica to list the session", || async {
        for node in ["n1", "n2", "n3"] {
            owner_seen_by(&cluster, node, "short-lived").await?;
        }
        Some(())
    })
    .await;
    for node in &others {
        cluster.kill(node).await;
    }
    client.close(1000).await;
    cluster
        .node(holder)
        .process()
        .wait_for_line("unregistrations not committed", CONVERGE)
        .await;
    for node in &others {
        cluster.start(node).await;
    }
    cluster.wait_converged(3, 3, CONVERGE).await;
    eventually(
        CONVERGE,
        "the unregistration to reach every replica",
        || async {
            for node in ["n1", "n2", "n3"] {
                if owner_seen_by(&cluster, node, "short-lived").await.is_some() {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
}

fn directory_nodes(status: &serde_json::Value) -> Vec<String> {
    status["directory_nodes"]
        .as_array()
        .map(|nodes| {
            nodes
                .iter()
                .filter_map(|n| n.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A node that left is down in the directory's node table; once it has been silent for six
/// node timeouts, the table forgets it, so it does not grow with every node that ever existed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_table_forgets_nodes_gone_for_good() {
    let (_nats, mut cluster) = cluster(&["n1", "n2", "n3"], 3, "").await;
    cluster.wait_converged(3, 3, CONVERGE).await;
    cluster.add("n4", 3).await;
    cluster.wait_converged(4, 3, CONVERGE).await;
    let status = cluster.stop("n4").await;
    assert!(status.success());
    let listed = directory_nodes(&cluster.status("n1").await.unwrap());
    assert!(
        listed.contains(&"n4".to_owned()),
        "n4 is listed, down: {listed:?}"
    );
    // Six node timeouts of 3 s, plus a tick or two.
    eventually(Duration::from_secs(40), "n4 to be forgotten", || async {
        let listed = directory_nodes(&cluster.status("n1").await?);
        (!listed.contains(&"n4".to_owned()) && listed.len() == 3).then_some(())
    })
    .await;
}

/// A fourth process configured with n2's id (and its own data directory) joins the cluster's
/// NATS: it stays not ready and says why, while n2 and the cluster carry on; once n2 has left,
/// it takes the id over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_with_a_nodes_id_stays_out_until_the_first_is_gone() {
    let (_nats, mut cluster) = cluster(&["n1", "n2", "n3"], 3, "").await;
    cluster.wait_converged(3, 3, CONVERGE).await;
    let mut client = connect(&cluster, "n2", "on-n2").await;
    let extras = NodeExtras {
        env: vec![("OORT_CLUSTER__NODE_ID".into(), "n2".into())],
        ..NodeExtras::default()
    };
    cluster.add_with("impostor", 3, extras).await;
    cluster
        .node("impostor")
        .process()
        .wait_for_line("another process is running with this node_id", CONVERGE)
        .await;
    assert_eq!(status_field(&cluster, "impostor", "ready").await, false);
    // n2 is unaffected: still ready, still routing.
    assert_eq!(
        v1_send(&cluster, "n1", &["on-n2"], "still n2").await,
        ["ok"]
    );
    assert_eq!(client.recv_text().await, "still n2");
    assert_eq!(status_field(&cluster, "n2", "ready").await, true);
    // The first n2 leaves; the second takes the id over.
    assert!(cluster.stop("n2").await.success());
    eventually(CONVERGE, "the second process to be ready", || async {
        (status_field(&cluster, "impostor", "ready").await == true).then_some(())
    })
    .await;
}

/// A node frozen (SIGSTOP) for longer than the node timeout is declared dead: its sessions are
/// purged and it is taken out of the membership. Thawed, it still believes it is up for a
/// moment. Every connect it acknowledges (101) in that time must be reachable through another
/// node: a registration the directory refused (the node is down there) gets 503, never 101.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_declared_dead_acknowledges_no_registration_the_directory_refused() {
    let (_nats, cluster) = cluster(&["n1", "n2", "n3"], 3, "").await;
    let leader = cluster.wait_converged(3, 3, CONVERGE).await;
    let frozen = ["n1", "n2", "n3"]
        .into_iter()
        .find(|n| *n != leader)
        .unwrap();
    let witness = ["n1", "n2", "n3"]
        .into_iter()
        .find(|n| *n != frozen)
        .unwrap();
    cluster.node(frozen).process().signal(19);
    eventually(CONVERGE, "the frozen node to be declared dead", || async {
        let status = cluster.status(witness).await?;
        let listed = status["members"]
            .as_array()?
            .iter()
            .any(|m| m["node"] == frozen && (m["role"] == "voter" || m["role"] == "learner"));
        (!listed).then_some(())
    })
    .await;
    cluster.node(frozen).process().signal(18);
    let mut acknowledged = 0;
    let mut refused = 0;
    let thawed = std::time::Instant::now();
    // Until the node serves again (it rejoins and comes up anew), every acknowledged connect
    // is checked.
    for attempt in 0.. {
        if acknowledged >= 3 {
            break;
        }
        assert!(
            thawed.elapsed() < CONVERGE,
            "the node serves connects again"
        );
        let key = format!("thawed-{attempt}");
        let url = cluster.node(frozen).ws_url(&format!("key={key}"));
        match WsClient::connect_with(&url, &[]).await {
            Ok((mut client, _)) => {
                acknowledged += 1;
                let marker = format!("reachable {key}");
                let statuses = v1_send(&cluster, witness, &[&key], &marker).await;
                assert_eq!(
                    statuses,
                    ["ok"],
                    "{key} was acknowledged, so it is reachable"
                );
                assert_eq!(client.recv_text().await, marker);
            }
            Err(_) => {
                refused += 1;
                // Pacing, not synchronisation: a few attempts a second while it rejoins.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    eprintln!("after the thaw: {acknowledged} connects acknowledged, {refused} refused");
    assert!(
        acknowledged > 0,
        "the node came back and serves connects again"
    );
}
