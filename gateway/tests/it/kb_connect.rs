//! kuiperbelt's connect flow on the wire: the connect callback request, the outcome table, the
//! 101 and the first message (reference sections 2, 4 and 5.1; upstream `server_test.go`).

use axum::http::{HeaderMap, StatusCode};
use axum::routing::any;
use oort_common::config::GoDuration;
use oort_e2e::backend::CallbackKind;
use oort_e2e::{TIMEOUT, WsClient};
use tokio_tungstenite::tungstenite::Message;

use crate::api::{parts, refused};
use crate::kb_support::{backend_with_header, custom_connect_backend, send, stat};
use crate::raw::{self, SAMPLE_ACCEPT, handshake_request};
use crate::support::TestGateway;

/// A gateway whose connect callback answers `status` and `body` with the header `first` and two
/// that must not reach the client (`x-backend-secret`, `set-cookie`).
async fn gateway_with_leaky_callback(
    status: StatusCode,
    first: (&'static str, &'static str),
    body: &'static str,
) -> TestGateway {
    let connect_url = custom_connect_backend(axum::Router::new().route(
        "/connect",
        any(move || async move {
            let mut headers = HeaderMap::new();
            headers.insert(first.0, first.1.parse().unwrap());
            headers.insert("x-backend-secret", "1".parse().unwrap());
            headers.insert("set-cookie", "s=1".parse().unwrap());
            (status, headers, body)
        }),
    ))
    .await;
    TestGateway::start(|config| config.callback.connect = connect_url).await
}

/// `server_test.go` SuccessAuthorized with kuiperbelt's TestConfig (session header
/// `X-Kuiperbelt-Session-Key`, endpoint `localhost`, `proxy_set_header` `X-Foo: Foo` and
/// `X-Forwarded-For: ""`), plus the forwarded headers of reference 5.1: every client header but
/// `Connection`, `Upgrade` and `Sec-WebSocket-*` reaches the callback, then `proxy_set_header`
/// is applied and `X-Kuiperbelt-Endpoint` added. The handshake asks for a subprotocol, as the
/// upstream test does, and still gets its 101.
#[tokio::test]
async fn success_authorized_forwards_client_headers_as_kuiperbelt() {
    let backend = backend_with_header("X-Kuiperbelt-Session-Key").await;
    let gateway = TestGateway::start_with_backend(backend, |config| {
        config.session_header = "X-Kuiperbelt-Session-Key".into();
        config.endpoint = "localhost".into();
        config.proxy_set_header = [("X-Foo", "Foo"), ("X-Forwarded-For", "")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into();
    })
    .await;
    let request = handshake_request(
        gateway.addr,
        "/connect?key=hogehoge&first=hello",
        &[
            "Sec-WebSocket-Protocol: kuiperbelt",
            "Sec-WebSocket-Extensions: permessage-deflate",
            "X-Forwarded-For: 192.168.1.1",
            "X-Kuiperbelt-Hogehoge: hogehoge",
            "X-Foo: original",
            "X-Kuiperbelt-Session: client-sent",
            "User-Agent: probe/1",
            "Cookie: a=b",
            "Origin: http://evil.example",
            "Authorization: Bearer secret",
            "X-Auth-Token: secret",
        ],
    );
    let response = raw::http(gateway.addr, request.as_bytes()).await;
    assert_eq!(response.status, 101);

    let connect = gateway
        .backend
        .wait_for_kind(CallbackKind::Connect, 1, TIMEOUT)
        .await;
    let seen = &connect[0];
    assert_eq!(seen.method, "GET");
    for (name, _) in &seen.headers {
        let name = name.as_str();
        assert!(
            name != "upgrade" && !name.starts_with("sec-websocket-"),
            "{name} must not be forwarded"
        );
    }
    // The client's `Connection: Upgrade` is not forwarded. The callback's own hop may say
    // `Connection: close` (kuiperbelt, too, sends one such callback every 10 s).
    for value in seen.header_all("connection") {
        assert!(value.eq_ignore_ascii_case("close"), "Connection: {value}");
    }
    assert_eq!(
        seen.header("x-forwarded-for"),
        None,
        "removed by proxy_set_header"
    );
    assert_eq!(seen.header_all("x-foo"), ["Foo"], "set by proxy_set_header");
    assert_eq!(seen.header("x-kuiperbelt-hogehoge"), Some("hogehoge"));
    assert_eq!(seen.header_all("x-kuiperbelt-endpoint"), ["localhost"]);
    assert_eq!(seen.header("x-kuiperbelt-session"), Some("client-sent"));
    assert_eq!(seen.header("user-agent"), Some("probe/1"));
    assert_eq!(seen.header("cookie"), Some("a=b"));
    assert_eq!(seen.header("origin"), Some("http://evil.example"));
    assert_eq!(seen.header("authorization"), Some("Bearer secret"));
    assert_eq!(seen.header("x-auth-token"), Some("secret"));
    let backend_host = gateway.backend.url().replace("http://", "");
    assert_eq!(seen.header("host"), Some(backend_host.as_str()));
    assert!(seen.body.is_empty());

    // The establish callback (reference 5.2): session header, proxy_set_header, endpoint.
    let establish = gateway
        .backend
        .wait_for(CallbackKind::Establish, "hogehoge", 1, TIMEOUT)
        .await;
    assert_eq!(establish[0].method, "POST");
    assert!(establish[0].body.is_empty());
    assert_eq!(establish[0].header("x-foo"), Some("Foo"));
    assert_eq!(
        establish[0].header_all("x-kuiperbelt-endpoint"),
        ["localhost"]
    );
}

/// Reference 2.4: the 101 carries only the handshake headers. A requested subprotocol is not
/// selected, no extension is negotiated, and none of the callback answer's headers leak.
#[tokio::test]
async fn upgrade_response_carries_only_handshake_headers() {
    let leaky = ("x-kuiperbelt-session", "leaky");
    let gateway = gateway_with_leaky_callback(StatusCode::OK, leaky, "hello").await;
    let request = handshake_request(
        gateway.addr,
        "/connect",
        &[
            "Sec-WebSocket-Protocol: kuiperbelt",
            "Sec-WebSocket-Extensions: permessage-deflate",
        ],
    );
    let response = raw::http(gateway.addr, request.as_bytes()).await;
    assert_eq!(response.status, 101);
    assert_eq!(
        response.header("upgrade").map(str::to_ascii_lowercase),
        Some("websocket".into())
    );
    assert_eq!(
        response.header("connection").map(str::to_ascii_lowercase),
        Some("upgrade".into())
    );
    assert_eq!(response.header("sec-websocket-accept"), Some(SAMPLE_ACCEPT));
    for (name, _) in &response.headers {
        // hyper dates every response; everything else must be the handshake.
        assert!(
            matches!(
                name.as_str(),
                "upgrade" | "connection" | "sec-websocket-accept" | "date"
            ),
            "unexpected header {name} in the 101: {:?}",
            response.headers
        );
    }
}

/// `server_test.go` FailAuthorized: the callback's 403 and its body reach the client, and a
/// 403 is not counted in `connect_errors` (reference section 2).
#[tokio::test]
async fn fail_authorized_relays_403_and_body() {
    let gateway = TestGateway::start(|_| {}).await;
    let (status, content_type, body) =
        refused(&gateway.ws_url("status=403&body=fail%20authorization!")).await;
    assert_eq!((status, body.as_str()), (403, "fail authorization!"));
    assert_eq!(content_type, "text/plain");
    assert_eq!(stat(&gateway, "connect_errors").await, 0);
    assert!(gateway.backend.of_kind(CallbackKind::Establish).is_empty());
}

/// Reference section 2: another refusal status is relayed with the backend's Content-Type and
/// body and no other backend header, and it counts in `connect_errors`.
#[tokio::test]
async fn refusal_relays_status_content_type_and_body_only() {
    let problem = ("content-type", "application/problem+json");
    let gateway =
        gateway_with_leaky_callback(StatusCode::IM_A_TEAPOT, problem, r#"{"why":"teapot"}"#).await;
    let request = handshake_request(gateway.addr, "/connect", &[]);
    let response = raw::http(gateway.addr, request.as_bytes()).await;
    assert_eq!(response.status, 418);
    assert_eq!(
        response.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(response.text(), r#"{"why":"teapot"}"#);
    assert_eq!(response.header("x-backend-secret"), None);
    assert_eq!(response.header("set-cookie"), None);
    assert_eq!(stat(&gateway, "connect_errors").await, 1);
}

/// Reference section 2: a 200 without the session header, or with an empty one, is `400 Bad
/// Request` and a connect error.
#[tokio::test]
async fn accepted_without_session_key_is_400() {
    let gateway = TestGateway::start(|_| {}).await;
    for query in ["nokey=1&first=hello", "key=&first=hello"] {
        let (status, content_type, body) = refused(&gateway.ws_url(query)).await;
        assert_eq!(status, 400, "{query}");
        assert_eq!(content_type, "text/plain; charset=utf-8");
        assert!(body.starts_with("Bad Request"), "{body:?}");
        assert!(body.ends_with('\n'), "{body:?}");
    }
    assert_eq!(stat(&gateway, "connect_errors").await, 2);
}

/// Reference section 2: a callback that cannot be reached is `502 Bad Gateway`.
#[tokio::test]
async fn unreachable_connect_callback_is_502() {
    // A port held by a socket that is bound but never listens: connections to it are refused,
    // and no other test can be given the port meanwhile (as it could if it were let go).
    let bound = tokio::net::TcpSocket::new_v4().unwrap();
    bound.bind(([127, 0, 0, 1], 0).into()).unwrap();
    let url = format!("http://{}/connect", bound.local_addr().unwrap());
    let gateway = TestGateway::start(|config| config.callback.connect = url).await;
    let (status, content_type, body) = refused(&gateway.ws_url("key=alice")).await;
    assert_eq!(status, 502);
    assert_eq!(content_type, "text/plain; charset=utf-8");
    assert!(body.starts_with("Bad Gateway"), "{body:?}");
    assert_eq!(stat(&gateway, "connect_errors").await, 1);
    drop(bound);
}

/// `server_test.go` SlowCallback: a callback slower than `callback.timeout` is `502`, answered
/// when the timeout expires rather than when the backend finally answers.
#[tokio::test]
async fn slow_connect_callback_is_502() {
    let gateway =
        TestGateway::start(|config| config.callback.timeout = GoDuration::from_millis(300)).await;
    // The backend would answer (and accept) only after 30 s; the client gives up after 10 s,
    // so a 502 at all means the 300 ms timeout answered it.
    let started = std::time::Instant::now();
    let (status, _, body) = refused(&gateway.ws_url("key=slow&delay_ms=30000")).await;
    assert_eq!(status, 502);
    assert!(body.starts_with("Bad Gateway"), "{body:?}");
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    assert_eq!(stat(&gateway, "connect_errors").await, 1);
}

/// Reference section 2: with no `callback.connect`, every connect is `500`.
#[tokio::test]
async fn missing_connect_callback_is_500() {
    let gateway = TestGateway::start(|config| config.callback.connect = String::new()).await;
    let (status, _, body) = refused(&gateway.ws_url("key=alice")).await;
    assert_eq!(status, 500);
    assert!(body.starts_with("Internal Server Error"), "{body:?}");
    assert_eq!(stat(&gateway, "connect_errors").await, 1);
}

/// Reference 5.1: the callback URL's query is replaced by the client's raw query, unchanged
/// (repeated parameters included); the configured path stays.
#[tokio::test]
async fn client_query_replaces_configured_callback_query() {
    let gateway = TestGateway::start(|config| config.callback.connect += "?configured=1").await;
    let _client = WsClient::connect(&gateway.ws_url("key=rawclient&foo=bar&foo=baz")).await;
    let connect = gateway
        .backend
        .wait_for_kind(CallbackKind::Connect, 1, TIMEOUT)
        .await;
    assert_eq!(connect[0].uri.path(), "/connect");
    assert_eq!(
        connect[0].uri.query(),
        Some("key=rawclient&foo=bar&foo=baz")
    );
}

/// Reference 2.2 and 5.1: a plain request to the connect path still reaches the callback with
/// the client's method and body, so the backend's refusal reaches any client. An accepted
/// plain request cannot become a session: no establish callback is sent.
#[tokio::test]
async fn client_method_and_body_reach_the_callback() {
    let gateway = TestGateway::start(|_| {}).await;
    let addr = gateway.addr;
    let request = format!(
        "POST /connect?status=403&body=nope HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/plain\r\nContent-Length: 7\r\nConnection: close\r\n\r\npayload"
    );
    let response = raw::http(addr, request.as_bytes()).await;
    assert_eq!((response.status, response.text().as_str()), (403, "nope"));
    let connect = gateway.backend.of_kind(CallbackKind::Connect);
    assert_eq!(connect[0].method, "POST");
    assert_eq!(&connect[0].body[..], b"payload");
    assert_eq!(connect[0].header("content-type"), Some("text/plain"));

    let request =
        format!("GET /connect?key=plain HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let response = raw::http(addr, request.as_bytes()).await;
    assert_eq!(response.status, 400);
    assert_eq!(gateway.backend.of_kind(CallbackKind::Connect).len(), 2);
    // The establish callback could only follow a 101, which this request never got.
    assert!(gateway.backend.of_kind(CallbackKind::Establish).is_empty());
}

/// Reference 5.1 and 11.7: a client-supplied `X-Kuiperbelt-Endpoint` is forwarded, and Oort's
/// value is appended after it.
#[tokio::test]
async fn client_endpoint_header_comes_before_oorts() {
    let gateway = TestGateway::start(|_| {}).await;
    let headers = [("X-Kuiperbelt-Endpoint", "spoofed")];
    let _client = WsClient::connect_with(&gateway.ws_url("key=alice"), &headers)
        .await
        .unwrap();
    let connect = gateway
        .backend
        .wait_for_kind(CallbackKind::Connect, 1, TIMEOUT)
        .await;
    assert_eq!(
        connect[0].header_all("x-kuiperbelt-endpoint"),
        ["spoofed", "test-endpoint:9180"]
    );
}

/// Reference 2.8 and 4: the callback body is the first frame, binary when the callback answered
/// `application/octet-stream`, text otherwise; it counts in `total_messages`.
#[tokio::test]
async fn first_message_frame_type_follows_callback_content_type() {
    let gateway = TestGateway::start(|_| {}).await;
    let mut text = WsClient::connect(&gateway.ws_url("key=t&first=hello")).await;
    assert_eq!(text.recv().await, Message::text("hello"));
    let mut binary = WsClient::connect(&gateway.ws_url("key=b&first=hello&binary=1")).await;
    assert_eq!(binary.recv().await, Message::binary(&b"hello"[..]));
    assert_eq!(stat(&gateway, "total_messages").await, 2);
}

/// Reference 2.8: an empty callback body sends no first frame (and counts no message): the
/// first frame the client gets is the first `/send`.
#[tokio::test]
async fn empty_first_message_sends_nothing() {
    let gateway = TestGateway::start(|_| {}).await;
    let mut client = gateway.connect("quiet").await;
    assert_eq!(stat(&gateway, "total_messages").await, 0);
    let response = send(&gateway, &["quiet"], "second").await;
    assert_eq!(parts(response).await.0, 200);
    assert_eq!(client.recv().await, Message::text("second"));
}

/// Reference 5.1: the callback client follows redirects, as Go's does.
#[tokio::test]
async fn connect_callback_follows_redirects() {
    let backend = oort_e2e::TestBackend::start().await;
    let target = backend.callback_url(CallbackKind::Connect);
    let redirect_url = custom_connect_backend(axum::Router::new().route(
        "/connect",
        any(|uri: axum::http::Uri| async move {
            let location = format!("{target}?{}", uri.query().unwrap_or_default());
            (StatusCode::FOUND, [("location", location)])
        }),
    ))
    .await;
    let gateway = TestGateway::start_with_backend(backend, |config| {
        config.callback.connect = redirect_url;
    })
    .await;
    let mut client = WsClient::connect(&gateway.ws_url("key=moved&first=hi")).await;
    assert_eq!(client.recv().await, Message::text("hi"));
}
