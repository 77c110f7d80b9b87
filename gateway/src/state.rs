//! The state every handler and connection task shares.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use http::HeaderName;
use oort_common::NodeId;
use oort_common::config::{Config, ConfigError};
use oort_router::{ClusterSettings, EpochSource, Router};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::Admission;
use crate::callback::{CallbackClient, SetupError};
use crate::durable::BufferLimits;
use crate::durable::token::TokenKeys;
use crate::host::Host;
use crate::metrics::Metrics;
use crate::sessions::{ChannelTable, QueueLimits, SessionRegistry};
use crate::stats::Stats;

/// Shared by every request and connection of one gateway.
pub(crate) struct AppState {
    pub config: Config,
    /// `config.session_header`, parsed once.
    pub session_header: HeaderName,
    pub registry: Arc<SessionRegistry>,
    pub router: Router,
    pub callbacks: CallbackClient,
    /// Connects, client messages, closes and presence changes for `WatchEvents`.
    pub feed: crate::feed::EventFeed,
    pub metrics: Metrics,
    /// `channels.metrics`: the channels whose subscribers here `/metrics` counts.
    pub channel_gauges: Vec<(String, metrics::Gauge)>,
    /// What clients may cost before the connect callback accepts them (`limits.*`,
    /// `client_address.*`).
    pub admission: Admission,
    pub stats: Arc<Stats>,
    /// Makes and checks `oort.v1` resume tokens.
    pub tokens: TokenKeys,
    /// The named Durable Streams this node owns.
    pub streams: Arc<crate::named_streams::StreamStore>,
    /// Every WebSocket connection task, so shutdown can wait for them (and their close
    /// callbacks).
    pub connections: TaskTracker,
    /// Fired by `POST /v1/drain` (a Kubernetes preStop hook): drains as SIGTERM does.
    pub drain_requested: CancellationToken,
    /// Connect requests in progress plus open WebSocket connections, for `max_connections`.
    open_connections: AtomicUsize,
    draining: AtomicBool,
}

/// Holds one slot of `limits.max_connections` until dropped.
pub(crate) struct ConnectionSlot(Arc<AppState>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::AcqRel);
        self.0
            .metrics
            .connections
            .set(self.0.open_connections.load(Ordering::Relaxed) as f64);
    }
}

/// Why a gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A config value this build cannot use.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// A config value that cannot be used: a file it names, or what the file holds.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The cluster could not be joined (NATS, raft storage).
    #[error("cannot join the cluster")]
    Cluster(#[source] oort_router::RouterError),
}

impl From<oort_router::RouterError> for StartError {
    fn from(err: oort_router::RouterError) -> Self {
        match err {
            oort_router::RouterError::Config { key, value, reason } => {
                Self::Config(ConfigError::invalid(&key, value, reason))
            }
            other => Self::Cluster(other),
        }
    }
}

impl AppState {
    pub(crate) async fn new(config: Config, host: &Host) -> Result<Arc<Self>, StartError> {
        let hostname = host.hostname.as_str();
        let endpoint = config.effective_endpoint(hostname);
        let session_header =
            HeaderName::try_from(config.session_header.as_str()).map_err(|err| SetupError {
                key: "session_header".into(),
                value: config.session_header.clone(),
                reason: err.to_string(),
            })?;
        let metrics = Metrics::new();
        let callbacks = CallbackClient::new(&config, &endpoint, host, &metrics)?;
        let admission = Admission::new(&config, &metrics)?;
        let limits = QueueLimits {
            max_messages: config.queue_max_messages(),
            max_bytes: config.queue.max_bytes,
            slow_consumer_timeout: config.queue.slow_consumer_timeout.0,
        };
        let buffer_limits = BufferLimits {
            max_messages: config.session.buffer_messages,
            max_bytes: config.session.buffer_bytes,
            max_age: config.session.buffer_ttl.0,
        };
        let tokens = resume_tokens(&config, host);
        let streams = Arc::new(crate::named_streams::StreamStore::new(
            crate::named_streams::Retention::from_config(&config.streams),
        ));
        let node_id = if config.cluster.node_id.is_empty() {
            NodeId::from(hostname)
        } else {
            NodeId::from(config.cluster.node_id.as_str())
        };
        let (registry, router) = if config.cluster.enabled() {
            let data_dir = if config.cluster.data_dir.is_empty() {
                std::path::PathBuf::from("oort-data").join(node_id.as_str())
            } else {
                std::path::PathBuf::from(&config.cluster.data_dir)
            };
            let epochs = Arc::new(EpochSource::persisted(&data_dir).map_err(|err| {
                oort_router::RouterError::Unavailable(format!(
                    "cannot keep epochs in {}: {err}",
                    data_dir.display()
                ))
            })?);
            let registry = Arc::new(SessionRegistry::new(
                limits,
                buffer_limits,
                epochs.clone(),
                ChannelTable::new(config.channels.max_per_session, config.reports_presence()),
            ));
            let settings = ClusterSettings {
                config: config.cluster.clone(),
                nats_access: host.nats_access.clone(),
                node: node_id,
                data_dir,
                epochs,
                log_deliveries: !config.suppress_access_log,
                user_limit: config.limits.user_limit(),
            };
            let router = Router::cluster(settings, registry.clone(), metrics.cluster()).await?;
            (registry, router)
        } else {
            let epochs = Arc::new(EpochSource::in_memory());
            let registry = Arc::new(SessionRegistry::new(
                limits,
                buffer_limits,
                epochs,
                ChannelTable::new(config.channels.max_per_session, config.reports_presence()),
            ));
            let router = Router::local(node_id, registry.clone(), config.limits.user_limit());
            (registry, router)
        };
        if let Some(events) = router.events() {
            callbacks.use_events(events);
        }
        let ended = registry.take_ended();
        let channel_gauges = metrics.channel_gauges(&config.channels.metrics);
        let feed = crate::feed::EventFeed::new(
            config.callback.event_feed,
            router.node_id().to_string(),
            router.events(),
        );
        let state = Arc::new(Self {
            channel_gauges,
            tokens,
            streams,
            config,
            session_header,
            registry,
            router,
            feed,
            callbacks,
            metrics,
            admission,
            stats: Arc::new(Stats::default()),
            connections: TaskTracker::new(),
            drain_requested: CancellationToken::new(),
            open_connections: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
        });
        if let Some(ended) = ended {
            tokio::spawn(crate::connection::see_out_ended(
                Arc::downgrade(&state),
                ended,
            ));
        }
        state.registry.serve_named_streams(Arc::downgrade(&state));
        tokio::spawn(crate::connection::sweep_idle(Arc::downgrade(&state)));
        if state.config.streams.enabled() {
            tokio::spawn(crate::named_streams::sweep_expired(Arc::downgrade(&state)));
        }
        if state.config.reports_presence() {
            tokio::spawn(crate::callback::report_presence(Arc::downgrade(&state)));
        }
        Ok(state)
    }

    /// Takes a connection slot, or `None` when `limits.max_connections` is reached.
    pub(crate) fn try_connection_slot(self: &Arc<Self>) -> Option<ConnectionSlot> {
        let max = self.config.limits.max_connections;
        let taken =
            self.open_connections
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                    (max == 0 || open < max).then_some(open + 1)
                });
        let open = taken.ok()? + 1;
        self.metrics.connections.set(open as f64);
        Some(ConnectionSlot(self.clone()))
    }

    /// True once shutdown has begun: readiness is false and connects are refused.
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
        // HTTP readers held here are answered now: their clients' next requests (through
        // other nodes) move the sessions there.
        self.registry.start_draining();
    }

    /// Ready to serve: not draining and the router can serve.
    pub(crate) fn is_ready(&self) -> bool {
        !self.is_draining() && self.router.is_ready()
    }
}

/// The resume token keys: `session.resume_secret` (or its file), else one derived from
/// `cluster.secret` (every node derives the same), else a random one that only this process
/// knows.
fn resume_tokens(config: &Config, host: &Host) -> TokenKeys {
    use ring::hmac;
    let secret: Vec<u8> = if let Some(secret) = &host.resume_secret {
        secret.expose().as_bytes().to_vec()
    } else if let Some(cluster) = &host.nats_access.cluster_secret {
        let key = hmac::Key::new(hmac::HMAC_SHA256, cluster.expose().as_bytes());
        hmac::sign(&key, b"oort resume tokens v1").as_ref().to_vec()
    } else {
        if config.cluster.enabled() {
            tracing::warn!(
                "neither session.resume_secret nor cluster.secret is set: oort.v1 clients can \
                 resume only on the node they were on, until it restarts"
            );
        }
        let mut random = [0u8; 32];
        rand::Rng::fill(&mut rand::rng(), &mut random[..]);
        random.to_vec()
    };
    let previous: Vec<&[u8]> = config
        .session
        .previous_resume_secrets
        .iter()
        .map(|secret| secret.expose().as_bytes())
        .collect();
    TokenKeys::new(
        &config.cluster.name,
        &secret,
        &previous,
        config.session.resume_token_ttl.0,
    )
}
