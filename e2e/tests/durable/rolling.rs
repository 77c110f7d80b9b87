//! Zero loss through a rolling restart (issue 11): three nodes, 300 `oort.v1` clients spread
//! over them, a backend sending about 1,000 messages a second through every node, and every
//! node restarted in turn (SIGTERM, started again). A draining node tells its clients to move
//! (1012); they resume at once on another node, which takes their tails. Every message whose
//! send answered `ok` or `buffered` must reach its client exactly once, in order, and no
//! client may be reset.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oort_e2e::durable_client::{Data, DurableClient, Event, Position};
use oort_e2e::eventually;
use tokio::task::JoinHandle;

use crate::{CONVERGE, three_nodes};

const CLIENTS: usize = 300;
/// Messages per batch, one batch every 20 ms: 1,000 a second.
const BATCH: usize = 20;
const NODES: [&str; 3] = ["n1", "n2", "n3"];

type Shared<T> = Arc<Mutex<T>>;

#[derive(Default)]
struct ClientLog {
    /// Message ids in the order they arrived.
    received: Vec<u64>,
    /// Sequence numbers that arrived twice or out of order.
    misordered: usize,
    /// How long each resume took, from the close to the welcome.
    resumes: Vec<Duration>,
    resets: usize,
}

fn key(client: usize) -> String {
    format!("durable-{client}")
}

/// One client: connects, reads and acknowledges; when its connection ends it resumes on the
/// next running node, at once.
fn run_client(
    index: usize,
    nodes: Shared<Vec<SocketAddr>>,
    log: Shared<ClientLog>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut turn = index;
        let mut position: Option<Position> = None;
        let mut lost_at: Option<Instant> = None;
        while !stop.load(Ordering::Relaxed) {
            let addr = {
                let nodes = nodes.lock().unwrap();
                (!nodes.is_empty()).then(|| nodes[turn % nodes.len()])
            };
            turn += 1;
            let Some(addr) = addr else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let connected = match &position {
                Some(position) => {
                    DurableClient::resume(&format!("ws://{addr}/connect"), position).await
                }
                None => {
                    DurableClient::connect(&format!("ws://{addr}/connect?key={}", key(index))).await
                }
            };
            let mut client = match connected {
                Ok(client) => client,
                Err(oort_e2e::durable_client::ConnectError::Reset(_)) => {
                    log.lock().unwrap().resets += 1;
                    position = None;
                    continue;
                }
                Err(_) => {
                    // Refused (draining, not ready) or gone: the next node.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            };
            if let Some(lost) = lost_at.take() {
                log.lock().unwrap().resumes.push(lost.elapsed());
            }
            let mut last = client.position.seen;
            let mut unacked = 0;
            loop {
                match client.next_event(Duration::from_millis(100)).await {
                    Some(Event::Message(seq, data)) => {
                        {
                            let mut log = log.lock().unwrap();
                            if seq != last + 1 {
                                log.misordered += 1;
                            }
                            if let Data::Text(text) = data
                                && let Some(id) =
                                    text.strip_prefix('m').and_then(|n| n.parse().ok())
                            {
                                log.received.push(id);
                            }
                        }
                        last = seq;
                        unacked += 1;
                        if unacked >= 32 {
                            let _ = client.ack(seq).await;
                            unacked = 0;
                        }
                    }
                    Some(Event::Token) => {}
                    Some(Event::Reset(_)) => {
                        log.lock().unwrap().resets += 1;
                        position = None;
                        break;
                    }
                    Some(Event::Closed(..)) => {
                        position = Some(client.position.clone());
                        lost_at = Some(Instant::now());
                        break;
                    }
                    None => {
                        if unacked > 0 {
                            let _ = client.ack(last).await;
                            unacked = 0;
                        }
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                    }
                }
            }
        }
    })
}

/// One send and its answer.
struct Sent {
    id: u64,
    status: String,
}

/// Batches of `BATCH` messages, each to another client, every 20 ms, through each running
/// node in turn.
fn run_sender(
    http: reqwest::Client,
    nodes: Shared<Vec<SocketAddr>>,
    sent: Shared<Vec<Sent>>,
    next_id: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut pace = tokio::time::interval(Duration::from_millis(20));
        pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut turn = 0usize;
        while !stop.load(Ordering::Relaxed) {
            pace.tick().await;
            let addr = {
                let nodes = nodes.lock().unwrap();
                (!nodes.is_empty()).then(|| nodes[turn % nodes.len()])
            };
            turn += 1;
            let Some(addr) = addr else { continue };
            let first = next_id.fetch_add(BATCH as u64, Ordering::Relaxed);
            let ids: Vec<u64> = (first..first + BATCH as u64).collect();
            let messages: Vec<serde_json::Value> = ids
                .iter()
                .map(|id| {
                    let client = (*id as usize) % CLIENTS;
                    serde_json::json!({ "sessions": [key(client)], "data": format!("m{id}") })
                })
                .collect();
            let body = serde_json::json!({ "messages": messages });
            let request = http
                .post(format!("http://{addr}/v1/send/batch"))
                .body(body.to_string());
            let answer = oort_e2e::try_json(request).await;
            let mut sent = sent.lock().unwrap();
            for (index, id) in ids.into_iter().enumerate() {
                let status = answer
                    .as_ref()
                    .and_then(|a| a["messages"][index]["results"][0]["status"].as_str())
                    .unwrap_or("request failed")
                    .to_owned();
                sent.push(Sent { id, status });
            }
        }
    })
}

fn running_addresses(cluster: &oort_e2e::cluster::TestCluster) -> Vec<SocketAddr> {
    cluster
        .running()
        .into_iter()
        .filter_map(|name| cluster.node(&name).addr)
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

#[tokio::test]
async fn a_rolling_restart_loses_nothing_for_oort_v1_clients() {
    let (_nats, mut cluster) = three_nodes().await;
    let nodes: Shared<Vec<SocketAddr>> = Arc::new(Mutex::new(running_addresses(&cluster)));
    let stop_clients = Arc::new(AtomicBool::new(false));
    let logs: Vec<Shared<ClientLog>> = (0..CLIENTS).map(|_| Arc::default()).collect();
    let clients: Vec<JoinHandle<()>> = (0..CLIENTS)
        .map(|i| run_client(i, nodes.clone(), logs[i].clone(), stop_clients.clone()))
        .collect();
    eventually(CONVERGE, "every client connected", || async {
        let established = cluster
            .backend
            .of_kind(oort_e2e::CallbackKind::Establish)
            .len();
        (established >= CLIENTS).then_some(())
    })
    .await;
    let sent: Shared<Vec<Sent>> = Arc::default();
    let next_id = Arc::new(AtomicU64::new(0));
    let stop_sender = Arc::new(AtomicBool::new(false));
    let sender = run_sender(
        cluster.http().clone(),
        nodes.clone(),
        sent.clone(),
        next_id.clone(),
        stop_sender.clone(),
    );
    let started = Instant::now();
    for node in NODES {
        // The others take new connections while this one drains and restarts.
        let addr = cluster.node(node).addr;
        nodes.lock().unwrap().retain(|a| Some(*a) != addr);
        assert!(cluster.stop(node).await.success(), "{node} drained");
        cluster.start(node).await;
        cluster.wait_converged(3, 3, CONVERGE).await;
        *nodes.lock().unwrap() = running_addresses(&cluster);
    }
    let restart_took = started.elapsed();
    stop_sender.store(true, Ordering::Relaxed);
    sender.await.unwrap();

    let sent = std::mem::take(&mut *sent.lock().unwrap());
    let delivered: Vec<&Sent> = sent
        .iter()
        .filter(|s| s.status == "ok" || s.status == "buffered")
        .collect();
    // Every accepted message arrives: wait for the last of them.
    eventually(CONVERGE, "every accepted message to arrive", || async {
        let received: usize = logs.iter().map(|l| l.lock().unwrap().received.len()).sum();
        (received >= delivered.len()).then_some(())
    })
    .await;
    stop_clients.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }

    let mut times: HashMap<u64, usize> = HashMap::new();
    let mut resumes = Vec::new();
    let (mut misordered, mut resets, mut out_of_order) = (0, 0, 0);
    for log in &logs {
        let log = log.lock().unwrap();
        misordered += log.misordered;
        resets += log.resets;
        resumes.extend(log.resumes.iter().copied());
        out_of_order += log.received.windows(2).filter(|w| w[0] >= w[1]).count();
        for id in &log.received {
            *times.entry(*id).or_default() += 1;
        }
    }
    let lost = delivered
        .iter()
        .filter(|s| times.get(&s.id).copied().unwrap_or(0) == 0)
        .count();
    let duplicated = times.values().filter(|n| **n > 1).count();
    let unexpected = sent
        .iter()
        .filter(|s| s.status != "ok" && s.status != "buffered")
        .filter(|s| times.contains_key(&s.id))
        .count();
    resumes.sort();
    let buffered = sent.iter().filter(|s| s.status == "buffered").count();
    let mut refused: HashMap<&str, usize> = HashMap::new();
    for send in sent
        .iter()
        .filter(|s| s.status != "ok" && s.status != "buffered")
    {
        *refused.entry(send.status.as_str()).or_default() += 1;
    }
    eprintln!(
        "rolling restart of 3 nodes in {restart_took:?}: {} sends ({} ok, {buffered} buffered, \
         other {refused:?}); lost {lost}, duplicated {duplicated}, out of order {out_of_order}, \
         sequence gaps {misordered}, resets {resets}; {} resumes, p50 {:?}, p99 {:?}, max {:?}",
        sent.len(),
        sent.iter().filter(|s| s.status == "ok").count(),
        resumes.len(),
        percentile(&resumes, 0.5),
        percentile(&resumes, 0.99),
        resumes.last().copied().unwrap_or_default(),
    );
    assert!(sent.len() > 1000, "the sender kept sending: {}", sent.len());
    assert_eq!(
        lost, 0,
        "messages answered ok or buffered but never received"
    );
    assert_eq!(duplicated, 0, "messages received twice");
    assert_eq!(out_of_order, 0, "messages received out of order");
    assert_eq!(misordered, 0, "sequence numbers skipped or repeated");
    assert_eq!(
        unexpected, 0,
        "messages received although their send was refused"
    );
    assert_eq!(resets, 0, "no client lost continuity");
    assert!(resumes.len() >= CLIENTS, "every client moved at least once");
}
