//! `callback.max_concurrency`: a node never has more callbacks at the backend than the cap, the
//! others wait their turn (in the gauges), and close callbacks wait as long as a drain takes.

use std::time::Duration;

use oort_common::config::GoDuration;
use oort_e2e::backend::{CallbackKind, Hold};
use oort_e2e::{TIMEOUT, eventually};

use crate::api::{metric, scrape};
use crate::support::TestGateway;

/// `oort_callbacks_in_flight` and `oort_callbacks_waiting`, once both equal these.
async fn wait_for_gauges(gateway: &TestGateway, in_flight: usize, waiting: usize) {
    let what = format!("{in_flight} callbacks in flight and {waiting} waiting");
    eventually(TIMEOUT, &what, || async {
        let text = scrape(&gateway.api_url()).await;
        let gauges = (
            metric(&text, "oort_callbacks_in_flight"),
            metric(&text, "oort_callbacks_waiting"),
        );
        (gauges == (Some(in_flight as f64), Some(waiting as f64))).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_more_callbacks_than_the_cap_reach_the_backend_and_all_complete_once_released() {
    const CAP: usize = 3;
    const CLIENTS: usize = 8;
    let gateway = TestGateway::start(|config| {
        config.callback.max_concurrency = CAP;
        // Waiting for a turn counts against the timeout: keep it far from the test's pace.
        config.callback.timeout = GoDuration::from_secs(30);
    })
    .await;
    let mut clients = Vec::new();
    for index in 0..CLIENTS {
        clients.push(gateway.connect(&format!("busy-{index}")).await);
    }
    let held = gateway
        .backend
        .hold(CallbackKind::Receive, Hold::UntilReleased);
    for (index, client) in clients.iter_mut().enumerate() {
        client.send_text(&format!("message {index}")).await;
    }
    // Every receive callback has been started: the cap's worth are out, the rest wait. Those
    // out reach the backend; none of the waiting ones can.
    wait_for_gauges(&gateway, CAP, CLIENTS - CAP).await;
    gateway
        .backend
        .wait_for_kind(CallbackKind::Receive, CAP, TIMEOUT)
        .await;
    assert_eq!(gateway.backend.of_kind(CallbackKind::Receive).len(), CAP);
    assert_eq!(held.held_now(), CAP);

    held.release();
    let received = gateway
        .backend
        .wait_for_kind(CallbackKind::Receive, CLIENTS, TIMEOUT)
        .await;
    assert_eq!(received.len(), CLIENTS);
    assert_eq!(
        held.most_at_once(),
        CAP,
        "callbacks held at the backend at once"
    );
    wait_for_gauges(&gateway, 0, 0).await;
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_callbacks_of_a_drain_wait_for_their_turn_past_the_callback_timeout() {
    const CAP: usize = 2;
    const SESSIONS: usize = 6;
    let gateway = TestGateway::start(|config| {
        config.callback.max_concurrency = CAP;
        config.callback.timeout = GoDuration::from_secs(1);
        config.shutdown_grace_period = GoDuration::from_secs(15);
    })
    .await;
    let mut clients = Vec::new();
    for index in 0..SESSIONS {
        clients.push(gateway.connect(&format!("leaving-{index}")).await);
    }
    // A backend that takes 600 ms per close: three rounds of two, so the last closes wait
    // 1.2 s for their turn, longer than the callback timeout.
    let held = gateway
        .backend
        .hold(CallbackKind::Close, Hold::For(Duration::from_millis(600)));
    let backend = gateway.backend.clone();
    gateway.stop().await;
    let closes = backend.of_kind(CallbackKind::Close);
    assert_eq!(
        closes.len(),
        SESSIONS,
        "every session's close callback reached the backend"
    );
    assert_eq!(
        held.most_at_once(),
        CAP,
        "close callbacks at the backend at once"
    );
    assert_eq!(held.held_now(), 0, "every close callback was answered");
    drop(clients);
}
