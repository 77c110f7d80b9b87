//! Channels on a single node: the connect callback's `X-Oort-Channels`, `/v1/subscribe`,
//! `/v1/unsubscribe`, `/v1/publish` and presence (`GET /v1/channels/{name}`), and what each
//! refuses.

use std::time::Duration;

use oort_e2e::{CallbackKind, WsClient};
use serde_json::{Value, json};

use crate::api::{json_of, metric, pairs, post_json, scrape, statuses};
use crate::support::TestGateway;

async fn connect_in(gateway: &TestGateway, key: &str, channels: &str) -> WsClient {
    let client =
        WsClient::connect(&gateway.ws_url(&format!("key={key}&channels={channels}"))).await;
    gateway
        .backend
        .wait_for(CallbackKind::Establish, key, 1, oort_e2e::TIMEOUT)
        .await;
    client
}

async fn presence(gateway: &TestGateway, query: &str) -> (u16, Value) {
    let response = oort_e2e::http_client()
        .get(format!("{}/v1/channels/{query}", gateway.api_url()))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, json_of(response).await)
}

#[tokio::test]
async fn a_publish_reaches_each_subscriber_once_and_says_how_many() {
    let gateway = TestGateway::start(|_| {}).await;
    let mut alice = connect_in(&gateway, "alice", "room.1,lobby").await;
    let mut bob = connect_in(&gateway, "bob", "room.1").await;
    let mut carol = gateway.connect("carol").await;

    let (status, answer) = post_json(
        &gateway.api_url(),
        "/v1/publish",
        &json!({ "channels": ["room.1", "lobby"], "data": "hello room" }),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["sessions"], 2, "{answer}");
    assert_eq!(answer["nodes"], 1, "{answer}");
    assert_eq!(alice.recv_text().await, "hello room");
    assert_eq!(bob.recv_text().await, "hello room");
    // Alice is in both channels and gets it once; Carol is in neither.
    assert!(alice.nothing_within(Duration::from_millis(200)).await);
    assert!(carol.nothing_within(Duration::from_millis(50)).await);

    // The backend moves Carol in and Bob out.
    let (status, answer) = post_json(
        &gateway.api_url(),
        "/v1/subscribe",
        &json!({ "sessions": ["carol", "nobody"], "channels": ["room.1"] }),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        statuses(&answer),
        pairs(&[("carol", "ok"), ("nobody", "not_found")])
    );
    let (_, answer) = post_json(
        &gateway.api_url(),
        "/v1/unsubscribe",
        &json!({ "sessions": ["bob"], "channels": ["room.1"] }),
    )
    .await;
    assert_eq!(statuses(&answer), pairs(&[("bob", "ok")]));
    let (_, answer) = post_json(
        &gateway.api_url(),
        "/v1/publish",
        &json!({ "channels": ["room.1"], "data_base64": "AAE=" }),
    )
    .await;
    assert_eq!(answer["sessions"], 2, "{answer}");
    assert_eq!(alice.recv().await.into_data().to_vec(), [0u8, 1]);
    assert_eq!(carol.recv().await.into_data().to_vec(), [0u8, 1]);
    assert!(bob.nothing_within(Duration::from_millis(200)).await);

    // A session's channels are in its lookup.
    let info = json_of(
        oort_e2e::http_client()
            .get(format!("{}/v1/sessions/alice", gateway.api_url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(info["channels"], json!(["room.1", "lobby"]), "{info}");
    gateway.stop().await;
}

#[tokio::test]
async fn presence_counts_pages_and_forgets_sessions_that_end() {
    let gateway = TestGateway::start(|config| {
        config.channels.metrics = vec!["room".to_owned()];
    })
    .await;
    let mut clients = Vec::new();
    for key in ["d", "b", "a", "c", "e"] {
        clients.push(connect_in(&gateway, key, "room").await);
    }
    let (status, page) = presence(&gateway, "room?limit=2").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["sessions"], 5);
    let keys = |page: &Value| -> Vec<String> {
        page["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["session"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(keys(&page), ["a", "b"]);
    assert_eq!(page["next"], "b");
    let (_, page) = presence(&gateway, "room?limit=2&after=b").await;
    assert_eq!(keys(&page), ["c", "d"]);
    let (_, page) = presence(&gateway, "room?limit=2&after=d").await;
    assert_eq!(keys(&page), ["e"]);
    assert!(page.get("next").is_none(), "{page}");
    let text = scrape(&gateway.api_url()).await;
    assert_eq!(
        metric(&text, "oort_channel_sessions{channel=\"room\"}"),
        Some(5.0),
        "{text}"
    );

    // A session that ends leaves its channels.
    let closing = clients.remove(0);
    closing.close(1000).await;
    gateway
        .backend
        .wait_for(CallbackKind::Close, "d", 1, oort_e2e::TIMEOUT)
        .await;
    let (_, page) = presence(&gateway, "room").await;
    assert_eq!(page["sessions"], 4, "{page}");
    let (_, page) = presence(&gateway, "nobody-here").await;
    assert_eq!(page["sessions"], 0, "{page}");
    gateway.stop().await;
}

#[tokio::test]
async fn channel_limits_and_bad_names_are_refused_clearly() {
    let gateway = TestGateway::start(|config| {
        config.channels.max_per_session = 2;
        config.channels.max_per_request = 3;
    })
    .await;
    let _alice = connect_in(&gateway, "alice", "a,b").await;
    let (status, answer) = post_json(
        &gateway.api_url(),
        "/v1/subscribe",
        &json!({ "sessions": ["alice"], "channels": ["c"] }),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(statuses(&answer), pairs(&[("alice", "channel_limit")]));

    let cases = [
        (
            "/v1/publish",
            json!({ "channels": [], "data": "x" }),
            "at least one channel",
        ),
        (
            "/v1/publish",
            json!({ "channels": ["a b"], "data": "x" }),
            "channels[0]",
        ),
        (
            "/v1/publish",
            json!({ "channels": ["a.>"], "data": "x" }),
            "not allowed",
        ),
        (
            "/v1/publish",
            json!({ "channels": ["x".repeat(129)], "data": "x" }),
            "at most 128 bytes",
        ),
        (
            "/v1/publish",
            json!({ "channels": ["a", "b", "c", "d"], "data": "x" }),
            "channels.max_per_request",
        ),
        (
            "/v1/publish",
            json!({ "channels": ["a"] }),
            "data or data_base64 is required",
        ),
        (
            "/v1/subscribe",
            json!({ "sessions": [], "channels": ["a"] }),
            "at least one session",
        ),
        (
            "/v1/subscribe",
            json!({ "sessions": ["alice"], "channels": ["a"], "x": 1 }),
            "unknown field",
        ),
    ];
    for (path, body, expected) in cases {
        let (status, answer) = post_json(&gateway.api_url(), path, &body).await;
        assert_eq!(status, 400, "{path} {body}: {answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(error.contains(expected), "{path} {body}: {error}");
    }
    let (status, answer) = presence(&gateway, "a?limit=5000").await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("at most 1000"),
        "{answer}"
    );

    // An unknown channel is no error, unless the publish is strict.
    let (status, answer) = post_json(
        &gateway.api_url(),
        "/v1/publish",
        &json!({ "channels": ["empty"], "data": "x" }),
    )
    .await;
    assert_eq!(
        (status, answer["sessions"].as_u64()),
        (200, Some(0)),
        "{answer}"
    );
    let (status, answer) = post_json(
        &gateway.api_url(),
        "/v1/publish",
        &json!({ "channels": ["a", "empty"], "data": "x", "strict": true }),
    )
    .await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(answer["channels"], json!(["empty"]), "{answer}");

    // A connect callback naming a bad channel, or too many, refuses the connect.
    for channels in ["bad%20name", "a,b,c"] {
        let refused = oort_e2e::http_client()
            .get(format!(
                "{}/connect?key=k&channels={channels}",
                gateway.api_url()
            ))
            .header("Connection", "Upgrade")
            .header("Upgrade", "websocket")
            .header("Sec-WebSocket-Version", "13")
            .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status().as_u16(), 502, "{channels}");
        let body = refused.text().await.unwrap();
        assert!(body.contains("X-Oort-Channels"), "{channels}: {body}");
    }
    gateway.stop().await;
}

/// Joins and leaves reach `callback.presence` in batches; a session that joins and leaves
/// within one batch is not reported at all.
#[tokio::test]
async fn presence_changes_are_reported_coalesced() {
    let backend = oort_e2e::TestBackend::start().await;
    let url = backend.callback_url(CallbackKind::Presence);
    let gateway = TestGateway::start_with_backend(backend, |config| {
        config.callback.presence = url;
        // Long enough that the churning session joins and leaves within the first batch
        // (the first report is due two seconds after the start).
        config.callback.presence_interval = oort_common::config::GoDuration::from_secs(2);
    })
    .await;
    let _stays = connect_in(&gateway, "stays", "room").await;
    let churn = connect_in(&gateway, "churn", "room").await;
    churn.close(1000).await;
    gateway
        .backend
        .wait_for(CallbackKind::Close, "churn", 1, oort_e2e::TIMEOUT)
        .await;
    let reports = gateway
        .backend
        .wait_for_kind(CallbackKind::Presence, 1, oort_e2e::TIMEOUT)
        .await;
    let report: Value = serde_json::from_slice(&reports[0].body).unwrap();
    assert_eq!(
        report["node"].as_str().map(str::is_empty),
        Some(false),
        "{report}"
    );
    assert_eq!(
        report["changes"],
        json!([{ "channel": "room", "session": "stays", "joined": true }]),
        "{report}"
    );
    let (_, answer) = post_json(
        &gateway.api_url(),
        "/v1/unsubscribe",
        &json!({ "sessions": ["stays"], "channels": ["room"] }),
    )
    .await;
    assert_eq!(statuses(&answer), pairs(&[("stays", "ok")]));
    let reports = gateway
        .backend
        .wait_for_kind(CallbackKind::Presence, 2, oort_e2e::TIMEOUT)
        .await;
    let report: Value = serde_json::from_slice(&reports[1].body).unwrap();
    assert_eq!(
        report["changes"],
        json!([{ "channel": "room", "session": "stays", "joined": false }])
    );
    gateway.stop().await;
}
