//! Real `nats-server` processes for tests: one on a free port, or a cluster of several, that
//! tests can kill and restart on the same port.

use std::net::TcpListener;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The `nats-server` binary: `$OORT_NATS_SERVER`, or `nats-server` on the PATH.
pub fn nats_server_binary() -> String {
    std::env::var("OORT_NATS_SERVER").unwrap_or_else(|_| "nats-server".to_owned())
}

/// A running `nats-server`.
pub struct NatsServer {
    child: Option<Child>,
    args: Vec<String>,
    /// The client port.
    pub port: u16,
}

impl NatsServer {
    /// A standalone server on a free loopback port.
    pub async fn start() -> Self {
        let port = free_port();
        Self::spawn(
            vec![
                "-a".into(),
                "127.0.0.1".into(),
                "-p".into(),
                port.to_string(),
            ],
            port,
        )
        .await
    }

    /// `count` servers forming one NATS cluster (full mesh of routes).
    pub async fn cluster(count: usize) -> Vec<Self> {
        let client_ports: Vec<u16> = (0..count).map(|_| free_port()).collect();
        let route_ports: Vec<u16> = (0..count).map(|_| free_port()).collect();
        let name = format!("c{:x}", rand::random::<u32>());
        let mut servers = Vec::new();
        for index in 0..count {
            let routes: Vec<String> = route_ports
                .iter()
                .enumerate()
                .filter(|(other, _)| *other != index)
                .map(|(_, port)| format!("nats://127.0.0.1:{port}"))
                .collect();
            let args = vec![
                "-a".into(),
                "127.0.0.1".into(),
                "-p".into(),
                client_ports[index].to_string(),
                "-n".into(),
                format!("{name}-{index}"),
                "--cluster_name".into(),
                name.clone(),
                "--cluster".into(),
                format!("nats://127.0.0.1:{}", route_ports[index]),
                "--routes".into(),
                routes.join(","),
            ];
            servers.push(Self::spawn(args, client_ports[index]).await);
        }
        servers
    }

    async fn spawn(args: Vec<String>, port: u16) -> Self {
        let mut server = Self {
            child: None,
            args,
            port,
        };
        server.launch().await;
        server
    }

    async fn launch(&mut self) {
        let mut child = Command::new(nats_server_binary())
            .args(&self.args)
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
        let mut lines = BufReader::new(stderr).lines();
        let ready = tokio::time::timeout(Duration::from_secs(10), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("Server is ready") {
                    return true;
                }
            }
            false
        })
        .await;
        assert!(
            matches!(ready, Ok(true)),
            "nats-server {:?} did not become ready",
            self.args
        );
        // Keep draining its log so the pipe never fills.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.child = Some(child);
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// SIGKILL, and wait for the process to be gone.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Starts again with the same arguments (same port).
    pub async fn restart(&mut self) {
        self.kill().await;
        self.launch().await;
    }
}

/// A port that was free a moment ago (the kernel hands out a fresh one for port 0).
pub fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}
