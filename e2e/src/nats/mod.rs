//! Real `nats-server` processes for tests: one server, or a cluster of several, each started
//! from a config file the test can extend (users and permissions, TLS; see [`config`]) and
//! change while it runs ([`NatsServer::reconfigure`]), whose log the test can read, and which it
//! can kill and restart on the same port.
//!
//! Ports are reserved for each server's lifetime ([`ports`]), so a restart never finds its
//! port taken by another test.

pub mod config;
pub mod jwt;
pub mod node_users;
mod ports;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Notify;

use crate::temp::TempDir;
use ports::{PortLease, reserve_port};

/// The `nats-server` binary: `$OORT_NATS_SERVER`, or `nats-server` on the PATH.
pub fn nats_server_binary() -> String {
    std::env::var("OORT_NATS_SERVER").unwrap_or_else(|_| "nats-server".to_owned())
}

/// A running `nats-server`.
pub struct NatsServer {
    child: Option<Child>,
    config_file: String,
    /// The config without the test's extra part (listeners, routes).
    base: String,
    logs: Arc<Mutex<Vec<String>>>,
    log_added: Arc<Notify>,
    /// The client port.
    pub port: u16,
    /// The monitoring port, when the server has one ([`NatsServer::start_monitored`]).
    monitor_port: Option<u16>,
    // Held until the server is dropped: its client (and route) ports, and its config file.
    _ports: Vec<PortLease>,
    _dir: TempDir,
}

impl NatsServer {
    /// A standalone server on a loopback port, open to everyone.
    pub async fn start() -> Self {
        Self::start_with("").await
    }

    /// A standalone server whose config file also holds `extra` (see [`config`]).
    pub async fn start_with(extra: &str) -> Self {
        let client = reserve_port();
        let base = format!("host: \"127.0.0.1\"\nport: {}\n", client.port);
        Self::spawn(base, extra, vec![client]).await
    }

    /// A standalone server with its HTTP monitoring endpoint on (`/connz` lists each
    /// connection's subscriptions: which subjects NATS routes to which node).
    pub async fn start_monitored() -> Self {
        let client = reserve_port();
        let monitor = reserve_port();
        let base = format!(
            "host: \"127.0.0.1\"\nport: {}\nhttp: \"127.0.0.1:{}\"\n",
            client.port, monitor.port
        );
        let monitor_port = monitor.port;
        let mut server = Self::spawn(base, "", vec![client, monitor]).await;
        server.monitor_port = Some(monitor_port);
        server
    }

    /// `http://127.0.0.1:<port>` of the monitoring endpoint (`/varz`, `/connz`), when the
    /// server has one ([`NatsServer::start_monitored`]).
    pub fn monitor_url(&self) -> Option<String> {
        self.monitor_port
            .map(|port| format!("http://127.0.0.1:{port}"))
    }

    /// The subjects each client connection subscribes to, by connection name (Oort nodes name
    /// theirs `oort-<node id>`). Needs [`NatsServer::start_monitored`].
    pub async fn subscriptions(&self) -> std::collections::HashMap<String, Vec<String>> {
        let port = self.monitor_port.expect("a monitored server");
        let body = crate::http_client()
            .get(format!("http://127.0.0.1:{port}/connz?subs=1&limit=1024"))
            .send()
            .await
            .expect("GET /connz")
            .bytes()
            .await
            .expect("connz body");
        let connz: serde_json::Value = serde_json::from_slice(&body).expect("connz JSON");
        connz["connections"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|connection| {
                let name = connection["name"].as_str().unwrap_or_default().to_owned();
                let subjects = connection["subscriptions_list"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect();
                (name, subjects)
            })
            .collect()
    }

    /// `count` servers forming one NATS cluster (full mesh of routes). The servers do not
    /// tell clients about each other, so a client uses only the servers the test gave it, and
    /// killing its one server cuts it off.
    pub async fn cluster(count: usize) -> Vec<Self> {
        let mut client_ports: Vec<PortLease> = (0..count).map(|_| reserve_port()).collect();
        let mut route_ports: Vec<PortLease> = (0..count).map(|_| reserve_port()).collect();
        let route_numbers: Vec<u16> = route_ports.iter().map(|lease| lease.port).collect();
        let name = format!("c{:x}", rand::random::<u32>());
        let mut servers = Vec::new();
        for index in 0..count {
            let routes: Vec<String> = route_numbers
                .iter()
                .enumerate()
                .filter(|(other, _)| *other != index)
                .map(|(_, port)| format!("\"nats://127.0.0.1:{port}\""))
                .collect();
            let client = client_ports.remove(0);
            let route = route_ports.remove(0);
            let text = format!(
                "server_name: \"{name}-{index}\"\nhost: \"127.0.0.1\"\nport: {}\n\
                 cluster {{\n  name: \"{name}\"\n  listen: \"127.0.0.1:{}\"\n  routes: [{}]\n  no_advertise: true\n}}\n",
                client.port,
                route.port,
                routes.join(", "),
            );
            servers.push(Self::spawn(text, "", vec![client, route]).await);
        }
        servers
    }

    async fn spawn(base: String, extra: &str, ports: Vec<PortLease>) -> Self {
        let dir = TempDir::new("nats");
        let config_file = dir
            .write("nats.conf", format!("{base}{extra}"))
            .display()
            .to_string();
        let mut server = Self {
            child: None,
            config_file,
            base,
            logs: Arc::default(),
            log_added: Arc::default(),
            port: ports[0].port,
            monitor_port: None,
            _ports: ports,
            _dir: dir,
        };
        server.launch().await;
        server
    }

    async fn launch(&mut self) {
        // Counted before the spawn: a fast server may log its line before we would look.
        let launches = self.count_lines("Server is ready") + 1;
        let mut child = Command::new(nats_server_binary())
            .args(["-c", &self.config_file])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot start {}: {err} (install nats-server, or set OORT_NATS_SERVER)",
                    nats_server_binary()
                )
            });
        let stderr = child.stderr.take().expect("piped stderr");
        let (logs, log_added) = (self.logs.clone(), self.log_added.clone());
        // Keep reading its log, so the pipe never fills and tests can look at it.
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                logs.lock().unwrap().push(line);
                log_added.notify_waiters();
            }
        });
        self.child = Some(child);
        self.wait_for_lines("Server is ready", launches, Duration::from_secs(10))
            .await;
        let listening = format!(
            "Listening for client connections on 127.0.0.1:{}",
            self.port
        );
        assert!(
            self.count_lines(&listening) >= launches,
            "nats-server is not listening on its reserved port {}:\n{}",
            self.port,
            self.logs().join("\n")
        );
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// `tls://127.0.0.1:<port>`: the same port, TLS required by the client.
    pub fn tls_url(&self) -> String {
        format!("tls://127.0.0.1:{}", self.port)
    }

    /// Every line the server logged so far, over all its launches.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// How many log lines contain `needle`.
    pub fn count_lines(&self, needle: &str) -> usize {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter(|line| line.contains(needle))
            .count()
    }

    /// Waits until `count` log lines contain `needle`.
    pub async fn wait_for_lines(&self, needle: &str, count: usize, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.log_added.notified();
            if self.count_lines(needle) >= count {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "nats-server logged {needle:?} fewer than {count} times within {timeout:?}:\n{}",
                    self.logs().join("\n")
                );
            }
        }
    }

    /// SIGKILL, and wait for the process to be gone.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Replaces the test's extra part of the config (users and permissions, say) and has the
    /// running server reload it (SIGHUP); returns once the server logged the reload. A
    /// subscription the new permissions forbid is removed at once; one they allow again is not
    /// restored (the client does not know it was removed).
    pub async fn reconfigure(&mut self, extra: &str) {
        std::fs::write(&self.config_file, format!("{}{extra}", self.base))
            .expect("rewrite the nats-server config");
        let reloads = self.count_lines("Reloaded server configuration") + 1;
        let pid = self
            .child
            .as_ref()
            .and_then(Child::id)
            .expect("the server is running");
        let status = std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -HUP {pid} failed");
        self.wait_for_lines(
            "Reloaded server configuration",
            reloads,
            Duration::from_secs(10),
        )
        .await;
    }

    /// Starts again with the same config (same port).
    pub async fn restart(&mut self) {
        self.kill().await;
        self.launch().await;
    }
}
