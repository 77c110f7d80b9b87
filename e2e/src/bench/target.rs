//! The gateway under load: `oort` spawned here (one node, or a cluster with its own
//! nats-server), or one already running.

use std::net::SocketAddr;
use std::time::Duration;

use crate::nats::NatsServer;
use crate::process::{OortProcess, TempConfig};
use crate::wait::eventually;

/// Where the load goes.
pub struct Target {
    /// `ws://host:port/connect` (clients append `?key=...`).
    pub connect_url: String,
    /// `http://host:port` for `/send` and `/v1/*`.
    pub api_url: String,
    /// The gateway's pid, for memory and CPU figures.
    pub pid: Option<u32>,
    /// Every spawned node's pid, for the CPU a cluster spends (empty for an external gateway).
    pub pids: Vec<u32>,
    /// Every node's API URL (one entry unless clustered).
    pub nodes: Vec<String>,
    _processes: Vec<(OortProcess, TempConfig)>,
    _nats: Option<NatsServer>,
    data_dir: Option<std::path::PathBuf>,
}

/// Which limits a spawned gateway keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limits {
    /// The load scenarios: every client comes from this machine's loopback addresses, so the
    /// per-address limits and the per-session message rate, which are meant for clients on
    /// the internet, are turned off (through `OORT_*` variables, which `--extra-config` cannot
    /// override). The bench's backend serves the API on the client listener, and the chat
    /// scenarios keep one API connection per talking client open: at the default 64 shared API
    /// connections, 100 clients' publishes waited 10 s for a turn, past the receive callback's
    /// timeout, and 0.3-0.4% of the messages were dropped.
    LoopbackLoad,
    /// The defaults plus `--extra-config`: what the attack scenarios run against.
    Configured,
}

impl Limits {
    pub fn env(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Self::LoopbackLoad => &[
                ("OORT_LIMITS__ADDRESS_CONNECTIONS", "0"),
                ("OORT_LIMITS__ADDRESS_CONNECT_RATE", "0"),
                ("OORT_WEBSOCKET__MAX_MESSAGE_RATE", "0"),
                ("OORT_LIMITS__SHARED_API_CONNECTIONS", "4096"),
            ],
            Self::Configured => &[],
        }
    }
}

impl Target {
    /// Spawns one `oort` with callbacks pointing at `backend`, plus `extra_config` YAML lines.
    pub async fn spawn(
        backend: SocketAddr,
        extra_config: &str,
        limits: Limits,
    ) -> anyhow::Result<Self> {
        let (process, config, addr) = spawn_node(backend, extra_config, limits).await;
        let url = format!("http://{addr}");
        Ok(Self {
            connect_url: format!("ws://{addr}/connect"),
            api_url: url.clone(),
            pid: Some(process.pid()),
            pids: vec![process.pid()],
            nodes: vec![url],
            _processes: vec![(process, config)],
            _nats: None,
            data_dir: None,
        })
    }

    /// Spawns a nats-server and `size` clustered nodes (3 voters), waits until all are ready,
    /// and aims the load at the last node (a follower, so writes take the forwarding path).
    pub async fn spawn_cluster(
        backend: SocketAddr,
        size: usize,
        extra_config: &str,
        limits: Limits,
    ) -> anyhow::Result<Self> {
        // Monitored: the channel scenarios count NATS messages per publish from `/connz`.
        let nats = NatsServer::start_monitored().await;
        let name = format!("bench{:x}", rand::random::<u32>());
        let data_dir = std::env::temp_dir().join(format!("oort-bench-{name}"));
        let mut processes = Vec::new();
        let mut urls = Vec::new();
        for index in 1..=size {
            let cluster = format!(
                "cluster:\n  nats: [{}]\n  name: {name}\n  node_id: n{index}\n  data_dir: {}\n  bootstrap_expect: {}\n  \
                 heartbeat_interval: 200ms\n  node_timeout: 3s\n  raft_heartbeat: 100ms\n  election_timeout: 600ms\n",
                nats.url(),
                data_dir.join(format!("n{index}")).display(),
                size.min(3),
            );
            let (process, config, addr) =
                spawn_node(backend, &format!("{extra_config}\n{cluster}"), limits).await;
            urls.push(format!("http://{addr}"));
            processes.push((process, config));
        }
        let http = crate::http_client_builder()
            .timeout(super::REQUEST_TIMEOUT)
            .build()?;
        eventually(Duration::from_secs(60), "every node ready", || async {
            for url in &urls {
                let response = http.get(format!("{url}/readyz")).send().await.ok()?;
                response.status().is_success().then_some(())?;
            }
            Some(())
        })
        .await;
        let last = urls.last().cloned().unwrap_or_default();
        let pid = processes.last().map(|(process, _)| process.pid());
        Ok(Self {
            connect_url: format!("{}/connect", last.replacen("http://", "ws://", 1)),
            api_url: last,
            pid,
            pids: processes.iter().map(|(process, _)| process.pid()).collect(),
            nodes: urls,
            _processes: processes,
            _nats: Some(nats),
            data_dir: Some(data_dir),
        })
    }

    /// Every output line of the gateways spawned here (JSON logs), in node order.
    pub fn logs(&self) -> Vec<String> {
        self._processes
            .iter()
            .flat_map(|(process, _)| process.logs())
            .collect()
    }

    /// Every node's connect URL (`ws://host:port/connect`), in node order.
    pub fn connect_urls(&self) -> Vec<String> {
        match self.nodes.as_slice() {
            [_] | [] => vec![self.connect_url.clone()],
            nodes => nodes
                .iter()
                .map(|node| format!("{}/connect", node.replacen("http://", "ws://", 1)))
                .collect(),
        }
    }

    /// The cluster's nats-server monitoring URL (`/varz`, `/connz`), if spawned here.
    pub fn nats_monitor_url(&self) -> Option<String> {
        self._nats.as_ref().and_then(NatsServer::monitor_url)
    }

    /// CPU seconds every gateway process has used so far, if they can all be read.
    pub fn cpu_seconds(&self) -> Option<f64> {
        self.sum_over_pids(super::procfs::cpu_seconds)
    }

    /// Resident memory of every gateway process, if they can all be read.
    pub fn rss_bytes(&self) -> Option<u64> {
        self.sum_over_pids(super::procfs::rss_bytes)
    }

    fn sum_over_pids<T: std::iter::Sum<T>>(
        &self,
        read: fn(u32) -> std::io::Result<T>,
    ) -> Option<T> {
        if self.pids.is_empty() {
            return None;
        }
        self.pids.iter().map(|pid| read(*pid).ok()).sum()
    }

    /// A gateway that is already running.
    pub fn external(connect_url: String, api_url: String, pid: Option<u32>) -> Self {
        Self {
            connect_url,
            nodes: vec![api_url.clone()],
            api_url,
            pids: pid.into_iter().collect(),
            pid,
            _processes: Vec::new(),
            _nats: None,
            data_dir: None,
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(dir) = &self.data_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

async fn spawn_node(
    backend: SocketAddr,
    extra_config: &str,
    limits: Limits,
) -> (OortProcess, TempConfig, SocketAddr) {
    let config = TempConfig::new(&format!(
        "listen: 127.0.0.1:0\n\
         suppress_access_log: true\n\
         callback:\n  connect: http://{backend}/connect\n  establish: http://{backend}/establish\n  \
         close: http://{backend}/close\n  receive: http://{backend}/receive\n  timeout: 10s\n\
         {extra_config}\n"
    ));
    let args = ["--config", config.path(), "--log-level", "info"];
    let process = OortProcess::spawn(&args, limits.env());
    let addr = process.listen_addr("client", Duration::from_secs(30)).await;
    (process, config, addr)
}
