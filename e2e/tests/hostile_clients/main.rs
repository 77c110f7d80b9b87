//! Hostile clients against a real `oort` process on loopback, with its default limits (a few
//! shortened so the tests stay short). Each test runs one attack from `oort-bench attack` and
//! asserts three things: the gateway's RSS (from /proc) stays within the bound the test states,
//! a well-behaved client keeps connecting and receiving with normal latency throughout, and
//! every session opened before the attack still receives a marker after it.
//!
//! Figures for larger runs, side by side with kuiperbelt, are in docs/security.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod heads;
mod loops;
mod messages;

use std::time::Duration;

use oort_e2e::bench::attack::{self, AttackKind, AttackOptions, AttackReport};
use oort_e2e::bench::backend;
use oort_e2e::bench::target::{Limits, Target};

/// A well-behaved client's median connect and round trip stay below this during an attack
/// (about 1 ms without one; a gateway that gave in would take seconds or refuse).
const NORMAL_LATENCY_MS: f64 = 500.0;
/// And no single probe takes longer than this.
const WORST_LATENCY_MS: f64 = 3_000.0;
/// What a gateway's RSS may grow by for reasons no attack controls (allocator arenas, the
/// probe's and the sessions' own connections).
const SLACK_BYTES: u64 = 8 << 20;

/// An attack of `kind` with the options the tests share.
fn options(kind: AttackKind, connections: usize, hold_s: u64) -> AttackOptions {
    AttackOptions {
        kind,
        connections,
        sources: 20,
        hold: Duration::from_secs(hold_s),
        head_bytes: 432 << 10,
        message_bytes: 64 << 10,
        fragments: 2,
        sessions: 50,
        probe_interval: Duration::from_millis(200),
    }
}

/// Spawns `oort` with `extra_config` and runs the attack against it.
async fn run(extra_config: &str, options: &AttackOptions) -> AttackReport {
    run_with_logs(extra_config, options).await.0
}

/// [`run`], and the gateway's log lines (JSON).
async fn run_with_logs(extra_config: &str, options: &AttackOptions) -> (AttackReport, Vec<String>) {
    let backend = backend::start("127.0.0.1:0").await.unwrap();
    let target = Target::spawn(backend, extra_config, Limits::Configured)
        .await
        .unwrap();
    let report = attack::run(&target, options).await.unwrap();
    eprintln!("{}", serde_json::to_string_pretty(&report).unwrap());
    (report, target.logs())
}

/// The common assertions: RSS within `bound_bytes` of the baseline, the probe served with
/// normal latency, no session lost.
fn assert_contained(report: &AttackReport, bound_bytes: u64) {
    let baseline = report.rss_baseline_bytes.expect("the gateway's RSS");
    let peak = report.rss_peak_bytes.expect("the gateway's peak RSS");
    assert!(
        peak <= baseline + bound_bytes + SLACK_BYTES,
        "RSS grew from {} KiB to {} KiB, more than the bound of {} KiB (+{} KiB slack)",
        baseline >> 10,
        peak >> 10,
        bound_bytes >> 10,
        SLACK_BYTES >> 10
    );
    let probe = &report.probe;
    assert!(probe.attempts >= 5, "the probe ran: {probe:?}");
    assert_eq!(probe.failures, 0, "the probe was always served: {probe:?}");
    for (what, figures) in [
        ("connect", &probe.connect),
        ("round trip", &probe.round_trip),
    ] {
        let figures = figures.as_ref().expect("probe figures");
        assert!(
            figures.p50_ms <= NORMAL_LATENCY_MS && figures.max_ms <= WORST_LATENCY_MS,
            "the probe's {what} took {figures:?}"
        );
    }
    assert_eq!(report.sessions_lost, 0, "no session was lost");
}
