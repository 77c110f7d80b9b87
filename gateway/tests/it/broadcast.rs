//! `POST /v1/broadcast` on a single node: one message to every connected session.

use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::api::post_json;
use crate::support::TestGateway;

#[tokio::test]
async fn broadcast_reaches_every_session_and_reports_how_many() {
    let gateway = TestGateway::start(|_| {}).await;
    let mut alice = gateway.connect("alice").await;
    let mut bob = gateway.connect("bob").await;
    let (status, answer) = post_json(
        &gateway.api_url(),
        "/v1/broadcast",
        &json!({ "data": "to all" }),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer, json!({ "result": "ok", "sessions": 2 }));
    assert_eq!(alice.recv_text().await, "to all");
    assert_eq!(bob.recv_text().await, "to all");

    let (status, _) = post_json(
        &gateway.api_url(),
        "/v1/broadcast",
        &json!({ "data_base64": "AAE=", "binary": true }),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(alice.recv().await, Message::binary(vec![0u8, 1]));
    assert_eq!(bob.recv().await, Message::binary(vec![0u8, 1]));
    gateway.stop().await;
}

#[tokio::test]
async fn malformed_broadcasts_are_refused_with_a_reason() {
    let gateway = TestGateway::start(|_| {}).await;
    let cases = [
        (json!({}), "data or data_base64 is required"),
        (json!({ "data": "x", "data_base64": "eA==" }), "not both"),
        (json!({ "data": "x", "sessions": ["a"] }), "unknown field"),
        (
            json!({ "data_base64": "/w==", "binary": false }),
            "binary frame",
        ),
        (json!({ "data": null }), "null"),
    ];
    for (body, expected) in cases {
        let (status, answer) = post_json(&gateway.api_url(), "/v1/broadcast", &body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(error.contains(expected), "{body}: {error}");
    }
    gateway.stop().await;
}
