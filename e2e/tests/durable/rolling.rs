//! Zero loss through a rolling restart (issue 11): three nodes, 300 `oort.v1` clients spread
//! over them, a backend sending about 1,000 messages a second through every node, and every
//! node restarted in turn (SIGTERM, started again). A draining node tells its clients to move
//! (1012); they resume at once on another node, which takes their tails. Every message whose
//! send answered `ok` or `buffered` must reach its client exactly once, in order, and no
//! client may be reset. The workload is `oort_e2e::bench::rolling`, which `oort-bench rolling`
//! runs too.

use oort_e2e::bench::rolling::{self, RollingOptions};

const CLIENTS: usize = 300;

#[tokio::test]
async fn a_rolling_restart_loses_nothing_for_oort_v1_clients() {
    let options = RollingOptions {
        clients: CLIENTS,
        rate: 1_000,
        nodes: 3,
    };
    let report = rolling::run(&options).await.expect("a rolling restart");
    let d = &report.delivery;
    let resume = d.resume.as_ref();
    eprintln!(
        "rolling restart of 3 nodes in {:.0} ms: {} sends ({} ok, {} buffered, other {:?}); \
         lost {}, duplicated {}, out of order {}, sequence gaps {}, resets {}; {} resumes, \
         p50 {:?} ms, p99 {:?} ms, max {:?} ms",
        report.restart_ms,
        d.sends,
        d.ok,
        d.buffered,
        d.other,
        d.lost,
        d.duplicated,
        d.out_of_order,
        d.sequence_gaps,
        d.resets,
        d.resumes,
        resume.map(|r| r.p50_ms),
        resume.map(|r| r.p99_ms),
        resume.map(|r| r.max_ms),
    );
    assert!(d.sends > 1000, "the sender kept sending: {}", d.sends);
    assert_eq!(
        d.lost, 0,
        "messages answered ok or buffered but never received"
    );
    assert_eq!(d.duplicated, 0, "messages received twice");
    assert_eq!(d.out_of_order, 0, "messages received out of order");
    assert_eq!(d.sequence_gaps, 0, "sequence numbers skipped or repeated");
    assert_eq!(
        d.unexpected, 0,
        "messages received although their send was refused"
    );
    assert_eq!(d.resets, 0, "no client lost continuity");
    assert!(d.resumes >= CLIENTS, "every client moved at least once");
}
