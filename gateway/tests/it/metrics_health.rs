//! `/metrics` (Prometheus text whose values follow the traffic), `/livez` and `/readyz`.

use oort_e2e::backend::CallbackKind;
use oort_e2e::{TIMEOUT, WsClient, eventually, http_client};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::api::{metric, parts, post_json, scrape, wait_for_metric};
use crate::raw;
use crate::support::TestGateway;

/// Every series the issue asks for, present from the start.
const SERIES: [&str; 12] = [
    "oort_connections",
    "oort_connections_total",
    "oort_sessions",
    "oort_messages_received_total",
    "oort_messages_sent_total",
    r#"oort_deliveries_total{status="ok"}"#,
    r#"oort_deliveries_total{status="queue_full"}"#,
    r#"oort_session_closes_total{cause="slow_consumer"}"#,
    r#"oort_errors_total{kind="bad_request"}"#,
    r#"oort_errors_total{kind="callback_failed"}"#,
    r#"oort_callback_duration_seconds_count{callback="connect"}"#,
    r#"oort_callback_duration_seconds_sum{callback="receive"}"#,
];

#[tokio::test]
async fn metrics_expose_every_series_at_zero_before_any_traffic() {
    let gateway = TestGateway::start(|_| {}).await;
    let response = http_client()
        .get(format!("{}/metrics", gateway.api_url()))
        .send()
        .await
        .unwrap();
    let (status, content_type, text) = parts(response).await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    for series in SERIES {
        assert_eq!(metric(&text, series), Some(0.0), "{series} in\n{text}");
    }
    assert!(
        text.contains("# TYPE oort_callback_duration_seconds histogram"),
        "{text}"
    );
    assert!(text.contains("# HELP oort_deliveries_total "), "{text}");
    gateway.stop().await;
}

#[tokio::test]
async fn metrics_follow_connections_messages_deliveries_callbacks_and_closes() {
    let gateway = TestGateway::start(|_| {}).await;
    let base = gateway.api_url();
    let mut a = gateway.connect("a").await;
    let mut b = gateway.connect("b").await;

    let text = scrape(&base).await;
    assert_eq!(metric(&text, "oort_connections_total"), Some(2.0), "{text}");
    assert_eq!(
        metric(&text, "oort_connections"),
        Some(2.0),
        "open connections: {text}"
    );
    assert_eq!(metric(&text, "oort_sessions"), Some(2.0));
    assert_eq!(
        metric(
            &text,
            r#"oort_callback_duration_seconds_count{callback="connect"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        metric(
            &text,
            r#"oort_callback_duration_seconds_count{callback="establish"}"#
        ),
        Some(2.0)
    );
    // Histogram buckets are cumulative and end at +Inf with the count.
    assert_eq!(
        metric(
            &text,
            r#"oort_callback_duration_seconds_bucket{callback="connect",le="+Inf"}"#
        ),
        Some(2.0)
    );

    let (_, answer) = post_json(
        &base,
        "/v1/send",
        &json!({"sessions": ["a", "b", "ghost"], "data": "one"}),
    )
    .await;
    assert_eq!(answer["ok"], 2);
    assert_eq!(a.recv_text().await, "one");
    assert_eq!(b.recv_text().await, "one");
    // The writer counts a frame once its flush returned, which may be just after the client
    // read it.
    let text = wait_for_metric(&base, "oort_messages_sent_total", 2.0).await;
    assert_eq!(metric(&text, "oort_messages_sent_total"), Some(2.0));
    assert_eq!(
        metric(&text, r#"oort_deliveries_total{status="ok"}"#),
        Some(2.0)
    );
    assert_eq!(
        metric(&text, r#"oort_deliveries_total{status="not_found"}"#),
        Some(1.0)
    );

    a.send_text("up").await;
    gateway
        .backend
        .wait_for(CallbackKind::Receive, "a", 1, TIMEOUT)
        .await;
    let text = wait_for_metric(
        &base,
        r#"oort_callback_duration_seconds_count{callback="receive"}"#,
        1.0,
    )
    .await;
    assert_eq!(metric(&text, "oort_messages_received_total"), Some(1.0));

    a.close(1000).await;
    gateway
        .backend
        .wait_for(CallbackKind::Close, "a", 1, TIMEOUT)
        .await;
    let text = wait_for_metric(
        &base,
        r#"oort_callback_duration_seconds_count{callback="close"}"#,
        1.0,
    )
    .await;
    assert_eq!(
        metric(&text, r#"oort_session_closes_total{cause="client_closed"}"#),
        Some(1.0)
    );
    let text = eventually(TIMEOUT, "the connection gauge to drop", || async {
        let text = scrape(&base).await;
        (metric(&text, "oort_connections") == Some(1.0)).then_some(text)
    })
    .await;
    assert_eq!(metric(&text, "oort_sessions"), Some(1.0));
    assert_eq!(metric(&text, "oort_connections_total"), Some(2.0));
    gateway.stop().await;
}

#[tokio::test]
async fn metrics_count_errors_by_kind() {
    let gateway = TestGateway::start(|_| {}).await;
    let base = gateway.api_url();
    // A malformed API request, a refused connect callback and a failing receive callback.
    let response = http_client()
        .post(format!("{base}/v1/send"))
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let refused = WsClient::connect_with(&gateway.ws_url("key=x&status=500&body=no"), &[]).await;
    assert!(refused.is_err());
    let mut client = gateway.connect("receive-fail").await;
    client.send_text("dropped").await;
    gateway
        .backend
        .wait_for(CallbackKind::Receive, "receive-fail", 1, TIMEOUT)
        .await;
    let text = wait_for_metric(&base, r#"oort_errors_total{kind="callback_failed"}"#, 1.0).await;
    assert_eq!(
        metric(&text, r#"oort_errors_total{kind="bad_request"}"#),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, r#"oort_errors_total{kind="callback_failed"}"#),
        Some(1.0),
        "the receive callback's 500 (a connect refusal is the backend's answer, not an error)"
    );
    // A garbage frame is a client protocol error.
    let mut raw_client = raw::upgraded(gateway.addr, "garbage").await;
    gateway
        .backend
        .wait_for(CallbackKind::Establish, "garbage", 1, TIMEOUT)
        .await;
    raw_client.write(&raw::garbage()).await;
    wait_for_metric(&base, r#"oort_errors_total{kind="client_protocol"}"#, 1.0).await;
    gateway.stop().await;
}

#[tokio::test]
async fn livez_and_readyz_answer_200_json_while_serving() {
    let gateway = TestGateway::start(|_| {}).await;
    for (path, body) in [
        ("/livez", r#"{"status":"ok"}"#),
        ("/readyz", r#"{"status":"ready"}"#),
    ] {
        let response = http_client()
            .get(format!("{}{path}", gateway.api_url()))
            .send()
            .await
            .unwrap();
        let (status, content_type, text) = parts(response).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(content_type, "application/json");
        assert_eq!(text, body);
    }
    gateway.stop().await;
}

#[tokio::test]
async fn readyz_answers_503_draining_once_shutdown_begins() {
    let gateway = TestGateway::start(|_| {}).await;
    // A request that is in flight when the drain starts is still answered; make /readyz one by
    // sending its head in two parts, the first read by the server before the drain.
    let mut stream = TcpStream::connect(gateway.addr).await.unwrap();
    stream
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: test\r\n")
        .await
        .unwrap();
    raw::wait_until_server_read(&stream).await;

    gateway.begin_shutdown();
    // The drain has begun once the listener stops taking connections.
    eventually(TIMEOUT, "the listener to close", || async {
        TcpStream::connect(gateway.addr)
            .await
            .is_err()
            .then_some(())
    })
    .await;
    stream
        .write_all(b"Connection: close\r\n\r\n")
        .await
        .unwrap();
    let response = raw::read_response(&mut stream).await;
    assert_eq!(response.status, 503);
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(response.json(), json!({"status": "draining"}));
    gateway.stop().await;
}
