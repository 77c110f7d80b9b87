//! Fast failover with default timings: after the raft leader is SIGKILLed, a connect through a
//! survivor succeeds within 2 s. openraft alone waits out the leader's lease and then a random
//! election timeout (4.5 to 6 s with the earlier defaults); the leader watch campaigns as soon
//! as the lease ran out, and registrations follow the new leader at once.

use std::time::Duration;

use oort_e2e::bench::failover;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_succeeds_within_two_seconds_of_the_leaders_kill() {
    let run = failover::run_once("").await.expect("a failover");
    eprintln!("{run:?}");
    assert!(
        run.first_connect_ms < Duration::from_secs(2).as_secs_f64() * 1000.0,
        "first connect {} ms after the kill",
        run.first_connect_ms
    );
}
