//! Zero loss for `oort.v1` clients (issue 11): the workload that counts it, and the rolling
//! restart run on it.
//!
//! The workload: N `oort.v1` clients, each reading, acknowledging every 32 messages and
//! resuming at once when its connection ends, and a sender posting batches to
//! `/v1/send/batch` (each message to another client, with a unique id, through every node in
//! turn). Every message whose send answered `ok` or `buffered` must reach its client exactly
//! once and in order, and no client may be reset; [`Delivery`] counts what did.
//!
//! The rolling restart ([`run`]): a cluster of real nodes (its own nats-server, fast timings,
//! a shared resume secret), every node SIGTERMed and started again in turn while the workload
//! runs. A draining node tells its clients to move (1012); they resume on another node, which
//! takes their tails. `e2e/tests/durable/rolling.rs` runs it at 300 clients and 1,000 sends/s
//! and asserts zero loss; `oort-bench rolling` runs it at any size and reports.
//! `oort-bench resume` (`super::resume`) runs the same workload with clients that drop their
//! own connections.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::task::JoinHandle;

use super::Percentiles;
use crate::cluster::{FAST_TIMINGS, TestCluster};
use crate::durable_client::{ConnectError, Data, DurableClient, Event, Position};
use crate::nats::NatsServer;

/// Bound on the cluster converging, the clients connecting, and the last accepted message
/// arriving.
pub const CONVERGE: Duration = Duration::from_secs(30);
/// One batch every this often.
const TICK: Duration = Duration::from_millis(20);
/// A client acknowledges after this many messages (and after 100 ms of quiet).
const ACK_EVERY: usize = 32;

type Shared<T> = Arc<Mutex<T>>;

fn lock<T>(shared: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Default)]
struct ClientLog {
    /// Message ids in the order they arrived.
    received: Vec<u64>,
    /// Sequence numbers that arrived twice or out of order.
    misordered: usize,
    /// How long each resume took, from the close (or drop) to the welcome.
    resumes: Vec<Duration>,
    resets: usize,
}

/// One send and its answer.
struct Sent {
    id: u64,
    status: String,
}

/// How the clients behave.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Clients {
    /// Resume when the server ends the connection, on the next running node.
    FollowServer,
    /// Also drop the connection (no close frame) after a random time in `min..=max` on each
    /// connection, while dropping is on, and resume on the same node.
    Drop { min: Duration, max: Duration },
}

/// Clients and a sender over a shared list of nodes.
pub(crate) struct Workload {
    clients: usize,
    prefix: String,
    /// The nodes clients connect to and the sender sends through (replace it as nodes come
    /// and go).
    pub(crate) nodes: Shared<Vec<SocketAddr>>,
    logs: Vec<Shared<ClientLog>>,
    tasks: Vec<JoinHandle<()>>,
    connected: Arc<AtomicUsize>,
    stop_clients: Arc<AtomicBool>,
    /// Clients in [`Clients::Drop`] drop their connections while this is set.
    dropping: Arc<AtomicBool>,
    sent: Shared<Vec<Sent>>,
    sender: Option<JoinHandle<()>>,
    stop_sender: Arc<AtomicBool>,
}

impl Workload {
    /// Starts `clients` clients over `nodes` and waits (within [`CONVERGE`]) until each has
    /// its session.
    pub(crate) async fn start(
        clients: usize,
        nodes: Vec<SocketAddr>,
        behaviour: Clients,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(clients > 0, "the workload needs at least one client");
        let mut workload = Self {
            clients,
            prefix: format!("durable{:x}-", rand::random::<u32>()),
            nodes: Arc::new(Mutex::new(nodes)),
            logs: (0..clients).map(|_| Arc::default()).collect(),
            tasks: Vec::with_capacity(clients),
            connected: Arc::default(),
            stop_clients: Arc::default(),
            dropping: Arc::new(AtomicBool::new(true)),
            sent: Arc::default(),
            sender: None,
            stop_sender: Arc::default(),
        };
        for index in 0..clients {
            let task = run_client(
                index,
                workload.key(index),
                behaviour,
                workload.nodes.clone(),
                workload.logs[index].clone(),
                workload.connected.clone(),
                workload.dropping.clone(),
                workload.stop_clients.clone(),
            );
            workload.tasks.push(task);
        }
        let deadline = Instant::now() + CONVERGE;
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        while workload.connected.load(Ordering::Relaxed) < clients {
            if Instant::now() >= deadline {
                let connected = workload.connected.load(Ordering::Relaxed);
                workload.abort();
                anyhow::bail!("{connected} of {clients} clients connected within {CONVERGE:?}");
            }
            tick.tick().await;
        }
        Ok(workload)
    }

    fn key(&self, client: usize) -> String {
        format!("{}{client}", self.prefix)
    }

    /// Starts sending about `rate` messages a second (a batch every 20 ms).
    pub(crate) fn send(&mut self, rate: usize) -> anyhow::Result<()> {
        let http = crate::http_client_builder()
            .timeout(super::REQUEST_TIMEOUT)
            .build()?;
        let batch = rate.div_ceil(50).max(1);
        let keys: Vec<String> = (0..self.clients).map(|i| self.key(i)).collect();
        self.sender = Some(run_sender(
            http,
            keys,
            batch,
            self.nodes.clone(),
            self.sent.clone(),
            self.stop_sender.clone(),
        ));
        Ok(())
    }

    /// Clients in [`Clients::Drop`] stop dropping their connections.
    pub(crate) fn stop_dropping(&self) {
        self.dropping.store(false, Ordering::Relaxed);
    }

    fn abort(&mut self) {
        self.stop_sender.store(true, Ordering::Relaxed);
        self.stop_clients.store(true, Ordering::Relaxed);
        for task in self.tasks.drain(..).chain(self.sender.take()) {
            task.abort();
        }
    }

    /// Stops the sender, waits (within [`CONVERGE`]) for every accepted message to arrive,
    /// stops the clients and counts.
    pub(crate) async fn finish(mut self) -> Delivery {
        self.stop_sender.store(true, Ordering::Relaxed);
        if let Some(sender) = self.sender.take() {
            // A request is bounded by REQUEST_TIMEOUT; the sender ends after its last answer.
            let _ = sender.await;
        }
        let sent = std::mem::take(&mut *lock(&self.sent));
        let accepted = sent.iter().filter(|s| accepted(&s.status)).count();
        let deadline = Instant::now() + CONVERGE;
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            let received: usize = self.logs.iter().map(|l| lock(l).received.len()).sum();
            if received >= accepted || Instant::now() >= deadline {
                break;
            }
            tick.tick().await;
        }
        self.stop_clients.store(true, Ordering::Relaxed);
        let tasks = std::mem::take(&mut self.tasks);
        let aborts: Vec<_> = tasks.iter().map(JoinHandle::abort_handle).collect();
        // A client ends after 100 ms of quiet; whatever is still running then is stopped.
        let joined = tokio::time::timeout(Duration::from_secs(10), async {
            for task in tasks {
                let _ = task.await;
            }
        })
        .await;
        if joined.is_err() {
            for abort in aborts {
                abort.abort();
            }
        }
        Delivery::count(&sent, &self.logs)
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        self.abort();
    }
}

fn accepted(status: &str) -> bool {
    status == "ok" || status == "buffered"
}

/// What reached the clients, and how.
#[derive(Debug, Serialize)]
pub struct Delivery {
    /// Messages sent.
    pub sends: usize,
    /// Answered `ok`.
    pub ok: usize,
    /// Answered `buffered` (the client was away; delivered when it resumed).
    pub buffered: usize,
    /// Every other answer, by status ("request failed" when the request got none).
    pub other: BTreeMap<String, usize>,
    /// Answered `ok` or `buffered` but never received.
    pub lost: usize,
    /// Received more than once.
    pub duplicated: usize,
    /// Received after a message sent later to the same client.
    pub out_of_order: usize,
    /// Sequence numbers skipped or repeated.
    pub sequence_gaps: usize,
    /// Received although their send was answered otherwise.
    pub unexpected: usize,
    /// Clients told that continuity was lost.
    pub resets: usize,
    /// Resumes that got their welcome.
    pub resumes: usize,
    /// From the end of a connection (the close, or the drop) to the welcome of the resume.
    pub resume: Option<Percentiles>,
}

impl Delivery {
    fn count(sent: &[Sent], logs: &[Shared<ClientLog>]) -> Self {
        let mut times: HashMap<u64, usize> = HashMap::new();
        let mut resumes = Vec::new();
        let (mut sequence_gaps, mut resets, mut out_of_order) = (0, 0, 0);
        for log in logs {
            let log = lock(log);
            sequence_gaps += log.misordered;
            resets += log.resets;
            resumes.extend(log.resumes.iter().copied());
            out_of_order += log.received.windows(2).filter(|w| w[0] >= w[1]).count();
            for id in &log.received {
                *times.entry(*id).or_default() += 1;
            }
        }
        let lost = sent
            .iter()
            .filter(|s| accepted(&s.status) && !times.contains_key(&s.id))
            .count();
        let mut other = BTreeMap::new();
        let mut unexpected = 0;
        for send in sent.iter().filter(|s| !accepted(&s.status)) {
            *other.entry(send.status.clone()).or_default() += 1;
            if times.contains_key(&send.id) {
                unexpected += 1;
            }
        }
        Self {
            sends: sent.len(),
            ok: sent.iter().filter(|s| s.status == "ok").count(),
            buffered: sent.iter().filter(|s| s.status == "buffered").count(),
            other,
            lost,
            duplicated: times.values().filter(|n| **n > 1).count(),
            out_of_order,
            sequence_gaps,
            unexpected,
            resets,
            resumes: resumes.len(),
            resume: Percentiles::of(&mut resumes),
        }
    }

    /// True when nothing accepted was lost, duplicated, reordered or reset.
    pub fn is_exact(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.out_of_order == 0
            && self.sequence_gaps == 0
            && self.unexpected == 0
            && self.resets == 0
    }
}

/// One client: connects, reads and acknowledges; when its connection ends it resumes at once
/// (on the next running node, or for [`Clients::Drop`] on the same one).
#[allow(clippy::too_many_arguments)]
fn run_client(
    index: usize,
    key: String,
    behaviour: Clients,
    nodes: Shared<Vec<SocketAddr>>,
    log: Shared<ClientLog>,
    connected: Arc<AtomicUsize>,
    dropping: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut turn = index;
        let mut position: Option<Position> = None;
        let mut lost_at: Option<Instant> = None;
        let mut first = true;
        while !stop.load(Ordering::Relaxed) {
            let addr = {
                let nodes = lock(&nodes);
                (!nodes.is_empty()).then(|| nodes[turn % nodes.len()])
            };
            if matches!(behaviour, Clients::FollowServer) {
                turn += 1;
            }
            let Some(addr) = addr else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let attempt = match &position {
                Some(position) => {
                    DurableClient::resume(&format!("ws://{addr}/connect"), position).await
                }
                None => DurableClient::connect(&format!("ws://{addr}/connect?key={key}")).await,
            };
            let mut client = match attempt {
                Ok(client) => client,
                Err(ConnectError::Reset(_)) => {
                    lock(&log).resets += 1;
                    position = None;
                    continue;
                }
                Err(_) => {
                    // Refused (draining, not ready) or gone: try again (the next node).
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            };
            if let Some(lost) = lost_at.take() {
                lock(&log).resumes.push(lost.elapsed());
            }
            if first {
                first = false;
                connected.fetch_add(1, Ordering::Relaxed);
            }
            let drop_at = match behaviour {
                Clients::Drop { min, max } => {
                    let spread = max.saturating_sub(min).as_secs_f64();
                    Some(
                        Instant::now()
                            + min
                            + Duration::from_secs_f64(spread * rand::random::<f64>()),
                    )
                }
                Clients::FollowServer => None,
            };
            let mut last = client.position.seen;
            let mut unacked = 0;
            loop {
                let mut wait = Duration::from_millis(100);
                if let Some(at) = drop_at
                    && dropping.load(Ordering::Relaxed)
                {
                    let left = at.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        // Gone without a close frame, as a network blip does.
                        position = Some(client.drop_connection());
                        lost_at = Some(Instant::now());
                        break;
                    }
                    wait = wait.min(left);
                }
                match client.next_event(wait).await {
                    Some(Event::Message(seq, data)) => {
                        {
                            let mut log = lock(&log);
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
                        if unacked >= ACK_EVERY {
                            let _ = client.ack(seq).await;
                            unacked = 0;
                        }
                    }
                    // This scenario sends no requests.
                    Some(Event::Token | Event::Request(..)) => {}
                    Some(Event::Reset(_)) => {
                        lock(&log).resets += 1;
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

/// Batches of `batch` messages, each to the next client, every 20 ms, through each node in
/// turn.
fn run_sender(
    http: reqwest::Client,
    keys: Vec<String>,
    batch: usize,
    nodes: Shared<Vec<SocketAddr>>,
    sent: Shared<Vec<Sent>>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let next_id = AtomicU64::new(0);
        let mut pace = tokio::time::interval(TICK);
        pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut turn = 0usize;
        while !stop.load(Ordering::Relaxed) {
            pace.tick().await;
            let addr = {
                let nodes = lock(&nodes);
                (!nodes.is_empty()).then(|| nodes[turn % nodes.len()])
            };
            turn += 1;
            let Some(addr) = addr else { continue };
            let first = next_id.fetch_add(batch as u64, Ordering::Relaxed);
            let ids: Vec<u64> = (first..first + batch as u64).collect();
            let messages: Vec<serde_json::Value> = ids
                .iter()
                .map(|id| {
                    let key = &keys[(*id as usize) % keys.len()];
                    serde_json::json!({ "sessions": [key], "data": format!("m{id}") })
                })
                .collect();
            let body = serde_json::json!({ "messages": messages });
            let request = http
                .post(format!("http://{addr}/v1/send/batch"))
                .body(body.to_string());
            let answer = crate::try_json(request).await;
            let mut sent = lock(&sent);
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

/// The size of a rolling restart.
#[derive(Clone, Debug)]
pub struct RollingOptions {
    /// `oort.v1` clients, spread over the nodes.
    pub clients: usize,
    /// Messages a second through `/v1/send/batch` (a batch every 20 ms, each node in turn).
    pub rate: usize,
    /// Nodes (at least 3: the raft voters must keep a majority while one restarts).
    pub nodes: usize,
}

/// One rolling restart.
#[derive(Debug, Serialize)]
pub struct RollingReport {
    /// The scenario's name.
    pub scenario: &'static str,
    pub nodes: usize,
    pub clients: usize,
    /// Messages a second asked for.
    pub rate: usize,
    /// From the first SIGTERM to the last node converged again.
    pub restart_ms: f64,
    /// What reached the clients.
    #[serde(flatten)]
    pub delivery: Delivery,
}

fn running_addresses(cluster: &TestCluster) -> Vec<SocketAddr> {
    cluster
        .running()
        .into_iter()
        .filter_map(|name| cluster.node(&name).addr)
        .collect()
}

/// A fresh cluster of `options.nodes` nodes with the workload on it, every node SIGTERMed
/// and started again in turn (the others take new connections meanwhile).
pub async fn run(options: &RollingOptions) -> anyhow::Result<RollingReport> {
    anyhow::ensure!(
        options.nodes >= 3,
        "a rolling restart needs 3 nodes or more"
    );
    let voters = 3;
    let nats = NatsServer::start().await;
    let mut cluster = TestCluster::new(vec![nats.url()], FAST_TIMINGS).await;
    cluster
        .top_level
        .push_str("session:\n  resume_secret: a-resume-secret-for-rolling\n");
    let names: Vec<String> = (1..=options.nodes).map(|i| format!("n{i}")).collect();
    for name in &names {
        cluster.add(name, voters).await;
    }
    cluster
        .wait_converged(options.nodes, voters, CONVERGE)
        .await;
    let mut workload = Workload::start(
        options.clients,
        running_addresses(&cluster),
        Clients::FollowServer,
    )
    .await?;
    workload.send(options.rate)?;
    let started = Instant::now();
    for name in &names {
        let addr = cluster.node(name).addr;
        lock(&workload.nodes).retain(|a| Some(*a) != addr);
        let status = cluster.stop(name).await;
        anyhow::ensure!(status.success(), "{name} did not drain cleanly: {status}");
        cluster.start(name).await;
        cluster
            .wait_converged(options.nodes, voters, CONVERGE)
            .await;
        *lock(&workload.nodes) = running_addresses(&cluster);
    }
    let restart_ms = started.elapsed().as_secs_f64() * 1000.0;
    let delivery = workload.finish().await;
    Ok(RollingReport {
        scenario: "rolling",
        nodes: options.nodes,
        clients: options.clients,
        rate: options.rate,
        restart_ms,
        delivery,
    })
}
