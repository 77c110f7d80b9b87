//! Graceful shutdown of the real process on SIGTERM and SIGINT: queued messages first, then
//! Close 1001, a close callback per session, no new clients, exit 0 within
//! `shutdown_grace_period`, even when a client never answers the close handshake.
//!
//! `/readyz` going 503 is not observable from outside the process: the listeners stop
//! accepting at the moment readiness goes false (the in-process tests cover the flag).

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use oort_e2e::{CallbackKind, TIMEOUT, TestBackend, WsClient};

use crate::support::{Gateway, post_send};

const SESSION: &str = "X-Kuiperbelt-Session";

/// Connects one client per key and waits until each session is established.
async fn connect_all(gateway: &Gateway, backend: &TestBackend, keys: &[&str]) -> Vec<WsClient> {
    let mut clients = Vec::new();
    for key in keys {
        clients.push(WsClient::connect(&gateway.ws_url(&format!("key={key}"))).await);
        backend
            .wait_for(CallbackKind::Establish, key, 1, TIMEOUT)
            .await;
    }
    clients
}

/// Reads `count` texts `m0..` in order, then the close frame, and returns its code.
async fn drain_client(mut client: WsClient, count: usize) -> Option<u16> {
    for i in 0..count {
        assert_eq!(client.recv_text().await, format!("m{i}"));
    }
    client.closed().await.map(|frame| u16::from(frame.code))
}

/// Signals the gateway, checks each client gets its `queued` messages then 1001, the backend
/// a close callback per session, and the process exits 0 within the grace period.
async fn graceful_stop(signal: i32, name: &str, keys: &[&str], queued: usize) {
    let grace = Duration::from_secs(5);
    let backend = TestBackend::start().await;
    let mut gateway = Gateway::start(&backend, "shutdown_grace_period: 5s").await;
    let clients = connect_all(&gateway, &backend, keys).await;
    // Queue messages the clients have not read yet.
    let send = format!("{}/send", gateway.url());
    for i in 0..queued {
        assert_eq!(post_send(&send, SESSION, keys, &format!("m{i}")).await, 200);
    }

    let signalled = Instant::now();
    gateway.process.signal(signal);
    gateway
        .process
        .wait_for_line(&format!("{name} received"), TIMEOUT)
        .await;
    // Past this line readiness is false and the listener is closed: no new clients.
    gateway
        .process
        .wait_for_line("closing sessions", TIMEOUT)
        .await;
    let late = WsClient::connect_with(&gateway.ws_url("key=late"), &[]).await;
    assert!(late.is_err(), "a client connected during the drain");

    let codes = join_all(clients.into_iter().map(|c| drain_client(c, queued))).await;
    assert!(
        codes.iter().all(|code| *code == Some(1001)),
        "close codes {codes:?}"
    );
    for key in keys {
        backend.wait_for(CallbackKind::Close, key, 1, TIMEOUT).await;
    }
    let status = gateway.process.wait_exit(grace).await;
    let elapsed = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "exit status {status}");
    assert!(elapsed < grace, "exit took {elapsed:?}");
    gateway
        .process
        .wait_for_line("shutdown complete", TIMEOUT)
        .await;
    assert!(
        backend
            .for_session(CallbackKind::Connect, "late")
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flushes_queues_then_closes_1001_and_exits_0() {
    graceful_stop(15, "SIGTERM", &["term-1", "term-2", "term-3"], 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_drains_the_same_way() {
    graceful_stop(2, "SIGINT", &["int-1"], 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_ignoring_the_close_handshake_cannot_hold_the_process() {
    let grace = Duration::from_secs(2);
    let backend = TestBackend::start().await;
    // The close timeout alone would wait a minute for the client's answer.
    let mut gateway = Gateway::start(
        &backend,
        "shutdown_grace_period: 2s\nwebsocket:\n  close_timeout: 60s",
    )
    .await;
    let mut clients = connect_all(&gateway, &backend, &["stuck", "polite"]).await;
    let polite = clients.pop().unwrap();
    // `stuck` is never read again, so it never answers the close frame.
    let stuck = clients.pop().unwrap();

    let signalled = Instant::now();
    gateway.process.signal(15);
    assert_eq!(drain_client(polite, 0).await, Some(1001));
    backend
        .wait_for(CallbackKind::Close, "polite", 1, TIMEOUT)
        .await;
    // The close timeout would hold the process for a minute; the wait's bound (12 s) tells
    // the two apart, and the log line below says the grace period is what ended the drain.
    let status = gateway.process.wait_exit(grace + TIMEOUT).await;
    let elapsed = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "exit status {status}");
    assert!(
        elapsed >= grace,
        "the process lived {elapsed:?} after SIGTERM with a {grace:?} grace period"
    );
    assert!(
        gateway
            .process
            .logs()
            .iter()
            .any(|line| line.contains("sessions still closing when the grace period ended")),
        "the grace period did not cut the drain short"
    );
    drop(stuck);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once() {
    let backend = TestBackend::start().await;
    let mut gateway = Gateway::start(
        &backend,
        "shutdown_grace_period: 60s\nwebsocket:\n  close_timeout: 60s",
    )
    .await;
    let stuck = connect_all(&gateway, &backend, &["stuck"]).await;
    gateway.process.signal(15);
    gateway
        .process
        .wait_for_line("closing sessions", TIMEOUT)
        .await;
    // The grace period and the close timeout are a minute each: exiting within the wait's
    // 10 s bound, with status 1 and the line below, is the second signal's doing.
    gateway.process.signal(2);
    let status = gateway.process.wait_exit(TIMEOUT).await;
    assert_eq!(status.code(), Some(1), "exit status {status}");
    gateway
        .process
        .wait_for_line("second signal", TIMEOUT)
        .await;
    drop(stuck);
}
