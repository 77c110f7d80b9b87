//! The NATS server the demo's nodes cluster over.

use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;
use tracing::info;

use super::nodes::{locked, signal, wait_exit};
use super::{ClusterDemo, NATS_TIMEOUT};

/// The NATS server the nodes cluster over.
pub(super) struct Nats {
    pub(super) url: String,
    /// Its end of file stops the shell, which stops nats-server.
    pub(super) stdin: Mutex<Option<std::process::ChildStdin>>,
    pub(super) pid: u32,
    pub(super) exited: watch::Receiver<Option<String>>,
}

impl Nats {
    pub(super) async fn start(spec: &ClusterDemo) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind(("127.0.0.1", 0))?
            .local_addr()?
            .port();
        let dir = spec.work_dir.join("nats");
        std::fs::create_dir_all(&dir)?;
        let log_path = dir.join("nats-server.log");
        let log = std::fs::File::create(&log_path)?;
        // The shell runs nats-server and stops it when its stdin (held by this process) ends,
        // even if this process is killed; it exits with nats-server.
        let mut command = Command::new("sh");
        command
            .args([
                "-c",
                r#"exec 3<&0; "$0" "$@" </dev/null & pid=$!; (read -r _ <&3; kill "$pid" 2>/dev/null) & wait "$pid""#,
            ])
            .arg(&spec.nats_server)
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(log);
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command
            .spawn()
            .map_err(|err| anyhow::anyhow!("cannot start {}: {err}", spec.nats_server.display()))?;
        let pid = child.id();
        let stdin = child.stdin.take();
        let (exit_tx, exited) = watch::channel(None::<String>);
        std::thread::spawn(move || {
            let status = match child.wait() {
                Ok(status) => status.to_string(),
                Err(err) => format!("unknown ({err})"),
            };
            let _ = exit_tx.send(Some(status));
        });
        let nats = Self {
            url: format!("nats://127.0.0.1:{port}"),
            stdin: Mutex::new(stdin),
            pid,
            exited,
        };
        let deadline = tokio::time::Instant::now() + NATS_TIMEOUT;
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                info!(url = %nats.url, "nats-server is up");
                return Ok(nats);
            }
            let status = nats.exited.borrow().clone();
            if status.is_some() || tokio::time::Instant::now() >= deadline {
                nats.stop().await;
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(anyhow::anyhow!(
                    "nats-server did not accept connections on 127.0.0.1:{port} (exit: {}); its log:\n{}",
                    status.unwrap_or_else(|| "still running".into()),
                    log.trim_end()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(super) async fn stop(&self) {
        locked(&self.stdin).take();
        if !wait_exit(&self.exited, Duration::from_secs(5)).await {
            signal(self.pid, "KILL").await;
        }
    }
}
