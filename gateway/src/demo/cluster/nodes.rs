//! The demo's node processes: started, watched, stopped and restarted.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tracing::{info, warn};

use super::super::backend::Chat;
use super::{READY_TIMEOUT, RESUME_SECRET_ENV, START_TIMEOUT, STOP_TIMEOUT};

pub(super) struct Supervisor {
    pub(super) nodes: Vec<Arc<Node>>,
    pub(super) chat: Arc<Chat>,
    pub(super) http: reqwest::Client,
}

impl Supervisor {
    pub(super) fn node(&self, id: &str) -> Option<&Arc<Node>> {
        self.nodes.iter().find(|node| node.id == id)
    }

    /// Each node's API base on loopback, for the backend's publishes and presence reads.
    pub(super) fn api_urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|node| format!("http://127.0.0.1:{}", node.port()))
            .collect()
    }

    /// Waits (at most READY_TIMEOUT) until every node is ready and names the same leader.
    pub(super) async fn wait_ready(&self) {
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            let mut leaders = Vec::new();
            for url in self.api_urls() {
                leaders.push(self.ready_leader(&url).await);
            }
            let first = leaders.first().cloned().flatten();
            if first.is_some() && leaders.iter().all(|leader| *leader == first) {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                warn!(
                    "the demo cluster has no leader every node agrees on after {READY_TIMEOUT:?}; \
                     starting anyway"
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The leader a ready node names, if it is ready and names one.
    pub(super) async fn ready_leader(&self, api: &str) -> Option<String> {
        let response = self
            .http
            .get(format!("{api}/v1/cluster"))
            .send()
            .await
            .ok()?;
        let status: serde_json::Value =
            serde_json::from_slice(&response.bytes().await.ok()?).ok()?;
        if status.get("ready")?.as_bool()? {
            status.get("leader")?.as_str().map(str::to_owned)
        } else {
            None
        }
    }

    /// Stops every node at once (each drains), bounded.
    pub(super) async fn stop_all(&self) {
        let stops = self.nodes.iter().map(|node| async move {
            let mut process = node.process.lock().await;
            if let Some(running) = process.take() {
                node.set_state("stopping");
                running.stop(&node.id).await;
            }
            node.set_state("stopped");
        });
        futures_util::future::join_all(stops).await;
    }
}

/// One node of the cluster: how to start it, and its process while it runs.
pub(super) struct Node {
    pub(super) id: String,
    pub(super) exe: PathBuf,
    /// Its arguments but `--port`.
    pub(super) args: Vec<String>,
    pub(super) secret: String,
    /// The port it binds: the one it was given, then the one it took (so a restart keeps it).
    pub(super) port: Mutex<u16>,
    pub(super) url: Mutex<String>,
    pub(super) state: Mutex<&'static str>,
    /// Held across a restart, so restarts of one node do not overlap.
    pub(super) process: Arc<tokio::sync::Mutex<Option<Running>>>,
}

pub(super) fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Node {
    pub(super) fn port(&self) -> u16 {
        *locked(&self.port)
    }

    pub(super) fn url(&self) -> String {
        locked(&self.url).clone()
    }

    pub(super) fn state(&self) -> &'static str {
        *locked(&self.state)
    }

    pub(super) fn set_state(&self, state: &'static str) {
        *locked(&self.state) = state;
    }

    /// Starts the node's process and waits (bounded) for the address it prints.
    pub(super) async fn spawn(&self) -> anyhow::Result<Running> {
        self.set_state("starting");
        let port = self.port();
        let mut command = Command::new(&self.exe);
        command
            .args(&self.args)
            .args(["--port", &port.to_string()])
            .env(RESUME_SECRET_ENV, &self.secret)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // Its own process group: a Ctrl-C in the terminal reaches this process only, which
        // stops the nodes in order.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command
            .spawn()
            .map_err(|err| anyhow::anyhow!("cannot start {}: {err}", self.exe.display()))?;
        let pid = child.id();
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let (url_tx, url_rx) = oneshot::channel::<String>();
        if let Some(stdout) = stdout {
            std::thread::spawn(move || {
                let mut url_tx = Some(url_tx);
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if line.starts_with("Oort demo running: open ")
                        && let Some(url) =
                            line.split_whitespace().find(|w| w.starts_with("http://"))
                        && let Some(tx) = url_tx.take()
                    {
                        let _ = tx.send(url.to_owned());
                    }
                }
            });
        }
        let (exit_tx, exit_rx) = watch::channel(None::<String>);
        std::thread::spawn(move || {
            let status = match child.wait() {
                Ok(status) => status.to_string(),
                Err(err) => format!("unknown ({err})"),
            };
            let _ = exit_tx.send(Some(status));
        });
        let running = Running {
            pid,
            stdin,
            exited: exit_rx,
        };
        let mut exited = running.exited.clone();
        let url = tokio::select! {
            url = tokio::time::timeout(START_TIMEOUT, url_rx) => url,
            status = exited.wait_for(Option::is_some) => {
                let status = status.map(|s| s.clone().unwrap_or_default()).unwrap_or_default();
                self.set_state("exited");
                return Err(anyhow::anyhow!("demo node {} exited at start: {status}", self.id));
            }
        };
        let Ok(Ok(url)) = url else {
            running.stop(&self.id).await;
            self.set_state("exited");
            return Err(anyhow::anyhow!(
                "demo node {} printed no address within {START_TIMEOUT:?}",
                self.id
            ));
        };
        let taken = url
            .trim_end_matches('/')
            .rsplit_once(':')
            .and_then(|(_, port)| port.parse::<u16>().ok());
        if let Some(taken) = taken {
            *locked(&self.port) = taken;
        }
        *locked(&self.url) = url;
        self.set_state("running");
        Ok(running)
    }
}

/// A node's process.
pub(super) struct Running {
    pub(super) pid: u32,
    /// Its end of file stops the node.
    pub(super) stdin: Option<std::process::ChildStdin>,
    /// Its exit status, once it exited.
    pub(super) exited: watch::Receiver<Option<String>>,
}

impl Running {
    pub(super) fn has_exited(&self) -> bool {
        self.exited.borrow().is_some()
    }

    /// SIGTERM (the node drains), wait for the exit, SIGKILL after STOP_TIMEOUT.
    pub(super) async fn stop(mut self, id: &str) {
        if !self.has_exited() {
            signal(self.pid, "TERM").await;
        }
        self.stdin = None;
        if wait_exit(&self.exited, STOP_TIMEOUT).await {
            let status = self.exited.borrow().clone().unwrap_or_default();
            info!(node = %id, %status, "demo node stopped");
            return;
        }
        warn!(node = %id, "demo node still running {STOP_TIMEOUT:?} after SIGTERM: SIGKILL");
        if !self.has_exited() {
            signal(self.pid, "KILL").await;
        }
        wait_exit(&self.exited, Duration::from_secs(5)).await;
    }
}

/// Waits at most `timeout` for a process's exit; true if it exited.
pub(super) async fn wait_exit(exited: &watch::Receiver<Option<String>>, timeout: Duration) -> bool {
    let mut exited = exited.clone();
    matches!(
        tokio::time::timeout(timeout, exited.wait_for(Option::is_some)).await,
        Ok(Ok(_))
    )
}

/// Sends a signal with kill(1) (this crate has no libc binding and forbids unsafe code).
pub(super) async fn signal(pid: u32, name: &str) {
    let pid = pid.to_string();
    let name = format!("-{name}");
    let result = tokio::task::spawn_blocking(move || {
        Command::new("kill")
            .args([name.as_str(), pid.as_str()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
    })
    .await;
    match result {
        Ok(Ok(status)) if status.success() => {}
        Ok(Ok(status)) => warn!(%status, "kill failed"),
        Ok(Err(err)) => warn!(error = %err, "cannot run kill"),
        Err(err) => warn!(error = %err, "cannot run kill"),
    }
}
