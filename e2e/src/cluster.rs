//! A cluster of real `oort` processes for tests: N nodes sharing NATS, a cluster name and a
//! callback backend, each with its own data directory, that tests can kill, stop and restart.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::backend::{CallbackKind, TestBackend};
use crate::process::{OortProcess, TempConfig};

/// Cluster timings short enough for tests (formation in about a second, death after 3 s).
pub const FAST_TIMINGS: &str = "  heartbeat_interval: 200ms\n  node_timeout: 3s\n  raft_heartbeat: 100ms\n  election_timeout: 600ms\n  route_timeout: 2s\n";

/// What one node adds to the cluster's common settings.
#[derive(Clone, Debug, Default)]
pub struct NodeExtras {
    /// Lines appended to its `cluster:` section (indented two spaces), after the cluster's own.
    pub cluster_lines: String,
    /// Environment variables for its process (`OORT_CLUSTER__NATS_AUTH__PASSWORD`, say).
    pub env: Vec<(String, String)>,
}

/// One node of a [`TestCluster`].
pub struct Node {
    /// Its node id.
    pub name: String,
    process: Option<OortProcess>,
    config: TempConfig,
    env: Vec<(String, String)>,
    /// Its client (and API) address, while running.
    pub addr: Option<SocketAddr>,
}

impl Node {
    /// The base URL of its API.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.addr.expect("the node is running"))
    }

    /// Its WebSocket connect URL with `query`.
    pub fn ws_url(&self, query: &str) -> String {
        format!(
            "ws://{}/connect?{query}",
            self.addr.expect("the node is running")
        )
    }

    /// The running process.
    pub fn process(&self) -> &OortProcess {
        self.process.as_ref().expect("the node is running")
    }

    /// True while its process runs.
    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }
}

/// Several `oort` nodes forming one cluster.
pub struct TestCluster {
    /// The nodes, by name.
    pub nodes: BTreeMap<String, Node>,
    /// The callback backend every node calls.
    pub backend: TestBackend,
    nats_urls: Vec<String>,
    name: String,
    data_root: PathBuf,
    extra: String,
    /// Top-level config lines for nodes added from now on (default: no access log).
    pub top_level: String,
    http: reqwest::Client,
}

impl TestCluster {
    /// Prepares a cluster on `nats_urls` (no node started yet). `extra` is appended to the
    /// `cluster:` section (indented two spaces), e.g. [`FAST_TIMINGS`].
    pub async fn new(nats_urls: Vec<String>, extra: &str) -> Self {
        Self::named(&fresh_cluster_name(), nats_urls, extra).await
    }

    /// [`TestCluster::new`] with the cluster name chosen by the test (NATS permissions name
    /// the cluster's subjects, so the server's config needs it first).
    pub async fn named(name: &str, nats_urls: Vec<String>, extra: &str) -> Self {
        let name = name.to_owned();
        let data_root = std::env::temp_dir().join(format!("oort-cluster-{name}"));
        std::fs::create_dir_all(&data_root).expect("create the data root");
        Self {
            nodes: BTreeMap::new(),
            backend: TestBackend::start().await,
            nats_urls,
            name,
            data_root,
            extra: extra.to_owned(),
            top_level: "suppress_access_log: true\n".to_owned(),
            http: crate::http_client_builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("HTTP client"),
        }
    }

    /// Gives nodes added from now on `api_token: <token>`, and sends it with this cluster's
    /// own API requests ([`TestCluster::status`], [`TestCluster::http`]), which the token
    /// protects like the rest of the backend API.
    pub fn set_api_token(&mut self, token: &str) {
        let _ = writeln!(self.top_level, "api_token: {token}");
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::try_from(format!("Bearer {token}"))
                .expect("a token fit for a header"),
        );
        self.http = crate::http_client_builder()
            .timeout(Duration::from_secs(10))
            .default_headers(headers)
            .build()
            .expect("HTTP client");
    }

    /// The cluster's name (its NATS subjects start with `oort.<name>.`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Adds and starts a node with `bootstrap_expect`.
    pub async fn add(&mut self, name: &str, bootstrap_expect: usize) {
        self.add_with(name, bootstrap_expect, NodeExtras::default())
            .await;
    }

    /// Adds and starts a node with `bootstrap_expect` and its own settings.
    pub async fn add_with(&mut self, name: &str, bootstrap_expect: usize, extras: NodeExtras) {
        let backend = &self.backend;
        // Every client of a test cluster comes from 127.0.0.1, a thousand at once in some
        // tests, so per-address limits are off here (tests/hostile_clients covers them).
        let text = format!(
            "listen: 127.0.0.1:0\n{}shutdown_grace_period: 5s\n\
             limits:\n  address_connections: 0\n  address_connect_rate: 0\n\
             websocket:\n  ping_interval: 0\n\
             callback:\n  connect: {}\n  establish: {}\n  close: {}\n  receive: {}\n  timeout: 5s\n\
             cluster:\n  nats: [{}]\n  name: {}\n  node_id: {name}\n  data_dir: {}\n  bootstrap_expect: {bootstrap_expect}\n{}{}",
            self.top_level,
            backend.callback_url(CallbackKind::Connect),
            backend.callback_url(CallbackKind::Establish),
            backend.callback_url(CallbackKind::Close),
            backend.callback_url(CallbackKind::Receive),
            self.nats_urls.join(", "),
            self.name,
            self.data_root.join(name).display(),
            self.extra,
            extras.cluster_lines,
        );
        let node = Node {
            name: name.to_owned(),
            process: None,
            config: TempConfig::new(&text),
            env: extras.env,
            addr: None,
        };
        self.nodes.insert(name.to_owned(), node);
        self.start(name).await;
    }

    /// (Re)starts a node's process with its config and data directory.
    pub async fn start(&mut self, name: &str) {
        let node = self.nodes.get_mut(name).expect("a known node");
        let env: Vec<(&str, &str)> = node
            .env
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        let process = OortProcess::spawn(
            &["--config", node.config.path(), "--log-level", "info"],
            &env,
        );
        node.addr = Some(process.listen_addr("client", Duration::from_secs(20)).await);
        node.process = Some(process);
    }

    /// SIGKILLs a node (no drain, no leave).
    pub async fn kill(&mut self, name: &str) {
        let node = self.nodes.get_mut(name).expect("a known node");
        if let Some(mut process) = node.process.take() {
            process.signal(9);
            process.wait_exit(Duration::from_secs(10)).await;
        }
        node.addr = None;
    }

    /// SIGTERMs a node and waits for its drain to finish.
    pub async fn stop(&mut self, name: &str) -> std::process::ExitStatus {
        let node = self.nodes.get_mut(name).expect("a known node");
        let mut process = node.process.take().expect("the node is running");
        process.signal(15);
        node.addr = None;
        process.wait_exit(Duration::from_secs(20)).await
    }

    /// The node's `GET /v1/cluster` answer.
    pub async fn status(&self, name: &str) -> Option<serde_json::Value> {
        let node = self.nodes.get(name)?;
        let addr = node.addr?;
        let response = self
            .http
            .get(format!("http://{addr}/v1/cluster"))
            .send()
            .await
            .ok()?;
        serde_json::from_slice(&response.bytes().await.ok()?).ok()
    }

    /// Waits until every running node agrees on one leader and each reports `members`
    /// members with `voters` voters, all ready; returns the leader's name.
    pub async fn wait_converged(&self, members: usize, voters: usize, timeout: Duration) -> String {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(leader) = self.converged(members, voters).await {
                return leader;
            }
            if tokio::time::Instant::now() >= deadline {
                // What each node says, so a failure explains itself.
                for name in self.running() {
                    eprintln!("{name}: {:?}", self.status(&name).await);
                }
                panic!("timed out after {timeout:?} waiting for the cluster to converge");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The leader, if every running node agrees on it, is ready, and lists `members` members
    /// of which `voters` are voters.
    async fn converged(&self, members: usize, voters: usize) -> Option<String> {
        let mut leader = None;
        for name in self.running() {
            let status = self.status(&name).await?;
            let this_leader = status["leader"].as_str()?.to_owned();
            if leader.get_or_insert_with(|| this_leader.clone()) != &this_leader
                || status["ready"] != true
            {
                return None;
            }
            let listed = status["members"].as_array()?;
            let member_count = listed
                .iter()
                .filter(|m| m["role"] == "voter" || m["role"] == "learner")
                .count();
            let voter_count = listed.iter().filter(|m| m["role"] == "voter").count();
            if member_count != members || voter_count != voters {
                return None;
            }
        }
        leader
    }

    /// Names of the nodes whose process runs.
    pub fn running(&self) -> Vec<String> {
        self.nodes
            .values()
            .filter(|node| node.is_running())
            .map(|node| node.name.clone())
            .collect()
    }

    /// A running node.
    pub fn node(&self, name: &str) -> &Node {
        &self.nodes[name]
    }

    /// An HTTP client for the nodes' APIs.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }
}

/// A cluster name no other test uses.
pub fn fresh_cluster_name() -> String {
    format!("t{:x}", rand::random::<u32>())
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.data_root);
    }
}
