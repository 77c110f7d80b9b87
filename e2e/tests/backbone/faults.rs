//! Failures under steady load: a gateway node killed, the raft leader killed, a server of a
//! three-server NATS cluster killed, and a standalone NATS server restarted. Each test runs a
//! steady send loop, reports the window in which sends failed, and proves recovery.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use oort_e2e::cluster::{FAST_TIMINGS, TestCluster};
use oort_e2e::nats::NatsServer;
use oort_e2e::{WsClient, eventually};
use tokio::task::JoinHandle;

use crate::{CONVERGE, connect, three_nodes, v1_send, v1_send_at};

/// Reads a client in the background so its queue never fills; returns frames read.
fn drain(mut client: WsClient) -> JoinHandle<usize> {
    tokio::spawn(async move {
        let mut frames = 0;
        while let Some(Ok(message)) = client.stream().next().await {
            if message.is_text() {
                frames += 1;
            }
        }
        frames
    })
}

/// A steady stream of `/v1/send`s to `keys` through the given API URLs in turn, each request
/// recorded as (when, every status ok).
struct Load {
    stop: Arc<AtomicBool>,
    task: JoinHandle<Vec<(Instant, bool)>>,
}

impl Load {
    fn start(apis: Vec<String>, keys: Vec<String>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let running = stop.clone();
        let task = tokio::spawn(async move {
            let http = oort_e2e::http_client();
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            let mut outcomes = Vec::new();
            let mut turn = 0;
            while !running.load(Ordering::Relaxed) {
                let api = &apis[turn % apis.len()];
                turn += 1;
                let statuses = v1_send_at(&http, api, &keys, "steady").await;
                let ok = statuses.is_some_and(|s| s.iter().all(|status| status == "ok"));
                outcomes.push((Instant::now(), ok));
                // Pacing, not synchronisation: a steady rate of a few hundred sends a second.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            outcomes
        });
        Self { stop, task }
    }

    /// Stops, and returns (sends, failures, the span from first to last failure).
    async fn finish(self) -> (usize, usize, Duration) {
        self.stop.store(true, Ordering::Relaxed);
        let outcomes = self.task.await.expect("load task");
        let failures: Vec<Instant> = outcomes
            .iter()
            .filter(|(_, ok)| !ok)
            .map(|(at, _)| *at)
            .collect();
        let window = match (failures.first(), failures.last()) {
            (Some(first), Some(last)) => *last - *first,
            _ => Duration::ZERO,
        };
        (outcomes.len(), failures.len(), window)
    }
}

/// A node is SIGKILLed while sends to sessions on the other nodes run: none of those fail;
/// sends to the dead node's session answer owner_unreachable or not_found at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_does_not_disturb_sends_to_the_others() {
    let (_nats, mut cluster) = three_nodes().await;
    let survivors = [
        drain(connect(&cluster, "n1", "s1").await),
        drain(connect(&cluster, "n2", "s2").await),
    ];
    let _victim = connect(&cluster, "n3", "victim").await;
    let apis = vec![cluster.node("n1").api_url(), cluster.node("n2").api_url()];
    let load = Load::start(apis, vec!["s1".into(), "s2".into()]);
    tokio::time::sleep(Duration::from_millis(300)).await; // let the load run before the fault
    cluster.kill("n3").await;
    let killed = Instant::now();
    let answer = eventually(
        CONVERGE,
        "the dead node's session to be reported",
        || async {
            let statuses = v1_send(&cluster, "n1", &["victim"], "lost").await;
            ["owner_unreachable", "not_found"]
                .contains(&statuses[0].as_str())
                .then(|| statuses[0].clone())
        },
    )
    .await;
    eprintln!(
        "victim answered {answer} {:?} after the kill",
        killed.elapsed()
    );
    // Keep the load running through the node timeout, when the dead node is removed.
    eventually(CONVERGE, "the dead node's removal", || async {
        (v1_send(&cluster, "n2", &["victim"], "lost").await[0] == "not_found").then_some(())
    })
    .await;
    let (sends, failures, window) = load.finish().await;
    eprintln!("node kill: {sends} sends to survivors, {failures} failed (window {window:?})");
    assert_eq!(
        failures, 0,
        "sends to sessions on surviving nodes never fail"
    );
    drop(survivors);
}

/// The raft leader is SIGKILLed under steady sends between the other nodes' sessions; the
/// window of failures is reported and sends succeed again afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_recover_after_the_leader_is_killed() {
    let (_nats, mut cluster) = three_nodes().await;
    let leader = cluster.wait_converged(3, 3, CONVERGE).await;
    let others: Vec<String> = cluster
        .running()
        .into_iter()
        .filter(|n| *n != leader)
        .collect();
    let mut readers = Vec::new();
    for node in &others {
        readers.push(drain(connect(&cluster, node, &format!("on-{node}")).await));
    }
    let apis: Vec<String> = others.iter().map(|n| cluster.node(n).api_url()).collect();
    let keys: Vec<String> = others.iter().map(|n| format!("on-{n}")).collect();
    let load = Load::start(apis.clone(), keys.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.kill(&leader).await;
    cluster.wait_converged(2, 2, CONVERGE).await;
    let (sends, failures, window) = load.finish().await;
    eprintln!("leader kill: {sends} sends, {failures} failed (window {window:?})");
    let http = oort_e2e::http_client();
    let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let recovered = v1_send_at(&http, &apis[0], &key_refs, "after")
        .await
        .unwrap();
    assert!(
        recovered.iter().all(|s| s == "ok"),
        "sends succeed after the failover: {recovered:?}"
    );
    assert!(window < CONVERGE, "the failure window is bounded");
}

/// Three NATS servers in a cluster; one is SIGKILLed under load. Nodes on it fail over to the
/// others; the window is reported, sends recover, and the server comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_recover_after_a_nats_cluster_server_dies() {
    let mut servers = NatsServer::cluster(3).await;
    let urls: Vec<String> = servers.iter().map(NatsServer::url).collect();
    let mut cluster = TestCluster::new(urls, FAST_TIMINGS).await;
    for name in ["n1", "n2", "n3"] {
        cluster.add(name, 3).await;
    }
    cluster.wait_converged(3, 3, CONVERGE).await;
    let mut readers = Vec::new();
    for node in ["n1", "n2", "n3"] {
        readers.push(drain(connect(&cluster, node, &format!("k-{node}")).await));
    }
    let keys: Vec<String> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| format!("k-{n}"))
        .collect();
    let apis: Vec<String> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| cluster.node(n).api_url())
        .collect();
    let load = Load::start(apis.clone(), keys.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    servers[0].kill().await;
    let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let http = oort_e2e::http_client();
    eventually(
        CONVERGE,
        "sends to every node's session to succeed again",
        || async {
            for api in &apis {
                let statuses = v1_send_at(&http, api, &key_refs, "probe").await?;
                statuses.iter().all(|s| s == "ok").then_some(())?;
            }
            Some(())
        },
    )
    .await;
    // Keep the load on for a while after recovery (load duration, not synchronisation).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (sends, failures, window) = load.finish().await;
    eprintln!("NATS server kill: {sends} sends, {failures} failed (window {window:?})");
    servers[0].restart().await;
    cluster.wait_converged(3, 3, CONVERGE).await;
}

/// A standalone NATS server restarts: while it is gone, sends between nodes fail (their
/// sessions answer owner_unreachable) but each node still serves its own sessions; after it
/// comes back on the same port, everything works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_recover_after_nats_restarts() {
    let (mut nats, cluster) = three_nodes().await;
    let _readers = [
        drain(connect(&cluster, "n1", "here").await),
        drain(connect(&cluster, "n2", "there").await),
    ];
    nats.kill().await;
    let down = Instant::now();
    assert_eq!(
        v1_send(&cluster, "n1", &["here"], "local").await,
        ["ok"],
        "local sessions need no NATS"
    );
    let remote = v1_send(&cluster, "n1", &["there"], "remote").await;
    assert_eq!(
        remote,
        ["owner_unreachable"],
        "a remote session is unreachable without NATS"
    );
    nats.restart().await;
    eventually(CONVERGE, "cross-node sends to work again", || async {
        (v1_send(&cluster, "n1", &["there"], "again").await == ["ok"]).then_some(())
    })
    .await;
    eprintln!(
        "NATS restart: cross-node sends back {:?} after the server died",
        down.elapsed()
    );
    cluster.wait_converged(3, 3, CONVERGE).await;
}
