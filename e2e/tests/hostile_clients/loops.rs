//! One address opening connections as fast as it can.

use oort_e2e::bench::attack::AttackKind;

use crate::{assert_contained, options, run_with_logs};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_in_a_connect_loop_gets_429_beyond_its_rate() {
    let hold_s = 4;
    let (report, logs) = run_with_logs("", &options(AttackKind::ConnectLoop, 8, hold_s)).await;
    let outcomes = &report.outcomes;
    // The default rate: bursts of 100, then 20 per second.
    let allowed = 100 + 20 * (hold_s as usize + 1);
    assert!(outcomes.get("status_429") > 0, "{outcomes:?}");
    assert!(
        outcomes.get("status_101") <= allowed,
        "at most {allowed} connects got through: {outcomes:?}"
    );
    // What got through is a handful of short sessions.
    assert_contained(&report, 4 << 20);
    // Thousands of refusals, a line or two in the log (one per reason every 10 s), naming the
    // address.
    let lines: Vec<&String> = logs
        .iter()
        .filter(|line| line.contains(r#""reason":"address_rate""#))
        .collect();
    assert!(
        (1..=2).contains(&lines.len()),
        "{} refusals logged in {} lines:\n{lines:#?}",
        outcomes.get("status_429"),
        lines.len()
    );
    assert!(lines[0].contains("127.77.0.1"), "{}", lines[0]);
}
