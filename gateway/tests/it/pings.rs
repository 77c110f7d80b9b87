//! Server pings at `websocket.ping_interval`, and the pong deadline that drops dead peers.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use oort_common::config::GoDuration;
use oort_e2e::backend::{CallbackKind, Hold};
use oort_e2e::{TIMEOUT, http_client};
use tokio_tungstenite::tungstenite::Message;

use crate::api::{metric, scrape};
use crate::kb_support::send;
use crate::raw::{self, RawWs};
use crate::support::{QUIET, TestGateway};

/// A config change: server pings every `interval_ms`, a peer dropped `pong_timeout_ms` after an
/// unanswered one.
fn pings_every(
    interval_ms: u64,
    pong_timeout_ms: u64,
) -> impl FnOnce(&mut oort_common::config::Config) {
    move |config| {
        config.websocket.ping_interval = GoDuration::from_millis(interval_ms);
        config.websocket.pong_timeout = GoDuration::from_millis(pong_timeout_ms);
    }
}

/// Reads `client` for `window`, answering pings (tungstenite does so as it reads), and returns
/// how many pings arrived. Panics on anything but pings.
async fn count_pings(client: &mut oort_e2e::WsClient, window: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + window;
    let mut pings = 0;
    while let Ok(next) = tokio::time::timeout_at(deadline, client.stream().next()).await {
        match next {
            Some(Ok(Message::Ping(_))) => pings += 1,
            other => panic!("expected only pings, got {other:?}"),
        }
    }
    pings
}

/// Connects a raw peer keyed `dead` that neither reads nor writes, like a host that vanished,
/// and waits for its close callback; returns the peer and how long that took from the connect.
async fn dead_peer_dropped(gateway: &TestGateway) -> (RawWs, Duration) {
    let started = Instant::now();
    let peer = raw::upgraded(gateway.addr, "dead").await;
    gateway
        .backend
        .wait_for(CallbackKind::Close, "dead", 1, TIMEOUT)
        .await;
    (peer, started.elapsed())
}

#[tokio::test]
async fn a_client_receives_server_pings_at_the_interval() {
    let gateway = TestGateway::start(pings_every(200, 1000)).await;
    let mut client = gateway.connect("pinged").await;
    let started = Instant::now();
    for _ in 0..3 {
        match client.next_within(TIMEOUT).await {
            Some(Ok(Message::Ping(payload))) => assert!(payload.is_empty()),
            other => panic!("expected a ping, got {other:?}"),
        }
    }
    let elapsed = started.elapsed();
    // Three pings 200 ms apart, the first 200 ms after the upgrade: not sooner, and not at the
    // pong timeout's 1 s pace (3 s), with room for a loaded machine.
    assert!(
        elapsed >= Duration::from_millis(450) && elapsed < Duration::from_millis(2500),
        "three pings took {elapsed:?}"
    );
    gateway.stop().await;
}

#[tokio::test]
async fn no_pings_when_the_interval_is_zero() {
    let gateway = TestGateway::start(|_| {}).await;
    let mut client = gateway.connect("unpinged").await;
    // Bounded window: the test config's ping_interval is 0.
    assert_eq!(count_pings(&mut client, QUIET).await, 0);
    gateway.stop().await;
}

#[tokio::test]
async fn a_peer_that_never_answers_is_dropped_after_the_pong_timeout() {
    let gateway = TestGateway::start(pings_every(200, 300)).await;
    let (mut peer, elapsed) = dead_peer_dropped(&gateway).await;
    // Not before the ping interval plus the pong timeout (500 ms); the upper bound, six
    // times that, leaves room for a loaded machine.
    assert!(
        elapsed >= Duration::from_millis(500) && elapsed < Duration::from_secs(3),
        "dropped after {elapsed:?}; expected the ping interval plus the pong timeout"
    );
    let text = scrape(&gateway.api_url()).await;
    assert_eq!(
        metric(&text, r#"oort_session_closes_total{cause="pong_timeout"}"#),
        Some(1.0),
        "{text}"
    );
    // What the peer was sent: the ping it ignored, then the end of the connection.
    let first = raw::read_frame(&mut peer.stream).await.expect("a ping");
    assert_eq!(first.opcode, 0x9);
    raw::wait_for_eof(&mut peer.stream).await;
    let response = http_client()
        .get(format!("{}/v1/sessions/dead", gateway.api_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    gateway.stop().await;
}

#[tokio::test]
async fn a_client_that_answers_stays_connected_across_many_intervals() {
    let gateway = TestGateway::start(pings_every(100, 150)).await;
    let mut client = gateway.connect("alive").await;
    let pings = count_pings(&mut client, Duration::from_millis(1200)).await;
    assert!(
        pings >= 5,
        "only {pings} pings in 1.2 s at a 100 ms interval"
    );
    assert!(
        gateway
            .backend
            .for_session(CallbackKind::Close, "alive")
            .is_empty(),
        "the answering client was not dropped"
    );
    let response = send(&gateway, &["alive"], "still here").await;
    assert_eq!(response.status(), 200);
    assert_eq!(client.recv_text().await, "still here");
    gateway.stop().await;
}

#[tokio::test]
async fn any_client_frame_counts_as_an_answer_to_a_ping() {
    // A client that never sends pongs but talks in time is alive: raw, so nothing answers
    // pings automatically.
    let gateway = TestGateway::start(pings_every(150, 250)).await;
    let mut peer = raw::upgraded(gateway.addr, "talker").await;
    let deadline = Instant::now() + Duration::from_millis(1200);
    let mut pings = 0;
    while Instant::now() < deadline {
        let frame = raw::read_frame(&mut peer.stream).await.expect("a frame");
        assert_eq!(frame.opcode, 0x9, "only pings arrive");
        pings += 1;
        peer.write(&raw::client_frame(0x1, b"tick", true)).await;
    }
    assert!(pings >= 5, "{pings} pings");
    assert!(
        gateway
            .backend
            .for_session(CallbackKind::Close, "talker")
            .is_empty()
    );
    gateway.stop().await;
}

#[tokio::test]
async fn a_pong_timeout_longer_than_the_interval_keeps_the_interval_and_the_deadline() {
    // Pings every 100 ms; a dead peer is dropped 500 ms after its first unanswered ping, not
    // 500 ms after the last one.
    let gateway = TestGateway::start(pings_every(100, 500)).await;
    let (mut peer, elapsed) = dead_peer_dropped(&gateway).await;
    // A deadline pushed back by every ping (each 100 ms, inside the 500 ms) would never drop
    // the peer, and the wait above would fail; the upper bound leaves room for a loaded machine.
    assert!(
        elapsed >= Duration::from_millis(600) && elapsed < Duration::from_secs(5),
        "dropped after {elapsed:?}"
    );
    let mut pings = 0;
    while let Some(frame) = raw::read_frame(&mut peer.stream).await {
        assert_eq!(frame.opcode, 0x9);
        pings += 1;
    }
    assert!(pings >= 4, "only {pings} pings before the drop");
    gateway.stop().await;
}

#[tokio::test]
async fn a_receive_callback_slower_than_the_pong_timeout_does_not_drop_an_answering_client() {
    // The reader takes one frame at a time: while it waits for the receive callback, the
    // client's pongs sit unread behind the message. That time is not the client's fault.
    let gateway = TestGateway::start(pings_every(100, 250)).await;
    let _slow = gateway
        .backend
        .hold(CallbackKind::Receive, Hold::For(Duration::from_secs(1)));
    let mut client = gateway.connect("patient").await;
    client.send_text("slow to handle").await;
    client.send_text("next").await;
    // The second message reaches the backend once the first callback ended, after a second of
    // pings; a message sent then proves the connection survived them. The client reads (and so
    // answers pings) all along.
    let marker = async {
        gateway
            .backend
            .wait_for(CallbackKind::Receive, "patient", 2, TIMEOUT)
            .await;
        assert_eq!(
            send(&gateway, &["patient"], "still here").await.status(),
            200
        );
    };
    let (received, ()) = tokio::join!(client.recv_text(), marker);
    assert_eq!(received, "still here");
    assert!(
        gateway
            .backend
            .for_session(CallbackKind::Close, "patient")
            .is_empty()
    );
    let text = scrape(&gateway.api_url()).await;
    assert_eq!(
        metric(&text, r#"oort_session_closes_total{cause="pong_timeout"}"#),
        Some(0.0),
        "{text}"
    );
    gateway.stop().await;
}
