//! A session moving between nodes on resume, and what a crash still loses.

use oort_e2e::durable_client::{ConnectError, Data, DurableClient};
use oort_e2e::{CallbackKind, TIMEOUT, eventually};

use crate::{connect, connect_url, three_nodes, wait_until_away};

#[tokio::test]
async fn a_session_resumes_on_another_node_with_everything_sent_meanwhile() {
    let (_nats, cluster) = three_nodes().await;
    let mut client = connect(&cluster, "n1", "mover").await;
    assert_eq!(cluster.v1_send("n2", &["mover"], "m1").await, ["ok"]);
    assert_eq!(client.recv().await, (1, Data::Text("m1".into())));
    let position = client.drop_connection();
    wait_until_away(&cluster, "n1", "mover").await;
    // Sent through every node while the client is away: kept on n1.
    for (n, node) in ["n1", "n2", "n3", "n2"].into_iter().enumerate() {
        let data = format!("m{}", n + 2);
        assert_eq!(cluster.v1_send(node, &["mover"], &data).await, ["buffered"]);
    }
    // Resumed on n3: the directory now says n3, and the tail came from n1.
    let mut resumed = DurableClient::resume(&connect_url(&cluster, "n3"), &position)
        .await
        .expect("resumed on another node");
    assert_eq!(resumed.welcome_seq, 1);
    for seq in 2..=5 {
        assert_eq!(
            resumed.recv().await,
            (seq, Data::Text(format!("m{seq}"))),
            "in order, exactly once"
        );
    }
    // n3's replica applies the move once raft tells it the entry is committed, which may be
    // just after the leader answered the registration.
    eventually(
        TIMEOUT,
        "n3's replica to say n3 owns the session",
        || async {
            (cluster.owner_in_replica("n3", "mover").await.as_deref() == Some("n3")).then_some(())
        },
    )
    .await;
    // Sends through the old owner reach the new one.
    let status = cluster.v1_send("n1", &["mover"], "m6").await;
    assert_eq!(status, ["ok"]);
    assert_eq!(resumed.recv().await, (6, Data::Text("m6".into())));
    let established = cluster
        .backend
        .wait_for(CallbackKind::Establish, "mover", 2, TIMEOUT)
        .await;
    assert_eq!(established[1].header("x-oort-resumed"), Some("true"));
    assert!(
        cluster
            .backend
            .for_session(CallbackKind::Close, "mover")
            .is_empty()
    );
}

#[tokio::test]
async fn a_crashed_owner_means_a_reset_and_a_fresh_connect() {
    let (_nats, mut cluster) = three_nodes().await;
    let mut client = connect(&cluster, "n2", "crashed").await;
    assert_eq!(cluster.v1_send("n1", &["crashed"], "m1").await, ["ok"]);
    assert_eq!(client.recv().await.0, 1);
    let position = client.drop_connection();
    cluster.kill("n2").await;
    match DurableClient::resume(&connect_url(&cluster, "n1"), &position).await {
        Err(ConnectError::Reset(reason)) => assert_eq!(reason, "the session is over"),
        Err(other) => panic!("expected a reset, got {other:?}"),
        Ok(_) => panic!("a crashed owner's buffer cannot be resumed"),
    }
    // The client starts over through the connect callback, on a live node.
    let mut fresh = connect(&cluster, "n3", "crashed").await;
    assert_eq!(fresh.welcome_seq, 0);
    assert_eq!(cluster.v1_send("n1", &["crashed"], "again").await, ["ok"]);
    assert_eq!(fresh.recv().await, (1, Data::Text("again".into())));
}

/// A session in channels resumes on another node still in them: publishes through any node
/// reach it there, in its sequence, and presence names its new node.
#[tokio::test]
async fn a_session_keeps_its_channels_when_it_moves() {
    let (_nats, cluster) = three_nodes().await;
    let url = cluster.node("n1").ws_url("key=member&channels=news,sport");
    let mut client = DurableClient::connect(&url)
        .await
        .expect("an oort.v1 session");
    let publish = |node: &'static str, data: &'static str| {
        let cluster = &cluster;
        async move {
            let body = serde_json::json!({ "channels": ["news"], "data": data });
            let url = format!("{}/v1/publish", cluster.node(node).api_url());
            oort_e2e::try_json(cluster.http().post(url).body(body.to_string()))
                .await
                .expect("a publish answer")
        }
    };
    // A publisher counts the nodes its own replica knows to hold subscribers: wait until the
    // publishing node has applied the subscriber's node's interest (docs/channels.md).
    let seen_on = |node: &'static str, holder: &'static str| {
        let cluster = &cluster;
        async move {
            let expected = serde_json::json!([{ "session": "member", "node": holder }]);
            eventually(
                TIMEOUT,
                &format!("{node} to see member on {holder}"),
                || async {
                    let url = format!("{}/v1/channels/news", cluster.node(node).api_url());
                    let page = oort_e2e::try_json(cluster.http().get(url)).await?;
                    (page["members"] == expected).then_some(())
                },
            )
            .await;
        }
    };
    seen_on("n2", "n1").await;
    assert_eq!(publish("n2", "p1").await["sessions"], 1);
    assert_eq!(client.recv().await, (1, Data::Text("p1".into())));
    let position = client.drop_connection();
    wait_until_away(&cluster, "n1", "member").await;
    // Kept for the session while it is away.
    seen_on("n3", "n1").await;
    assert_eq!(publish("n3", "p2").await["sessions"], 1);
    let mut resumed = DurableClient::resume(&connect_url(&cluster, "n2"), &position)
        .await
        .expect("resumed on another node");
    assert_eq!(resumed.recv().await, (2, Data::Text("p2".into())));
    // Its channels moved with it: n1 sees it in them, on n2.
    seen_on("n1", "n2").await;
    let answer = publish("n1", "p3").await;
    assert_eq!(answer["sessions"], 1, "{answer}");
    assert_eq!(resumed.recv().await, (3, Data::Text("p3".into())));
    seen_on("n3", "n2").await;
}
