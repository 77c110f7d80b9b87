//! Slow clients: a bounded per-session queue answers `queue_full` instead of blocking the
//! sender, a client stuck past `queue.slow_consumer_timeout` is closed (with 1013 if it reads
//! again), and nobody else waits.
//!
//! The slow client is a raw socket that completes the handshake and never reads, with a small
//! receive buffer, so the kernel buffers fill and the gateway's writes stall.

use std::time::{Duration, Instant};

use oort_common::config::{Config, GoDuration};
use oort_e2e::backend::CallbackKind;
use oort_e2e::{TIMEOUT, WsClient, eventually};
use serde_json::json;

use crate::api::{json_of, metric, pairs, post_json, scrape, session_info, statuses};
use crate::kb_support::send;
use crate::raw::{self, RawWs};
use crate::support::TestGateway;

/// Size of each message sent to the slow client.
const CHUNK: usize = 64 * 1024;
/// Loopback socket buffers hold a few MiB at most; this bounds the fill at 64 MiB.
const MAX_CHUNKS: usize = 1024;
/// How long any single backend send may take: it must never wait for the slow client. A send
/// that did wait would wait until the slow-consumer timeout closed that client (3 s at least
/// in these tests), so 2 s tells the two apart with room for a loaded machine.
const SEND_BOUND: Duration = Duration::from_secs(2);

/// A config change: a queue of 4 messages or 1 MiB, the given slow-consumer timeout, and a 1 s
/// grace period.
fn small_queue(slow_consumer_timeout: GoDuration) -> impl FnOnce(&mut Config) {
    move |config| {
        config.queue.max_messages = 4;
        config.queue.max_bytes = 1 << 20;
        config.queue.slow_consumer_timeout = slow_consumer_timeout;
        // A client stuck in a write holds the drain until the grace period ends.
        config.shutdown_grace_period = GoDuration::from_secs(1);
    }
}

/// Upgrades a raw client keyed `key` with a 4 KiB receive buffer that never reads, and waits
/// for its establish callback.
async fn connect_slow(gateway: &TestGateway, key: &str) -> RawWs {
    let peer = raw::ws_connect(
        gateway.addr,
        &format!("/connect?key={key}"),
        &[],
        Some(4096),
    )
    .await;
    assert_eq!(peer.response.status, 101);
    gateway
        .backend
        .wait_for(CallbackKind::Establish, key, 1, TIMEOUT)
        .await;
    peer
}

/// One `/v1/send` to `key`, bounded by [`SEND_BOUND`]; returns its status for `key`.
async fn send_chunk(gateway: &TestGateway, key: &str, chunk: &str) -> String {
    let started = Instant::now();
    let (status, answer) = post_json(
        &gateway.api_url(),
        "/v1/send",
        &json!({"sessions": [key], "data": chunk}),
    )
    .await;
    let elapsed = started.elapsed();
    assert_eq!(status, 200, "{answer}");
    assert!(
        elapsed < SEND_BOUND,
        "a send to a slow client took {elapsed:?}"
    );
    statuses(&answer).remove(0).1
}

/// Sends chunks until the slow client's queue is full; returns how many were accepted.
async fn fill(gateway: &TestGateway, key: &str) -> usize {
    let chunk = "s".repeat(CHUNK);
    for sent in 0..MAX_CHUNKS {
        match send_chunk(gateway, key, &chunk).await.as_str() {
            "ok" => {}
            "queue_full" => return sent,
            other => panic!("unexpected status {other} after {sent} chunks"),
        }
    }
    panic!("the queue never filled after {MAX_CHUNKS} chunks of {CHUNK} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_gets_queue_full_instead_of_blocking_the_sender() {
    let gateway = TestGateway::start(small_queue(GoDuration::from_secs(30))).await;
    let _slow = connect_slow(&gateway, "slow").await;
    let accepted = fill(&gateway, "slow").await;
    assert!(
        accepted >= 4,
        "at least the queue's own 4 messages: {accepted}"
    );

    // The queue holds its bound, and further sends keep being refused at once.
    let (_, info) = session_info(&gateway, "slow").await;
    assert_eq!(info["queued_messages"], 4, "{info}");
    assert_eq!(info["queued_bytes"], 4 * CHUNK, "{info}");
    let chunk = "s".repeat(CHUNK);
    for _ in 0..5 {
        assert_eq!(send_chunk(&gateway, "slow", &chunk).await, "queue_full");
    }
    // A batch naming the slow client and a missing one answers per session.
    let (_, answer) = post_json(
        &gateway.api_url(),
        "/v1/send/batch",
        &json!({"messages": [{"sessions": ["slow", "nobody"], "data": "x"}]}),
    )
    .await;
    assert_eq!(
        statuses(&answer["messages"][0]),
        pairs(&[("slow", "queue_full"), ("nobody", "not_found")])
    );
    let text = scrape(&gateway.api_url()).await;
    assert_eq!(
        metric(&text, r#"oort_deliveries_total{status="queue_full"}"#),
        Some(7.0),
        "{text}"
    );
    // kuiperbelt's /send reports the same per session, without waiting either.
    let started = Instant::now();
    let response = send(&gateway, &["slow"], "kb").await;
    assert!(started.elapsed() < SEND_BOUND);
    assert_eq!(response.status(), 200);
    let body = json_of(response).await;
    assert_eq!(body["errors"][0]["session"], "slow", "{body}");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_stuck_past_the_slow_consumer_timeout_is_closed_and_reported() {
    let timeout = Duration::from_secs(3);
    let gateway = TestGateway::start(small_queue(GoDuration(timeout))).await;
    let mut slow = connect_slow(&gateway, "stuck").await;
    let started = Instant::now();
    fill(&gateway, "stuck").await;
    gateway
        .backend
        .wait_for(CallbackKind::Close, "stuck", 1, TIMEOUT)
        .await;
    let elapsed = started.elapsed();
    // Not before the timeout; the upper bound only says the timeout, not something much
    // later, closed it, with room for a loaded machine.
    assert!(
        elapsed >= timeout && elapsed < timeout + Duration::from_secs(5),
        "closed {elapsed:?} after the fill began"
    );
    let text = scrape(&gateway.api_url()).await;
    assert_eq!(
        metric(&text, r#"oort_session_closes_total{cause="slow_consumer"}"#),
        Some(1.0),
        "{text}"
    );
    // The session is gone: sends now answer not_found, and the socket is closed.
    let (_, answer) = post_json(
        &gateway.api_url(),
        "/v1/send",
        &json!({"sessions": ["stuck"], "data": "x"}),
    )
    .await;
    assert_eq!(statuses(&answer), pairs(&[("stuck", "not_found")]));
    raw::wait_for_eof(&mut slow.stream).await;
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_never_delays_a_healthy_one() {
    let gateway = TestGateway::start(small_queue(GoDuration::from_secs(30))).await;
    let mut healthy = gateway.connect("healthy").await;
    let _slow = connect_slow(&gateway, "slow").await;
    let chunk = "s".repeat(CHUNK);
    let mut worst = Duration::ZERO;
    let mut full_seen = 0;
    let mut round = 0;
    // Keep going past the point where the slow client's queue is full.
    while full_seen < 10 {
        assert!(round < MAX_CHUNKS, "the slow client's queue never filled");
        if send_chunk(&gateway, "slow", &chunk).await == "queue_full" {
            full_seen += 1;
        }
        let started = Instant::now();
        let message = format!("tick {round}");
        assert_eq!(send_chunk(&gateway, "healthy", &message).await, "ok");
        assert_eq!(healthy.recv_text().await, message);
        worst = worst.max(started.elapsed());
        round += 1;
    }
    // A healthy client held up behind the slow one would wait for its slow-consumer timeout
    // (30 s here); 5 s tells the two apart with room for a loaded machine.
    let held_up = Duration::from_secs(5);
    assert!(
        worst < held_up,
        "the healthy client waited up to {worst:?} for a message"
    );
    // And a client that connects now is not held up either.
    let started = Instant::now();
    let mut newcomer = WsClient::connect(&gateway.ws_url("key=newcomer&first=hi")).await;
    assert_eq!(newcomer.recv_text().await, "hi");
    assert!(started.elapsed() < held_up);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_write_ends_with_close_1013_when_the_client_reads_again() {
    let gateway = TestGateway::start(|config| {
        small_queue(GoDuration::from_secs(1))(config);
        // The close frame may wait this long for the client to read again.
        config.websocket.close_timeout = GoDuration::from_secs(10);
    })
    .await;
    let mut slow = connect_slow(&gateway, "stalled").await;
    // The queue is full and the writer is stuck in a write the client does not read.
    fill(&gateway, "stalled").await;
    // Past the slow-consumer timeout the writer gives up on that write and drops the queue;
    // nothing is sent meanwhile, so the queue cannot have closed itself instead.
    eventually(
        TIMEOUT,
        "the writer to give up on the stalled write",
        || async {
            let (status, info) = session_info(&gateway, "stalled").await;
            (status == 404 || info["queued_messages"] == 0).then_some(())
        },
    )
    .await;
    // Reading again lets the rest of the stalled frames out, then the close frame.
    let close = raw::read_close(&mut slow.stream).await;
    assert_eq!(
        close,
        Some((1013, "client too slow to keep up".to_owned())),
        "the close frame after the stalled write"
    );
    slow.write(&raw::client_frame(0x8, &1013u16.to_be_bytes(), true))
        .await;
    gateway
        .backend
        .wait_for(CallbackKind::Close, "stalled", 1, TIMEOUT)
        .await;
    let text = scrape(&gateway.api_url()).await;
    assert_eq!(
        metric(&text, r#"oort_session_closes_total{cause="slow_consumer"}"#),
        Some(1.0),
        "{text}"
    );
    gateway.stop().await;
}
