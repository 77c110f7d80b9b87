//! `POST /v1/request` across nodes: the request goes from the node the backend called to the
//! session's node, and the client's reply comes back to the first, even when the client
//! answers from a third node it resumed on.

use oort_e2e::durable_client::{Data, DurableClient};
use serde_json::{Value, json};

use crate::{connect, connect_url, three_nodes, wait_until_away};

fn request(
    cluster: &oort_e2e::cluster::TestCluster,
    node: &str,
    body: Value,
) -> tokio::task::JoinHandle<Option<Value>> {
    let url = format!("{}/v1/request", cluster.node(node).api_url());
    let http = cluster.http().clone();
    tokio::spawn(async move { oort_e2e::try_json(http.post(url).body(body.to_string())).await })
}

#[tokio::test]
async fn a_request_through_one_node_is_answered_from_another() {
    let (_nats, cluster) = three_nodes().await;
    let mut client = connect(&cluster, "n2", "asked").await;
    let answer = request(
        &cluster,
        "n1",
        json!({ "session": "asked", "data": "ping" }),
    );
    let (_, id, data) = client.recv_request().await;
    assert_eq!(data, Data::Text("ping".into()));
    client.reply(&id, "pong").await.unwrap();
    let answer = answer.await.unwrap().expect("an answer");
    assert_eq!(answer["reply"], json!({ "data": "pong" }), "{answer}");

    // Asked while away; the client resumes on n3 and answers there: the reply still reaches
    // n1, which is waiting for it.
    let position = client.drop_connection();
    wait_until_away(&cluster, "n2", "asked").await;
    let answer = request(
        &cluster,
        "n1",
        json!({ "session": "asked", "data": "still there?", "timeout_ms": 20000 }),
    );
    let mut resumed = DurableClient::resume(&connect_url(&cluster, "n3"), &position)
        .await
        .expect("resumed on n3");
    let (_, id, data) = resumed.recv_request().await;
    assert_eq!(data, Data::Text("still there?".into()));
    resumed.reply(&id, "yes, on n3").await.unwrap();
    let answer = answer.await.unwrap().expect("an answer");
    assert_eq!(answer["status"], "buffered", "{answer}");
    assert_eq!(answer["reply"]["data"], "yes, on n3", "{answer}");
}
