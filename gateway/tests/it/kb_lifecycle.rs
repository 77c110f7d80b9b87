//! A session's life after the connect: establish, receive, client close, idle timeout and
//! duplicate keys (reference sections 2.5-2.7, 3, 5.2-5.4; upstream `server_test.go` and
//! `receiver_test.go`).

use std::time::{Duration, Instant};

use oort_common::config::GoDuration;
use oort_e2e::backend::CallbackKind;
use oort_e2e::{TIMEOUT, WsClient};
use tokio_tungstenite::tungstenite::{Bytes, Message};

use crate::api::parts;
use crate::kb_support::{SESSION_HEADER, backend_with_header, post, send, stat, wait_connections};
use crate::support::TestGateway;

const NOT_FOUND: &str = "kuiperbelt: session is not found";

/// kuiperbelt's TestConfig session header.
const TEST_HEADER: &str = "X-Kuiperbelt-Session-Key";

/// A gateway whose backend and config use `X-Kuiperbelt-Session-Key`.
async fn test_config_gateway(
    configure: impl FnOnce(&mut oort_common::config::Config),
) -> TestGateway {
    let backend = backend_with_header(TEST_HEADER).await;
    TestGateway::start_with_backend(backend, |config| {
        config.session_header = TEST_HEADER.into();
        config.endpoint = "localhost".into();
        configure(config);
    })
    .await
}

/// True if `/send` to `key` (named in `header`) says the session is not found.
async fn is_unknown(gateway: &TestGateway, header: &str, key: &str) -> bool {
    let response = post(gateway, "/send", header, &[key], None, b"probe").await;
    parts(response).await.2.contains(NOT_FOUND)
}

/// `server_test.go` SuccessEstablished: the establish callback gets the session header before
/// the first message is written, and the session is then registered.
#[tokio::test]
async fn establish_success_precedes_first_message_and_registers() {
    let gateway = test_config_gateway(|_| {}).await;
    let mut client = WsClient::connect(&gateway.ws_url("key=hogehoge&first=hello")).await;
    assert_eq!(client.recv().await, Message::text("hello"));
    // Already recorded: the first message is written only after establish answered.
    let establish = gateway
        .backend
        .for_session(CallbackKind::Establish, "hogehoge");
    assert_eq!(establish.len(), 1);
    assert_eq!(establish[0].method, "POST");
    assert!(establish[0].body.is_empty());
    assert!(!is_unknown(&gateway, TEST_HEADER, "hogehoge").await);
    assert_eq!(client.recv().await, Message::text("probe"));
}

/// `server_test.go` FailEstablished: a non-200 establish answer ends the connection without the
/// first message, counts a connect error, leaves the key unregistered and sends no close
/// callback. Oort sends a close frame (1011) where kuiperbelt dropped the socket (1006).
#[tokio::test]
async fn establish_failure_closes_and_never_registers() {
    let gateway = TestGateway::start(|_| {}).await;
    let mut client = WsClient::connect(&gateway.ws_url("key=establish-fail-1&first=hello")).await;
    // The very next frame is the close: the first message is never sent.
    match client.next_within(TIMEOUT).await {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 1011),
        other => panic!("expected a close frame first, got {other:?}"),
    }
    drop(client);
    // `connections` drops only after the connection task, close callback included, ended.
    wait_connections(&gateway, 0).await;
    assert!(gateway.backend.of_kind(CallbackKind::Close).is_empty());
    let (_, _, body) = parts(send(&gateway, &["establish-fail-1"], "x").await).await;
    assert!(body.contains(NOT_FOUND), "{body}");
    assert_eq!(stat(&gateway, "connect_errors").await, 1);
}

/// `server_test.go` CallbackReceiver and `receiver_test.go`: a text frame is POSTed to the
/// receive callback as `text/plain` with the session header, the endpoint and the body; a
/// binary frame as `application/octet-stream`. Messages arrive in order.
#[tokio::test]
async fn receive_callback_gets_text_and_binary_frames() {
    let gateway = test_config_gateway(|_| {}).await;
    let mut client = WsClient::connect(&gateway.ws_url("key=hogehoge&first=hello")).await;
    assert_eq!(client.recv().await, Message::text("hello"));
    client.send_text("hello receive message").await;
    client
        .send(Message::Binary(Bytes::from_static(b"\x00\x01\xff")))
        .await;
    let received = gateway
        .backend
        .wait_for(CallbackKind::Receive, "hogehoge", 2, TIMEOUT)
        .await;
    assert_eq!(received[0].method, "POST");
    assert_eq!(received[0].header("content-type"), Some("text/plain"));
    assert_eq!(&received[0].body[..], b"hello receive message");
    assert_eq!(
        received[0].header_all("x-kuiperbelt-endpoint"),
        ["localhost"]
    );
    assert_eq!(
        received[1].header("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(&received[1].body[..], b"\x00\x01\xff");
}

/// `receiver_test.go` Unauthorized and reference 5.4: a failing receive callback is logged and
/// the loop goes on: later frames are still posted and the connection stays open.
#[tokio::test]
async fn receive_callback_failure_keeps_the_connection() {
    let gateway = TestGateway::start(|_| {}).await;
    let mut client = gateway.connect("receive-fail-1").await;
    client.send_text("one").await;
    client.send_text("two").await;
    let received = gateway
        .backend
        .wait_for(CallbackKind::Receive, "receive-fail-1", 2, TIMEOUT)
        .await;
    assert_eq!(&received[1].body[..], b"two");
    let response = send(&gateway, &["receive-fail-1"], "still here").await;
    assert_eq!(parts(response).await.2, r#"{"result":"OK"}"#);
    assert_eq!(client.recv().await, Message::text("still here"));
}

/// `server_test.go` CloseByClient: after the client's close frame (echoed with the same code)
/// the session leaves the table and the close callback is sent: POST, no body, the session
/// header and `proxy_set_header`.
#[tokio::test]
async fn close_by_client_unregisters_and_calls_back() {
    let gateway = test_config_gateway(|config| {
        config.proxy_set_header = [("X-Foo".to_owned(), "Foo".to_owned())].into();
    })
    .await;
    let mut client = WsClient::connect(&gateway.ws_url("key=hogehoge&first=hello")).await;
    assert_eq!(client.recv().await, Message::text("hello"));
    client.send_text("barbar").await;
    gateway
        .backend
        .wait_for(CallbackKind::Receive, "hogehoge", 1, TIMEOUT)
        .await;
    let echoed = client.close(4001).await.expect("the close is echoed");
    assert_eq!(u16::from(echoed.code), 4001);
    let close = gateway
        .backend
        .wait_for(CallbackKind::Close, "hogehoge", 1, TIMEOUT)
        .await;
    assert_eq!(close[0].method, "POST");
    assert!(close[0].body.is_empty());
    assert_eq!(close[0].header("x-foo"), Some("Foo"));
    // The session is unregistered before the close callback is sent.
    assert!(is_unknown(&gateway, TEST_HEADER, "hogehoge").await);
}

/// Reference 5.3: a connection that just drops (EOF, no close frame) gets its close callback.
#[tokio::test]
async fn dropped_connection_gets_close_callback() {
    let gateway = TestGateway::start(|_| {}).await;
    let client = gateway.connect("dropper").await;
    drop(client);
    gateway
        .backend
        .wait_for(CallbackKind::Close, "dropper", 1, TIMEOUT)
        .await;
    assert!(is_unknown(&gateway, SESSION_HEADER, "dropper").await);
}

/// `server_test.go` IdleTimeout, scaled to a 1 s idle timeout: a ping at half the timeout is
/// answered with the same payload and keeps the connection past the original deadline; about
/// one idle timeout after the ping the connection is closed (Oort: close frame 1000) and the
/// close callback is sent.
#[tokio::test]
async fn idle_timeout_is_extended_by_ping_then_closes() {
    let idle = Duration::from_secs(1);
    let gateway = TestGateway::start(|config| config.idle_timeout = GoDuration::from_secs(1)).await;
    let mut client = gateway.connect("idler").await;
    // The point of this test is elapsed time, so it sleeps to let the idle clock run.
    tokio::time::sleep(idle / 2).await;
    client
        .send(Message::Ping(Bytes::from_static(b"hello")))
        .await;
    let pinged = Instant::now();
    match client.next_within(TIMEOUT).await {
        Some(Ok(Message::Pong(payload))) => assert_eq!(&payload[..], b"hello"),
        other => panic!("expected the pong, got {other:?}"),
    }
    // Bounded window: still open 700 ms after the ping, 200 ms past the original deadline.
    assert!(
        client.nothing_within(idle * 7 / 10).await,
        "closed too early"
    );
    assert!(gateway.backend.of_kind(CallbackKind::Close).is_empty());

    let frame = client.closed().await.expect("a close frame");
    let after_ping = pinged.elapsed();
    assert_eq!(u16::from(frame.code), 1000);
    assert!(
        after_ping >= idle * 9 / 10 && after_ping < idle * 2,
        "closed {after_ping:?} after the ping"
    );
    gateway
        .backend
        .wait_for(CallbackKind::Close, "idler", 1, TIMEOUT)
        .await;
}

/// Duplicate keys (reference 2.6 and 11.3; untested upstream): the newer connection takes the
/// key, the older one gets a close frame, and the older one's end neither unregisters the
/// newer one nor sends a close callback. (kuiperbelt left the older open and its close deleted
/// the newer entry; Oort's difference is documented.)
#[tokio::test]
async fn duplicate_key_closes_the_older_connection_only() {
    let gateway = TestGateway::start(|_| {}).await;
    let mut older = gateway.connect("dup").await;
    let mut newer = WsClient::connect(&gateway.ws_url("key=dup&first=newer")).await;
    assert_eq!(newer.recv().await, Message::text("newer"));

    let frame = older
        .closed()
        .await
        .expect("the older connection gets a close frame");
    assert_eq!(u16::from(frame.code), 1000);
    // Once only the newer connection is counted, the older task has ended: its unregistering
    // and any close callback are done.
    wait_connections(&gateway, 1).await;
    assert!(gateway.backend.of_kind(CallbackKind::Close).is_empty());

    let response = send(&gateway, &["dup"], "to the newer").await;
    assert_eq!(parts(response).await.2, r#"{"result":"OK"}"#);
    assert_eq!(newer.recv().await, Message::text("to the newer"));

    // The newer one's own end is reported as usual.
    newer.close(1000).await;
    gateway
        .backend
        .wait_for(CallbackKind::Close, "dup", 1, TIMEOUT)
        .await;
}
