//! Backends on NATS (docs/nats-interface.md): the backend API as a NATS service on
//! `oort.<cluster>.api.*` (one node of the queue group answers, with the HTTP API's payloads
//! and statuses), and client events for backend workers on `oort.<cluster>.events.*` instead
//! of HTTP callbacks (one worker handles each; per-session order kept; "nobody received it"
//! when no worker listens; presence reports published there too).

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use oort_e2e::cluster::{FAST_TIMINGS, NodeExtras, TestCluster};
use oort_e2e::nats::NatsServer;
use oort_e2e::{TIMEOUT, WsClient};
use serde_json::{Value, json};

use crate::{CONVERGE, three_nodes};

/// One API call over NATS: the `Oort-Status` header and the JSON body.
async fn call(nats: &async_nats::Client, subject: String, body: Value) -> (u16, Value) {
    let reply = tokio::time::timeout(TIMEOUT, nats.request(subject, body.to_string().into()))
        .await
        .expect("an answer in time")
        .expect("an answer");
    let status = reply
        .headers
        .as_ref()
        .and_then(|h| h.get("Oort-Status"))
        .and_then(|v| v.as_str().parse().ok())
        .expect("an Oort-Status header");
    (
        status,
        serde_json::from_slice(&reply.payload).expect("a JSON body"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backend_api_is_a_nats_service_answered_by_one_node() {
    let (nats, cluster) = three_nodes().await;
    let backend = async_nats::connect(nats.url()).await.unwrap();
    let api = |operation: &str| format!("oort.{}.api.{operation}", cluster.name());
    let mut client =
        WsClient::connect(&cluster.node("n2").ws_url("key=nats-target&channels=news")).await;

    let (status, answer) = call(
        &backend,
        api("send"),
        json!({ "sessions": ["nats-target", "ghost"], "data": "over nats" }),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["results"][0]["status"], "ok", "{answer}");
    assert_eq!(answer["results"][1]["status"], "not_found", "{answer}");
    assert_eq!(client.recv_text().await, "over nats");

    // Any node may answer the publish: wait until every replica knows news's subscriber.
    for node in ["n1", "n2", "n3"] {
        oort_e2e::eventually(
            CONVERGE,
            &format!("{node} to see news's subscriber"),
            || async {
                let url = format!("{}/v1/channels/news", cluster.node(node).api_url());
                let page = oort_e2e::try_json(cluster.http().get(url)).await?;
                (page["sessions"] == 1).then_some(())
            },
        )
        .await;
    }

    let (status, answer) = call(
        &backend,
        api("publish"),
        json!({ "channels": ["news"], "data": "published" }),
    )
    .await;
    assert_eq!(
        (status, answer["sessions"].as_u64()),
        (200, Some(1)),
        "{answer}"
    );
    assert_eq!(client.recv_text().await, "published");

    let (status, answer) = call(&backend, api("channel"), json!({ "channel": "news" })).await;
    assert_eq!(
        (status, answer["sessions"].as_u64()),
        (200, Some(1)),
        "{answer}"
    );
    let (status, answer) = call(
        &backend,
        api("session"),
        json!({ "session": "nats-target" }),
    )
    .await;
    assert_eq!(
        (status, answer["node"].as_str()),
        (200, Some("n2")),
        "{answer}"
    );

    // The same refusals as over HTTP, with the same texts.
    let (status, answer) = call(
        &backend,
        api("send"),
        json!({ "sessions": [] , "data": "x" }),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        answer["error"],
        "sessions or users: name at least one session key or user"
    );
    let (status, answer) = call(&backend, api("nope"), json!({})).await;
    assert_eq!(status, 404, "{answer}");

    // One node of the queue group answers each request.
    let inbox = backend.new_inbox();
    let mut replies = backend.subscribe(inbox.clone()).await.unwrap();
    backend
        .publish_with_reply(api("cluster"), inbox, Bytes::new())
        .await
        .unwrap();
    let first = tokio::time::timeout(TIMEOUT, replies.next())
        .await
        .unwrap()
        .unwrap();
    assert!(!first.payload.is_empty());
    let second = tokio::time::timeout(Duration::from_millis(500), replies.next()).await;
    assert!(second.is_err(), "a second node answered too");
}

/// A worker standing in for the backend's callbacks: answers connects (accepting with a
/// session key, a channel and a user), and records every message and close in order.
async fn worker(
    nats: &async_nats::Client,
    cluster: &str,
) -> tokio::sync::mpsc::UnboundedReceiver<(String, Value)> {
    let (seen, heard) = tokio::sync::mpsc::unbounded_channel();
    for kind in ["connect", "message", "close"] {
        let mut events = nats
            .queue_subscribe(format!("oort.{cluster}.events.{kind}"), "workers".into())
            .await
            .unwrap();
        let nats = nats.clone();
        let seen = seen.clone();
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                let body: Value = serde_json::from_slice(&event.payload).unwrap_or(Value::Null);
                let answer = if kind == "connect" {
                    let key = body["query"]
                        .as_str()
                        .unwrap_or_default()
                        .replace("key=", "");
                    json!({ "status": 200, "session": key, "channels": ["workers-room"], "user": "w", "data": "welcome" })
                } else {
                    json!({})
                };
                let _ = seen.send((kind.to_owned(), body));
                if let Some(reply) = event.reply {
                    let _ = nats.publish(reply, answer.to_string().into()).await;
                }
            }
        });
    }
    nats.flush().await.unwrap();
    heard
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_events_go_to_nats_workers_in_order() {
    let nats = NatsServer::start().await;
    let mut cluster = TestCluster::new(vec![nats.url()], FAST_TIMINGS).await;
    for name in ["n1", "n2", "n3"] {
        let extras = NodeExtras {
            env: vec![("OORT_CALLBACK__NATS_EVENTS".into(), "true".into())],
            ..NodeExtras::default()
        };
        cluster.add_with(name, 3, extras).await;
    }
    cluster.wait_converged(3, 3, CONVERGE).await;

    // Nobody listens yet: the connect is refused, saying so.
    let refused = WsClient::connect_with(&cluster.node("n1").ws_url("key=early"), &[]).await;
    let Err(tokio_tungstenite::tungstenite::Error::Http(response)) = refused else {
        panic!("the connect was not refused");
    };
    assert_eq!(response.status(), 502);
    let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).into_owned();
    assert!(body.contains("nobody received it"), "{body}");

    let backend = async_nats::connect(nats.url()).await.unwrap();
    let mut heard = worker(&backend, cluster.name()).await;
    let mut presence = backend
        .subscribe(format!("oort.{}.events.presence", cluster.name()))
        .await
        .unwrap();
    backend.flush().await.unwrap();
    let mut client = WsClient::connect(&cluster.node("n3").ws_url("key=via-nats")).await;
    assert_eq!(client.recv_text().await, "welcome");
    let (kind, connect) = heard.recv().await.unwrap();
    assert_eq!(kind, "connect");
    assert_eq!(connect["method"], "GET");
    assert_eq!(connect["query"], "key=via-nats");
    for n in 0..20 {
        client.send_text(&format!("m{n}")).await;
    }
    for n in 0..20 {
        let (kind, message) = tokio::time::timeout(TIMEOUT, heard.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(kind, "message");
        assert_eq!(
            message,
            json!({ "session": "via-nats", "data": format!("m{n}") }),
            "in order"
        );
    }
    // The session's join of the worker's channel is reported on NATS by its node.
    let report = tokio::time::timeout(TIMEOUT, presence.next())
        .await
        .expect("a presence report in time")
        .expect("a presence report");
    let report: Value = serde_json::from_slice(&report.payload).unwrap();
    assert_eq!(report["node"], "n3", "{report}");
    assert_eq!(
        report["changes"],
        json!([{ "channel": "workers-room", "session": "via-nats", "joined": true }])
    );
    // The worker's channel and user took effect.
    let url = format!("{}/v1/users/w", cluster.node("n1").api_url());
    let user = oort_e2e::try_json(cluster.http().get(url)).await.unwrap();
    assert_eq!(user["sessions"][0]["session"], "via-nats", "{user}");
    drop(client);
    let (kind, close) = tokio::time::timeout(TIMEOUT, heard.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (kind.as_str(), &close),
        ("close", &json!({ "session": "via-nats" }))
    );
}
