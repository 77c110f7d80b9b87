//! What kuiperbelt never tested: `origin_policy` (reference section 9) with real handshakes,
//! handshake refusals, and the `path.*` settings over HTTP (sections 1 and 8).
//!
//! Oort checks the origin and the handshake before the connect callback (a documented
//! difference: kuiperbelt's backend had already accepted a session the client never got), so
//! every refusal here also asserts that the backend saw no connect callback. That check needs no
//! waiting: the callback would have been made before the refusal was answered.

use oort_common::config::OriginPolicy;
use oort_e2e::backend::CallbackKind;
use oort_e2e::{TIMEOUT, WsClient, http_client};
use tokio_tungstenite::tungstenite::{Error, Message};

use crate::api::parts;
use crate::kb_support::{SESSION_HEADER, post, send, stat};
use crate::raw::{self, SAMPLE_KEY, handshake_request};
use crate::support::TestGateway;

/// Connects with `origin` (or none) and returns the status: 101, or the refusal's.
async fn status_with_origin(gateway: &TestGateway, key: &str, origin: Option<&str>) -> u16 {
    let headers: Vec<(&str, &str)> = origin.map(|o| ("Origin", o)).into_iter().collect();
    match WsClient::connect_with(&gateway.ws_url(&format!("key={key}")), &headers).await {
        Ok((_client, response)) => response.status().as_u16(),
        Err(Error::Http(response)) => {
            let body = String::from_utf8(response.body().clone().unwrap_or_default()).unwrap();
            assert!(body.starts_with("Forbidden"), "{body:?}");
            response.status().as_u16()
        }
        Err(other) => panic!("connect failed without an HTTP answer: {other}"),
    }
}

/// Asserts the outcome of each `(origin, accepted)` case and that refused ones never reached
/// the backend.
async fn check_origins(gateway: &TestGateway, cases: &[(Option<&str>, bool)]) {
    for (index, (origin, accepted)) in cases.iter().enumerate() {
        let key = format!("o{index}");
        let status = status_with_origin(gateway, &key, *origin).await;
        let connects = gateway
            .backend
            .of_kind(CallbackKind::Connect)
            .iter()
            .filter(|r| r.uri.query() == Some(&format!("key={key}")))
            .count();
        if *accepted {
            assert_eq!(status, 101, "origin {origin:?} must be accepted");
            assert_eq!(connects, 1, "origin {origin:?}");
        } else {
            assert_eq!(status, 403, "origin {origin:?} must be refused");
            assert_eq!(connects, 0, "refused origin {origin:?} reached the backend");
        }
    }
    let refused = cases.iter().filter(|(_, accepted)| !accepted).count();
    assert_eq!(
        stat(gateway, "connect_errors").await,
        refused as i64,
        "each refusal is a connect error, as gorilla's were"
    );
}

/// Reference 9, `none` (the default): every Origin, or none, is accepted.
#[tokio::test]
async fn origin_policy_none_accepts_everything() {
    let gateway = TestGateway::start(|_| {}).await;
    check_origins(
        &gateway,
        &[
            (Some("http://evil.example"), true),
            (Some("null"), true),
            (None, true),
        ],
    )
    .await;
}

/// Reference 9, `same_origin` (gorilla's checkSameOrigin), the observed cases: no Origin, or
/// an Origin whose host:port equals Host (ignoring case) is accepted; another port, another
/// name for the same address, or `null` is refused.
#[tokio::test]
async fn origin_policy_same_origin_as_observed() {
    let gateway =
        TestGateway::start(|config| config.origin_policy = OriginPolicy::SameOrigin).await;
    let port = gateway.addr.port();
    let same = format!("http://127.0.0.1:{port}");
    let same_with_path = format!("https://127.0.0.1:{port}/page?q=1");
    let localhost = format!("http://localhost:{port}");
    check_origins(
        &gateway,
        &[
            (Some(&same), true),
            (Some(&same_with_path), true),
            (None, true),
            (Some("http://127.0.0.1:9999"), false),
            (Some(&localhost), false),
            (Some("null"), false),
        ],
    )
    .await;
}

/// Reference 9, `same_hostname`, the observed cases: the Origin's hostname must equal Host's,
/// ports ignored; `localhost`, `null` and a missing Origin are refused.
#[tokio::test]
async fn origin_policy_same_hostname_as_observed() {
    let gateway =
        TestGateway::start(|config| config.origin_policy = OriginPolicy::SameHostname).await;
    let localhost = format!("http://localhost:{}", gateway.addr.port());
    check_origins(
        &gateway,
        &[
            (Some("http://127.0.0.1:9999"), true),
            (Some("https://127.0.0.1"), true),
            (Some(&localhost), false),
            (Some("null"), false),
            (None, false),
        ],
    )
    .await;
}

/// Reference 9: under `same_hostname`, a Host header without a port fails Go's SplitHostPort,
/// so every request is refused, even one whose Origin names the same host.
#[tokio::test]
async fn origin_policy_same_hostname_refuses_a_host_without_port() {
    let gateway =
        TestGateway::start(|config| config.origin_policy = OriginPolicy::SameHostname).await;
    let request = handshake_request(
        gateway.addr,
        "/connect?key=noport",
        &["Origin: http://127.0.0.1"],
    )
    .replace(&format!("Host: {}", gateway.addr), "Host: 127.0.0.1");
    let response = raw::http(gateway.addr, request.as_bytes()).await;
    assert_eq!(response.status, 403);
    assert!(gateway.backend.of_kind(CallbackKind::Connect).is_empty());
}

/// Reference 2.3: a malformed handshake is refused as gorilla refused it (status, and the
/// `Sec-WebSocket-Version: 13` header). Oort refuses before asking the backend.
#[tokio::test]
async fn malformed_handshake_is_refused_before_the_callback() {
    let gateway = TestGateway::start(|_| {}).await;
    let good = handshake_request(gateway.addr, "/connect?key=bad", &[]);
    let key_line = format!("Sec-WebSocket-Key: {SAMPLE_KEY}\r\n");
    let cases = [
        (good.replace(&key_line, ""), 400),
        (
            good.replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"),
            400,
        ),
        (
            good.replace("GET ", "POST ")
                .replace("\r\n\r\n", "\r\nContent-Length: 0\r\n\r\n"),
            405,
        ),
    ];
    for (request, expected) in cases {
        let response = raw::http(gateway.addr, request.as_bytes()).await;
        assert_eq!(response.status, expected, "{request}");
        assert_eq!(response.header("sec-websocket-version"), Some("13"));
    }
    assert!(gateway.backend.of_kind(CallbackKind::Connect).is_empty());
}

/// Reference 1 and 8: every `path.*` key moves its route; the defaults are then not served.
#[tokio::test]
async fn custom_paths_serve_every_route() {
    let gateway = TestGateway::start(|config| {
        config.path.connect = "/ws".into();
        config.path.send = "/api/push".into();
        config.path.close = "/api/kick".into();
        config.path.ping = "/api/alive".into();
        config.path.stats = "/api/counters".into();
    })
    .await;
    let base = gateway.api_url();
    let mut client = WsClient::connect(&format!("ws://{}/ws?key=alice", gateway.addr)).await;
    gateway
        .backend
        .wait_for(CallbackKind::Establish, "alice", 1, TIMEOUT)
        .await;

    let header = SESSION_HEADER;
    let response = post(&gateway, "/api/push", header, &["alice"], None, b"pushed").await;
    assert_eq!(parts(response).await.2, r#"{"result":"OK"}"#);
    assert_eq!(client.recv().await, Message::text("pushed"));

    let alive = http_client()
        .get(format!("{base}/api/alive"))
        .send()
        .await
        .unwrap();
    assert_eq!(parts(alive).await.2, r#"{"result":"OK"}"#);
    let counters = http_client()
        .get(format!("{base}/api/counters"))
        .send()
        .await
        .unwrap();
    let counters: serde_json::Value = serde_json::from_str(&parts(counters).await.2).unwrap();
    assert_eq!(counters["total_connections"], 1);

    for path in ["/send", "/close", "/ping", "/stats"] {
        let response = http_client()
            .post(format!("{base}{path}"))
            .header(header, "alice")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{path} is no longer a route");
    }
    let old_connect = WsClient::connect_with(&gateway.ws_url("key=old"), &[]).await;
    assert!(
        matches!(old_connect, Err(Error::Http(ref r)) if r.status() == 404),
        "/connect is no longer a route"
    );

    let response = post(&gateway, "/api/kick", header, &["alice"], None, b"bye").await;
    assert_eq!(parts(response).await.2, r#"{"result":"OK"}"#);
    assert_eq!(client.recv().await, Message::text("bye"));
    let frame = client.closed().await.expect("close frame");
    assert_eq!(u16::from(frame.code), 1000);
}

/// Reference 1: a connect path ending in `/` matches its subtree, as Go's ServeMux does;
/// webchat-example's Engine.IO clients connect to `/socket.io/?EIO=4&transport=websocket`.
/// The client's query reaches the callback unchanged.
#[tokio::test]
async fn subtree_connect_path_matches_engine_io_urls() {
    let gateway = TestGateway::start(|config| config.path.connect = "/socket.io/".into()).await;
    let addr = gateway.addr;
    let query = "EIO=4&transport=websocket&key=sio";
    let mut root = WsClient::connect(&format!("ws://{addr}/socket.io/?{query}")).await;
    let connect = gateway
        .backend
        .wait_for_kind(CallbackKind::Connect, 1, TIMEOUT)
        .await;
    assert_eq!(connect[0].uri.query(), Some(query));
    gateway
        .backend
        .wait_for(CallbackKind::Establish, "sio", 1, TIMEOUT)
        .await;
    let mut below = WsClient::connect(&format!("ws://{addr}/socket.io/deeper/x?key=deep")).await;
    gateway
        .backend
        .wait_for(CallbackKind::Establish, "deep", 1, TIMEOUT)
        .await;

    let response = send(&gateway, &["sio", "deep"], "probe").await;
    assert_eq!(parts(response).await.2, r#"{"result":"OK"}"#);
    assert_eq!(root.recv().await, Message::text("probe"));
    assert_eq!(below.recv().await, Message::text("probe"));
}
