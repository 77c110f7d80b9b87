//! Launching real `oort` processes and reading their JSON logs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Notify;

/// The `oort` binary built alongside the tests (`target/<profile>/oort`), or `$OORT_BIN`.
pub fn oort_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("OORT_BIN") {
        return PathBuf::from(path);
    }
    workspace_binary("oort")
}

/// A binary of this workspace, built alongside the running executable (`cargo build
/// --workspace --bins` builds them all; `cargo nextest run --workspace` does too).
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // Tests run from target/<profile>/deps/, oort-bench from target/<profile>/; the binaries
    // are in target/<profile>/ either way.
    let dir = exe.parent().expect("executable directory");
    let profile_dir = if dir.ends_with("deps") {
        dir.parent().unwrap_or(dir)
    } else {
        dir
    };
    let binary = profile_dir.join(name);
    assert!(
        binary.exists(),
        "{} is missing: build it with `cargo build --workspace --bins`",
        binary.display()
    );
    binary
}

/// A running `oort` process whose stderr (JSON logs) is collected.
pub struct OortProcess {
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
    log_added: Arc<Notify>,
}

impl OortProcess {
    /// Starts `oort` with `args` and extra environment, logging JSON at debug level unless the
    /// arguments say otherwise.
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(oort_binary());
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
            .env_remove("RUST_LOG")
            .env("OORT_LOG__FORMAT", "json");
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("spawn oort");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let log_added = Arc::new(Notify::new());
        for pipe in [
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            child.stdout.take().map(|p| Box::new(p) as _),
        ]
        .into_iter()
        .flatten()
        {
            let logs = logs.clone();
            let log_added = log_added.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(pipe).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    logs.lock().unwrap().push(line);
                    log_added.notify_waiters();
                }
            });
        }
        Self {
            child,
            logs,
            log_added,
        }
    }

    /// Every output line so far (stderr and stdout).
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// Waits for an output line containing `needle` and returns it.
    pub async fn wait_for_line(&self, needle: &str, timeout: Duration) -> String {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.log_added.notified();
            if let Some(line) = self.logs().into_iter().find(|line| line.contains(needle)) {
                return line;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "no output line with {needle:?} within {timeout:?}; output so far:\n{}",
                    self.logs().join("\n")
                );
            }
        }
    }

    /// The TCP address of the listener named `name` (`client` or `api`), from the log.
    pub async fn listen_addr(&self, name: &str, timeout: Duration) -> SocketAddr {
        let addr = self.listen_text(name, timeout).await;
        addr.parse()
            .unwrap_or_else(|_| panic!("{addr} is not a TCP address"))
    }

    /// The address the listener named `name` logged once bound, as written: `127.0.0.1:PORT`,
    /// `[::]:PORT` or `unix:/path`.
    pub async fn listen_text(&self, name: &str, timeout: Duration) -> String {
        let needle = format!("\"listener\":\"{name}\"");
        let line = self.wait_for_line(&needle, timeout).await;
        let json: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
        json["fields"]["addr"]
            .as_str()
            .expect("an addr field")
            .to_owned()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the process is running")
    }

    /// Sends a signal (`libc` numbering: 15 = SIGTERM, 2 = SIGINT, 9 = SIGKILL).
    pub fn signal(&self, signal: i32) {
        let pid = self.child.id().expect("the process is running");
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {pid} failed");
    }

    /// Waits for the process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => status.expect("wait for oort"),
            Err(_) => panic!(
                "oort did not exit within {timeout:?}; output:\n{}",
                self.logs().join("\n")
            ),
        }
    }
}

/// Runs `oort` to completion (`check-config`, start-up failures) with extra environment, and
/// returns its exit status and output; panics if it runs longer than `timeout`.
pub async fn run_oort(
    args: &[&str],
    env: &[(&str, &str)],
    timeout: Duration,
) -> std::process::Output {
    let mut command = Command::new(oort_binary());
    command
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .env_remove("RUST_LOG");
    for (name, value) in env {
        command.env(name, value);
    }
    match tokio::time::timeout(timeout, command.output()).await {
        Ok(output) => output.expect("run oort"),
        Err(_) => panic!("oort {args:?} did not exit within {timeout:?}"),
    }
}

/// A config file in a fresh temporary directory, removed when dropped.
pub struct TempConfig {
    dir: PathBuf,
    path: PathBuf,
}

impl TempConfig {
    /// Writes `text` as `config.yml`.
    pub fn new(text: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "oort-test-{}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        let path = dir.join("config.yml");
        std::fs::write(&path, text).expect("write config");
        Self { dir, path }
    }

    /// The file.
    pub fn path(&self) -> &str {
        self.path.to_str().expect("UTF-8 temp path")
    }

    /// The directory (for unix sockets next to the config).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
