//! A registration is acknowledged only after raft committed it: a client connecting to a
//! leader that lost its quorum is refused with 503, never upgraded, and the entry its
//! registration left in the leader's log does not outlive the refusal once the quorum is back.

use oort_e2e::cluster::{FAST_TIMINGS, NodeExtras, TestCluster};
use oort_e2e::nats::NatsServer;
use oort_e2e::{CallbackKind, WsClient};
use tokio_tungstenite::tungstenite::Error;

use crate::barrier::behind_queued_writes;
use crate::{CONVERGE, owner_seen_by};

const SIGSTOP: i32 = 19;
const SIGCONT: i32 = 18;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_to_a_leader_without_a_quorum_gets_503_and_leaves_no_entry() {
    let nats = NatsServer::start().await;
    let mut cluster = TestCluster::new(vec![nats.url()], FAST_TIMINGS).await;
    for name in ["n1", "n2", "n3"] {
        // A registration gives up after twice the route timeout (2 s here). The followers are
        // stopped that long: well within the node timeout (nobody is removed) and the leader's
        // lease (8 s, twice the election timeout), so when they resume they follow the same
        // leader instead of electing another, and the entry it appended without a quorum is
        // committed after all.
        let env = [
            ("OORT_CLUSTER__NODE_TIMEOUT", "60s"),
            ("OORT_CLUSTER__ELECTION_TIMEOUT", "4s"),
            ("OORT_CLUSTER__ROUTE_TIMEOUT", "1s"),
        ];
        let extras = NodeExtras {
            env: env.map(|(k, v)| (k.to_owned(), v.to_owned())).to_vec(),
            ..NodeExtras::default()
        };
        cluster.add_with(name, 3, extras).await;
    }
    let leader = cluster.wait_converged(3, 3, CONVERGE).await;
    let followers: Vec<String> = cluster
        .running()
        .into_iter()
        .filter(|name| *name != leader)
        .collect();
    for follower in &followers {
        cluster.node(follower).process().signal(SIGSTOP);
    }

    let url = cluster.node(&leader).ws_url("key=no-quorum");
    match WsClient::connect_with(&url, &[]).await {
        Err(Error::Http(response)) => assert_eq!(
            response.status(),
            503,
            "refused as unavailable: {response:?}"
        ),
        Ok((_, response)) => panic!("upgraded without a quorum: {response:?}"),
        Err(other) => panic!("expected a 503, got {other}"),
    }
    let asked = cluster
        .backend
        .of_kind(CallbackKind::Connect)
        .into_iter()
        .filter(|connect| connect.uri.query() == Some("key=no-quorum"))
        .count();
    assert_eq!(
        asked, 1,
        "the backend accepted the session: only the missing commit refused it"
    );

    for follower in &followers {
        cluster.node(follower).process().signal(SIGCONT);
    }
    assert_eq!(
        cluster.wait_converged(3, 3, CONVERGE).await,
        leader,
        "the same leader, so the entry it appended is committed now"
    );
    // The refused session is in no replica once the writes the node queued since are applied:
    // its withdrawal followed the late entry.
    let _barrier = behind_queued_writes(&cluster, &leader, "quorum-back").await;
    for node in cluster.running() {
        assert_eq!(
            owner_seen_by(&cluster, &node, "no-quorum").await,
            None,
            "{node}'s replica holds a session whose client was refused"
        );
    }
}
