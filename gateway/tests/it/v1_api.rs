//! Oort's JSON API: `/v1/send`, `/v1/send/batch`, `/v1/close` and strict mode. `/v1/sessions` is
//! in `v1_sessions`, malformed requests in `v1_bad_requests`.

use oort_common::config::GoDuration;
use oort_e2e::http_client;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::api::{MARKER, pairs, post_json, send_marker, statuses};
use crate::support::TestGateway;

#[tokio::test]
async fn v1_send_reports_a_status_per_session_in_request_order() {
    let gateway = TestGateway::start(|_| {}).await;
    let mut alice = gateway.connect("alice").await;
    let mut bob = gateway.connect("bob").await;

    let (status, answer) = post_json(
        &gateway.api_url(),
        "/v1/send",
        &json!({"sessions": ["bob", "nobody", "alice"], "data": "hello"}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        statuses(&answer),
        pairs(&[("bob", "ok"), ("nobody", "not_found"), ("alice", "ok")])
    );
    assert_eq!(answer["ok"], 2);
    assert_eq!(answer["failed"], 1);
    assert_eq!(alice.recv_text().await, "hello");
    assert_eq!(bob.recv_text().await, "hello");
    gateway.stop().await;
}

#[tokio::test]
async fn v1_send_base64_arrives_as_a_binary_frame() {
    let gateway = TestGateway::start(|_| {}).await;
    let mut client = gateway.connect("bin").await;

    // 0x00 0x01 0x02 0xff: not UTF-8, so only a binary frame can carry it.
    let (status, answer) = post_json(
        &gateway.api_url(),
        "/v1/send",
        &json!({"sessions": ["bin"], "data_base64": "AAEC/w==", "binary": true}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(statuses(&answer), pairs(&[("bin", "ok")]));
    match client.recv().await {
        Message::Binary(data) => assert_eq!(&data[..], [0x00, 0x01, 0x02, 0xff]),
        other => panic!("expected a binary frame, got {other:?}"),
    }

    // Text given as data with binary: true is still sent as binary; base64 is always binary,
    // even when it decodes to UTF-8 and binary is left out.
    post_json(
        &gateway.api_url(),
        "/v1/send",
        &json!({"sessions": ["bin"], "data": "raw", "binary": true}),
    )
    .await;
    assert_eq!(client.recv().await, Message::binary(&b"raw"[..]));
    post_json(
        &gateway.api_url(),
        "/v1/send",
        &json!({"sessions": ["bin"], "data_base64": "aMOpbGxv"}),
    )
    .await;
    assert_eq!(client.recv().await, Message::binary("héllo".as_bytes()));
    gateway.stop().await;
}

#[tokio::test]
async fn v1_send_keeps_the_order_of_successive_sends() {
    let gateway = TestGateway::start(|_| {}).await;
    let mut client = gateway.connect("ordered").await;
    for i in 0..50 {
        let (status, _) = post_json(
            &gateway.api_url(),
            "/v1/send",
            &json!({"sessions": ["ordered"], "data": format!("m{i}")}),
        )
        .await;
        assert_eq!(status, 200);
    }
    for i in 0..50 {
        assert_eq!(client.recv_text().await, format!("m{i}"));
    }
    gateway.stop().await;
}

#[tokio::test]
async fn v1_send_to_a_listed_duplicate_delivers_once_per_entry() {
    let gateway = TestGateway::start(|_| {}).await;
    let mut client = gateway.connect("dup").await;
    let (status, answer) = post_json(
        &gateway.api_url(),
        "/v1/send",
        &json!({"sessions": ["dup", "dup"], "data": "twice"}),
    )
    .await;
    assert_eq!(status, 200);
    // The answer lines up one to one with the request, duplicates included.
    assert_eq!(statuses(&answer), pairs(&[("dup", "ok"), ("dup", "ok")]));
    assert_eq!(answer["ok"], 2);
    assert_eq!(client.recv_text().await, "twice");
    assert_eq!(client.recv_text().await, "twice");
    // No third copy came before the marker.
    send_marker(&gateway.api_url(), "dup", None).await;
    assert_eq!(client.recv_text().await, MARKER);
    gateway.stop().await;
}

#[tokio::test]
async fn v1_send_to_a_closing_session_answers_closed() {
    // A client that does not answer the close handshake keeps its session closing for
    // close_timeout, which leaves ample time for the send below.
    let gateway = TestGateway::start(|config| {
        config.websocket.close_timeout = GoDuration::from_secs(3);
    })
    .await;
    let client = gateway.connect("closing").await;
    let (status, answer) = post_json(
        &gateway.api_url(),
        "/v1/close",
        &json!({"sessions": ["closing"]}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = post_json(
        &gateway.api_url(),
        "/v1/send",
        &json!({"sessions": ["closing"], "data": "too late"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(statuses(&answer), pairs(&[("closing", "closed")]));
    assert_eq!(answer["failed"], 1);
    drop(client);
    gateway.stop().await;
}

#[tokio::test]
async fn v1_batch_delivers_every_message_and_totals_the_statuses() {
    let gateway = TestGateway::start(|_| {}).await;
    let mut a = gateway.connect("a").await;
    let mut b = gateway.connect("b").await;
    let mut messages: Vec<serde_json::Value> = (0..20)
        .map(|i| json!({"sessions": ["a", "b"], "data": format!("both {i}")}))
        .collect();
    messages.push(json!({"sessions": ["b", "ghost"], "data_base64": "/w==", "binary": true}));
    let (status, answer) = post_json(
        &gateway.api_url(),
        "/v1/send/batch",
        &json!({ "messages": messages }),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let per_message = answer["messages"].as_array().unwrap();
    assert_eq!(per_message.len(), 21);
    assert_eq!(
        statuses(&per_message[0]),
        pairs(&[("a", "ok"), ("b", "ok")])
    );
    assert_eq!(
        statuses(&per_message[20]),
        pairs(&[("b", "ok"), ("ghost", "not_found")])
    );
    assert_eq!(per_message[20]["ok"], 1);
    assert_eq!(per_message[20]["failed"], 1);
    assert_eq!(answer["ok"], 41);
    assert_eq!(answer["failed"], 1);
    for i in 0..20 {
        assert_eq!(a.recv_text().await, format!("both {i}"));
        assert_eq!(b.recv_text().await, format!("both {i}"));
    }
    assert_eq!(b.recv().await, Message::binary(vec![0xff]));
    gateway.stop().await;
}

#[tokio::test]
async fn v1_close_sends_the_last_message_then_the_code_and_reason() {
    let gateway = TestGateway::start(|_| {}).await;
    let mut client = gateway.connect("leaving").await;
    let (status, answer) = post_json(
        &gateway.api_url(),
        "/v1/close",
        &json!({"sessions": ["leaving", "ghost"], "data": "goodbye", "code": 4001, "reason": "kicked"}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        statuses(&answer),
        pairs(&[("leaving", "ok"), ("ghost", "not_found")])
    );
    assert_eq!(client.recv_text().await, "goodbye");
    let frame = client.closed().await.expect("a close frame");
    assert_eq!(u16::from(frame.code), 4001);
    assert_eq!(frame.reason.as_str(), "kicked");
    eventually_gone(&gateway, "leaving").await;
    gateway.stop().await;
}

#[tokio::test]
async fn v1_close_without_data_sends_only_a_normal_closure() {
    let gateway = TestGateway::start(|_| {}).await;
    let mut client = gateway.connect("quiet").await;
    let (status, _) = post_json(
        &gateway.api_url(),
        "/v1/close",
        &json!({"sessions": ["quiet"]}),
    )
    .await;
    assert_eq!(status, 200);
    // `closed` skips data messages, so read the very next frame instead.
    match client.next_within(oort_e2e::TIMEOUT).await {
        Some(Ok(Message::Close(Some(frame)))) => {
            assert_eq!(u16::from(frame.code), 1000);
            assert_eq!(frame.reason.as_str(), "");
        }
        other => panic!("expected a bare close frame, got {other:?}"),
    }
    gateway.stop().await;
}

#[tokio::test]
async fn v1_close_refuses_codes_a_backend_may_not_send() {
    let gateway = TestGateway::start(|_| {}).await;
    let mut client = gateway.connect("stays").await;
    for code in [999, 1001, 1005, 1006, 1015, 2999, 5000] {
        let (status, answer) = post_json(
            &gateway.api_url(),
            "/v1/close",
            &json!({"sessions": ["stays"], "code": code}),
        )
        .await;
        assert_eq!(status, 400, "code {code}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(
            error.starts_with("code:") && error.contains(&code.to_string()),
            "{error}"
        );
    }
    // The reason's limit is in bytes: 62 characters of two bytes each do not fit.
    for reason in ["x".repeat(124), "é".repeat(62)] {
        let (status, answer) = post_json(
            &gateway.api_url(),
            "/v1/close",
            &json!({"sessions": ["stays"], "code": 4000, "reason": reason}),
        )
        .await;
        assert_eq!(status, 400, "{reason}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().starts_with("reason:"),
            "{answer}"
        );
    }
    // None of the refused requests touched the session.
    post_json(
        &gateway.api_url(),
        "/v1/send",
        &json!({"sessions": ["stays"], "data": "still here"}),
    )
    .await;
    assert_eq!(client.recv_text().await, "still here");
    gateway.stop().await;
}

#[tokio::test]
async fn v1_strict_send_skips_everyone_when_one_session_is_unknown() {
    let gateway = TestGateway::start(|_| {}).await;
    let mut here = gateway.connect("here").await;
    let (status, answer) = post_json(
        &gateway.api_url(),
        "/v1/send",
        &json!({"sessions": ["here", "gone"], "data": "all or nothing", "strict": true}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        statuses(&answer),
        pairs(&[("here", "skipped"), ("gone", "not_found")])
    );
    assert_eq!(answer["ok"], 0);
    assert_eq!(answer["failed"], 2);

    let (_, answer) = post_json(
        &gateway.api_url(),
        "/v1/send/batch",
        &json!({"strict": true, "messages": [
            {"sessions": ["here"], "data": "batched"},
            {"sessions": ["here", "gone"], "data": "batched too"},
        ]}),
    )
    .await;
    // Strict mode applies per message: the first one has no unknown session.
    assert_eq!(statuses(&answer["messages"][0]), pairs(&[("here", "ok")]));
    assert_eq!(
        statuses(&answer["messages"][1]),
        pairs(&[("here", "skipped"), ("gone", "not_found")])
    );
    assert_eq!(here.recv_text().await, "batched");
    // Nothing from either skipped message came before the marker.
    send_marker(&gateway.api_url(), "here", None).await;
    assert_eq!(here.recv_text().await, MARKER);
    gateway.stop().await;
}

#[tokio::test]
async fn v1_strict_false_overrides_a_strict_broadcast_config() {
    let gateway = TestGateway::start(|config| config.strict_broadcast = true).await;
    let mut here = gateway.connect("here").await;
    let (_, answer) = post_json(
        &gateway.api_url(),
        "/v1/send",
        &json!({"sessions": ["here", "gone"], "data": "config strict"}),
    )
    .await;
    assert_eq!(
        statuses(&answer),
        pairs(&[("here", "skipped"), ("gone", "not_found")]),
        "strict_broadcast is the default for v1 too"
    );
    let (_, answer) = post_json(
        &gateway.api_url(),
        "/v1/send",
        &json!({"sessions": ["here", "gone"], "data": "lenient", "strict": false}),
    )
    .await;
    assert_eq!(
        statuses(&answer),
        pairs(&[("here", "ok"), ("gone", "not_found")])
    );
    assert_eq!(here.recv_text().await, "lenient");
    gateway.stop().await;
}

/// Waits until `GET /v1/sessions/{key}` answers 404.
async fn eventually_gone(gateway: &TestGateway, key: &str) {
    let url = format!("{}/v1/sessions/{key}", gateway.api_url());
    oort_e2e::eventually(oort_e2e::TIMEOUT, "the session to be removed", || async {
        let response = http_client().get(&url).send().await.unwrap();
        (response.status() == 404).then_some(())
    })
    .await;
}
