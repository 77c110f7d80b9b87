//! `oort demo`: one node, a built-in chat backend and a chat page at `/`, so a newcomer sees
//! the whole flow (connect callback, receive callback, `/v1/publish` to a room's channel, a
//! room's presence) with one command. `oort demo --nodes N` (see [`cluster`]) runs N such nodes
//! as a cluster, with one backend.

mod backend;
mod cluster;

pub use cluster::{ClusterDemo, RESUME_SECRET_ENV, run_cluster};

use std::net::SocketAddr;
use std::path::PathBuf;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use oort_common::config::{Config, ListenAddr};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::{Gateway, Host, Listener, Listeners};

const PAGE: &str = include_str!("page.html");

/// Cluster settings for a demo node (see `oort demo --help`).
pub struct DemoCluster {
    /// NATS URLs.
    pub nats: String,
    /// This node's id (default: the hostname).
    pub node_id: Option<String>,
    /// How many demo nodes form the cluster.
    pub bootstrap_expect: usize,
    /// Where this node keeps its raft data (the binary picks a fresh temporary directory).
    pub data_dir: PathBuf,
}

/// How a demo node finds its backend.
#[derive(Clone, Debug, Default)]
pub struct DemoBackend {
    /// Use this backend (`http://127.0.0.1:PORT`) instead of starting one.
    pub url: Option<String>,
    /// The port of the `--nodes` supervisor's control endpoint, which the page's cluster panel
    /// and restart buttons use.
    pub control_port: Option<u16>,
}

/// Runs the demo on `host:port` until `shutdown` fires, alone or as a cluster node.
pub async fn run(
    host: &str,
    port: u16,
    cluster: Option<DemoCluster>,
    backend: DemoBackend,
    machine: &Host,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let listener = Listener::bind(&ListenAddr::Tcp {
        host: Some(host.to_owned()),
        port,
    })
    .await
    .map_err(|err| anyhow::anyhow!("cannot listen on {host}:{port}: {err} (try --port)"))?;
    let gateway_addr = listener
        .tcp_addr()
        .ok_or_else(|| anyhow::anyhow!("the demo needs a TCP listener"))?;
    let backend_url = match backend.url {
        Some(url) => url,
        None => {
            let chat = backend::Chat::new(vec![format!("http://{}", loopback(gateway_addr))])?;
            serve_backend(chat, shutdown.clone()).await?
        }
    };
    let page = page(backend.control_port);
    let rooms = RoomsProxy::new(&backend_url)?;
    let gateway = Gateway::start(demo_config(&backend_url, cluster), machine)
        .await?
        .with_client_routes(
            axum::Router::new()
                .route("/", get(move || async move { page }))
                .route(
                    "/demo/rooms/{room}",
                    get(move |Path(room): Path<String>| async move { rooms.get(&room).await }),
                ),
        );
    info!(
        "Oort demo: open http://{}/ in two browser tabs and chat",
        display_addr(host, gateway_addr)
    );
    announce(&display_addr(host, gateway_addr));
    gateway
        .run(
            Listeners {
                client: listener,
                api: None,
            },
            shutdown,
        )
        .await?;
    Ok(())
}

#[allow(
    clippy::print_stdout,
    reason = "the demo's address is its output, for people and scripts"
)]
fn announce(addr: &str) {
    println!(
        "Oort demo running: open http://{addr}/ in two browser tabs and chat (Ctrl-C to stop)"
    );
}

/// Serves the chat backend on a free loopback port until `shutdown`; returns its URL.
async fn serve_backend(
    chat: std::sync::Arc<backend::Chat>,
    shutdown: CancellationToken,
) -> anyhow::Result<String> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        let serve = axum::serve(listener, backend::routes(chat))
            .with_graceful_shutdown(shutdown.cancelled_owned());
        if let Err(err) = serve.await {
            tracing::error!(error = %err, "demo backend failed");
        }
    });
    Ok(url)
}

/// The page's read-only view of a room's members, `GET /demo/rooms/{room}`: relayed from the
/// backend's `GET /rooms/{room}` (on loopback, where the browser may not reach it), which asks
/// the gateway's API, so the page needs no API access of its own.
#[derive(Clone)]
struct RoomsProxy {
    backend: String,
    http: reqwest::Client,
}

impl RoomsProxy {
    fn new(backend: &str) -> anyhow::Result<Self> {
        let http = crate::tls::client_builder(rustls::RootCertStore::empty())?
            .timeout(std::time::Duration::from_secs(5))
            .build()?;
        Ok(Self {
            backend: backend.to_owned(),
            http,
        })
    }

    async fn get(&self, room: &str) -> Response {
        // Checked here too, so the name goes into the backend's path as it is.
        let Some(room) = backend::room_name(room) else {
            return (StatusCode::BAD_REQUEST, "not a room name").into_response();
        };
        let answer = match self
            .http
            .get(format!("{}/rooms/{room}", self.backend))
            .send()
            .await
        {
            Ok(answer) => answer,
            Err(err) => return (StatusCode::BAD_GATEWAY, err.to_string()).into_response(),
        };
        let status =
            StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        let content_type = if status.is_success() {
            "application/json"
        } else {
            "text/plain; charset=utf-8"
        };
        match answer.bytes().await {
            Ok(body) => (
                status,
                [
                    ("Content-Type", content_type),
                    ("Cache-Control", "no-store"),
                ],
                body,
            )
                .into_response(),
            Err(err) => (StatusCode::BAD_GATEWAY, err.to_string()).into_response(),
        }
    }
}

/// The chat page, told the control endpoint's port when there is one.
fn page(control_port: Option<u16>) -> Html<String> {
    let port = control_port
        .map(|port| port.to_string())
        .unwrap_or_default();
    Html(PAGE.replace(
        r#"<meta name="oort-demo-control" content="">"#,
        &format!(r#"<meta name="oort-demo-control" content="{port}">"#),
    ))
}

fn demo_config(backend: &str, cluster: Option<DemoCluster>) -> Config {
    let mut config = Config::default();
    if let Some(cluster) = cluster {
        config.cluster.nats = cluster
            .nats
            .split(',')
            .map(|url| url.trim().to_owned())
            .collect();
        config.cluster.name = "oort-demo".into();
        config.cluster.node_id = cluster.node_id.unwrap_or_default();
        config.cluster.bootstrap_expect = cluster.bootstrap_expect.max(1);
        config.cluster.data_dir = cluster.data_dir.display().to_string();
    }
    config.callback.connect = format!("{backend}/connect");
    config.callback.establish = format!("{backend}/establish");
    config.callback.receive = format!("{backend}/receive");
    config.callback.close = format!("{backend}/close");
    config.callback.timeout = oort_common::config::GoDuration::from_secs(5);
    config.suppress_access_log = true;
    config.shutdown_grace_period = oort_common::config::GoDuration::from_secs(5);
    config
}

/// The address the backend uses to reach the gateway: loopback when bound to every interface.
fn loopback(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    }
}

fn display_addr(host: &str, addr: SocketAddr) -> String {
    if host == "0.0.0.0" || host == "::" {
        format!("127.0.0.1:{}", addr.port())
    } else {
        addr.to_string()
    }
}
