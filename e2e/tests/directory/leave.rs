//! A graceful leave: on SIGTERM a node delivers what is queued for its clients, closes them
//! with 1001, and asks the leader to take it out, so the cluster forgets it and its sessions
//! at once rather than after the node timeout.

use oort_e2e::WsClient;
use oort_e2e::cluster::{FAST_TIMINGS, NodeExtras, TestCluster};
use oort_e2e::nats::NatsServer;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::api::v1_send;
use crate::{CONVERGE, members, wait_owner_everywhere};

/// n1 and n2 are the voters, n3 a learner with a client whose queue is full of messages (sent
/// through n1) when n3 gets SIGTERM. The client reads every one, then Close 1001; n3 exits
/// cleanly, and the others drop it from the membership and its session from their replicas.
/// The node timeout is 60 s and every wait here gives up after 30 s: only the leave can have
/// removed n3 in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_leave_delivers_what_is_queued_and_is_done_long_before_the_node_timeout() {
    let nats = NatsServer::start().await;
    let mut cluster = TestCluster::new(vec![nats.url()], FAST_TIMINGS).await;
    let env = [
        ("OORT_CLUSTER__NODE_TIMEOUT", "60s"),
        ("OORT_CLUSTER__VOTERS", "2"),
    ];
    for name in ["n1", "n2", "n3"] {
        let extras = NodeExtras {
            env: env.map(|(k, v)| (k.to_owned(), v.to_owned())).to_vec(),
            ..NodeExtras::default()
        };
        cluster.add_with(name, 2, extras).await;
        if name == "n2" {
            cluster.wait_converged(2, 2, CONVERGE).await;
        }
    }
    cluster.wait_converged(3, 2, CONVERGE).await;
    assert!(
        members(&cluster, "n1")
            .await
            .contains(&("n3".to_owned(), "learner".to_owned())),
        "n3 is the learner"
    );
    // The client reads nothing until the drain began, and its small receive buffer keeps the
    // kernel from taking much: messages go to n3's queue until it is full, so when n3 gets
    // SIGTERM its queue holds a megabyte of them.
    let url = cluster.node("n3").ws_url("key=queued");
    let mut client = WsClient::connect_with_receive_buffer(&url, 4096).await;
    let message = |number: usize| format!("m{number}-{}", "x".repeat(256 * 1024));
    let mut accepted = 0;
    loop {
        match v1_send(&cluster, "n1", &["queued"], &message(accepted)).await[0].as_str() {
            "ok" => accepted += 1,
            "queue_full" => break,
            other => panic!("message {accepted}: {other}"),
        }
        assert!(accepted < 200, "n3's queue never filled");
    }
    let stop = tokio::spawn(async move {
        let status = cluster.stop("n3").await;
        (cluster, status)
    });
    for number in 0..accepted {
        assert!(
            client.recv_text().await == message(number),
            "message {number}"
        );
    }
    let frame = client
        .closed()
        .await
        .expect("a close frame after the queue");
    assert_eq!(frame.code, CloseCode::Away);
    let (cluster, status) = stop.await.expect("the stop task");
    assert!(status.success(), "n3 exits cleanly: {status:?}");
    cluster.wait_converged(2, 2, CONVERGE).await;
    for node in ["n1", "n2"] {
        let listed = members(&cluster, node).await;
        assert!(
            listed.iter().all(|(name, _)| name != "n3"),
            "{node} lists {listed:?}"
        );
    }
    wait_owner_everywhere(&cluster, "queued", None).await;
}
