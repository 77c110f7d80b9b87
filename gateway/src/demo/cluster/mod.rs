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

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::middleware::{self};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::backend::Chat;

mod control;
mod nats;
mod nodes;

use control::{cors, list_nodes, restart_node};
use nats::Nats;
use nodes::{Node, Supervisor};

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
