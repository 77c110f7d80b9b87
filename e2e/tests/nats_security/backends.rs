//! A backend on NATS with the permissions docs/nats-interface.md recommends: it may call the
//! API (`oort.<cluster>.api.>`) and serve client events (`oort.<cluster>.events.>`, answering
//! with `allow_responses`), and nothing else of the cluster's; the nodes, allowed only
//! `oort.<cluster>.>` plus `allow_responses`, answer its API requests on its own inbox.

use futures_util::StreamExt;
use oort_e2e::cluster::{FAST_TIMINGS, NodeExtras, TestCluster, fresh_cluster_name};
use oort_e2e::nats::NatsServer;
use oort_e2e::{TIMEOUT, WsClient};
use serde_json::{Value, json};

use crate::CONVERGE;

fn server_config(cluster: &str) -> String {
    format!(
        "authorization {{\n  users = [\n\
         {{ user: oort, password: oort-password, permissions: {{ publish: [\"oort.{cluster}.>\"], subscribe: [\"oort.{cluster}.>\"], allow_responses: true }} }}\n\
         {{ user: backend, password: backend-password, permissions: {{ publish: [\"oort.{cluster}.api.>\"], subscribe: [\"_INBOX.>\", \"oort.{cluster}.events.>\"], allow_responses: true }} }}\n\
         ]\n}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_with_api_and_events_permissions_uses_both_and_nothing_else() {
    let name = fresh_cluster_name();
    let nats = NatsServer::start_with(&server_config(&name)).await;
    let extra =
        format!("{FAST_TIMINGS}  nats_auth:\n    user: oort\n    password: oort-password\n");
    let mut cluster = TestCluster::named(&name, vec![nats.url()], &extra).await;
    for node in ["n1", "n2"] {
        let extras = NodeExtras {
            env: vec![("OORT_CALLBACK__NATS_EVENTS".into(), "true".into())],
            ..NodeExtras::default()
        };
        cluster.add_with(node, 2, extras).await;
    }
    cluster.wait_converged(2, 2, CONVERGE).await;

    let (errors_in, mut errors) = tokio::sync::mpsc::unbounded_channel();
    let backend = async_nats::ConnectOptions::with_user_and_password(
        "backend".into(),
        "backend-password".into(),
    )
    .event_callback(move |event| {
        let errors_in = errors_in.clone();
        async move {
            if let async_nats::Event::ServerError(error) = event {
                let _ = errors_in.send(error.to_string().to_lowercase());
            }
        }
    })
    .connect(nats.url())
    .await
    .unwrap();

    // A worker accepts connects: the node's request reaches it, its answer reaches the node.
    let mut connects = backend
        .queue_subscribe(format!("oort.{name}.events.connect"), "workers".into())
        .await
        .unwrap();
    let worker = backend.clone();
    tokio::spawn(async move {
        while let Some(event) = connects.next().await {
            let answer = json!({ "status": 200, "session": "permitted" });
            if let Some(reply) = event.reply {
                let _ = worker.publish(reply, answer.to_string().into()).await;
            }
        }
    });
    backend.flush().await.unwrap();
    let mut client = WsClient::connect(&cluster.node("n2").ws_url("")).await;

    // The API answers on the backend's own inbox.
    let reply = tokio::time::timeout(
        TIMEOUT,
        backend.request(
            format!("oort.{name}.api.send"),
            json!({ "sessions": ["permitted"], "data": "allowed" })
                .to_string()
                .into(),
        ),
    )
    .await
    .expect("an answer in time")
    .expect("an answer");
    let answer: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(answer["results"][0]["status"], "ok", "{answer}");
    assert_eq!(client.recv_text().await, "allowed");

    // Nothing else of the cluster's: publishing a delivery, or listening to raft, is refused.
    backend
        .publish(format!("oort.{name}.deliver.1"), "forged".into())
        .await
        .unwrap();
    let _refused = backend.subscribe(format!("oort.{name}.raft.>")).await;
    backend.flush().await.unwrap();
    let mut refused = Vec::new();
    while refused.len() < 2 {
        let error = tokio::time::timeout(TIMEOUT, errors.recv())
            .await
            .expect("the server refuses the backend")
            .expect("the error channel is open");
        refused.push(error);
    }
    assert!(
        refused
            .iter()
            .any(|e| e.contains("publish") && e.contains(".deliver.1")),
        "{refused:?}"
    );
    assert!(
        refused
            .iter()
            .any(|e| e.contains("subscription") && e.contains(".raft.")),
        "{refused:?}"
    );
}
