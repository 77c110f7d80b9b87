//! The backend is protected from a flood of connects (`callback.connect_concurrency`,
//! `callback.connect_rate`: 503 at once, never a pile-up at the backend) and from a client's
//! flood of messages (`websocket.max_message_rate`: close 1008 before the receive callback).

use oort_common::config::GoDuration;
use oort_e2e::backend::CallbackKind;
use oort_e2e::{TIMEOUT, WsClient};

use crate::api::{metric, refused, scrape};
use crate::support::TestGateway;

#[tokio::test]
async fn connects_beyond_the_connect_concurrency_get_503_without_reaching_the_backend() {
    let gateway = TestGateway::start(|config| config.callback.connect_concurrency = 2).await;
    let slow = |key: &'static str| {
        let url = gateway.ws_url(&format!("key={key}&delay_ms=1500"));
        tokio::spawn(async move { WsClient::connect(&url).await })
    };
    let (first, second) = (slow("first"), slow("second"));
    gateway
        .backend
        .wait_for_kind(CallbackKind::Connect, 2, TIMEOUT)
        .await;
    let (status, _, body) = refused(&gateway.ws_url("key=third")).await;
    assert_eq!(status, 503);
    assert!(
        body.contains("too many connects are waiting for the backend"),
        "{body}"
    );
    assert_eq!(gateway.backend.of_kind(CallbackKind::Connect).len(), 2);
    // The two at the backend are served as ever, and the place is free again afterwards.
    first.await.unwrap();
    second.await.unwrap();
    let _third = gateway.connect("third").await;
    let text = scrape(&gateway.api_url()).await;
    assert_eq!(
        metric(&text, r#"oort_refused_total{reason="connect_concurrency"}"#),
        Some(1.0)
    );
    gateway.stop().await;
}

#[tokio::test]
async fn connects_beyond_the_connect_rate_get_503_with_retry_after() {
    let gateway = TestGateway::start(|config| config.callback.connect_rate = 2).await;
    let _one = gateway.connect("one").await;
    let _two = gateway.connect("two").await;
    let response = oort_e2e::http_client()
        .get(gateway.ws_url("key=three").replace("ws://", "http://"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("1")
    );
    // A connect is one request: its connection is not kept for more.
    let connection = response.headers().get("connection");
    assert_eq!(connection.map(|v| v.to_str().unwrap()), Some("close"));
    assert!(
        gateway
            .backend
            .for_session(CallbackKind::Connect, "three")
            .is_empty()
    );
    gateway.stop().await;
}

#[tokio::test]
async fn a_client_over_its_message_rate_is_closed_with_1008_and_its_burst_was_delivered() {
    let gateway = TestGateway::start(|config| {
        config.websocket.max_message_rate = 1;
        config.websocket.message_burst = 5;
        config.websocket.close_timeout = GoDuration::from_secs(1);
    })
    .await;
    let mut client = gateway.connect("chatty").await;
    for index in 0..6 {
        client.send_text(&format!("m{index}")).await;
    }
    let frame = client.closed().await.expect("a close frame");
    assert_eq!(u16::from(frame.code), 1008);
    assert_eq!(frame.reason, "message rate limit exceeded");
    gateway
        .backend
        .wait_for(CallbackKind::Close, "chatty", 1, TIMEOUT)
        .await;
    let received: Vec<_> = gateway
        .backend
        .for_session(CallbackKind::Receive, "chatty")
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert_eq!(received, ["m0", "m1", "m2", "m3", "m4"]);
    let text = scrape(&gateway.api_url()).await;
    assert_eq!(
        metric(&text, r#"oort_session_closes_total{cause="message_rate"}"#),
        Some(1.0)
    );
    // Another session is not affected.
    let mut calm = gateway.connect("calm").await;
    calm.send_text("hello").await;
    gateway
        .backend
        .wait_for(CallbackKind::Receive, "calm", 1, TIMEOUT)
        .await;
    gateway.stop().await;
}
