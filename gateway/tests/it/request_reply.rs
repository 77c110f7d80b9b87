//! `POST /v1/request` on a single node: the client's reply comes back as the answer; a
//! timeout is 504; a plain client is `unsupported`; stray and forged replies are dropped and
//! counted; bad requests get a 400 naming the field.

use std::time::Duration;

use oort_e2e::durable_client::{Data, DurableClient};
use oort_e2e::{CallbackKind, WsClient};
use serde_json::{Value, json};

use crate::api::{metric, post_json, scrape};
use crate::support::TestGateway;

async fn oort_v1(gateway: &TestGateway, key: &str) -> DurableClient {
    let client = DurableClient::connect(&gateway.ws_url(&format!("key={key}")))
        .await
        .expect("an oort.v1 session");
    gateway
        .backend
        .wait_for(CallbackKind::Establish, key, 1, oort_e2e::TIMEOUT)
        .await;
    client
}

fn request(gateway: &TestGateway, body: Value) -> tokio::task::JoinHandle<(u16, Value)> {
    let url = gateway.api_url();
    tokio::spawn(async move { post_json(&url, "/v1/request", &body).await })
}

#[tokio::test]
async fn a_clients_reply_is_the_answer() {
    let gateway = TestGateway::start(|_| {}).await;
    let mut client = oort_v1(&gateway, "asked").await;
    let answer = request(
        &gateway,
        json!({ "session": "asked", "data": "2+2?", "timeout_ms": 5000 }),
    );
    let (seq, id, data) = client.recv_request().await;
    assert_eq!((seq, data), (1, Data::Text("2+2?".into())));
    // A reply to an id nobody waits for is dropped, and so is one naming another session's
    // request (below, from a second client).
    client.reply("0.0000000000000000", "stray").await.unwrap();
    let mut other = oort_v1(&gateway, "other").await;
    other.reply(&id, "forged").await.unwrap();
    client.reply(&id, "4").await.unwrap();
    let (status, answer) = answer.await.unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        json!({ "session": "asked", "status": "ok", "reply": { "data": "4" } })
    );
    let text = scrape(&gateway.api_url()).await;
    assert_eq!(
        metric(&text, "oort_client_replies_unmatched_total"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "oort_requests_total{outcome=\"answered\"}"),
        Some(1.0)
    );

    // Binary requests travel as base64 in the request frame.
    let answer = request(
        &gateway,
        json!({ "session": "asked", "data_base64": "AAE=" }),
    );
    let (_, id, data) = client.recv_request().await;
    assert_eq!(data, Data::Binary(vec![0, 1]));
    client.reply(&id, "got it").await.unwrap();
    assert_eq!(answer.await.unwrap().1["reply"]["data"], "got it");
    gateway.stop().await;
}

#[tokio::test]
async fn no_reply_in_time_is_504_and_a_plain_client_is_unsupported() {
    let gateway = TestGateway::start(|_| {}).await;
    let mut client = oort_v1(&gateway, "silent").await;
    let (status, answer) = post_json(
        &gateway.api_url(),
        "/v1/request",
        &json!({ "session": "silent", "data": "anyone?", "timeout_ms": 300 }),
    )
    .await;
    assert_eq!(status, 504, "{answer}");
    assert_eq!(answer["error"], "no reply within 300 ms");
    // The late reply is dropped, not mistaken for another request's.
    let (_, id, _) = client.recv_request().await;
    client.reply(&id, "too late").await.unwrap();

    let mut plain = WsClient::connect(&gateway.ws_url("key=plain")).await;
    let (status, answer) = post_json(
        &gateway.api_url(),
        "/v1/request",
        &json!({ "session": "plain", "data": "x" }),
    )
    .await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("unsupported")),
        "{answer}"
    );
    assert!(
        plain.nothing_within(Duration::from_millis(200)).await,
        "nothing was sent"
    );
    let (_, answer) = post_json(
        &gateway.api_url(),
        "/v1/request",
        &json!({ "session": "nobody", "data": "x" }),
    )
    .await;
    assert_eq!(answer["status"], "not_found", "{answer}");

    for (body, expected) in [
        (
            json!({ "session": "silent", "data": "x", "timeout_ms": 600_000 }),
            "limits.max_request_timeout",
        ),
        (
            json!({ "session": "silent", "data": "x", "timeout_ms": 0 }),
            "timeout_ms",
        ),
        (
            json!({ "session": "silent" }),
            "data or data_base64 is required",
        ),
        (json!({ "data": "x" }), "missing field `session`"),
    ] {
        let (status, answer) = post_json(&gateway.api_url(), "/v1/request", &body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(expected),
            "{answer}"
        );
    }
    gateway.stop().await;
}
