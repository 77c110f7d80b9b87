//! A node cut off from NATS while it runs: it is not ready while cut off but still serves its
//! own clients; the others declare it dead after the node timeout and purge its sessions;
//! when NATS is back it sees its own `NodeDown`, closes its clients with 1012 (so they
//! reconnect to a live node), and rejoins the cluster with a new epoch.

use oort_e2e::cluster::{FAST_TIMINGS, NodeExtras, TestCluster};
use oort_e2e::nats::NatsServer;
use oort_e2e::{TIMEOUT, WsClient, eventually};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::api::{readiness, v1_send};
use crate::{CONVERGE, connect, members, owner_seen_by, wait_owner_everywhere};

/// Three NATS servers in one NATS cluster, each node on its own: killing one server cuts off
/// exactly one node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_nats_is_declared_dead_closes_its_clients_with_1012_and_rejoins() {
    let names = ["n1", "n2", "n3"];
    let mut servers = NatsServer::cluster(3).await;
    let urls: Vec<String> = servers.iter().map(NatsServer::url).collect();
    let mut cluster = TestCluster::new(urls.clone(), FAST_TIMINGS).await;
    for (name, url) in names.iter().zip(&urls) {
        let extras = NodeExtras {
            env: vec![("OORT_CLUSTER__NATS".to_owned(), url.clone())],
            ..NodeExtras::default()
        };
        cluster.add_with(name, 3, extras).await;
    }
    let leader = cluster.wait_converged(3, 3, CONVERGE).await;
    // A follower, so that this is not a leader election too.
    let index = names.iter().position(|name| *name != leader).unwrap();
    let cut = names[index];
    let others: Vec<&str> = names.iter().copied().filter(|n| *n != cut).collect();
    let mut stranded = connect(&cluster, cut, "stranded").await;
    let mut elsewhere = connect(&cluster, others[0], "elsewhere").await;
    wait_owner_everywhere(&cluster, "stranded", Some(cut)).await;

    servers[index].kill().await;
    eventually(TIMEOUT, "the cut-off node to report not ready", || async {
        (readiness(&cluster, cut).await == 503).then_some(())
    })
    .await;
    assert_eq!(
        v1_send(&cluster, cut, &["stranded"], "local while cut off").await,
        ["ok"],
        "a node without NATS still serves its own sessions"
    );
    assert_eq!(stranded.recv_text().await, "local while cut off");

    // The others declare it dead: out of the membership, its sessions purged.
    eventually(CONVERGE, "the others to drop the cut-off node", || async {
        for node in &others {
            if members(&cluster, node).await.iter().any(|(n, _)| n == cut) {
                return None;
            }
            if owner_seen_by(&cluster, node, "stranded").await.is_some() {
                return None;
            }
        }
        Some(())
    })
    .await;
    // It cannot know yet: its client is still served (the marker is the next frame).
    assert_eq!(
        v1_send(&cluster, cut, &["stranded"], "still here").await,
        ["ok"]
    );
    assert_eq!(stranded.recv_text().await, "still here");

    servers[index].restart().await;
    let frame = stranded
        .closed()
        .await
        .expect("a close frame once the node learns it was declared dead");
    assert_eq!(frame.code, CloseCode::Restart, "1012: reconnect elsewhere");

    // It rejoins: ready, a member again, and its new clients are found everywhere.
    cluster.wait_converged(3, 3, CONVERGE).await;
    let mut back = WsClient::connect(&cluster.node(cut).ws_url("key=back")).await;
    wait_owner_everywhere(&cluster, "back", Some(cut)).await;
    assert_eq!(
        v1_send(&cluster, others[0], &["back", "elsewhere"], "welcome back").await,
        ["ok", "ok"]
    );
    assert_eq!(back.recv_text().await, "welcome back");
    assert_eq!(elsewhere.recv_text().await, "welcome back");
    // The session purged while it was cut off did not come back with it.
    for node in cluster.running() {
        assert_eq!(
            owner_seen_by(&cluster, &node, "stranded").await,
            None,
            "{node}'s replica"
        );
    }
}
