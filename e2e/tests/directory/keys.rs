//! One key, one live session, cluster-wide: the same keys connecting through two nodes at once,
//! and a newer connection whose registration fails leaving the older one as it was.

use std::time::Duration;

use futures_util::future::join_all;
use oort_e2e::WsClient;
use tokio_tungstenite::tungstenite::Message;

use crate::{CONVERGE, cluster, connect, owner_seen_by, v1_send};

/// Whether the client's connection is still open: a send through `via` reaching it proves it
/// (the caller sends the marker); a close frame or the end of the stream proves it is not.
async fn next_text_or_closed(client: &mut WsClient) -> Option<String> {
    loop {
        match client.next_within(Duration::from_secs(10)).await {
            Some(Ok(Message::Text(text))) => return Some(text.to_string()),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => continue,
        }
    }
}

/// 100 keys, each connected through n1 and n2 at the same moment. Afterwards each key has
/// exactly one live session in the cluster: the directory names one owner, the client on that
/// node gets a send made through the third node, and the client on the other node was closed
/// (or refused) and gets nothing. Before, the losing node kept a zombie that local-first
/// routing fed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_connected_through_two_nodes_at_once_lives_on_exactly_one() {
    let (_nats, cluster) = cluster(&["n1", "n2", "n3"], 3, "").await;
    cluster.wait_converged(3, 3, CONVERGE).await;
    let keys: Vec<String> = (0..100).map(|i| format!("dup-{i}")).collect();
    let attempts = keys.iter().flat_map(|key| {
        ["n1", "n2"].map(|node| {
            let url = cluster.node(node).ws_url(&format!("key={key}"));
            async move {
                (
                    node,
                    WsClient::connect_with(&url, &[]).await.ok().map(|(c, _)| c),
                )
            }
        })
    });
    let mut clients: Vec<(&str, Option<WsClient>)> = join_all(attempts).await;
    let mut lost_by_both = 0;
    for (index, key) in keys.iter().enumerate() {
        let owner = owner_seen_by(&cluster, "n3", key).await;
        let Some(owner) = owner else {
            // Both registrations lost to each other's closing: allowed, and then neither client
            // may still be connected.
            lost_by_both += 1;
            continue;
        };
        let marker = format!("only {owner} has {key}");
        assert_eq!(
            v1_send(&cluster, "n3", &[key], &marker).await,
            ["ok"],
            "{key}"
        );
        for (node, client) in &mut clients[index * 2..index * 2 + 2] {
            let Some(client) = client.as_mut() else {
                continue;
            };
            let got = next_text_or_closed(client).await;
            if *node == owner {
                assert_eq!(
                    got.as_deref(),
                    Some(marker.as_str()),
                    "{key} on its owner {node}"
                );
            } else {
                assert_eq!(
                    got, None,
                    "{key}: the client on {node} is closed, not a zombie"
                );
            }
        }
        for via in ["n1", "n2"] {
            let marker = format!("via {via}");
            assert_eq!(v1_send(&cluster, via, &[key], &marker).await, ["ok"]);
        }
    }
    assert!(
        lost_by_both <= 5,
        "{lost_by_both} keys had no session at all"
    );
}

/// A session is connected through n1; then, with no quorum, the same key connects through n1
/// again. The newer registration cannot commit, so the newer connection is refused (503), and
/// the older one stays open and keeps receiving, with no close callback. Before, the older
/// connection was closed at once and the user was left with neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_newer_registration_leaves_the_older_connection_alone() {
    let (_nats, mut cluster) = cluster(&["n1", "n2", "n3"], 3, "").await;
    cluster.wait_converged(3, 3, CONVERGE).await;
    let mut older = connect(&cluster, "n1", "mine").await;
    // Two of three voters gone: nothing can commit.
    cluster.kill("n2").await;
    cluster.kill("n3").await;
    let refused = WsClient::connect_with(&cluster.node("n1").ws_url("key=mine"), &[]).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503)
        }
        other => panic!(
            "the newer connection must be refused, got {:?}",
            other.map(|_| ())
        ),
    }
    // Local delivery needs no quorum: the older connection still receives.
    assert_eq!(
        v1_send(&cluster, "n1", &["mine"], "still yours").await,
        ["ok"]
    );
    assert_eq!(older.recv_text().await, "still yours");
    let closes = cluster
        .backend
        .for_session(oort_e2e::CallbackKind::Close, "mine");
    assert!(
        closes.is_empty(),
        "the backend was not told the session closed"
    );
}
