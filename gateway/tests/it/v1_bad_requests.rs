//! Malformed `/v1/*` requests: each gets a 4xx with a JSON body naming the problem, nothing is
//! delivered, and the node keeps serving.

use oort_e2e::http_client;
use serde_json::json;

use crate::api::{MARKER, json_of, metric, parse_json, parts, post_json, scrape, send_marker};
use crate::support::TestGateway;

/// Posts raw bytes and returns the status and the `error` text of the JSON answer.
async fn post_raw(base: &str, path: &str, body: impl Into<reqwest::Body>) -> (u16, String) {
    let (status, body) = post_raw_json(base, path, body).await;
    let error = body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error text in {body}"))
        .to_owned();
    // Every malformed body has a stable code beside the text (docs/errors.md).
    let code = body["code"].as_str().unwrap_or_default();
    assert!(
        ["invalid_json", "invalid_request", "body_too_large"].contains(&code),
        "{path}: code {code:?} in {body}"
    );
    (status, error)
}

/// Posts raw bytes and returns the status and the JSON answer.
async fn post_raw_json(
    base: &str,
    path: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, serde_json::Value) {
    let response = http_client()
        .post(format!("{base}{path}"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let (status, content_type, text) = parts(response).await;
    assert!(
        content_type.starts_with("application/json"),
        "{path} answered {status} with content-type {content_type:?}"
    );
    (status, parse_json(&text))
}

#[tokio::test]
async fn v1_send_codes_broken_json_apart_from_a_bad_field() {
    let gateway = TestGateway::start(|_| {}).await;
    let base = gateway.api_url();
    let (status, body) = post_raw_json(&base, "/v1/send", &b"{\"sessions\": ["[..]).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_json")),
        "{body}"
    );
    let (status, body) = post_raw_json(&base, "/v1/send", &br#"{"data": "x"}"#[..]).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    let (status, body) = post_raw_json(&base, "/v1/no-such-endpoint", &b"{}"[..]).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    gateway.stop().await;
}

#[tokio::test]
async fn v1_send_refuses_each_malformed_body_with_a_reason() {
    let gateway = TestGateway::start(|_| {}).await;
    let mut client = gateway.connect("target").await;
    let base = gateway.api_url();
    let cases: [(&str, &[u8], &[&str]); 16] = [
        (
            "truncated JSON",
            b"{\"sessions\": [",
            &["EOF while parsing"],
        ),
        ("not an object", b"[1, 2]", &["invalid type"]),
        ("empty body", b"", &["invalid JSON"]),
        (
            "a second value after the object",
            br#"{"sessions": ["target"], "data": "x"} {}"#,
            &["invalid JSON", "trailing characters"],
        ),
        (
            "missing sessions",
            br#"{"data": "x"}"#,
            &["sessions or users: name at least one session key or user"],
        ),
        (
            "empty sessions",
            br#"{"sessions": [], "data": "x"}"#,
            &["sessions", "at least one"],
        ),
        (
            "sessions of the wrong type",
            br#"{"sessions": "target", "data": "x"}"#,
            &["sessions"],
        ),
        (
            "no data",
            br#"{"sessions": ["target"]}"#,
            &["data", "required"],
        ),
        (
            "both data and data_base64",
            br#"{"sessions": ["target"], "data": "x", "data_base64": "eA=="}"#,
            &["data", "data_base64", "not both"],
        ),
        (
            "bad base64",
            br#"{"sessions": ["target"], "data_base64": "not base64!", "binary": true}"#,
            &["data_base64"],
        ),
        (
            "base64 as a text frame",
            br#"{"sessions": ["target"], "data_base64": "eA==", "binary": false}"#,
            &["binary", "data_base64", "binary frame"],
        ),
        (
            "base64 without padding",
            br#"{"sessions": ["target"], "data_base64": "eA"}"#,
            &["data_base64"],
        ),
        (
            "null instead of leaving data_base64 out",
            br#"{"sessions": ["target"], "data": "x", "data_base64": null}"#,
            &["data_base64", "null"],
        ),
        (
            "null strict",
            br#"{"sessions": ["target"], "data": "x", "strict": null}"#,
            &["strict", "null"],
        ),
        (
            "unknown field",
            br#"{"sessions": ["target"], "data": "x", "priority": 1}"#,
            &["unknown field", "priority"],
        ),
        (
            "invalid UTF-8 in the JSON itself",
            b"{\"sessions\": [\"target\"], \"data\": \"\xff\"}",
            &["data", "invalid unicode"],
        ),
    ];
    for (what, body, expected) in cases {
        let (status, error) = post_raw(&base, "/v1/send", body.to_vec()).await;
        assert_eq!(status, 400, "{what}: {error}");
        for word in expected {
            assert!(error.contains(word), "{what}: {error:?} lacks {word:?}");
        }
    }
    // None of them reached the client: the marker is the first thing it gets.
    send_marker(&base, "target", None).await;
    assert_eq!(client.recv_text().await, MARKER);
    let text = scrape(&base).await;
    assert_eq!(
        metric(&text, r#"oort_errors_total{kind="bad_request"}"#),
        Some(16.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, r#"oort_deliveries_total{status="ok"}"#),
        Some(1.0),
        "the marker's delivery only"
    );
    gateway.stop().await;
}

#[tokio::test]
async fn v1_batch_errors_name_the_message_at_fault() {
    let gateway = TestGateway::start(|_| {}).await;
    let mut client = gateway.connect("target").await;
    let base = gateway.api_url();
    let cases = [
        (json!({"messages": []}), vec!["messages", "at least one"]),
        (json!({}), vec!["messages"]),
        (
            json!({"messages": [{"sessions": ["target"], "data": "fine"}, {"sessions": [], "data": "x"}]}),
            vec!["messages[1].sessions"],
        ),
        (
            json!({"messages": [{"sessions": ["target"], "data": "fine"}, {"sessions": ["target"], "data_base64": "%%"}]}),
            vec!["messages[1].data_base64"],
        ),
        (
            json!({"messages": [{"sessions": ["target"], "data": "x", "bogus": true}]}),
            vec!["messages[0]", "bogus"],
        ),
    ];
    for (body, expected) in cases {
        let (status, error) = post_raw(&base, "/v1/send/batch", body.to_string()).await;
        assert_eq!(status, 400, "{body}: {error}");
        for word in expected {
            assert!(error.contains(word), "{body}: {error:?} lacks {word:?}");
        }
    }
    // A batch is all or nothing: the valid first messages above were not delivered (the
    // marker is the first thing the client gets).
    send_marker(&base, "target", None).await;
    assert_eq!(client.recv_text().await, MARKER);
    gateway.stop().await;
}

#[tokio::test]
async fn v1_close_refuses_malformed_bodies() {
    let gateway = TestGateway::start(|_| {}).await;
    let mut client = gateway.connect("target").await;
    let base = gateway.api_url();
    let cases = [
        (r#"{"sessions": []}"#, "sessions"),
        (r#"{"sessions": ["target"], "code": "1000"}"#, "code"),
        (r#"{"sessions": ["target"], "code": 70000}"#, "code"),
        (r#"{"sessions": ["target"], "code": null}"#, "code"),
        (r#"{"sessions": ["target"], "reason": null}"#, "reason"),
        (r#"{"sessions": ["target"], "data": null}"#, "data"),
        (
            r#"{"sessions": ["target"], "data_base64": "eA==", "binary": false}"#,
            "binary frame",
        ),
        (
            r#"{"sessions": ["target"], "data": "x", "data_base64": "eA=="}"#,
            "not both",
        ),
        (r#"{"sessions": ["target"], "after": 5}"#, "unknown field"),
        ("not json", "invalid JSON"),
    ];
    for (body, expected) in cases {
        let (status, error) = post_raw(&base, "/v1/close", body).await;
        assert_eq!(status, 400, "{body}: {error}");
        assert!(
            error.contains(expected),
            "{body}: {error:?} lacks {expected:?}"
        );
    }
    // The session is still open and receiving.
    let (status, _) = post_json(
        &base,
        "/v1/send",
        &json!({"sessions": ["target"], "data": "open"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(client.recv_text().await, "open");
    gateway.stop().await;
}

#[tokio::test]
async fn v1_wrong_methods_get_405_json() {
    let gateway = TestGateway::start(|_| {}).await;
    let base = gateway.api_url();
    let client = http_client();
    let cases = [
        (reqwest::Method::GET, "/v1/send"),
        (reqwest::Method::PUT, "/v1/send"),
        (reqwest::Method::GET, "/v1/send/batch"),
        (reqwest::Method::GET, "/v1/close"),
        (reqwest::Method::DELETE, "/v1/sessions/someone"),
        (reqwest::Method::POST, "/v1/sessions/someone"),
    ];
    for (method, path) in cases {
        let response = client
            .request(method.clone(), format!("{base}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "{method} {path}");
        let body = json_of(response).await;
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains(method.as_str()), "{method} {path}: {body}");
    }
    // An unknown path under /v1 is a JSON 404.
    let response = client
        .post(format!("{base}/v1/no-such-endpoint"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let body = json_of(response).await;
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("/v1/no-such-endpoint"),
        "{body}"
    );
    gateway.stop().await;
}
