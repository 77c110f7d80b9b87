//! Graceful shutdown: readiness false, no new clients, in-flight sends finish, Close 1001 after
//! each client's queued messages, close callbacks, all within the grace period.

use std::time::{Duration, Instant};

use oort_common::config::GoDuration;
use oort_e2e::backend::CallbackKind;
use oort_e2e::{TIMEOUT, WsClient, eventually};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::api::{pairs, post_json, statuses};
use crate::raw;
use crate::support::TestGateway;

/// Waits until the listener at `addr` refuses connections, which the drain does right after
/// readiness goes false.
async fn wait_until_not_accepting(addr: std::net::SocketAddr) {
    eventually(TIMEOUT, "the listener to close", || async {
        TcpStream::connect(addr).await.is_err().then_some(())
    })
    .await;
}

#[tokio::test]
async fn shutdown_sends_queued_messages_then_close_1001_to_every_client() {
    let gateway = TestGateway::start(|_| {}).await;
    let keys = ["s1", "s2", "s3"];
    let mut clients = Vec::new();
    for key in keys {
        clients.push(gateway.connect(key).await);
    }
    // Queued (none read yet) before the drain starts.
    for i in 0..5 {
        let (status, answer) = post_json(
            &gateway.api_url(),
            "/v1/send",
            &json!({"sessions": keys, "data": format!("m{i}")}),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(answer["ok"], 3);
    }
    gateway.begin_shutdown();
    for client in &mut clients {
        for i in 0..5 {
            assert_eq!(client.recv_text().await, format!("m{i}"));
        }
        let frame = client.closed().await.expect("a close frame");
        assert_eq!(u16::from(frame.code), 1001);
    }
    for key in keys {
        gateway
            .backend
            .wait_for(CallbackKind::Close, key, 1, TIMEOUT)
            .await;
    }
    let backend = gateway.backend.clone();
    gateway.stop().await;
    assert_eq!(backend.of_kind(CallbackKind::Close).len(), 3, "one each");
}

#[tokio::test]
async fn shutdown_finishes_a_send_that_is_in_flight() {
    let gateway = TestGateway::start(|_| {}).await;
    let mut client = gateway.connect("target").await;
    let body = json!({"sessions": ["target"], "data": "last words before the drain"}).to_string();
    let (first, rest) = body.split_at(body.len() / 2);
    let mut stream = TcpStream::connect(gateway.addr).await.unwrap();
    let head = format!(
        "POST /v1/send HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(first.as_bytes()).await.unwrap();
    raw::wait_until_server_read(&stream).await;

    gateway.begin_shutdown();
    wait_until_not_accepting(gateway.addr).await;
    stream.write_all(rest.as_bytes()).await.unwrap();
    let response = raw::read_response(&mut stream).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(statuses(&response.json()), pairs(&[("target", "ok")]));
    assert_eq!(client.recv_text().await, "last words before the drain");
    let frame = client.closed().await.expect("a close frame");
    assert_eq!(u16::from(frame.code), 1001);
    gateway.stop().await;
}

#[tokio::test]
async fn new_connects_during_the_drain_never_reach_the_backend() {
    // A client that never answers its close frame keeps the drain going for close_timeout.
    let gateway = TestGateway::start(|config| {
        config.websocket.close_timeout = GoDuration::from_secs(2);
    })
    .await;
    let _lingering = gateway.connect("lingering").await;
    gateway.begin_shutdown();
    wait_until_not_accepting(gateway.addr).await;
    let connects_before = gateway.backend.of_kind(CallbackKind::Connect).len();
    // The listener is closed (checked above), so the connect is refused at the TCP level, and
    // only there: anything else means something answered it.
    match WsClient::connect_with(&gateway.ws_url("key=late"), &[]).await {
        Err(tokio_tungstenite::tungstenite::Error::Io(err)) => {
            assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
        }
        Err(other) => panic!("expected a refused TCP connection, got {other}"),
        Ok(_) => panic!("a client connected during the drain"),
    }
    assert_eq!(
        gateway.backend.of_kind(CallbackKind::Connect).len(),
        connects_before
    );
    gateway.stop().await;
}

#[tokio::test]
async fn a_connect_waiting_for_the_backend_when_the_drain_starts_does_not_stay() {
    let gateway = TestGateway::start(|_| {}).await;
    let url = gateway.ws_url("key=in-flight&delay_ms=1500");
    let connecting = tokio::spawn(async move { WsClient::connect_with(&url, &[]).await });
    gateway
        .backend
        .wait_for_kind(CallbackKind::Connect, 1, TIMEOUT)
        .await;
    gateway.begin_shutdown();
    wait_until_not_accepting(gateway.addr).await;
    assert!(
        !connecting.is_finished(),
        "the backend answered before the drain began; the test proves nothing"
    );
    // Refused with 503, or let in and closed with 1001 right away: either way it does not
    // stay, and the drain does not wait for it past the grace period.
    match connecting.await.unwrap() {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
        }
        Err(other) => panic!("unexpected failure: {other}"),
        Ok((mut client, _)) => {
            let frame = client.closed().await.expect("a close frame");
            assert_eq!(u16::from(frame.code), 1001);
        }
    }
    // The drain ends because the connection did, not because the 5 s grace period ran out.
    let started = Instant::now();
    gateway.stop().await;
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn stop_returns_within_the_grace_period_when_a_client_never_answers_close() {
    let gateway = TestGateway::start(|config| {
        config.shutdown_grace_period = GoDuration::from_secs(1);
        // Longer than the grace period: only the grace period can end the drain in time.
        config.websocket.close_timeout = GoDuration::from_secs(30);
    })
    .await;
    let mut mute = raw::upgraded(gateway.addr, "mute").await;
    gateway
        .backend
        .wait_for(CallbackKind::Establish, "mute", 1, TIMEOUT)
        .await;
    let started = Instant::now();
    gateway.stop().await;
    let elapsed = started.elapsed();
    // Without the grace period the 30 s close timeout would hold the drain; 10 s tells the two
    // apart with room for a loaded machine.
    assert!(
        elapsed < Duration::from_secs(10),
        "stop took {elapsed:?} with a 1 s grace period"
    );
    // The mute peer was still sent its 1001.
    assert_eq!(
        raw::read_close(&mut mute.stream).await.map(|c| c.0),
        Some(1001)
    );
}

#[tokio::test]
async fn shutdown_delivers_a_full_queue_before_closing() {
    // A client that reads only after the drain began, over a small receive buffer so the
    // kernel takes little: sends fill its queue until one answers queue_full, so the drain
    // starts with a full queue, and the client still gets every message the queue took.
    let gateway = TestGateway::start(|_| {}).await;
    let url = gateway.ws_url("key=late-reader");
    let mut client = WsClient::connect_with_receive_buffer(&url, 4096).await;
    gateway
        .backend
        .wait_for(CallbackKind::Establish, "late-reader", 1, TIMEOUT)
        .await;
    let payload = |number: usize| format!("{number}-{}", "p".repeat(64 * 1024));
    let mut accepted = 0;
    loop {
        let body = json!({"sessions": ["late-reader"], "data": payload(accepted)});
        let (status, answer) = post_json(&gateway.api_url(), "/v1/send", &body).await;
        assert_eq!(status, 200, "{answer}");
        match answer["results"][0]["status"].as_str() {
            Some("ok") => accepted += 1,
            Some("queue_full") => break,
            other => panic!("message {accepted}: {other:?}"),
        }
        assert!(accepted < 1000, "the queue never filled");
    }
    gateway.begin_shutdown();
    for number in 0..accepted {
        match client.next_within(TIMEOUT).await {
            Some(Ok(Message::Text(text))) => assert!(text == payload(number), "message {number}"),
            other => panic!("message {number} of {accepted}: {other:?}"),
        }
    }
    let frame = client
        .closed()
        .await
        .expect("a close frame after the queue");
    assert_eq!(u16::from(frame.code), 1001);
    gateway.stop().await;
}
