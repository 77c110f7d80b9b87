//! Users on a single node: the connect callback's `X-Oort-User`, `/v1/send` to users,
//! `GET /v1/users/{id}`, and `limits.max_sessions_per_user` both ways.

use std::time::Duration;

use oort_common::config::UserOverflow;
use oort_e2e::{CallbackKind, WsClient};
use serde_json::{Value, json};

use crate::api::{json_of, post_json};
use crate::support::TestGateway;

async fn connect_as(gateway: &TestGateway, key: &str, user: &str) -> WsClient {
    let client = WsClient::connect(&gateway.ws_url(&format!("key={key}&user={user}"))).await;
    gateway
        .backend
        .wait_for(CallbackKind::Establish, key, 1, oort_e2e::TIMEOUT)
        .await;
    client
}

async fn sessions_of(gateway: &TestGateway, user: &str) -> Vec<String> {
    let response = oort_e2e::http_client()
        .get(format!("{}/v1/users/{user}", gateway.api_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer = json_of(response).await;
    answer["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["session"].as_str().unwrap().to_owned())
        .collect()
}

fn results(answer: &Value) -> Vec<Value> {
    answer["results"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_send_to_a_user_reaches_each_of_their_sessions_once() {
    let gateway = TestGateway::start(|_| {}).await;
    let mut phone = connect_as(&gateway, "phone", "42").await;
    let mut laptop = connect_as(&gateway, "laptop", "42").await;
    let mut other = connect_as(&gateway, "other", "7").await;
    assert_eq!(sessions_of(&gateway, "42").await, ["phone", "laptop"]);

    let (status, answer) = post_json(
        &gateway.api_url(),
        "/v1/send",
        &json!({ "users": ["42", "nobody"], "sessions": ["phone"], "data": "hi" }),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        results(&answer),
        [
            json!({ "session": "phone", "status": "ok" }),
            json!({ "session": "laptop", "status": "ok", "user": "42" }),
            json!({ "user": "nobody", "status": "not_found" }),
        ]
    );
    assert_eq!(
        (answer["ok"].as_u64(), answer["failed"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(phone.recv_text().await, "hi");
    assert_eq!(laptop.recv_text().await, "hi");
    assert!(
        phone.nothing_within(Duration::from_millis(200)).await,
        "once"
    );
    assert!(other.nothing_within(Duration::from_millis(10)).await);

    // Strict: a user without sessions stops the send.
    let (_, answer) = post_json(
        &gateway.api_url(),
        "/v1/send",
        &json!({ "users": ["7", "nobody"], "data": "x", "strict": true }),
    )
    .await;
    assert_eq!(results(&answer)[0]["status"], "skipped", "{answer}");
    assert!(other.nothing_within(Duration::from_millis(200)).await);

    // A session that ends leaves its user.
    laptop.close(1000).await;
    gateway
        .backend
        .wait_for(CallbackKind::Close, "laptop", 1, oort_e2e::TIMEOUT)
        .await;
    assert_eq!(sessions_of(&gateway, "42").await, ["phone"]);

    for (body, expected) in [
        (
            json!({ "users": [""], "data": "x" }),
            "users[0]: a user id cannot be empty",
        ),
        (
            json!({ "data": "x" }),
            "sessions or users: name at least one",
        ),
        (
            json!({ "users": ["a\u{1}"], "data": "x" }),
            "control characters",
        ),
    ] {
        let (status, answer) = post_json(&gateway.api_url(), "/v1/send", &body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(expected),
            "{answer}"
        );
    }
    gateway.stop().await;
}

#[tokio::test]
async fn past_the_per_user_limit_the_oldest_session_closes() {
    let gateway = TestGateway::start(|config| {
        config.limits.max_sessions_per_user = 2;
    })
    .await;
    let mut first = connect_as(&gateway, "s1", "u").await;
    let _second = connect_as(&gateway, "s2", "u").await;
    let _third = connect_as(&gateway, "s3", "u").await;
    let frame = first.closed().await.expect("a close frame");
    assert_eq!(
        (u16::from(frame.code), frame.reason.as_str()),
        (4002, "replaced by a newer session of the same user")
    );
    gateway
        .backend
        .wait_for(CallbackKind::Close, "s1", 1, oort_e2e::TIMEOUT)
        .await;
    assert_eq!(sessions_of(&gateway, "u").await, ["s2", "s3"]);
    gateway.stop().await;
}

#[tokio::test]
async fn past_the_per_user_limit_a_refusing_gateway_answers_429() {
    let gateway = TestGateway::start(|config| {
        config.limits.max_sessions_per_user = 1;
        config.limits.user_overflow = UserOverflow::Refuse;
    })
    .await;
    let mut first = connect_as(&gateway, "s1", "u").await;
    let refused = crate::api::refused(&gateway.ws_url("key=s2&user=u")).await;
    assert_eq!(refused.0, 429, "{refused:?}");
    assert!(refused.2.contains("max_sessions_per_user"), "{refused:?}");
    assert!(
        first.nothing_within(Duration::from_millis(200)).await,
        "the first stays"
    );
    assert_eq!(sessions_of(&gateway, "u").await, ["s1"]);
    gateway.stop().await;
}
