//! `oort demo`: one node, a built-in chat backend and a chat page at `/`, so a newcomer sees
//! the whole flow (connect callback, receive callback, `/send` broadcast) with one command.

mod backend;

use std::net::SocketAddr;
use std::path::PathBuf;

use axum::response::Html;
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

/// Runs the demo on `host:port` until `shutdown` fires, alone or as a cluster node.
pub async fn run(
    host: &str,
    port: u16,
    cluster: Option<DemoCluster>,
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
    let backend_listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let backend_addr = backend_listener.local_addr()?;
    let chat = backend::Chat::new(&format!("http://{}", loopback(gateway_addr)))?;
    let backend_shutdown = shutdown.clone();
    tokio::spawn(async move {
        let serve = axum::serve(backend_listener, backend::routes(chat))
            .with_graceful_shutdown(backend_shutdown.cancelled_owned());
        if let Err(err) = serve.await {
            tracing::error!(error = %err, "demo backend failed");
        }
    });
    let gateway = Gateway::start(demo_config(backend_addr, cluster), machine)
        .await?
        .with_client_routes(axum::Router::new().route("/", get(|| async { Html(PAGE) })));
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

fn demo_config(backend: SocketAddr, cluster: Option<DemoCluster>) -> Config {
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
    config.callback.connect = format!("http://{backend}/connect");
    config.callback.establish = format!("http://{backend}/establish");
    config.callback.receive = format!("http://{backend}/receive");
    config.callback.close = format!("http://{backend}/close");
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
