//! Channels across nodes (docs/channels.md): a publish through any node reaches every
//! subscriber on every node once, NATS carries it only to the nodes holding subscribers, the
//! backend subscribes sessions held anywhere, and presence is counted cluster-wide.

use std::time::Duration;

use oort_e2e::cluster::{FAST_TIMINGS, TestCluster};
use oort_e2e::durable_client::{Data, DurableClient};
use oort_e2e::nats::NatsServer;
use oort_e2e::{WsClient, eventually};
use serde_json::{Value, json};

use crate::CONVERGE;

/// Three nodes on one monitored nats-server.
async fn three_nodes_monitored() -> (NatsServer, TestCluster) {
    let nats = NatsServer::start_monitored().await;
    let mut cluster = TestCluster::new(vec![nats.url()], FAST_TIMINGS).await;
    for name in ["n1", "n2", "n3"] {
        cluster.add(name, 3).await;
    }
    cluster.wait_converged(3, 3, CONVERGE).await;
    (nats, cluster)
}

async fn connect_in(cluster: &TestCluster, node: &str, key: &str, channels: &str) -> WsClient {
    WsClient::connect(
        &cluster
            .node(node)
            .ws_url(&format!("key={key}&channels={channels}")),
    )
    .await
}

async fn post(cluster: &TestCluster, node: &str, path: &str, body: &Value) -> Value {
    let response = cluster
        .http()
        .post(format!("{}{path}", cluster.node(node).api_url()))
        .body(body.to_string())
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), 200, "{path} {body}");
    serde_json::from_slice(&response.bytes().await.unwrap()).expect("JSON answer")
}

async fn presence(cluster: &TestCluster, node: &str, query: &str) -> Value {
    let response = cluster
        .http()
        .get(format!(
            "{}/v1/channels/{query}",
            cluster.node(node).api_url()
        ))
        .send()
        .await
        .expect("GET /v1/channels");
    assert_eq!(response.status(), 200);
    serde_json::from_slice(&response.bytes().await.unwrap()).expect("JSON answer")
}

/// Which nodes' NATS connections subscribe to `subject`.
async fn subscribed_nodes(nats: &NatsServer, subject: &str) -> Vec<String> {
    let mut nodes: Vec<String> = nats
        .subscriptions()
        .await
        .into_iter()
        .filter(|(_, subjects)| subjects.iter().any(|s| s == subject))
        .map(|(name, _)| name)
        .collect();
    nodes.sort();
    nodes
}

/// Subscribers on n1 and n2, a publish through n3 (which holds none): each subscriber gets it
/// once, the answer counts 3 sessions on 2 nodes, and only n1's and n2's NATS connections
/// subscribe to the channel's subject. A session on n2 subscribed through n3 by the backend
/// gets the next publish; unsubscribed through n1, it does not get the one after. Once the
/// last subscriber on n1 is gone, n1 lets go of the subject.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_through_any_node_reaches_every_subscriber_once() {
    let (nats, cluster) = three_nodes_monitored().await;
    let subject = format!("oort.{}.chan.room", cluster.name());
    let mut a = connect_in(&cluster, "n1", "a", "room").await;
    let mut b = connect_in(&cluster, "n2", "b", "room,lobby").await;
    let mut c = connect_in(&cluster, "n2", "c", "lobby").await;
    let mut d = connect_in(&cluster, "n3", "d", "elsewhere").await;

    // The subscribe answered (the connect completed) only once each node's interest was
    // committed; n3 learns of it when it applies the entry.
    eventually(CONVERGE, "n3 to see room's subscribers", || async {
        (presence(&cluster, "n3", "room").await["sessions"] == 2).then_some(())
    })
    .await;
    assert_eq!(
        subscribed_nodes(&nats, &subject).await,
        ["oort-n1", "oort-n2"],
        "only nodes with subscribers subscribe to the channel"
    );

    let answer = post(
        &cluster,
        "n3",
        "/v1/publish",
        &json!({ "channels": ["room", "lobby"], "data": "one" }),
    )
    .await;
    assert_eq!(
        (answer["sessions"].as_u64(), answer["nodes"].as_u64()),
        (Some(3), Some(2)),
        "{answer}"
    );
    assert_eq!(answer["unreachable_nodes"], json!([]), "{answer}");
    for client in [&mut a, &mut b, &mut c] {
        assert_eq!(client.recv_text().await, "one");
    }
    // b is in both channels and gets it once; d is in neither.
    assert!(b.nothing_within(Duration::from_millis(300)).await);
    assert!(d.nothing_within(Duration::from_millis(10)).await);

    // The backend subscribes c (on n2) through n3, then a publish through n1.
    let answer = post(
        &cluster,
        "n3",
        "/v1/subscribe",
        &json!({ "sessions": ["c", "ghost"], "channels": ["room"] }),
    )
    .await;
    assert_eq!(answer["results"][0]["status"], "ok", "{answer}");
    assert_eq!(answer["results"][1]["status"], "not_found", "{answer}");
    let answer = post(
        &cluster,
        "n1",
        "/v1/publish",
        &json!({ "channels": ["room"], "data": "two" }),
    )
    .await;
    assert_eq!(answer["sessions"], 3, "{answer}");
    for client in [&mut a, &mut b, &mut c] {
        assert_eq!(client.recv_text().await, "two");
    }

    // Unsubscribed through n1, c no longer gets room's messages.
    let answer = post(
        &cluster,
        "n1",
        "/v1/unsubscribe",
        &json!({ "sessions": ["c"], "channels": ["room"] }),
    )
    .await;
    assert_eq!(answer["results"][0]["status"], "ok", "{answer}");
    let answer = post(
        &cluster,
        "n2",
        "/v1/publish",
        &json!({ "channels": ["room"], "data": "three" }),
    )
    .await;
    assert_eq!(answer["sessions"], 2, "{answer}");
    assert_eq!(a.recv_text().await, "three");
    assert_eq!(b.recv_text().await, "three");
    assert!(c.nothing_within(Duration::from_millis(300)).await);

    // Presence from any node: every subscriber, with its node, in key order.
    let page = presence(&cluster, "n3", "room?limit=10").await;
    assert_eq!(page["sessions"], 2, "{page}");
    assert_eq!(
        page["members"],
        json!([{ "session": "a", "node": "n1" }, { "session": "b", "node": "n2" }])
    );

    // a leaves: n1 holds no subscriber of room, and lets go of its subject.
    drop(a);
    eventually(CONVERGE, "n1 to unsubscribe from room", || async {
        (subscribed_nodes(&nats, &subject).await == ["oort-n2"]).then_some(())
    })
    .await;
    let answer = post(
        &cluster,
        "n1",
        "/v1/publish",
        &json!({ "channels": ["room"], "data": "four" }),
    )
    .await;
    assert_eq!(
        (answer["sessions"].as_u64(), answer["nodes"].as_u64()),
        (Some(1), Some(1)),
        "{answer}"
    );
    assert_eq!(b.recv_text().await, "four");
}

/// An `oort.v1` session gets channel messages in its sequence, like any send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_messages_enter_an_oort_v1_sessions_sequence() {
    let (_nats, cluster) = three_nodes_monitored().await;
    let url = cluster.node("n2").ws_url("key=durable&channels=news");
    let mut client = DurableClient::connect(&url)
        .await
        .expect("an oort.v1 session");
    // Publishers count the nodes their replica knows to hold subscribers: wait for theirs.
    for node in ["n1", "n3"] {
        eventually(
            CONVERGE,
            &format!("{node} to see news's subscriber"),
            || async { (presence(&cluster, node, "news").await["sessions"] == 1).then_some(()) },
        )
        .await;
    }
    let answer = post(
        &cluster,
        "n1",
        "/v1/publish",
        &json!({ "channels": ["news"], "data": "first" }),
    )
    .await;
    assert_eq!(answer["sessions"], 1, "{answer}");
    let body = json!({ "sessions": ["durable"], "data": "second" });
    post(&cluster, "n3", "/v1/send", &body).await;
    let answer = post(
        &cluster,
        "n3",
        "/v1/publish",
        &json!({ "channels": ["news"], "data": "third" }),
    )
    .await;
    assert_eq!(answer["sessions"], 1, "{answer}");
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(client.recv().await);
    }
    let text = |s: &str| Data::Text(s.to_owned());
    assert_eq!(
        seen,
        [(1, text("first")), (2, text("second")), (3, text("third"))]
    );
}
