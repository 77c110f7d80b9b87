//! Closing and strict sends across nodes: kuiperbelt's `/close` and `/v1/close` through one node
//! for sessions held by others, and a strict send that names an unknown session delivering to
//! nobody on any node.

use oort_e2e::cluster::TestCluster;
use oort_e2e::eventually;
use serde_json::Value;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::{CONVERGE, connect, owner_in_replica, three_nodes, v1_send};

/// `/close` through n1 for a session on n2 and `/v1/close` (with a code and a reason) for one on
/// n3: each client gets its last message, then its close frame; both sessions leave the
/// directory, and later sends find neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_through_one_node_ends_sessions_held_by_others() {
    let (_nats, cluster) = three_nodes().await;
    let mut on_n2 = connect(&cluster, "n2", "kb-closed").await;
    let mut on_n3 = connect(&cluster, "n3", "v1-closed").await;

    let (status, answer) = kb_close(&cluster, "n1", &["kb-closed"], "last word").await;
    assert_eq!(
        (status, answer.to_string()),
        (200, r#"{"result":"OK"}"#.to_owned())
    );
    assert_eq!(on_n2.recv_text().await, "last word");
    let frame = on_n2.closed().await.expect("a close frame");
    assert_eq!(frame.code, CloseCode::Normal);

    let body = serde_json::json!({
        "sessions": ["v1-closed"], "data": "goodbye", "code": 4001, "reason": "done here"
    });
    let response = cluster
        .http()
        .post(format!("{}/v1/close", cluster.node("n1").api_url()))
        .body(body.to_string())
        .send()
        .await
        .expect("POST /v1/close");
    assert_eq!(response.status(), 200);
    let answer: serde_json::Value =
        serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(answer["results"][0]["status"], "ok", "{answer}");
    assert_eq!(on_n3.recv_text().await, "goodbye");
    let frame = on_n3.closed().await.expect("a close frame");
    assert_eq!(
        (u16::from(frame.code), frame.reason.as_str()),
        (4001, "done here")
    );

    for key in ["kb-closed", "v1-closed"] {
        eventually(
            CONVERGE,
            &format!("every replica to drop {key}"),
            || async {
                for node in cluster.running() {
                    owner_in_replica(&cluster, &node, key)
                        .await
                        .is_none()
                        .then_some(())?;
                }
                Some(())
            },
        )
        .await;
    }
    assert_eq!(
        v1_send(&cluster, "n1", &["kb-closed", "v1-closed"], "after").await,
        ["not_found", "not_found"]
    );
}

/// Strict sends through n1 to sessions on n2 and n3: with an unknown session among them,
/// nothing is delivered anywhere (`skipped` for the known, `not_found` for the unknown); with
/// every session known, each gets it, and it is the first thing each gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strict_send_across_nodes_delivers_to_all_or_none() {
    let (_nats, cluster) = three_nodes().await;
    let mut on_n2 = connect(&cluster, "n2", "strict-a").await;
    let mut on_n3 = connect(&cluster, "n3", "strict-b").await;
    assert_eq!(
        v1_send_strict(&cluster, "n1", &["strict-a", "nobody", "strict-b"], "none").await,
        ["skipped", "not_found", "skipped"]
    );
    assert_eq!(
        v1_send_strict(&cluster, "n1", &["strict-a", "strict-b"], "all").await,
        ["ok", "ok"]
    );
    assert_eq!(on_n2.recv_text().await, "all", "nothing came before");
    assert_eq!(on_n3.recv_text().await, "all", "nothing came before");
}

/// kuiperbelt's `/close` through `node` with one header per key; the status and JSON answer.
async fn kb_close(cluster: &TestCluster, node: &str, keys: &[&str], body: &str) -> (u16, Value) {
    let mut request = cluster
        .http()
        .post(format!("{}/close", cluster.node(node).api_url()))
        .body(body.to_owned());
    for key in keys {
        request = request.header("X-Kuiperbelt-Session", *key);
    }
    let response = request.send().await.expect("POST /close");
    let status = response.status().as_u16();
    let answer = serde_json::from_slice(&response.bytes().await.unwrap()).expect("JSON answer");
    (status, answer)
}

/// `/v1/send` through `node` with `strict: true`: the per-session statuses.
async fn v1_send_strict(
    cluster: &TestCluster,
    node: &str,
    keys: &[&str],
    data: &str,
) -> Vec<String> {
    let body = serde_json::json!({ "sessions": keys, "data": data, "strict": true });
    cluster.v1_send_body(node, &body).await
}
