//! Failures under steady load: a gateway node killed, the raft leader killed, a server of a
//! three-server NATS cluster killed, and a standalone NATS server restarted. Every send is
//! recorded in a [`Ledger`] and matched against what the clients received: an `ok` that did
//! not arrive, or an `owner_unreachable` that did, fails the test.

use std::time::{Duration, Instant};

use oort_e2e::cluster::{FAST_TIMINGS, TestCluster};
use oort_e2e::nats::NatsServer;
use oort_e2e::{TIMEOUT, eventually};

use crate::ledger::{Ledger, Reader};
use crate::load::Load;
use crate::{CONVERGE, connect, three_nodes};

/// Load sends answered all `ok` before a fault, and again after it, so that the load really
/// runs on both sides of it.
const SENDS_AROUND_A_FAULT: usize = 20;

/// Connects `key` on `node` and reads it in the background.
async fn reader(cluster: &TestCluster, node: &str, key: &str) -> Reader {
    let client = connect(cluster, node, key).await;
    Reader::start(client, key, cluster.node(node).api_url())
}

/// A node is SIGKILLed while sends to sessions on the other two run: none of those fails. A
/// send to the dead node's session answers `owner_unreachable` from the first try (NATS has no
/// responder for it any more, so nothing waits for the route timeout, which would answer
/// `owner_timeout`) until the node timeout purges the session: `not_found` from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_does_not_disturb_sends_to_the_others() {
    let (_nats, mut cluster) = three_nodes().await;
    let (ledger, http) = (Ledger::new(), oort_e2e::http_client());
    let readers = vec![
        reader(&cluster, "n1", "s1").await,
        reader(&cluster, "n2", "s2").await,
    ];
    let _victim = connect(&cluster, "n3", "victim").await;
    let apis = vec![cluster.node("n1").api_url(), cluster.node("n2").api_url()];
    let keys = vec!["s1".to_owned(), "s2".to_owned()];
    let mut load = Load::start(ledger.clone(), apis.clone(), keys);
    load.wait_for_ok_sends(SENDS_AROUND_A_FAULT).await;

    cluster.kill("n3").await;
    let deadline = Instant::now() + CONVERGE;
    let mut answers: Vec<String> = Vec::new();
    while answers.last().map(String::as_str) != Some("not_found") {
        assert!(Instant::now() < deadline, "not purged in time: {answers:?}");
        let statuses = ledger.send(&http, &apis[0], "victim", &["victim"]).await;
        answers.push(statuses.expect("n1 answers")[0].clone());
        // Pacing, not synchronisation: the purge comes after the node timeout.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut phases = answers.clone();
    phases.dedup();
    assert_eq!(
        phases,
        ["owner_unreachable", "not_found"],
        "the dead node's session, answer by answer: {answers:?}"
    );

    load.wait_for_ok_sends(SENDS_AROUND_A_FAULT).await;
    let (sends, failures) = load.finish().await;
    assert!(
        failures.is_empty(),
        "sends to sessions on live nodes never fail; {} of {sends} did: {failures:?}",
        failures.len()
    );
    ledger.finish(&http, readers).await;
}

/// The raft leader is SIGKILLed under steady sends between the other nodes' sessions. Those
/// sends need no leader (each node's replica knows where the sessions are), so none fails,
/// before, during or after the election.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_between_followers_never_fail_when_the_leader_is_killed() {
    let (_nats, mut cluster) = three_nodes().await;
    let leader = cluster.wait_converged(3, 3, CONVERGE).await;
    let others: Vec<String> = cluster
        .running()
        .into_iter()
        .filter(|name| *name != leader)
        .collect();
    let (ledger, http) = (Ledger::new(), oort_e2e::http_client());
    let mut readers = Vec::new();
    for node in &others {
        readers.push(reader(&cluster, node, &format!("on-{node}")).await);
    }
    let apis: Vec<String> = others.iter().map(|n| cluster.node(n).api_url()).collect();
    let keys: Vec<String> = others.iter().map(|n| format!("on-{n}")).collect();
    let mut load = Load::start(ledger.clone(), apis, keys);
    load.wait_for_ok_sends(SENDS_AROUND_A_FAULT).await;

    cluster.kill(&leader).await;
    let new_leader = cluster.wait_converged(2, 2, CONVERGE).await;
    assert_ne!(new_leader, leader);
    load.wait_for_ok_sends(SENDS_AROUND_A_FAULT).await;
    let (sends, failures) = load.finish().await;
    assert!(
        failures.is_empty(),
        "{} of {sends} sends failed around the failover: {failures:?}",
        failures.len()
    );
    ledger.finish(&http, readers).await;
}

/// Three NATS servers in a cluster; one is SIGKILLed under load. Nodes on it fail over to the
/// others. Sends that fail meanwhile say the owner could not be reached (or did not answer in
/// time), never that a session does not exist; none that was answered `ok` is lost, and none
/// answered `owner_unreachable` is delivered anyway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_recover_after_a_nats_cluster_server_dies() {
    let mut servers = NatsServer::cluster(3).await;
    let urls: Vec<String> = servers.iter().map(NatsServer::url).collect();
    let mut cluster = TestCluster::new(urls, FAST_TIMINGS).await;
    let names = ["n1", "n2", "n3"];
    for name in names {
        cluster.add(name, 3).await;
    }
    cluster.wait_converged(3, 3, CONVERGE).await;
    let (ledger, http) = (Ledger::new(), oort_e2e::http_client());
    let mut readers = Vec::new();
    for node in names {
        readers.push(reader(&cluster, node, &format!("k-{node}")).await);
    }
    let keys: Vec<String> = names.iter().map(|n| format!("k-{n}")).collect();
    let apis: Vec<String> = names.iter().map(|n| cluster.node(n).api_url()).collect();
    let mut load = Load::start(ledger.clone(), apis.clone(), keys.clone());
    load.wait_for_ok_sends(SENDS_AROUND_A_FAULT).await;

    servers[0].kill().await;
    let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    eventually(
        CONVERGE,
        "sends through every node to every session to succeed again",
        || async {
            for api in &apis {
                let statuses = ledger.send(&http, api, "probe", &key_refs).await?;
                statuses.iter().all(|s| s == "ok").then_some(())?;
            }
            Some(())
        },
    )
    .await;
    load.wait_for_ok_sends(SENDS_AROUND_A_FAULT).await;
    let (sends, failures) = load.finish().await;
    let allowed = ["ok", "owner_unreachable", "owner_timeout"];
    for failure in &failures {
        let statuses = failure.as_ref().expect("every node answers the API");
        assert!(
            statuses.iter().all(|s| allowed.contains(&s.as_str())),
            "a send during the failover answered {statuses:?} ({} of {sends} failed)",
            failures.len()
        );
    }
    ledger.finish(&http, readers).await;
    servers[0].restart().await;
    cluster.wait_converged(3, 3, CONVERGE).await;
}

/// A standalone NATS server restarts. While it is gone every node, the leader too, reports not
/// ready; each still serves its own sessions, and a send to another node's session answers
/// `owner_unreachable` (and is not delivered). Once it is back on the same port, cross-node
/// sends work again and every node is ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_nats_nodes_are_not_ready_serve_their_own_sessions_and_recover() {
    let (mut nats, cluster) = three_nodes().await;
    let (ledger, http) = (Ledger::new(), oort_e2e::http_client());
    let readers = vec![
        reader(&cluster, "n1", "here").await,
        reader(&cluster, "n2", "there").await,
    ];
    let via = cluster.node("n1").api_url();
    nats.kill().await;
    eventually(TIMEOUT, "every node to report not ready", || async {
        for node in cluster.running() {
            (readiness(&cluster, &node).await == 503).then_some(())?;
        }
        Some(())
    })
    .await;
    assert_eq!(
        ledger.send(&http, &via, "outage", &["here"]).await,
        Some(vec!["ok".to_owned()]),
        "local sessions need no NATS"
    );
    assert_eq!(
        ledger.send(&http, &via, "outage", &["there"]).await,
        Some(vec!["owner_unreachable".to_owned()]),
        "a remote session is unreachable without NATS"
    );

    nats.restart().await;
    eventually(CONVERGE, "cross-node sends to work again", || async {
        let statuses = ledger.send(&http, &via, "after", &["there"]).await?;
        (statuses == ["ok"]).then_some(())
    })
    .await;
    cluster.wait_converged(3, 3, CONVERGE).await;
    ledger.finish(&http, readers).await;
}

/// The status of `GET /readyz` on `node`.
async fn readiness(cluster: &TestCluster, node: &str) -> u16 {
    cluster.status_code(node, "/readyz").await
}
