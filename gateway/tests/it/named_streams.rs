//! Named Durable Streams on one node, for what the official conformance suite does not check
//! (e2e/tests/e2e/ds_conformance.rs runs it): who may write and read (the API token, read
//! tokens, public streams), retention (410 before what is kept), the size limits, and channels
//! whose stream takes every `/v1/publish` in the order subscribers get it.

use std::time::Duration;

use oort_e2e::{CallbackKind, WsClient};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::TestGateway;

const TOKEN: &str = "secret-api-token";

fn url(gateway: &TestGateway, name: &str) -> String {
    format!("{}/v1/stream/{name}", gateway.api_url())
}

async fn with_token() -> TestGateway {
    TestGateway::start(|config| {
        config.api_token = TOKEN.into();
        config.streams.max_messages = 3;
        config.streams.max_append_bytes = 1024;
    })
    .await
}

async fn put(gateway: &TestGateway, name: &str, headers: &[(&str, &str)], body: &str) -> u16 {
    let mut request = oort_e2e::http_client()
        .put(url(gateway, name))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json");
    for (header, value) in headers {
        request = request.header(*header, *value);
    }
    request
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn append(gateway: &TestGateway, name: &str, body: &str) -> reqwest::Response {
    oort_e2e::http_client()
        .post(url(gateway, name))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

async fn error_of(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response
        .bytes()
        .await
        .map(|b| serde_json::from_slice::<Value>(&b).unwrap())
        .unwrap();
    // Every refusal names its stable code (docs/errors.md) beside the text.
    let code = body["code"].as_str().unwrap_or_default();
    assert!(!code.is_empty(), "no code in {body}");
    if status == 404 {
        assert_eq!(code, "stream_not_found", "{body}");
    }
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn writes_need_the_api_token_and_reads_a_token_naming_the_stream() {
    let gateway = with_token().await;
    let client = oort_e2e::http_client();
    // No token, a wrong one: refused with a JSON error, nothing created.
    let response = client
        .put(url(&gateway, "private"))
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    let (status, error) = error_of(response).await;
    assert_eq!(status, 401, "{error}");
    assert!(error.contains("API token"), "{error}");
    assert_eq!(put(&gateway, "private", &[], "[1]").await, 201);

    let read = |token: Option<String>| {
        let mut request = client.get(url(&gateway, "private"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let (status, error) = error_of(read(None).await.unwrap()).await;
    assert_eq!(status, 401, "{error}");
    assert!(error.contains("read token"), "{error}");
    assert_eq!(read(Some("s1.bogus".into())).await.unwrap().status(), 401);

    // The backend asks for a read token and hands it to a client.
    let answer: Value = client
        .post(format!("{}/v1/stream-tokens", gateway.api_url()))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(json!({ "stream": "private", "ttl_secs": 60 }).to_string())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .map(|b| serde_json::from_slice::<Value>(&b).unwrap())
        .unwrap();
    let token = answer["token"].as_str().unwrap().to_owned();
    let response = read(Some(token.clone())).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "[1]");
    // It opens that stream only, and never writes.
    assert_eq!(put(&gateway, "other", &[], "[2]").await, 201);
    let other = client
        .get(url(&gateway, "other"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 401);
    let write = client
        .post(url(&gateway, "private"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("[3]")
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), 401);

    // A stream created public needs no token to read (HEAD too).
    assert_eq!(
        put(&gateway, "public", &[("oort-public", "true")], "[4]").await,
        201
    );
    let response = client.get(url(&gateway, "public")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "[4]");
    let head = client.head(url(&gateway, "public")).send().await.unwrap();
    assert_eq!(head.status(), 200);

    // Asking for a token wrongly is a 400 that says how.
    let response = client
        .post(format!("{}/v1/stream-tokens", gateway.api_url()))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(json!({ "name": "private" }).to_string())
        .send()
        .await
        .unwrap();
    let (status, error) = error_of(response).await;
    assert_eq!(status, 400, "{error}");
    assert!(error.contains("stream"), "{error}");
}

#[tokio::test]
async fn retention_drops_the_oldest_and_older_offsets_answer_410() {
    let gateway = with_token().await;
    assert_eq!(put(&gateway, "log", &[], "").await, 201);
    let mut offsets = Vec::new();
    for n in 1..=5 {
        let response = append(&gateway, "log", &n.to_string()).await;
        assert_eq!(response.status(), 204);
        offsets.push(
            response.headers()["stream-next-offset"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    let client = oort_e2e::http_client();
    // streams.max_messages is 3: the first two are gone, the start is the third.
    let all = client
        .get(url(&gateway, "log"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(all.text().await.unwrap(), "[3,4,5]");
    let gone = client
        .get(format!("{}?offset={}", url(&gateway, "log"), offsets[0]))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let (status, error) = error_of(gone).await;
    assert_eq!(status, 410, "{error}");
    let kept = client
        .get(format!("{}?offset={}", url(&gateway, "log"), offsets[2]))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(kept.text().await.unwrap(), "[4,5]");
}

#[tokio::test]
async fn bodies_past_the_limit_are_refused_whole() {
    let gateway = with_token().await;
    assert_eq!(put(&gateway, "big", &[], "").await, 201);
    let body = format!("\"{}\"", "x".repeat(2000));
    let (status, error) = error_of(append(&gateway, "big", &body).await).await;
    assert_eq!(status, 413, "{error}");
    assert!(error.contains("streams.max_append_bytes"), "{error}");
    let tail = oort_e2e::http_client()
        .head(url(&gateway, "big"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert!(
        tail.headers()["stream-next-offset"]
            .to_str()
            .unwrap()
            .ends_with("_0000000000000000"),
        "nothing was appended"
    );
}

#[tokio::test]
async fn a_channel_stream_keeps_every_publish_in_the_order_subscribers_get_them() {
    let gateway = TestGateway::start(|_| {}).await;
    let mut member = WsClient::connect(&gateway.ws_url("key=member&channels=room")).await;
    gateway
        .backend
        .wait_for(CallbackKind::Establish, "member", 1, oort_e2e::TIMEOUT)
        .await;
    let client = oort_e2e::http_client();
    let created = client
        .put(url(&gateway, "channels/room"))
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);

    // Publishes from many requests at once: the stream's order is the subscriber's.
    let publishes = (0..40).map(|n| {
        let client = client.clone();
        let api = gateway.api_url();
        async move {
            let data = if n % 2 == 0 {
                json!({ "n": n }).to_string()
            } else {
                format!("plain text {n}")
            };
            let answer: Value = client
                .post(format!("{api}/v1/publish"))
                .header("content-type", "application/json")
                .body(json!({ "channels": ["room"], "data": data }).to_string())
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .map(|b| serde_json::from_slice::<Value>(&b).unwrap())
                .unwrap();
            assert!(answer["streams"]["room"]["offset"].is_string(), "{answer}");
            assert_eq!(answer["sessions"], 1, "{answer}");
        }
    });
    futures_util::future::join_all(publishes).await;
    let mut received = Vec::new();
    for _ in 0..40 {
        let text = member.recv_text().await;
        // What the stream keeps: a JSON text as its value, any other text as a string.
        received.push(serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text.clone())));
    }
    let kept: Value = client
        .get(url(&gateway, "channels/room"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .map(|b| serde_json::from_slice::<Value>(&b).unwrap())
        .unwrap();
    assert_eq!(kept, Value::Array(received));
    assert!(member.nothing_within(Duration::from_millis(100)).await);

    // A closed channel stream refuses publishes, and says so per channel.
    let closed = client
        .post(url(&gateway, "channels/room"))
        .header("stream-closed", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(closed.status(), 204);
    let answer: Value = client
        .post(format!("{}/v1/publish", gateway.api_url()))
        .header("content-type", "application/json")
        .body(json!({ "channels": ["room"], "data": "late" }).to_string())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .map(|b| serde_json::from_slice::<Value>(&b).unwrap())
        .unwrap();
    assert!(
        answer["streams"]["room"]["error"]
            .as_str()
            .is_some_and(|error| error.contains("closed")),
        "{answer}"
    );
    assert!(member.nothing_within(Duration::from_millis(100)).await);
}

#[tokio::test]
async fn the_stream_gauges_count_streams_and_bytes() {
    let gateway = TestGateway::start(|_| {}).await;
    let client = oort_e2e::http_client();
    for name in ["a", "b"] {
        let response = client
            .put(url(&gateway, name))
            .header("content-type", "text/plain")
            .body("0123456789")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }
    let metrics = crate::api::scrape(&gateway.api_url()).await;
    assert_eq!(crate::api::metric(&metrics, "oort_streams"), Some(2.0));
    let bytes = crate::api::metric(&metrics, "oort_stream_bytes").unwrap();
    assert!(bytes >= 20.0, "{bytes}");
}
