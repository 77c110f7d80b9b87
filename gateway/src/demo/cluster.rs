//! `oort demo --nodes N`: a cluster of N demo nodes on this machine, so a newcomer sees sessions
//! span nodes and move between them.
//!
//! This process supervises: it starts `nats-server` on a free loopback port, serves the one chat
//! backend every node calls (so who is online survives a session moving), starts N `oort demo`
//! child processes (`n1`, `n2`, ...) pointed at both, and serves a small control endpoint the
//! page's restart buttons call:
//!
//! - `GET /nodes`: `{"nodes":[{"id","url","state","pid"}]}`;
//! - `POST /nodes/{id}/restart`: SIGTERM the node (it drains: its clients resume elsewhere),
//!   wait for it to exit, start it again with the same arguments and port (`202`, at once).
//!
//! Each child reads its stdin until end of file and stops when it ends, so the children stop
//! with this process however it ends; `nats-server` runs under a shell that does the same.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::backend::Chat;

/// The variable that hands the shared resume secret to each node (never on a command line).
pub const RESUME_SECRET_ENV: &str = "OORT_DEMO_RESUME_SECRET";

/// How long a node may take to print its address after it starts.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a node may take to drain and exit after SIGTERM, before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the cluster may take to elect a leader with every node ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long nats-server may take to accept connections.
const NATS_TIMEOUT: Duration = Duration::from_secs(10);

/// What `oort demo --nodes N` needs from the binary.
pub struct ClusterDemo {
    /// This program (the nodes are `oort demo` child processes).
    pub exe: PathBuf,
    /// The `nats-server` binary.
    pub nats_server: PathBuf,
    /// The address every node binds.
    pub host: String,
    /// The first node's port (the next ones follow); 0: every node picks a free one.
    pub port: u16,
    /// How many nodes.
    pub nodes: u16,
    /// A directory of its own (created here, removed at the end): NATS's and the nodes' data.
    pub work_dir: PathBuf,
    /// The resume secret every node shares, so a session resumes on any of them.
    pub resume_secret: String,
}

/// Runs the cluster until `shutdown` fires, then stops every node and nats-server.
pub async fn run_cluster(spec: ClusterDemo, shutdown: CancellationToken) -> anyhow::Result<()> {
    std::fs::create_dir_all(&spec.work_dir)
        .map_err(|err| anyhow::anyhow!("cannot create {}: {err}", spec.work_dir.display()))?;
    let result = run(&spec, shutdown).await;
    if let Err(err) = std::fs::remove_dir_all(&spec.work_dir) {
        warn!(dir = %spec.work_dir.display(), error = %err, "cannot remove the demo's directory");
    }
    result
}

async fn run(spec: &ClusterDemo, shutdown: CancellationToken) -> anyhow::Result<()> {
    let nats = Nats::start(spec).await?;
    let stopped = CancellationToken::new();
    let result = serve(spec, &nats, shutdown, stopped.clone()).await;
    stopped.cancel();
    nats.stop().await;
    result
}

async fn serve(
    spec: &ClusterDemo,
    nats: &Nats,
    shutdown: CancellationToken,
    backend_stop: CancellationToken,
) -> anyhow::Result<()> {
    let chat = Chat::new(Vec::new())?;
    let backend_url = super::serve_backend(chat.clone(), backend_stop).await?;
    let control = TcpListener::bind((spec.host.as_str(), 0))
        .await
        .map_err(|err| anyhow::anyhow!("cannot listen on {}:0: {err}", spec.host))?;
    let control_port = control.local_addr()?.port();

    let mut nodes = Vec::new();
    for index in 1..=spec.nodes {
        let id = format!("n{index}");
        let port = if spec.port == 0 {
            0
        } else {
            spec.port.checked_add(index - 1).ok_or_else(|| {
                anyhow::anyhow!(
                    "--port {} leaves no room for {} nodes",
                    spec.port,
                    spec.nodes
                )
            })?
        };
        let data_dir = spec.work_dir.join(&id);
        let args = vec![
            "demo".to_owned(),
            "--host".to_owned(),
            spec.host.clone(),
            "--nats".to_owned(),
            nats.url.clone(),
            "--node-id".to_owned(),
            id.clone(),
            "--bootstrap-expect".to_owned(),
            spec.nodes.to_string(),
            "--backend".to_owned(),
            backend_url.clone(),
            "--control-port".to_owned(),
            control_port.to_string(),
            "--data-dir".to_owned(),
            data_dir.display().to_string(),
        ];
        nodes.push(Arc::new(Node {
            id,
            exe: spec.exe.clone(),
            args,
            secret: spec.resume_secret.clone(),
            port: Mutex::new(port),
            url: Mutex::new(String::new()),
            state: Mutex::new("starting"),
            process: Arc::new(tokio::sync::Mutex::new(None)),
        }));
    }
    let supervisor = Arc::new(Supervisor {
        nodes,
        chat,
        http: crate::tls::client_builder(rustls::RootCertStore::empty())?
            .timeout(Duration::from_secs(2))
            .build()?,
    });

    let started = start_all(&supervisor).await;
    let result = match started {
        Ok(()) => run_started(&supervisor, control, shutdown).await,
        Err(err) => Err(err),
    };
    supervisor.stop_all().await;
    result
}

async fn run_started(
    supervisor: &Arc<Supervisor>,
    control: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    supervisor.chat.set_gateways(supervisor.api_urls());
    let control_port = control.local_addr()?.port();
    let routes = Router::new()
        .route("/nodes", get(list_nodes))
        .route("/nodes/{id}/restart", post(restart_node))
        .layer(middleware::from_fn_with_state(supervisor.clone(), cors))
        .with_state(supervisor.clone());
    let control_shutdown = shutdown.clone();
    let server = tokio::spawn(async move {
        axum::serve(control, routes)
            .with_graceful_shutdown(control_shutdown.cancelled_owned())
            .await
    });

    tokio::select! {
        () = supervisor.wait_ready() => {}
        () = shutdown.cancelled() => {}
    }
    let urls: Vec<(String, String)> = supervisor
        .nodes
        .iter()
        .map(|node| (node.id.clone(), node.url()))
        .collect();
    for (id, url) in &urls {
        info!(node = %id, "Oort demo node {id}: {url}");
    }
    // The host the nodes' URLs name (loopback for 0.0.0.0), where the control endpoint is too.
    let control_host = urls
        .first()
        .and_then(|(_, url)| url.strip_prefix("http://"))
        .and_then(|rest| rest.rsplit_once(':'))
        .map_or("127.0.0.1", |(host, _)| host)
        .to_owned();
    announce(
        &urls,
        &format!("http://{control_host}:{control_port}/nodes"),
    );
    shutdown.cancelled().await;
    info!("stopping the demo cluster");
    match server.await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => warn!(error = %err, "the demo's control endpoint failed"),
        Err(err) => warn!(error = %err, "the demo's control endpoint panicked"),
    }
    Ok(())
}

#[allow(
    clippy::print_stdout,
    reason = "the demo's addresses are its output, for people and scripts"
)]
fn announce(urls: &[(String, String)], control: &str) {
    for (id, url) in urls {
        println!("Oort demo node {id}: {url}");
    }
    println!("Oort demo control: {control}");
    if let Some((_, first)) = urls.first() {
        println!(
            "Oort demo running: open {first} in two browser tabs and chat (Ctrl-C to stop); \
             each node's page shows the cluster and can restart any node"
        );
    }
}

/// Starts every node at once (they form the cluster together) and waits for their addresses.
async fn start_all(supervisor: &Arc<Supervisor>) -> anyhow::Result<()> {
    let starts = supervisor.nodes.iter().map(|node| {
        let node = node.clone();
        async move {
            let mut process = node.process.lock().await;
            let running = node.spawn().await?;
            *process = Some(running);
            anyhow::Ok(())
        }
    });
    for result in futures_util::future::join_all(starts).await {
        result?;
    }
    Ok(())
}

struct Supervisor {
    nodes: Vec<Arc<Node>>,
    chat: Arc<Chat>,
    http: reqwest::Client,
}

impl Supervisor {
    fn node(&self, id: &str) -> Option<&Arc<Node>> {
        self.nodes.iter().find(|node| node.id == id)
    }

    /// Each node's API base on loopback, for the backend's broadcasts.
    fn api_urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|node| format!("http://127.0.0.1:{}", node.port()))
            .collect()
    }

    /// Waits (at most READY_TIMEOUT) until every node is ready and names the same leader.
    async fn wait_ready(&self) {
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
    async fn ready_leader(&self, api: &str) -> Option<String> {
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
    async fn stop_all(&self) {
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
struct Node {
    id: String,
    exe: PathBuf,
    /// Its arguments but `--port`.
    args: Vec<String>,
    secret: String,
    /// The port it binds: the one it was given, then the one it took (so a restart keeps it).
    port: Mutex<u16>,
    url: Mutex<String>,
    state: Mutex<&'static str>,
    /// Held across a restart, so restarts of one node do not overlap.
    process: Arc<tokio::sync::Mutex<Option<Running>>>,
}

fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Node {
    fn port(&self) -> u16 {
        *locked(&self.port)
    }

    fn url(&self) -> String {
        locked(&self.url).clone()
    }

    fn state(&self) -> &'static str {
        *locked(&self.state)
    }

    fn set_state(&self, state: &'static str) {
        *locked(&self.state) = state;
    }

    /// Starts the node's process and waits (bounded) for the address it prints.
    async fn spawn(&self) -> anyhow::Result<Running> {
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
struct Running {
    pid: u32,
    /// Its end of file stops the node.
    stdin: Option<std::process::ChildStdin>,
    /// Its exit status, once it exited.
    exited: watch::Receiver<Option<String>>,
}

impl Running {
    fn has_exited(&self) -> bool {
        self.exited.borrow().is_some()
    }

    /// SIGTERM (the node drains), wait for the exit, SIGKILL after STOP_TIMEOUT.
    async fn stop(mut self, id: &str) {
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
async fn wait_exit(exited: &watch::Receiver<Option<String>>, timeout: Duration) -> bool {
    let mut exited = exited.clone();
    matches!(
        tokio::time::timeout(timeout, exited.wait_for(Option::is_some)).await,
        Ok(Ok(_))
    )
}

/// Sends a signal with kill(1) (this crate has no libc binding and forbids unsafe code).
async fn signal(pid: u32, name: &str) {
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

/// The NATS server the nodes cluster over.
struct Nats {
    url: String,
    /// Its end of file stops the shell, which stops nats-server.
    stdin: Mutex<Option<std::process::ChildStdin>>,
    pid: u32,
    exited: watch::Receiver<Option<String>>,
}

impl Nats {
    async fn start(spec: &ClusterDemo) -> anyhow::Result<Self> {
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

    async fn stop(&self) {
        locked(&self.stdin).take();
        if !wait_exit(&self.exited, Duration::from_secs(5)).await {
            signal(self.pid, "KILL").await;
        }
    }
}

/// `GET /nodes`.
async fn list_nodes(State(supervisor): State<Arc<Supervisor>>) -> Response {
    let mut nodes = Vec::new();
    for node in &supervisor.nodes {
        let (state, pid) = match node.process.try_lock() {
            Ok(process) => match process.as_ref() {
                Some(running) if running.has_exited() => ("exited", None),
                Some(running) => (node.state(), Some(running.pid)),
                None => (node.state(), None),
            },
            // Locked: being started, stopped or restarted.
            Err(_) => (node.state(), None),
        };
        nodes.push(json!({ "id": node.id, "url": node.url(), "state": state, "pid": pid }));
    }
    axum::Json(json!({ "nodes": nodes })).into_response()
}

/// `POST /nodes/{id}/restart`: answers `202` at once and restarts the node in the background.
async fn restart_node(
    State(supervisor): State<Arc<Supervisor>>,
    Path(id): Path<String>,
) -> Response {
    let Some(node) = supervisor.node(&id).cloned() else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({ "error": "no such node" })),
        )
            .into_response();
    };
    let Ok(mut process) = node.process.clone().try_lock_owned() else {
        return (
            StatusCode::CONFLICT,
            axum::Json(json!({ "error": "the node is already restarting" })),
        )
            .into_response();
    };
    node.set_state("stopping");
    tokio::spawn(async move {
        info!(node = %node.id, "restarting demo node");
        if let Some(running) = process.take() {
            running.stop(&node.id).await;
        }
        match node.spawn().await {
            Ok(running) => {
                info!(node = %node.id, url = %node.url(), "demo node restarted");
                *process = Some(running);
            }
            Err(err) => warn!(node = %node.id, error = %err, "cannot restart the demo node"),
        }
    });
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({ "restarting": id })),
    )
        .into_response()
}

/// Lets the nodes' pages (other origins: other ports) call the control endpoint.
async fn cors(State(supervisor): State<Arc<Supervisor>>, request: Request, next: Next) -> Response {
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|origin| origin.to_str().ok())
        .filter(|origin| {
            let port = origin
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok());
            port.is_some_and(|port| supervisor.nodes.iter().any(|node| node.port() == port))
        })
        .and_then(|origin| HeaderValue::from_str(origin).ok());
    let mut response = if request.method() == Method::OPTIONS {
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(origin) = origin {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, OPTIONS"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("Content-Type"),
        );
    }
    response
}
