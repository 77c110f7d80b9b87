//! The running gateway: listeners, routes, and the drain on shutdown.

mod api_listener;
mod client_listener;
mod listener;
mod request_line;
mod rewind;
mod serve;
mod sse_direct;
mod unread_body;
mod write_deadline;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use oort_common::config::{Config, ConfigError};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

pub(crate) use listener::Connection;

use api_listener::ApiListener;
use client_listener::ClientListener;
pub use listener::Listener;

use crate::api;
use crate::host::Host;
use crate::sessions::{CloseCause, CloseCommand};
use crate::state::{AppState, StartError};
use crate::traces::{self, Traces};

/// Where the gateway listens.
pub struct Listeners {
    /// WebSocket clients (and the backend API too when `api` is `None`).
    pub client: Listener,
    /// The backend API, when it has a listener of its own.
    pub api: Option<Listener>,
}

impl Listeners {
    /// Binds the addresses the configuration names.
    pub async fn bind(config: &Config) -> anyhow::Result<Self> {
        let client_addr = config.client_listen()?;
        let client = Listener::bind(&client_addr)
            .await
            .map_err(|err| anyhow::anyhow!("cannot listen on {client_addr}: {err}"))?;
        let api = match config.api_listen()? {
            Some(addr) => Some(
                Listener::bind(&addr)
                    .await
                    .map_err(|err| anyhow::anyhow!("cannot listen on {addr}: {err}"))?,
            ),
            None => None,
        };
        Ok(Self { client, api })
    }
}

/// One gateway node.
pub struct Gateway {
    state: Arc<AppState>,
    extra_client_routes: Option<axum::Router>,
    /// The trace exporter, when `tracing.*` or `OTEL_TRACES_EXPORTER` turned it on.
    traces: Option<Traces>,
}

impl Gateway {
    /// Builds a gateway from a validated configuration and what the binary learnt about the
    /// host: single node, or joining the cluster `cluster.nats` names. Fails on values that
    /// validation could not judge alone (an unusable `callback.ca_file`, say) and when the
    /// cluster's storage cannot be opened.
    pub async fn start(config: Config, host: &Host) -> Result<Self, StartError> {
        let trace_settings = traces::settings(&config.tracing, &|name| std::env::var(name).ok());
        let state = AppState::new(config, host).await?;
        let traces = match &trace_settings {
            Some(settings) => traces::install(settings, state.router.node_id()).map_err(|err| {
                ConfigError::invalid(
                    "tracing.endpoint",
                    settings.endpoint.as_deref().unwrap_or(""),
                    err,
                )
            })?,
            None => None,
        };
        if let Some(settings) = &trace_settings {
            info!(
                protocol = settings.protocol,
                endpoint = settings
                    .endpoint
                    .as_deref()
                    .unwrap_or("(OTEL_* or default)"),
                "exporting traces"
            );
        }
        Ok(Self {
            state,
            extra_client_routes: None,
            traces,
        })
    }

    /// Adds routes to the client listener (the demo's chat page).
    pub fn with_client_routes(mut self, routes: axum::Router) -> Self {
        self.extra_client_routes = Some(routes);
        self
    }

    /// Serves until `shutdown` fires, then drains: readiness goes false, listeners stop
    /// accepting, requests in flight finish, every client gets Close 1001 after its queued
    /// messages, and close callbacks are sent, all within `shutdown_grace_period`. If the
    /// cluster router fails for good first, it drains the same way and returns the reason, so
    /// that the process exits with an error and is restarted.
    pub async fn run(
        self,
        listeners: Listeners,
        shutdown: CancellationToken,
    ) -> Result<(), RouterFailed> {
        let state = self.state;
        if let Err(err) = api::serve_over_nats(&state).await {
            warn!(error = %err, "the backend API is not served over NATS");
        }
        let (client_routes, api_routes) = api::routes(&state, listeners.api.is_some());
        let client_routes = match self.extra_client_routes {
            Some(extra) => client_routes.merge(extra),
            None => client_routes,
        };
        let stop_accepting = CancellationToken::new();
        let http = TaskTracker::new();
        log_listener("client", &listeners.client);
        let shares_api = api_routes.is_none();
        let clients = ClientListener::new(client_routes, state.clone(), shares_api);
        let clients = Arc::new(clients);
        spawn_serve(
            &http,
            listeners.client,
            &stop_accepting,
            move |io, peer, stop, tasks| {
                clients.accept(io, peer, stop, tasks);
            },
        );
        if let (Some(listener), Some(routes)) = (listeners.api, api_routes) {
            log_listener("api", &listener);
            let api = ApiListener::new(routes, &state);
            spawn_serve(
                &http,
                listener,
                &stop_accepting,
                move |io, peer, stop, tasks| {
                    api.accept(io, peer, stop, tasks);
                },
            );
        }
        let outcome = tokio::select! {
            () = shutdown.cancelled() => Ok(()),
            () = state.drain_requested.cancelled() => {
                info!("drain requested over the API");
                Ok(())
            }
            reason = state.router.failed() => {
                error!(%reason, "the cluster router failed; draining and exiting");
                Err(RouterFailed(reason))
            }
        };
        drain(&state, &http, &stop_accepting).await;
        if let Some(traces) = self.traces {
            traces.shutdown().await;
        }
        outcome
    }
}

/// The cluster router stopped for good (its raft failed); the node must be restarted.
#[derive(Debug, thiserror::Error)]
#[error("the cluster router failed: {0}")]
pub struct RouterFailed(pub String);

fn log_listener(name: &str, listener: &Listener) {
    match listener.local_addr() {
        Ok(addr) => info!(listener = name, %addr, "listening"),
        Err(err) => warn!(listener = name, error = %err, "listening on an unknown address"),
    }
}

/// What to do with each accepted connection: spawn its task on the tracker it is given.
trait OnAccept:
    Fn(Box<dyn Connection>, Option<SocketAddr>, &CancellationToken, &TaskTracker)
    + Send
    + Sync
    + 'static
{
}

impl<F> OnAccept for F where
    F: Fn(Box<dyn Connection>, Option<SocketAddr>, &CancellationToken, &TaskTracker)
        + Send
        + Sync
        + 'static
{
}

/// Accepts on `listener` until `stop` fires, handing every connection to `on_accept`.
fn spawn_serve(
    http: &TaskTracker,
    listener: Listener,
    stop: &CancellationToken,
    on_accept: impl OnAccept,
) {
    let connections = http.clone();
    let stop = stop.clone();
    http.spawn(async move {
        let accept = |io: Box<dyn Connection>, peer| on_accept(io, peer, &stop, &connections);
        match listener {
            Listener::Tcp(ref tcp) => {
                serve::accept_loop(tcp, &stop, |io, peer| accept(Box::new(io), peer)).await;
            }
            Listener::Unix(ref unix, _) => {
                serve::accept_loop(unix, &stop, |io, peer| accept(Box::new(io), peer)).await;
            }
        }
        // The listener (and a unix socket's file) goes away only once accepting has stopped.
        drop(listener);
    });
}

/// `oort.v1` sessions told to move linger here until their clients resume on other nodes,
/// which take their buffers. In a cluster, that is waited for until shortly before the
/// deadline (leaving time to leave the cluster); what is left then ends, and the backend is
/// told.
async fn see_out_lingering(state: &Arc<AppState>, grace: Duration, deadline: tokio::time::Instant) {
    if state.router.cluster_status().is_some() {
        let margin = (grace / 4).min(Duration::from_secs(5));
        let until = deadline.checked_sub(margin).unwrap_or(deadline);
        let waiting = state.registry.lingering().len();
        if waiting > 0 {
            info!(
                sessions = waiting,
                "waiting for oort.v1 clients to resume elsewhere"
            );
        }
        while tokio::time::Instant::now() < until && !state.registry.lingering().is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let left = state.registry.lingering();
    if !left.is_empty() {
        info!(
            sessions = left.len(),
            "ending oort.v1 sessions nobody resumed"
        );
    }
    let endings = left
        .into_iter()
        .filter(|durable| durable.end(None))
        .map(|durable| {
            let state = state.clone();
            async move {
                crate::connection::end_durable(&state, &durable, CloseCause::Shutdown).await;
            }
        });
    let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
    let _ = tokio::time::timeout(remaining, futures_util::future::join_all(endings)).await;
}

async fn drain(state: &Arc<AppState>, http: &TaskTracker, stop_accepting: &CancellationToken) {
    let grace = state.config.shutdown_grace_period.0;
    let deadline = tokio::time::Instant::now() + grace;
    info!(?grace, sessions = state.registry.len(), "shutting down");
    state.start_draining();
    stop_accepting.cancel();
    http.close();
    if tokio::time::timeout_at(deadline, http.wait())
        .await
        .is_err()
    {
        warn!("requests still in flight when the grace period ended");
    }
    let closing = state.registry.close_all(&CloseCommand::shutdown());
    info!(sessions = closing, "closing sessions");
    state.connections.close();
    if tokio::time::timeout_at(deadline, state.connections.wait())
        .await
        .is_err()
    {
        warn!(
            remaining = state.connections.len(),
            "sessions still closing when the grace period ended"
        );
    } else {
        info!("sessions closed");
    }
    see_out_lingering(state, grace, deadline).await;
    // Last, leave the cluster: the leader removes this node and purges what is left of its
    // sessions, so no send is routed here any more.
    let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
    if tokio::time::timeout(remaining, state.router.leave())
        .await
        .is_err()
    {
        warn!("leaving the cluster did not finish within the grace period");
    }
    info!("shutdown complete");
}
