//! Attacks by authenticated sessions: fragmented messages, messages just over the size limit,
//! and sessions that never read.

use oort_e2e::bench::attack::AttackKind;

use crate::{assert_contained, options, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_in_thousands_of_continuation_frames_hold_one_message_each() {
    let sessions = 10;
    let mut options = options(AttackKind::Fragments, sessions, 4);
    options.message_bytes = 64 << 10;
    options.fragments = 8_192;
    let report = run("", &options).await;
    let outcomes = &report.outcomes;
    assert!(outcomes.get("messages") >= sessions, "{outcomes:?}");
    // Each message counts once however many frames it took: a session is closed only if its
    // messages come faster than websocket.max_message_rate (the fastest sometimes do), and
    // then comes back.
    assert_eq!(
        outcomes.get("held_open") + outcomes.get("close_1008"),
        outcomes.get("sessions"),
        "{outcomes:?}"
    );
    // A session holds at most the message it is assembling, and the frame it is reading.
    assert_contained(&report, sessions as u64 * 2 * (64 << 10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_just_over_the_size_limit_are_closed_with_1009() {
    let sessions = 50;
    let mut options = options(AttackKind::OversizedMessages, sessions, 4);
    options.message_bytes = (64 << 10) + 1;
    let report = run("websocket:\n  max_message_size: 65536\n", &options).await;
    let outcomes = &report.outcomes;
    assert!(outcomes.get("close_1009") >= sessions, "{outcomes:?}");
    // Sessions that come back at once soon go over their address's connect rate (refused).
    assert_eq!(
        outcomes.get("close_1009") + outcomes.get("refused") + outcomes.get("held_open"),
        outcomes.get("sessions"),
        "{outcomes:?}"
    );
    // Each holds at most the first fragment (half the limit) before it is refused.
    assert_contained(&report, sessions as u64 * 2 * (64 << 10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_that_never_read_are_closed_and_cost_at_most_their_queues() {
    let sessions = 20;
    let report = run(
        "queue:\n  slow_consumer_timeout: 1s\n",
        &options(AttackKind::NoRead, sessions, 4),
    )
    .await;
    let outcomes = &report.outcomes;
    assert!(outcomes.get("sends") > 0, "{outcomes:?}");
    // Those whose queue stayed full for the slow-consumer timeout were closed (1013). Others
    // may never have filled theirs: the kernel's send buffer on loopback takes megabytes.
    assert!(outcomes.get("closed_by_gateway") > 0, "{outcomes:?}");
    assert_eq!(
        outcomes.get("closed_by_gateway") + outcomes.get("open"),
        sessions,
        "{outcomes:?}"
    );
    // One payload is shared by every queue it is on; each queue holds 1 MiB at most.
    assert_contained(&report, sessions as u64 * (1 << 20));
}
