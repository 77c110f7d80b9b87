//! Membership changes that keep a quorum, through crashes and restarts in any order: a voter
//! draining while another is dead, every node restarted in turn under connects, and NATS gone
//! for longer than the node timeout.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oort_e2e::{WsClient, eventually};
use tokio::task::JoinHandle;

use crate::{CONVERGE, cluster, connect, members};

/// FAST_TIMINGS' node timeout.
const NODE_TIMEOUT: Duration = Duration::from_secs(3);

/// The voters `node` lists, and whether every one of them is alive.
async fn voters(
    cluster: &oort_e2e::cluster::TestCluster,
    node: &str,
) -> Option<(BTreeSet<String>, bool)> {
    let status = cluster.status(node).await?;
    let voters: Vec<&serde_json::Value> = status["members"]
        .as_array()?
        .iter()
        .filter(|m| m["role"] == "voter")
        .collect();
    let names = voters
        .iter()
        .filter_map(|m| m["node"].as_str().map(str::to_owned))
        .collect();
    Some((names, voters.iter().all(|m| m["alive"] == true)))
}

/// The wedge: three voters and two learners; the leader is SIGKILLed and, before it is declared
/// dead, another voter is SIGTERMed (it drains and leaves). Removing the leaving voter alone
/// would leave {dead leader, one live voter}: no quorum, for good. It is replaced by a learner
/// in the same change instead, the dead leader is replaced once declared dead, and within the
/// node timeout plus 5 s there are three live voters and connects succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voter_draining_while_the_leader_is_dead_does_not_wedge_the_group() {
    let (_nats, mut cluster) = cluster(&["n1", "n2", "n3"], 3, "").await;
    cluster.wait_converged(3, 3, CONVERGE).await;
    cluster.add("n4", 3).await;
    cluster.add("n5", 3).await;
    let leader = cluster.wait_converged(5, 3, CONVERGE).await;
    let (first_voters, _) = voters(&cluster, &leader).await.unwrap();
    let leaving = first_voters.iter().find(|v| **v != leader).unwrap().clone();
    let killed = Instant::now();
    cluster.kill(&leader).await;
    let status = cluster.stop(&leaving).await;
    assert!(status.success(), "{leaving} drained and left: {status:?}");
    let survivors = cluster.running();
    let bound = NODE_TIMEOUT + Duration::from_secs(5);
    let remaining = bound.saturating_sub(killed.elapsed());
    let (final_voters, _) = eventually(remaining, "three live voters", || async {
        let view = voters(&cluster, &survivors[0]).await?;
        (view.0.len() == 3 && view.1 && !view.0.contains(&leader) && !view.0.contains(&leaving))
            .then_some(view)
    })
    .await;
    eprintln!(
        "three live voters {final_voters:?} {:?} after the leader's kill",
        killed.elapsed()
    );
    for node in &survivors {
        let _client = connect(&cluster, node, &format!("after-{node}")).await;
    }
    assert!(
        killed.elapsed() < bound + Duration::from_secs(5),
        "connects did not wait"
    );
}

/// Connects every 100 ms to one of the running nodes (taking turns), recording how long each
/// took and whether it got its 101.
struct Connector {
    addrs: Arc<Mutex<Vec<SocketAddr>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    task: JoinHandle<Vec<(Duration, bool)>>,
}

impl Connector {
    fn start(addrs: Vec<SocketAddr>) -> Self {
        let addrs = Arc::new(Mutex::new(addrs));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let task = {
            let (addrs, stop) = (addrs.clone(), stop.clone());
            tokio::spawn(async move {
                let mut results = Vec::new();
                let mut clients = Vec::new();
                let mut turn = 0usize;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let addr = {
                        let addrs = addrs.lock().unwrap();
                        addrs.get(turn % addrs.len().max(1)).copied()
                    };
                    turn += 1;
                    if let Some(addr) = addr {
                        let url = format!("ws://{addr}/connect?key=rolling-{turn}");
                        let started = Instant::now();
                        let connected = WsClient::connect_with(&url, &[]).await;
                        results.push((started.elapsed(), connected.is_ok()));
                        if let Ok((client, _)) = connected {
                            clients.push(client);
                        }
                    }
                    // Pacing, not synchronisation: ten connects a second.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                results
            })
        };
        Self { addrs, stop, task }
    }

    fn set_addrs(&self, addrs: Vec<SocketAddr>) {
        *self.addrs.lock().unwrap() = addrs;
    }

    async fn finish(self) -> Vec<(Duration, bool)> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

fn running_addrs(cluster: &oort_e2e::cluster::TestCluster) -> Vec<SocketAddr> {
    cluster
        .running()
        .iter()
        .filter_map(|name| cluster.node(name).addr)
        .collect()
}

/// Five nodes, each restarted in turn (SIGTERM, then started again with the same data dir, as
/// a rolling update does), the raft leader among them, while clients keep connecting. No
/// connect waits more than 3 s, and the group ends with three voters and five members.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_every_node_keeps_connects_flowing() {
    let names = ["n1", "n2", "n3", "n4", "n5"];
    let (_nats, mut cluster) = cluster(&names[..3], 3, "").await;
    cluster.wait_converged(3, 3, CONVERGE).await;
    for name in &names[3..] {
        cluster.add(name, 3).await;
    }
    cluster.wait_converged(5, 3, CONVERGE).await;
    let connector = Connector::start(running_addrs(&cluster));
    for name in names {
        // The others take the connects while this one restarts.
        let others: Vec<SocketAddr> = running_addrs(&cluster)
            .into_iter()
            .filter(|addr| Some(*addr) != cluster.node(name).addr)
            .collect();
        connector.set_addrs(others);
        let status = cluster.stop(name).await;
        assert!(status.success(), "{name} drained: {status:?}");
        cluster.start(name).await;
        cluster.wait_converged(5, 3, CONVERGE).await;
        connector.set_addrs(running_addrs(&cluster));
    }
    let results = connector.finish().await;
    let slowest = results
        .iter()
        .map(|(took, _)| *took)
        .max()
        .unwrap_or_default();
    let failed = results.iter().filter(|(_, ok)| !ok).count();
    eprintln!(
        "rolling restart: {} connects, {failed} refused, slowest {slowest:?}",
        results.len()
    );
    assert!(
        slowest <= Duration::from_secs(3),
        "no connect waited more than 3 s: {slowest:?}"
    );
    // A connect already under way to a node when it starts draining is refused (503), as it
    // should be; at most one per restart. A connect refused for want of a leader would have
    // waited out the route timeout twice first, and failed the bound above.
    assert!(failed <= names.len(), "{failed} connects refused");
    let roles = members(&cluster, "n1").await;
    assert_eq!(roles.len(), 5, "{roles:?}");
    assert_eq!(
        roles.iter().filter(|(_, role)| role == "voter").count(),
        3,
        "{roles:?}"
    );
}

/// NATS stops for longer than the node timeout and comes back: no node is purged, no client is
/// closed, and every node is ready again within 5 s of NATS returning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_outage_longer_than_the_node_timeout_purges_nobody() {
    let (mut nats, cluster) = cluster(&["n1", "n2", "n3"], 3, "").await;
    cluster.wait_converged(3, 3, CONVERGE).await;
    let mut clients = Vec::new();
    for node in ["n1", "n2", "n3"] {
        clients.push(connect(&cluster, node, &format!("k-{node}")).await);
    }
    nats.kill().await;
    // The outage must outlast the node timeout (what would have the nodes purge each other);
    // nothing can be awaited while NATS is gone, so the test waits it out.
    eventually(
        NODE_TIMEOUT * 3,
        "every node to notice NATS is gone",
        || async {
            for node in ["n1", "n2", "n3"] {
                let ready = cluster
                    .http()
                    .get(format!("{}/readyz", cluster.node(node).api_url()))
                    .send()
                    .await
                    .ok()?
                    .status();
                if ready != 503 {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    tokio::time::sleep(NODE_TIMEOUT * 2).await;
    nats.restart().await;
    let back = Instant::now();
    cluster.wait_converged(3, 3, Duration::from_secs(5)).await;
    eprintln!("NATS back: every node ready {:?} later", back.elapsed());
    for node in ["n1", "n2", "n3"] {
        let key = format!("k-{node}");
        assert_eq!(
            crate::owner_seen_by(&cluster, node, &key).await.as_deref(),
            Some(node),
            "{key} was not purged"
        );
    }
    // Every client is still connected: a send through another node reaches it.
    for (client, node) in clients.iter_mut().zip(["n1", "n2", "n3"]) {
        let via = if node == "n1" { "n2" } else { "n1" };
        let marker = format!("still here {node}");
        let statuses = crate::v1_send(&cluster, via, &[&format!("k-{node}")], &marker).await;
        assert_eq!(statuses, ["ok"], "{node}");
        assert_eq!(
            client.recv_text().await,
            marker,
            "{node}'s client was not closed"
        );
    }
}
