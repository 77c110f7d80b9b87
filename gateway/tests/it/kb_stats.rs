//! kuiperbelt's `/stats`: the six counters, their meaning, and the exact JSON and TSV renderings
//! monitoring plugins parse (reference 6.4; upstream `stats_test.go`).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::any;
use oort_e2e::backend::CallbackKind;
use oort_e2e::{TIMEOUT, WsClient, eventually, http_client};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

use crate::api::parts;
use crate::kb_support::{close, custom_connect_backend, send, stat, stats_body, wait_connections};
use crate::support::TestGateway;

/// The JSON `/stats` body for these counter values, as kuiperbelt's `json.Encoder` wrote it.
fn stats_json(values: [i64; 6]) -> String {
    let [
        connections,
        total,
        messages,
        connect_errors,
        message_errors,
        closing,
    ] = values;
    format!(
        "{{\"connections\":{connections},\"total_connections\":{total},\"total_messages\":{messages},\"connect_errors\":{connect_errors},\"message_errors\":{message_errors},\"closing_connections\":{closing}}}\n"
    )
}

/// `stats_test.go` TestStats dump: a fresh gateway's JSON, byte for byte, keys in kuiperbelt's
/// order, trailing newline, `Content-Type: application/json` (no charset); any method.
#[tokio::test]
async fn stats_json_is_byte_exact() {
    let gateway = TestGateway::start(|_| {}).await;
    for method in [reqwest::Method::GET, reqwest::Method::POST] {
        let response = http_client()
            .request(method.clone(), format!("{}/stats", gateway.api_url()))
            .send()
            .await
            .unwrap();
        let (status, content_type, body) = parts(response).await;
        assert_eq!(status, 200, "{method}");
        assert_eq!(content_type, "application/json", "{method}");
        assert_eq!(body, stats_json([0; 6]), "{method}");
    }
}

/// Reference 6.4 and the section 2 table: `total_connections` counts every connect request,
/// `connections` the live ones, `connect_errors` failed connects except a 403 refusal, and
/// `total_messages` first messages plus one per session a send or close was dispatched to
/// (unknown keys are not dispatched; an empty first message is not sent).
#[tokio::test]
async fn stats_counts_as_kuiperbelt() {
    let gateway = TestGateway::start(|_| {}).await;
    let mut alice = WsClient::connect(&gateway.ws_url("key=alice&first=hi")).await;
    assert_eq!(alice.recv().await, Message::text("hi"));
    let mut bob = gateway.connect("bob").await;
    for refusal in ["status=500&body=no", "status=403&body=no"] {
        let refused = WsClient::connect_with(&gateway.ws_url(refusal), &[]).await;
        assert!(refused.is_err(), "{refusal}");
    }

    let response = send(&gateway, &["alice", "bob", "nobody"], "all").await;
    assert_eq!(response.status(), 200);
    let response = close(&gateway, &["bob", "ghost"], "bye").await;
    assert_eq!(response.status(), 200);
    assert_eq!(bob.recv().await, Message::text("all"));
    assert_eq!(bob.recv().await, Message::text("bye"));
    bob.closed().await;
    wait_connections(&gateway, 1).await;

    // connections 1 (alice), total 4 (alice, bob, two refusals), messages 1 + 2 + 1,
    // connect_errors 1 (the 500; the 403 is an authorization failure).
    assert_eq!(stats_body(&gateway).await, stats_json([1, 4, 4, 1, 0, 0]));
}

/// Reference 6.1: a strict-broadcast refusal dispatches nothing, so it counts no message.
#[tokio::test]
async fn strict_refusal_counts_no_message() {
    let gateway = TestGateway::start(|config| config.strict_broadcast = true).await;
    let _alice = gateway.connect("alice").await;
    let response = send(&gateway, &["alice", "nobody"], "x").await;
    assert_eq!(response.status(), 400);
    assert_eq!(stat(&gateway, "total_messages").await, 0);
    let response = send(&gateway, &["alice"], "x").await;
    assert_eq!(response.status(), 200);
    assert_eq!(stat(&gateway, "total_messages").await, 1);
}

/// Reference 6.4: `closing_connections` counts close callbacks in flight, and the connection
/// stays in `connections` until its close callback has answered.
#[tokio::test]
async fn closing_connections_counts_close_callbacks_in_flight() {
    let release = Arc::new(Semaphore::new(0));
    let close_url = custom_connect_backend(
        axum::Router::new()
            .route(
                "/connect",
                any(|State(release): State<Arc<Semaphore>>| async move {
                    let _permit = release.acquire().await;
                    StatusCode::OK
                }),
            )
            .with_state(release.clone()),
    )
    .await;
    let gateway = TestGateway::start(|config| config.callback.close = close_url).await;
    let client = gateway.connect("leaving").await;
    client.close(1000).await;
    eventually(TIMEOUT, "closing_connections == 1", || async {
        (stat(&gateway, "closing_connections").await == 1).then_some(())
    })
    .await;
    assert_eq!(stat(&gateway, "connections").await, 1);
    release.add_permits(1);
    wait_connections(&gateway, 0).await;
    assert_eq!(stat(&gateway, "closing_connections").await, 0);
    // The recording backend never saw a close callback: it went to the holding server.
    assert!(gateway.backend.of_kind(CallbackKind::Close).is_empty());
}

/// Go's `FormValue` reads a form body only for POST, PUT and PATCH; with another method a
/// `format` in the body is not seen, and the answer is JSON.
#[tokio::test]
async fn stats_reads_a_form_body_only_where_go_did() {
    let gateway = TestGateway::start(|_| {}).await;
    for (method, expected_type) in [
        (reqwest::Method::PUT, "text/plain"),
        (reqwest::Method::PATCH, "text/plain"),
        (reqwest::Method::DELETE, "application/json"),
        (reqwest::Method::GET, "application/json"),
    ] {
        let response = http_client()
            .request(method.clone(), format!("{}/stats", gateway.api_url()))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("format=tsv")
            .send()
            .await
            .unwrap();
        let (status, content_type, _) = parts(response).await;
        assert_eq!(
            (status, content_type.as_str()),
            (200, expected_type),
            "{method}"
        );
    }
}

/// Reference 6.4: `format=tsv|txt|text`, in the query or a form body, gives six
/// `name\tvalue\tunixtime` lines in kuiperbelt's order as `text/plain`; any other format JSON.
#[tokio::test]
async fn stats_tsv_is_byte_exact() {
    let gateway = TestGateway::start(|_| {}).await;
    let mut client = WsClient::connect(&gateway.ws_url("key=alice&first=hi")).await;
    assert_eq!(client.recv().await, Message::text("hi"));
    let base = gateway.api_url();
    let requests = [
        http_client().get(format!("{base}/stats?format=tsv")),
        http_client().get(format!("{base}/stats?format=txt")),
        http_client().get(format!("{base}/stats?format=text")),
        http_client()
            .post(format!("{base}/stats"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("format=tsv"),
    ];
    for request in requests {
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let (status, content_type, body) = parts(request.send().await.unwrap()).await;
        let after = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert_eq!((status, content_type.as_str()), (200, "text/plain"));
        let lines: Vec<&str> = body.split_terminator('\n').collect();
        assert!(body.ends_with('\n'));
        let expected = [
            ("kuiperbelt.conn.current", 1),
            ("kuiperbelt.conn.total", 1),
            ("kuiperbelt.conn.errors", 0),
            ("kuiperbelt.conn.closing", 0),
            ("kuiperbelt.messages.total", 1),
            ("kuiperbelt.messages.errors", 0),
        ];
        assert_eq!(lines.len(), expected.len(), "{body:?}");
        for (line, (name, value)) in lines.iter().zip(expected) {
            let fields: Vec<&str> = line.split('\t').collect();
            assert_eq!(fields.len(), 3, "{line:?}");
            assert_eq!((fields[0], fields[1]), (name, value.to_string().as_str()));
            let time: u64 = fields[2].parse().unwrap();
            assert!((before..=after).contains(&time), "{line:?}");
        }
    }
    let response = http_client()
        .get(format!("{base}/stats?format=xml"))
        .send()
        .await
        .unwrap();
    assert_eq!(parts(response).await.2, stats_json([1, 1, 1, 0, 0, 0]));
}
