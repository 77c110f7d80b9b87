//! Helpers for kuiperbelt's backend API (`/send`, `/close`, `/stats`), used by the `kb_*` tests
//! and by others that need a plain send, and backends with a custom connect callback.

use oort_e2e::{TIMEOUT, TestBackend, eventually, http_client};

use crate::support::TestGateway;

/// kuiperbelt's default session header.
pub const SESSION_HEADER: &str = "X-Kuiperbelt-Session";

/// `POST {path}` on the backend API with one session header line per key.
pub async fn post(
    gateway: &TestGateway,
    path: &str,
    header: &str,
    keys: &[&str],
    content_type: Option<&str>,
    body: impl AsRef<[u8]>,
) -> reqwest::Response {
    let mut request = http_client()
        .post(format!("{}{path}", gateway.api_url()))
        .body(body.as_ref().to_vec());
    for key in keys {
        request = request.header(header, *key);
    }
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    request.send().await.expect("backend API request")
}

/// `POST /send` with the default session header.
pub async fn send(
    gateway: &TestGateway,
    keys: &[&str],
    body: impl AsRef<[u8]>,
) -> reqwest::Response {
    post(gateway, "/send", SESSION_HEADER, keys, None, body).await
}

/// `POST /close` with the default session header.
pub async fn close(
    gateway: &TestGateway,
    keys: &[&str],
    body: impl AsRef<[u8]>,
) -> reqwest::Response {
    post(gateway, "/close", SESSION_HEADER, keys, None, body).await
}

/// The `/stats` JSON body, verbatim.
pub async fn stats_body(gateway: &TestGateway) -> String {
    http_client()
        .get(format!("{}/stats", gateway.api_url()))
        .send()
        .await
        .expect("stats")
        .text()
        .await
        .expect("stats body")
}

/// One `/stats` counter.
pub async fn stat(gateway: &TestGateway, name: &str) -> i64 {
    let json: serde_json::Value =
        serde_json::from_str(&stats_body(gateway).await).expect("stats JSON");
    json[name].as_i64().expect("numeric counter")
}

/// Waits until `connections` is `count`: every connection task above it has finished,
/// including its unregistering and any close callback (both happen before it returns).
pub async fn wait_connections(gateway: &TestGateway, count: i64) {
    eventually(TIMEOUT, &format!("connections == {count}"), || async {
        (stat(gateway, "connections").await == count).then_some(())
    })
    .await;
}

/// A backend serving `router` (a real HTTP server on `127.0.0.1:0`); returns the URL of its
/// `/connect` route, for any callback setting.
pub async fn custom_connect_backend(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("bind custom backend");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}/connect")
}

/// A recording backend that uses `session_header`, as kuiperbelt's TestConfig does.
pub async fn backend_with_header(session_header: &str) -> TestBackend {
    let backend = TestBackend::start().await;
    backend.set_session_header(session_header);
    backend
}
