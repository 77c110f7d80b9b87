//! A node drained by SIGTERM hands its clients over to the others; the demo chat spans two
//! nodes; a request id is logged by every node a send touches.

use std::time::Duration;

use oort_e2e::nats::NatsServer;
use oort_e2e::process::OortProcess;
use oort_e2e::{TIMEOUT, WsClient, eventually};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::{CONVERGE, connect, three_nodes, v1_send};

/// SIGTERM n3: its clients get Close 1001, reconnect (same keys) to another node as a real
/// client would, and sends through any node reach them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_nodes_clients_reconnect_elsewhere_and_keep_receiving() {
    let (_nats, mut cluster) = three_nodes().await;
    let mut moving = vec![
        connect(&cluster, "n3", "mover-1").await,
        connect(&cluster, "n3", "mover-2").await,
    ];
    let stop = tokio::spawn(async move {
        let status = cluster.stop("n3").await;
        (cluster, status)
    });
    for client in &mut moving {
        let frame = client.closed().await.expect("a close frame");
        assert_eq!(frame.code, CloseCode::Away, "Close 1001 on drain");
    }
    let (cluster, status) = stop.await.unwrap();
    assert!(
        status.success(),
        "the drained node exits cleanly: {status:?}"
    );
    let mut back = vec![
        connect(&cluster, "n1", "mover-1").await,
        connect(&cluster, "n2", "mover-2").await,
    ];
    for via in ["n1", "n2"] {
        assert_eq!(
            v1_send(&cluster, via, &["mover-1", "mover-2"], via).await,
            ["ok", "ok"],
            "via {via}"
        );
    }
    for client in &mut back {
        assert_eq!(client.recv_text().await, "n1");
        assert_eq!(client.recv_text().await, "n2");
    }
}

/// Two `oort demo` nodes clustered over one nats-server: a chat message written on one node
/// arrives at clients of both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_chat_spans_two_nodes() {
    let nats = NatsServer::start().await;
    let start_demo = |id: &str| {
        OortProcess::spawn(
            &[
                "demo",
                "--port",
                "0",
                "--nats",
                &nats.url(),
                "--node-id",
                id,
                "--bootstrap-expect",
                "2",
            ],
            &[],
        )
    };
    let (first, second) = (start_demo("demo-a"), start_demo("demo-b"));
    let (a, b) = (demo_address(&first).await, demo_address(&second).await);
    let http = oort_e2e::http_client();
    eventually(CONVERGE, "both demo nodes ready", || async {
        for addr in [&a, &b] {
            http.get(format!("http://{addr}/readyz"))
                .send()
                .await
                .ok()?
                .status()
                .is_success()
                .then_some(())?;
        }
        Some(())
    })
    .await;
    let mut alice = WsClient::connect(&format!("ws://{a}/connect?name=alice")).await;
    let mut bob = WsClient::connect(&format!("ws://{b}/connect?name=bob")).await;
    alice.send_text("hello from node a").await;
    for (who, client) in [("alice", &mut alice), ("bob", &mut bob)] {
        let message = next_chat_message(client).await;
        assert_eq!(message["from"], "alice", "{who}");
        assert_eq!(message["text"], "hello from node a", "{who}");
    }
}

/// The address a demo process prints.
async fn demo_address(process: &OortProcess) -> String {
    let line = process.wait_for_line("Oort demo running", TIMEOUT).await;
    line.split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .to_owned()
}

/// The next chat message event, skipping welcome and join notices (each read is bounded).
async fn next_chat_message(client: &mut WsClient) -> serde_json::Value {
    loop {
        let event: serde_json::Value =
            serde_json::from_str(&client.recv_text().await).expect("JSON event");
        if event["type"] == "message" {
            return event;
        }
    }
}

/// A send with `X-Request-Id` through n1 to a session on n2: the id is in both nodes' logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_is_logged_by_every_node_it_touches() {
    let nats = NatsServer::start().await;
    let mut cluster =
        oort_e2e::cluster::TestCluster::new(vec![nats.url()], oort_e2e::cluster::FAST_TIMINGS)
            .await;
    cluster.top_level = "suppress_access_log: false\n".to_owned();
    for name in ["n1", "n2", "n3"] {
        cluster.add(name, 3).await;
    }
    cluster.wait_converged(3, 3, CONVERGE).await;
    let mut client = connect(&cluster, "n2", "traced").await;
    let response = cluster
        .http()
        .post(format!("{}/v1/send", cluster.node("n1").api_url()))
        .header("X-Request-Id", "trace-5309")
        .body(r#"{"sessions": ["traced"], "data": "x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], "trace-5309");
    let answer: serde_json::Value =
        serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(answer["results"][0]["status"], "ok", "{answer}");
    assert_eq!(client.recv_text().await, "x", "the send crossed to n2");
    for node in ["n1", "n2"] {
        cluster
            .node(node)
            .process()
            .wait_for_line("trace-5309", Duration::from_secs(5))
            .await;
    }
}
