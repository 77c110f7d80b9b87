//! Attacks before authentication: slow heads, oversized heads, silent connections.

use oort_e2e::bench::attack::AttackKind;

use crate::{assert_contained, options, run};

/// What one handshake may hold with the default limits: the budget reserves 28 KiB for it
/// (`client_max_head`, 16 KiB, plus 12 KiB), which covers a release build (25.2 KiB measured
/// with a 15 KB head); these tests run a debug build, whose tasks are larger.
const PER_HANDSHAKE: u64 = 40 << 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_heads_are_cut_at_the_head_timeout_and_hold_at_most_a_handshake_each() {
    let connections = 1_000;
    let report = run(
        "limits:\n  client_head_timeout: 2s\n",
        &options(AttackKind::SlowHeads, connections, 5),
    )
    .await;
    let outcomes = &report.outcomes;
    // Every connection was cut (closed without an answer, or reset when the cut met a line
    // in flight) at least once, then came back.
    let cut = outcomes.get("closed") + outcomes.get("reset");
    assert!(cut >= connections, "{outcomes:?}");
    assert_eq!(
        cut + outcomes.get("held_open"),
        outcomes.get("attempts"),
        "{outcomes:?}"
    );
    assert_contained(&report, connections as u64 * PER_HANDSHAKE);
}

/// The attack of issue 21: 300 connections sending 432 KiB of headers each (it took
/// kuiperbelt to 356 MB, and Oort to 209 MB before the client head limit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_get_431_at_the_client_limit() {
    let connections = 300;
    let report = run("", &options(AttackKind::LargeHeads, connections, 4)).await;
    let outcomes = &report.outcomes;
    assert!(outcomes.get("status_431") >= connections, "{outcomes:?}");
    // Attackers that come back at once soon go over their address's connect rate.
    assert_eq!(
        outcomes.get("status_431") + outcomes.get("status_429") + outcomes.get("held_open"),
        outcomes.get("attempts"),
        "nothing but 431s and 429s: {outcomes:?}"
    );
    assert_contained(&report, connections as u64 * PER_HANDSHAKE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_silent_connections_cost_a_few_kib_each() {
    let connections = 3_000;
    let mut options = options(AttackKind::HalfOpen, connections, 4);
    // 150 per address: under the 256 connections an address may have pending.
    options.sources = 20;
    let report = run("", &options).await;
    assert_eq!(
        report.outcomes.get("held_open"),
        connections,
        "{:?}",
        report.outcomes
    );
    // A silent connection reserves 6 KiB of the budget; it costs less.
    assert_contained(&report, connections as u64 * (6 << 10));
}
