//! Delivery through any node: every message exactly once and in order, and one send naming a
//! thousand sessions spread over three nodes.

use futures_util::future::join_all;

use crate::{connect, kb_send, three_nodes, v1_send};

/// Two clients on each node; a backend sends numbered messages to every session, each time
/// through the next node in turn (kuiperbelt's /send and /v1/send alternately). Every client
/// gets every message exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_through_any_node_reach_every_session_once_in_order() {
    let (_nats, cluster) = three_nodes().await;
    let nodes = ["n1", "n2", "n3"];
    let keys: Vec<String> = nodes
        .iter()
        .flat_map(|n| [format!("{n}-a"), format!("{n}-b")])
        .collect();
    let mut clients = Vec::new();
    for key in &keys {
        clients.push(connect(&cluster, &key[..2], key).await);
    }
    const MESSAGES: usize = 12;
    for number in 0..MESSAGES {
        let via = nodes[number % 3];
        for key in &keys {
            if number % 2 == 0 {
                let (status, answer) = kb_send(&cluster, via, &[key], &number.to_string()).await;
                assert_eq!(
                    (status, answer.to_string()),
                    (200, r#"{"result":"OK"}"#.to_owned()),
                    "via {via} to {key}"
                );
            } else {
                assert_eq!(
                    v1_send(&cluster, via, &[key], &number.to_string()).await,
                    ["ok"],
                    "via {via} to {key}"
                );
            }
        }
    }
    // Then a marker through each node, the paths the messages took: a duplicate of any message
    // would come before them.
    for via in nodes {
        for key in &keys {
            let marker = format!("marker via {via}");
            assert_eq!(v1_send(&cluster, via, &[key], &marker).await, ["ok"]);
        }
    }
    for (key, client) in keys.iter().zip(clients.iter_mut()) {
        for number in 0..MESSAGES {
            assert_eq!(
                client.recv_text().await,
                number.to_string(),
                "{key}'s message {number}"
            );
        }
        for via in nodes {
            let marker = format!("marker via {via}");
            assert_eq!(client.recv_text().await, marker, "{key} got a duplicate");
        }
    }
}

/// 999 clients, a third on each node; one kuiperbelt /send with 999 session headers through
/// one node reaches each of them once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_send_with_a_thousand_session_headers_spread_over_three_nodes() {
    let (_nats, cluster) = three_nodes().await;
    let keys: Vec<String> = (0..999).map(|i| format!("wide-{i}")).collect();
    let nodes = ["n1", "n2", "n3"];
    let mut clients = join_all(
        keys.iter()
            .enumerate()
            .map(|(i, key)| connect(&cluster, nodes[i % 3], key)),
    )
    .await;
    let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let (status, answer) = kb_send(&cluster, "n2", &key_refs, "to everyone").await;
    assert_eq!(status, 200);
    assert_eq!(answer, serde_json::json!({ "result": "OK" }));
    for (key, client) in keys.iter().zip(clients.iter_mut()) {
        assert_eq!(client.recv_text().await, "to everyone", "{key}");
    }
}

/// 32 backends at once, each sending 20 numbered messages to its own session on n1 through n2.
/// Every message arrives once and in its backend's order, and n2 carried them to n1 in fewer
/// NATS requests than messages: concurrent deliveries to one owner share requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sends_to_one_owner_share_nats_requests_and_keep_order() {
    const SESSIONS: usize = 32;
    const MESSAGES: usize = 20;
    let (_nats, cluster) = three_nodes().await;
    let keys: Vec<String> = (0..SESSIONS).map(|i| format!("busy-{i}")).collect();
    let mut clients = join_all(keys.iter().map(|key| connect(&cluster, "n1", key))).await;
    let api = cluster.node("n2").api_url();
    let forwarded_before = forwarding_counters(&cluster, &api).await;
    let senders = keys.iter().map(|key| {
        let (http, api) = (cluster.http().clone(), api.clone());
        async move {
            for number in 0..MESSAGES {
                let answer = crate::v1_send_at(&http, &api, &[key], &number.to_string()).await;
                assert_eq!(answer, Some(vec!["ok".to_owned()]), "{key} #{number}");
            }
        }
    });
    join_all(senders).await;
    for (key, client) in keys.iter().zip(clients.iter_mut()) {
        for number in 0..MESSAGES {
            assert_eq!(client.recv_text().await, number.to_string(), "{key}");
        }
    }
    let forwarded_after = forwarding_counters(&cluster, &api).await;
    let deliveries = forwarded_after.0 - forwarded_before.0;
    let requests = forwarded_after.1 - forwarded_before.1;
    assert_eq!(deliveries, (SESSIONS * MESSAGES) as u64);
    assert!(
        requests < deliveries,
        "{deliveries} deliveries took {requests} NATS requests"
    );
}

/// `oort_cluster_deliveries_forwarded_total` and `oort_cluster_delivery_requests_total`.
async fn forwarding_counters(cluster: &crate::TestCluster, api: &str) -> (u64, u64) {
    let text = cluster
        .http()
        .get(format!("{api}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let counter = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    (
        counter("oort_cluster_deliveries_forwarded_total "),
        counter("oort_cluster_delivery_requests_total "),
    )
}

/// One `/v1/send/batch` through n2 with 60 numbered messages, alternately to a session on n1,
/// one on n3, and both: every message is answered `ok`, and each client gets its messages in
/// batch order (the batch's cross-node parts travel together, not one round trip each).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_node_batch_arrives_in_order() {
    let (_nats, cluster) = three_nodes().await;
    let mut on_n1 = connect(&cluster, "n1", "batch-n1").await;
    let mut on_n3 = connect(&cluster, "n3", "batch-n3").await;
    let targets = [
        vec!["batch-n1"],
        vec!["batch-n3"],
        vec!["batch-n1", "batch-n3"],
    ];
    let messages: Vec<serde_json::Value> = (0..60)
        .map(|n| serde_json::json!({ "sessions": targets[n % 3], "data": n.to_string() }))
        .collect();
    let response = cluster
        .http()
        .post(format!("{}/v1/send/batch", cluster.node("n2").api_url()))
        .body(serde_json::json!({ "messages": messages }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: serde_json::Value =
        serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(answer["ok"], 80, "{answer}");
    assert_eq!(answer["failed"], 0, "{answer}");
    let expected = |skip: usize| -> Vec<String> {
        (0..60)
            .filter(|n| n % 3 != skip)
            .map(|n| n.to_string())
            .collect()
    };
    let mut got_n1 = Vec::new();
    for _ in 0..40 {
        got_n1.push(on_n1.recv_text().await);
    }
    let mut got_n3 = Vec::new();
    for _ in 0..40 {
        got_n3.push(on_n3.recv_text().await);
    }
    assert_eq!(got_n1, expected(1), "n1's session");
    assert_eq!(got_n3, expected(0), "n3's session");
}
