//! `api_token` (Bearer authentication of the backend API) and the separate API listener.

use oort_e2e::http_client;
use reqwest::{Method, RequestBuilder};
use serde_json::json;

use crate::api::{MARKER, header, json_of, send_marker};
use crate::support::TestGateway;

const TOKEN: &str = "s3cret-token-for-tests";

/// Every protected endpoint, with a request that succeeds when authorized.
fn protected_requests(base: &str) -> Vec<(&'static str, RequestBuilder)> {
    let client = http_client();
    vec![
        (
            "POST /send",
            client
                .post(format!("{base}/send"))
                .header("X-Kuiperbelt-Session", "alice")
                .body("kb"),
        ),
        (
            "POST /close",
            client
                .post(format!("{base}/close"))
                .header("X-Kuiperbelt-Session", "nobody")
                .body("bye"),
        ),
        ("GET /stats", client.get(format!("{base}/stats"))),
        ("GET /metrics", client.get(format!("{base}/metrics"))),
        (
            "POST /v1/send",
            client
                .post(format!("{base}/v1/send"))
                .body(json!({"sessions": ["alice"], "data": "v1"}).to_string()),
        ),
        (
            "POST /v1/send/batch",
            client
                .post(format!("{base}/v1/send/batch"))
                .body(json!({"messages": [{"sessions": ["alice"], "data": "batch"}]}).to_string()),
        ),
        (
            "POST /v1/close",
            client
                .post(format!("{base}/v1/close"))
                .body(json!({"sessions": ["nobody"]}).to_string()),
        ),
        (
            "GET /v1/sessions/alice",
            client.get(format!("{base}/v1/sessions/alice")),
        ),
    ]
}

/// Sends `request` and asserts a 401 with `WWW-Authenticate: Bearer` and a JSON error
/// containing `reason`.
async fn expect_401(what: &str, request: RequestBuilder, reason: &str) {
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 401, "{what}");
    assert_eq!(
        header(response.headers(), "www-authenticate"),
        Some("Bearer"),
        "{what}"
    );
    let body = json_of(response).await;
    assert!(
        body["error"].as_str().unwrap_or_default().contains(reason),
        "{what}: {body}"
    );
    assert_eq!(body["code"], "unauthorized", "{what}: {body}");
}

#[tokio::test]
async fn api_token_missing_is_refused_with_401_json_on_every_backend_endpoint() {
    let gateway = TestGateway::start(|config| config.api_token = TOKEN.into()).await;
    let mut alice = gateway.connect("alice").await;
    for (what, request) in protected_requests(&gateway.api_url()) {
        expect_401(what, request, "missing bearer token").await;
    }
    // Nothing got through to the client: the marker is the first thing it gets.
    send_marker(&gateway.api_url(), "alice", Some(TOKEN)).await;
    assert_eq!(alice.recv_text().await, MARKER);
    gateway.stop().await;
}

#[tokio::test]
async fn api_token_wrong_or_in_another_scheme_is_refused() {
    let gateway = TestGateway::start(|config| config.api_token = TOKEN.into()).await;
    let mut alice = gateway.connect("alice").await;
    let wrong_same_length = "x".repeat(TOKEN.len());
    for (what, request) in protected_requests(&gateway.api_url()) {
        expect_401(
            what,
            request.bearer_auth(&wrong_same_length),
            "invalid bearer token",
        )
        .await;
    }
    let base = gateway.api_url();
    let attempts = [
        format!("Bearer {TOKEN}x"),
        format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]),
        "Bearer ".to_owned(),
        format!("Basic {TOKEN}"),
        TOKEN.to_owned(),
    ];
    for authorization in attempts {
        let request = http_client()
            .post(format!("{base}/v1/send"))
            .header("authorization", &authorization)
            .body(json!({"sessions": ["alice"], "data": "no"}).to_string());
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{authorization:?}");
    }
    send_marker(&base, "alice", Some(TOKEN)).await;
    assert_eq!(alice.recv_text().await, MARKER);
    gateway.stop().await;
}

#[tokio::test]
async fn api_token_right_lets_every_backend_endpoint_through() {
    let gateway = TestGateway::start(|config| config.api_token = TOKEN.into()).await;
    let mut alice = gateway.connect("alice").await;
    for (what, request) in protected_requests(&gateway.api_url()) {
        let response = request.bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(response.status(), 200, "{what}");
    }
    // The scheme is case-insensitive.
    let response = http_client()
        .post(format!("{}/v1/send", gateway.api_url()))
        .header("authorization", format!("bearer {TOKEN}"))
        .body(json!({"sessions": ["alice"], "data": "lowercase"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    for expected in ["kb", "v1", "batch", "lowercase"] {
        assert_eq!(alice.recv_text().await, expected);
    }
    gateway.stop().await;
}

#[tokio::test]
async fn api_token_leaves_ping_health_and_client_connects_open() {
    let gateway = TestGateway::start(|config| config.api_token = TOKEN.into()).await;
    for path in ["/ping", "/livez", "/readyz"] {
        let response = http_client()
            .get(format!("{}{path}", gateway.api_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    // A client connects (and the backend is asked) without any token.
    let mut client = oort_e2e::WsClient::connect(&gateway.ws_url("key=open&first=welcome")).await;
    assert_eq!(client.recv_text().await, "welcome");
    gateway
        .backend
        .wait_for(
            oort_e2e::CallbackKind::Establish,
            "open",
            1,
            oort_e2e::TIMEOUT,
        )
        .await;
    gateway.stop().await;
}

#[tokio::test]
async fn split_listeners_keep_the_backend_api_off_the_client_port() {
    let gateway = TestGateway::start(|config| config.api_listen = "127.0.0.1:0".into()).await;
    let api = gateway.api_url();
    let public = format!("http://{}", gateway.addr);
    assert_ne!(api, public);
    let mut alice = gateway.connect("alice").await;
    let client = http_client();
    let api_requests = [
        (Method::POST, "/send"),
        (Method::POST, "/close"),
        (Method::GET, "/stats"),
        (Method::GET, "/metrics"),
        (Method::GET, "/ping"),
        (Method::POST, "/v1/send"),
        (Method::POST, "/v1/send/batch"),
        (Method::POST, "/v1/close"),
        (Method::GET, "/v1/sessions/alice"),
    ];
    for (method, path) in &api_requests {
        let response = client
            .request(method.clone(), format!("{public}{path}"))
            .header("X-Kuiperbelt-Session", "alice")
            .body(json!({"sessions": ["alice"], "data": "leak"}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{method} {path} on the client port");
    }
    // Health stays on the client port (for load balancers); the API port has everything.
    for path in ["/livez", "/readyz"] {
        for base in [&public, &api] {
            let response = client.get(format!("{base}{path}")).send().await.unwrap();
            assert_eq!(response.status(), 200, "{base}{path}");
        }
    }
    for (method, path) in &api_requests {
        let mut request = client.request(method.clone(), format!("{api}{path}"));
        request = if path.starts_with("/v1/send") && path.ends_with("batch") {
            request.body(json!({"messages": [{"sessions": ["alice"], "data": "api"}]}).to_string())
        } else if path.starts_with("/v1/") {
            request.body(json!({"sessions": ["nobody"], "data": "api"}).to_string())
        } else {
            request.header("X-Kuiperbelt-Session", "nobody").body("api")
        };
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "{method} {path} on the API port");
    }
    assert_eq!(alice.recv_text().await, "api", "the batch reached alice");
    // Nothing sent to the client port ever reached the client: the marker comes next.
    send_marker(&api, "alice", None).await;
    assert_eq!(alice.recv_text().await, MARKER);
    // Clients connect on the client port only.
    let refused = oort_e2e::WsClient::connect_with(
        &format!("ws://{}/connect?key=x", gateway.api_addr.unwrap()),
        &[],
    )
    .await;
    assert!(refused.is_err(), "the API port does not take clients");
    gateway.stop().await;
}

#[tokio::test]
async fn split_listeners_with_a_token_answer_404_not_401_on_the_client_port() {
    let gateway = TestGateway::start(|config| {
        config.api_listen = "127.0.0.1:0".into();
        config.api_token = TOKEN.into();
    })
    .await;
    let public = format!("http://{}", gateway.addr);
    for path in ["/send", "/v1/send", "/metrics"] {
        let response = http_client()
            .post(format!("{public}{path}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{path}");
    }
    let response = http_client()
        .get(format!("{}/metrics", gateway.api_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let response = http_client()
        .get(format!("{}/metrics", gateway.api_url()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    gateway.stop().await;
}
