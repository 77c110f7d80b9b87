//! A send for a session that moved: the sending node's replica still names the old owner, the
//! old owner answers `not_found`, and the sender asks the leader once more and delivers to the
//! new owner. A session that ended instead stays `not_found`.
//!
//! The stale replica is made, not waited for: the sender is a learner whose NATS user loses
//! the right to subscribe to its raft subject (the server drops the subscription on reload),
//! so it gets no more appends while it still sends, looks up and delivers as before.

use oort_e2e::WsClient;
use oort_e2e::cluster::{FAST_TIMINGS, NodeExtras, TestCluster};
use oort_e2e::eventually;
use oort_e2e::nats::NatsServer;
use oort_e2e::nats::node_users::{Fence, NodeUsers};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::{CONVERGE, connect, owner_in_replica, v1_send};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_to_a_session_that_moved_is_retried_at_the_leader_and_delivered() {
    let names = ["n1", "n2", "n3"];
    let users = NodeUsers::new(&names);
    let mut nats = NatsServer::start_with(&users.config(&[])).await;
    let mut cluster = TestCluster::new(vec![nats.url()], FAST_TIMINGS).await;
    for name in names {
        // Two voters: n3 joins as a learner, which never campaigns when appends stop.
        let extras = NodeExtras {
            cluster_lines: users.cluster_lines(name),
            env: vec![("OORT_CLUSTER__VOTERS".to_owned(), "2".to_owned())],
        };
        cluster.add_with(name, 2, extras).await;
        if name == "n2" {
            cluster.wait_converged(2, 2, CONVERGE).await;
        }
    }
    cluster.wait_converged(3, 2, CONVERGE).await;
    let mut older = connect(&cluster, "n1", "moving").await;
    let ending = connect(&cluster, "n1", "ending").await;
    eventually(CONVERGE, "n3's replica to know both sessions", || async {
        for key in ["moving", "ending"] {
            (owner_in_replica(&cluster, "n3", key).await.as_deref() == Some("n1")).then_some(())?;
        }
        Some(())
    })
    .await;

    // n3's replica stops here.
    let raft_subjects = format!("oort.{}.raft.>", cluster.name());
    let fence = Fence {
        subscribe: vec![raft_subjects],
        ..Fence::default()
    };
    nats.reconfigure(&users.config(&[("n3", fence)])).await;
    // "moving" moves to n2: n1 closes the older connection once it applied the new
    // registration, so from then on n1 no longer holds it. "ending" ends on n1.
    let mut newer = WsClient::connect(&cluster.node("n2").ws_url("key=moving")).await;
    let frame = older
        .closed()
        .await
        .expect("the older connection is closed");
    assert_eq!(frame.code, CloseCode::Normal);
    let answer = ending.close(1000).await.expect("n1 answers the close");
    assert_eq!(answer.code, CloseCode::Normal);
    eventually(CONVERGE, "the voters to drop the ended session", || async {
        for node in ["n1", "n2"] {
            owner_in_replica(&cluster, node, "ending")
                .await
                .is_none()
                .then_some(())?;
        }
        Some(())
    })
    .await;
    for key in ["moving", "ending"] {
        assert_eq!(
            owner_in_replica(&cluster, "n3", key).await.as_deref(),
            Some("n1"),
            "n3's replica is stale for {key} (else the test proves nothing)"
        );
    }

    assert_eq!(
        v1_send(&cluster, "n3", &["moving", "ending"], "found again").await,
        ["ok", "not_found"],
        "moved: found at the leader and delivered; ended: not found there either"
    );
    assert_eq!(newer.recv_text().await, "found again");
}
