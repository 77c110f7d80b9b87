//! `GET /v1/sessions/{key}`: where a session lives and how much is waiting for it.

use oort_e2e::backend::CallbackKind;
use tokio_tungstenite::MaybeTlsStream;

use crate::api::session_info;
use crate::support::TestGateway;

#[tokio::test]
async fn v1_sessions_describes_a_connected_session() {
    let gateway = TestGateway::start(|_| {}).await;
    let before_ms = unix_ms();
    let mut client = gateway.connect("described").await;
    let client_addr = match client.stream().get_ref() {
        MaybeTlsStream::Plain(stream) => stream.local_addr().unwrap(),
        _ => unreachable!("plain TCP"),
    };
    let (status, info) = session_info(&gateway, "described").await;
    assert_eq!(status, 200);
    assert_eq!(info["session"], "described");
    assert!(
        !info["node"].as_str().unwrap().is_empty(),
        "node is named: {info}"
    );
    assert_eq!(info["peer"], client_addr.to_string());
    let connected = info["connected_at_unix_ms"].as_u64().unwrap();
    assert!(
        (before_ms..=unix_ms()).contains(&connected),
        "connected_at {connected} is within the test: {info}"
    );
    assert_eq!(info["queued_messages"], 0);
    assert_eq!(info["queued_bytes"], 0);
    gateway.stop().await;
}

#[tokio::test]
async fn v1_sessions_answers_404_json_for_an_unknown_key() {
    let gateway = TestGateway::start(|_| {}).await;
    let (status, body) = session_info(&gateway, "nobody").await;
    assert_eq!(status, 404);
    assert_eq!(body["session"], "nobody");
    assert_eq!(body["error"], "session not found");
    assert_eq!(body["code"], "session_not_found");
    gateway.stop().await;
}

#[tokio::test]
async fn v1_sessions_decodes_a_percent_encoded_key() {
    let gateway = TestGateway::start(|_| {}).await;
    let key = "room 7/user?x=1&y#2";
    let _client =
        oort_e2e::WsClient::connect(&gateway.ws_url("key=room%207%2Fuser%3Fx%3D1%26y%232")).await;
    gateway
        .backend
        .wait_for(CallbackKind::Establish, key, 1, oort_e2e::TIMEOUT)
        .await;
    let (status, info) = session_info(&gateway, "room%207%2Fuser%3Fx%3D1%26y%232").await;
    assert_eq!(status, 200);
    assert_eq!(info["session"], key);
    gateway.stop().await;
}

/// Milliseconds since the Unix epoch.
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test]
async fn v1_sessions_refuses_a_key_that_is_not_utf8_with_json() {
    let gateway = TestGateway::start(|_| {}).await;
    let (status, body) = session_info(&gateway, "%FF").await;
    assert_eq!(status, 400);
    let error = body["error"].as_str().unwrap();
    assert!(
        error.starts_with("key:") && error.contains("UTF-8"),
        "{body}"
    );
    gateway.stop().await;
}

/// Synthetic sessions (for `oort-bench directory`) are off unless configured: 404 with a code.
/// Configured, they are registered through the router and counted like any session in the
/// directory, and a malformed request is refused with a JSON reason.
#[tokio::test]
async fn synthetic_sessions_are_served_only_when_configured() {
    let body = serde_json::json!({ "prefix": "synthetic-", "start": 0, "count": 50 });
    let off = TestGateway::start(|_| {}).await;
    let (status, answer) =
        crate::api::post_json(&off.api_url(), "/v1/cluster/synthetic-sessions", &body).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (404, Some("not_found")),
        "{answer}"
    );
    off.stop().await;

    let on = TestGateway::start(|config| config.cluster.synthetic_sessions = true).await;
    let (status, answer) =
        crate::api::post_json(&on.api_url(), "/v1/cluster/synthetic-sessions", &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["registered"], 50, "{answer}");
    assert_eq!(answer["refused"], 0, "{answer}");
    let bad = serde_json::json!({ "prefix": "", "start": 0, "count": 1 });
    let (status, answer) =
        crate::api::post_json(&on.api_url(), "/v1/cluster/synthetic-sessions", &bad).await;
    assert_eq!(status, 400, "{answer}");
    on.stop().await;
}
