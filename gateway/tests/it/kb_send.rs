//! kuiperbelt's backend API on the wire: `/send`, `/close` and `/ping` (reference sections 4,
//! 6.1-6.3; upstream `proxy_test.go`).
//!
//! Where a test must show that a session received nothing, it sends a marker afterwards and
//! checks that the marker is the next frame: queues are FIFO, so an earlier frame would come
//! first. No time window is needed for that.

use oort_e2e::backend::CallbackKind;
use oort_e2e::{TIMEOUT, WsClient};
use tokio_tungstenite::tungstenite::Message;

use crate::api::parts;
use crate::kb_support::{SESSION_HEADER, close, post, send, wait_connections};
use crate::support::TestGateway;

const NOT_FOUND: &str = "kuiperbelt: session is not found";

/// Asserts that `client`'s next frame is the text `expected`.
async fn expect_text(client: &mut WsClient, expected: &str) {
    assert_eq!(client.recv().await, Message::text(expected));
}

/// Sends `marker` to `key` and checks it is the next frame: nothing was queued before it.
async fn expect_nothing_before_marker(gateway: &TestGateway, client: &mut WsClient, key: &str) {
    let (status, _, body) = parts(send(gateway, &[key], "marker").await).await;
    assert_eq!((status, body.as_str()), (200, r#"{"result":"OK"}"#));
    expect_text(client, "marker").await;
}

/// The close frame a `/close` ends with (Oort's documented difference: kuiperbelt sent none).
async fn expect_close_1000(client: &mut WsClient) {
    let frame = client.closed().await.expect("a close frame");
    assert_eq!(u16::from(frame.code), 1000);
}

/// `proxy_test.go` BulkSend: two session header lines, both sessions get the body, neither as a
/// last word (both stay open), and the answer is exactly `{"result":"OK"}`.
#[tokio::test]
async fn bulk_send_reaches_every_session_header_line() {
    let gateway = TestGateway::start(|_| {}).await;
    let mut hoge = gateway.connect("hogehoge").await;
    let mut fuga = gateway.connect("fugafuga").await;

    let (status, content_type, body) =
        parts(send(&gateway, &["hogehoge", "fugafuga"], "test message").await).await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "application/json; charset=utf-8");
    assert_eq!(body, r#"{"result":"OK"}"#, "15 bytes, no newline");
    expect_text(&mut hoge, "test message").await;
    expect_text(&mut fuga, "test message").await;
    // Not a last word: both sessions still take messages.
    expect_nothing_before_marker(&gateway, &mut hoge, "hogehoge").await;
    expect_nothing_before_marker(&gateway, &mut fuga, "fugafuga").await;
}

/// `proxy_test.go` SendInBinary and reference section 4: the media type before `;`, trimmed and
/// compared ignoring case, decides the frame type; anything else (or none) is text.
#[tokio::test]
async fn send_frame_type_follows_content_type() {
    let gateway = TestGateway::start(|_| {}).await;
    let mut client = gateway.connect("hogehoge").await;
    let cases: [(Option<&str>, &'static [u8], bool); 5] = [
        (
            Some("APPLICATION/octet-stream ;param=foobar"),
            b"hogehoge",
            true,
        ),
        (Some("application/octet-stream"), b"\x00\xff\x01", true),
        (Some("application/json"), br#"{"a":1}"#, false),
        (Some("text/plain; charset=utf-8"), b"plain", false),
        (None, b"no type", false),
    ];
    for (content_type, body, binary) in cases {
        let response = post(
            &gateway,
            "/send",
            SESSION_HEADER,
            &["hogehoge"],
            content_type,
            body,
        )
        .await;
        assert_eq!(response.status(), 200, "{content_type:?}");
        let expected = if binary {
            Message::binary(body)
        } else {
            Message::text(std::str::from_utf8(body).unwrap())
        };
        assert_eq!(client.recv().await, expected, "{content_type:?}");
    }
}

/// Reference sections 4 and 6.1: an empty `/send` body is still sent, as an empty frame.
#[tokio::test]
async fn empty_send_body_sends_an_empty_frame() {
    let gateway = TestGateway::start(|_| {}).await;
    let mut client = gateway.connect("alice").await;
    let (status, _, body) = parts(send(&gateway, &["alice"], "").await).await;
    assert_eq!((status, body.as_str()), (200, r#"{"result":"OK"}"#));
    expect_text(&mut client, "").await;
}

/// `proxy_test.go` BulkClose: both sessions get the body as their last frame. Then each gets a
/// close frame with code 1000 (Oort's documented difference: kuiperbelt dropped the socket).
#[tokio::test]
async fn bulk_close_sends_last_word_then_close_1000() {
    let gateway = TestGateway::start(|_| {}).await;
    let mut hoge = gateway.connect("hogehoge").await;
    let mut fuga = gateway.connect("fugafuga").await;
    let response = close(&gateway, &["hogehoge", "fugafuga"], "test message").await;
    let (status, content_type, body) = parts(response).await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "application/json; charset=utf-8");
    assert_eq!(body, r#"{"result":"OK"}"#);
    for client in [&mut hoge, &mut fuga] {
        expect_text(client, "test message").await;
        expect_close_1000(client).await;
    }
}

/// `proxy_test.go` BulkCloseWithNotExistSession: the existing session is closed; the answer is
/// 200 `OK` with one `not-exist` error, byte for byte as kuiperbelt's `json.Encoder` wrote it
/// (trailing newline).
#[tokio::test]
async fn bulk_close_with_unknown_session_closes_the_known_one() {
    let gateway = TestGateway::start(|_| {}).await;
    let mut hoge = gateway.connect("hogehoge").await;
    let response = close(&gateway, &["hogehoge", "not-exist"], "test message").await;
    let (status, _, body) = parts(response).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        format!(r#"{{"errors":[{{"error":"{NOT_FOUND}","session":"not-exist"}}],"result":"OK"}}"#)
            + "\n"
    );
    expect_text(&mut hoge, "test message").await;
    expect_close_1000(&mut hoge).await;
}

/// Reference sections 4 and 6.2: `/close` sends its body even when empty (an empty frame was
/// observed), keeps the frame type rule, and then closes with 1000.
#[tokio::test]
async fn close_sends_even_an_empty_body_then_close_1000() {
    let gateway = TestGateway::start(|_| {}).await;
    let mut alice = gateway.connect("alice").await;
    let mut bob = gateway.connect("bob").await;
    let response = close(&gateway, &["alice"], "").await;
    assert_eq!(parts(response).await.2, r#"{"result":"OK"}"#);
    expect_text(&mut alice, "").await;
    expect_close_1000(&mut alice).await;

    let binary = Some("application/octet-stream");
    let response = post(
        &gateway,
        "/close",
        SESSION_HEADER,
        &["bob"],
        binary,
        b"\x01\x02",
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(bob.recv().await, Message::binary(&b"\x01\x02"[..]));
    expect_close_1000(&mut bob).await;
}

/// `proxy_test.go` CloseAndCallback: `/close` delivers the message and sends **no** close
/// callback (kuiperbelt #65/#66).
#[tokio::test]
async fn close_by_backend_sends_no_close_callback() {
    let gateway = TestGateway::start(|_| {}).await;
    let mut client = gateway.connect("hogehoge").await;
    let response = close(&gateway, &["hogehoge"], "bye").await;
    assert_eq!(response.status(), 200);
    expect_text(&mut client, "bye").await;
    expect_close_1000(&mut client).await;
    // A close callback is sent before the connection task ends, and `connections` drops only
    // when it has ended: once it is 0, any close callback would already be recorded.
    wait_connections(&gateway, 0).await;
    assert!(gateway.backend.of_kind(CallbackKind::Close).is_empty());
    // And the key is gone.
    let (_, _, body) = parts(send(&gateway, &["hogehoge"], "late").await).await;
    assert!(body.contains(NOT_FOUND), "{body}");
}

/// `proxy_test.go` StrictBroadcastFalse: an unknown key answers 200, `OK`, one error, and
/// nothing is sent anywhere.
#[tokio::test]
async fn strict_broadcast_false_unknown_key_is_ok_with_one_error() {
    let gateway = TestGateway::start(|_| {}).await;
    let mut hoge = gateway.connect("hogehoge").await;
    let (status, content_type, body) =
        parts(send(&gateway, &["hogehog"], "test message").await).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        format!(r#"{{"errors":[{{"error":"{NOT_FOUND}","session":"hogehog"}}],"result":"OK"}}"#)
            + "\n"
    );
    // kuiperbelt lost this header and Go sniffed `text/plain`; Oort's documented difference
    // labels the JSON as JSON.
    assert_eq!(content_type, "application/json; charset=utf-8");
    expect_nothing_before_marker(&gateway, &mut hoge, "hogehoge").await;
}

/// `proxy_test.go` StrictBroadcastTrue1: strict, one unknown key: 400, `NG`, one error.
#[tokio::test]
async fn strict_broadcast_true_unknown_key_is_400_ng() {
    let gateway = TestGateway::start(|config| config.strict_broadcast = true).await;
    let mut hoge = gateway.connect("hogehoge").await;
    let (status, _, body) = parts(send(&gateway, &["hogehog"], "test message").await).await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        format!(r#"{{"errors":[{{"error":"{NOT_FOUND}","session":"hogehog"}}],"result":"NG"}}"#)
            + "\n"
    );
    expect_nothing_before_marker(&gateway, &mut hoge, "hogehoge").await;
}

/// `proxy_test.go` StrictBroadcastTrue2: strict, one unknown and one known key: 400, `NG`,
/// exactly one error (the unknown key), and the known session gets nothing. The same holds for
/// `/close`: the known session is not closed.
#[tokio::test]
async fn strict_broadcast_true_sends_nothing_to_the_known_key() {
    let gateway = TestGateway::start(|config| config.strict_broadcast = true).await;
    let mut fuga = gateway.connect("fugafuga").await;
    let expected =
        format!(r#"{{"errors":[{{"error":"{NOT_FOUND}","session":"hogehog"}}],"result":"NG"}}"#)
            + "\n";
    let keys = ["hogehog", "fugafuga"];
    let (status, _, body) = parts(send(&gateway, &keys, "test message").await).await;
    assert_eq!((status, body.as_str()), (400, expected.as_str()));
    let response = close(&gateway, &keys, "bye").await;
    let (status, _, body) = parts(response).await;
    assert_eq!((status, body.as_str()), (400, expected.as_str()));
    expect_nothing_before_marker(&gateway, &mut fuga, "fugafuga").await;
}

/// `proxy_test.go` Ping and reference 6.3: any method (but TRACE and other methods an OpenAPI
/// document cannot list: see `methods`), 200, `{"result":"OK"}` as
/// `application/json; charset=utf-8`.
#[tokio::test]
async fn ping_answers_ok_to_any_method() {
    let gateway = TestGateway::start(|_| {}).await;
    for method in [
        reqwest::Method::GET,
        reqwest::Method::POST,
        reqwest::Method::HEAD,
    ] {
        let response = oort_e2e::http_client()
            .request(method.clone(), format!("{}/ping", gateway.api_url()))
            .send()
            .await
            .unwrap();
        let (status, content_type, body) = parts(response).await;
        assert_eq!(status, 200, "{method}");
        assert_eq!(content_type, "application/json; charset=utf-8", "{method}");
        if method != reqwest::Method::HEAD {
            assert_eq!(body, r#"{"result":"OK"}"#, "{method}");
        }
    }
}

/// Reference 6.1: a method other than POST on `/send` or `/close` is 405 with kuiperbelt's
/// literal body (no trailing newline: kuiperbelt wrote it with `io.WriteString`).
#[tokio::test]
async fn send_and_close_require_post_with_exact_body() {
    let gateway = TestGateway::start(|_| {}).await;
    for (method, path) in [
        (reqwest::Method::GET, "/send"),
        (reqwest::Method::PUT, "/send"),
        (reqwest::Method::GET, "/close"),
        (reqwest::Method::DELETE, "/close"),
    ] {
        let response = oort_e2e::http_client()
            .request(method.clone(), format!("{}{path}", gateway.api_url()))
            .header(SESSION_HEADER, "alice")
            .send()
            .await
            .unwrap();
        let (status, content_type, body) = parts(response).await;
        assert_eq!(status, 405, "{method} {path}");
        assert_eq!(content_type, "application/json; charset=utf-8");
        assert_eq!(
            body, r#"{"errors":[{"error":"required POST method"}],"result":"NG"}"#,
            "{method} {path}"
        );
    }
}

/// Reference 6.1: no session header is 400 with kuiperbelt's literal body (no newline).
#[tokio::test]
async fn missing_session_header_is_400_with_exact_body() {
    let gateway = TestGateway::start(|_| {}).await;
    for path in ["/send", "/close"] {
        let response = post(&gateway, path, SESSION_HEADER, &[], None, b"hello").await;
        let (status, content_type, body) = parts(response).await;
        assert_eq!(status, 400, "{path}");
        assert_eq!(content_type, "application/json; charset=utf-8");
        assert_eq!(
            body, r#"{"errors":[{"error":"session header is missing"}],"result":"NG"}"#,
            "{path}"
        );
    }
}

/// Reference 6.1: each header line is one key, and a line is never split on commas, so
/// `alice, bob` names the session `alice, bob` only. Header names match case-insensitively
/// (Go canonicalizes `x-kuiperbelt-session`).
#[tokio::test]
async fn each_session_header_line_is_exactly_one_key() {
    let gateway = TestGateway::start(|_| {}).await;
    let mut alice = gateway.connect("alice").await;
    let mut bob = gateway.connect("bob").await;

    let (status, _, body) = parts(send(&gateway, &["alice, bob"], "combined").await).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        format!(r#"{{"errors":[{{"error":"{NOT_FOUND}","session":"alice, bob"}}],"result":"OK"}}"#)
            + "\n"
    );

    // A session really keyed `alice, bob` gets it; alice and bob do not.
    let mut both = WsClient::connect(&gateway.ws_url("key=alice%2C%20bob")).await;
    gateway
        .backend
        .wait_for(CallbackKind::Establish, "alice, bob", 1, TIMEOUT)
        .await;
    let lower = "x-kuiperbelt-session";
    let response = post(&gateway, "/send", lower, &["alice, bob"], None, b"combined").await;
    assert_eq!(parts(response).await.2, r#"{"result":"OK"}"#);
    expect_text(&mut both, "combined").await;
    expect_nothing_before_marker(&gateway, &mut alice, "alice").await;
    expect_nothing_before_marker(&gateway, &mut bob, "bob").await;
}

/// Reference 6.1: unknown keys in a non-strict request are listed in order, with kuiperbelt's
/// error text; even when every key is unknown the result is 200 `OK`.
#[tokio::test]
async fn every_key_unknown_is_still_ok_with_an_error_each() {
    let gateway = TestGateway::start(|_| {}).await;
    let (status, _, body) = parts(send(&gateway, &["nobody", "ghost"], "x").await).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        format!(
            r#"{{"errors":[{{"error":"{NOT_FOUND}","session":"nobody"}},{{"error":"{NOT_FOUND}","session":"ghost"}}],"result":"OK"}}"#
        ) + "\n"
    );
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["errors"][1]["session"], "ghost");
}
