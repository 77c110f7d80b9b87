//! The clustered router: a session directory replicated with raft (openraft) among the nodes
//! of a cluster, with NATS as the only transport. See docs/router.md for the flows.
//!
//! A node needs only NATS URLs, a cluster name and a node id: it announces itself on
//! `oort.<cluster>.hello`, the first `bootstrap_expect` nodes form the raft cluster, later
//! nodes join as learners, and the leader keeps `voters` voters.

mod control;
mod deliver;
mod membership;
mod nats;
mod network;
mod owner_link;
mod registrar;
mod status;
pub mod store;
pub mod types;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::Client;
use oort_common::cluster::{ControlRequest, ControlResponse, Owner, Subjects, raft_id};
use oort_common::config::{ClusterConfig, NatsAccess};
use oort_common::{DeliveryStatus, Epoch, NodeId, SessionKey};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use status::{ClusterStatus, MemberStatus};

use crate::RouterError;
use crate::request::{DeliveryRequest, LocalSessions};
use membership::Peers;
use owner_link::OwnerLinks;
use registrar::Registrar;
use store::{DirectoryReader, LogStore, StateMachine};
use types::{Raft, RaftId};

/// What a clustered router needs besides the gateway's sessions.
pub struct ClusterSettings {
    /// The `cluster` config section.
    pub config: ClusterConfig,
    /// The credentials and TLS material it names, read at start.
    pub nats_access: NatsAccess,
    /// This node's id (the configured one, or the hostname).
    pub node: NodeId,
    /// Where raft keeps its log and vote.
    pub data_dir: PathBuf,
    /// Log each delivery this node makes for another node (with its request id), as the
    /// access log does for API requests.
    pub log_deliveries: bool,
}

/// Metric handles the router updates on its hot paths; the gateway registers and renders them.
#[derive(Clone)]
pub struct ClusterMetrics {
    /// Time from submitting a directory write to its commit.
    pub commit_seconds: metrics::Histogram,
    /// Times the leader changed, as seen here.
    pub leader_changes: metrics::Counter,
    /// NATS disconnections.
    pub nats_disconnects: metrics::Counter,
    /// NATS (re)connections.
    pub nats_connects: metrics::Counter,
    /// Deliveries this node forwarded to other owners.
    pub deliveries_forwarded: metrics::Counter,
    /// NATS requests that carried them (forwarded / requests = the mean batch).
    pub delivery_requests: metrics::Counter,
}

/// A node of the cluster.
#[derive(Clone)]
pub struct ClusterRouter {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    node: NodeId,
    raft_id: RaftId,
    incarnation: Epoch,
    config: ClusterConfig,
    nats: Client,
    subjects: Subjects,
    raft: Raft,
    directory: DirectoryReader,
    sessions: Arc<dyn LocalSessions>,
    peers: std::sync::Mutex<Peers>,
    registrar: Registrar,
    owner_links: OwnerLinks,
    /// Our `NodeUp` is committed and applied here: registrations may flow.
    node_up: AtomicBool,
    /// A `NodeUp` attempt is running.
    coming_up: AtomicBool,
    nats_connected: Arc<AtomicBool>,
    leaving: AtomicBool,
    log_deliveries: bool,
    /// When this router started: members are not judged gone before a node timeout has
    /// passed, since a fresh leader has not heard anyone yet.
    started: std::time::Instant,
    /// The candidate this node granted a bootstrap to, and when (grants are exclusive).
    bootstrap_grant: Mutex<Option<(NodeId, std::time::Instant)>>,
    metrics: ClusterMetrics,
    stop: CancellationToken,
}

impl ClusterRouter {
    /// Connects to NATS, opens the raft storage, starts raft and the membership agent.
    pub async fn start(
        settings: ClusterSettings,
        sessions: Arc<dyn LocalSessions>,
        metrics: ClusterMetrics,
    ) -> Result<Self, RouterError> {
        let ClusterSettings {
            config,
            nats_access,
            node,
            data_dir,
            log_deliveries,
        } = settings;
        let raft_id = raft_id(&node);
        let subjects = Subjects::new(&config.name);
        let nats_connected = Arc::new(AtomicBool::new(false));
        let nats = nats::connect(
            &config,
            &nats_access,
            &node,
            nats_connected.clone(),
            metrics.clone(),
        )
        .await?;
        let log_store = LogStore::open(&data_dir).map_err(|err| {
            RouterError::Unavailable(format!(
                "cannot open raft storage in {}: {err}",
                data_dir.display()
            ))
        })?;
        let (applied_tx, applied_rx) = tokio::sync::mpsc::unbounded_channel();
        // The state machine starts from the snapshot saved beside the log, so a node whose log
        // was purged behind a snapshot restarts without the purged entries.
        let state_machine = StateMachine::open(&log_store, Some(applied_tx))
            .await
            .map_err(|err| {
                RouterError::Unavailable(format!("cannot open the directory snapshot: {err}"))
            })?;
        let directory = state_machine.reader();
        let raft_config = raft_config(&config)?;
        let network = network::NatsNetwork {
            nats: nats.clone(),
            subjects: subjects.clone(),
        };
        let raft = Raft::new(
            raft_id,
            Arc::new(raft_config),
            network,
            log_store,
            state_machine,
        )
        .await
        .map_err(|err| RouterError::Unavailable(format!("cannot start raft: {err}")))?;
        let incarnation = sessions.fresh_epoch();
        let stop = CancellationToken::new();
        let owner_links = OwnerLinks::new(
            nats.clone(),
            subjects.clone(),
            config.route_timeout.0,
            (
                metrics.deliveries_forwarded.clone(),
                metrics.delivery_requests.clone(),
            ),
            stop.clone(),
        );
        let inner = Arc::new(Inner {
            registrar: Registrar::new(),
            owner_links,
            node: node.clone(),
            raft_id,
            incarnation,
            config,
            nats: nats.clone(),
            subjects: subjects.clone(),
            raft: raft.clone(),
            directory,
            sessions,
            peers: std::sync::Mutex::new(Peers::default()),
            node_up: AtomicBool::new(false),
            coming_up: AtomicBool::new(false),
            nats_connected,
            leaving: AtomicBool::new(false),
            log_deliveries,
            started: std::time::Instant::now(),
            bootstrap_grant: Mutex::new(None),
            metrics,
            stop,
        });
        network::serve(nats.clone(), subjects.raft(raft_id), raft)
            .await
            .map_err(|err| RouterError::Unavailable(format!("cannot subscribe for raft: {err}")))?;
        control::serve(inner.clone()).await.map_err(|err| {
            RouterError::Unavailable(format!("cannot subscribe for control: {err}"))
        })?;
        deliver::serve(inner.clone()).await.map_err(|err| {
            RouterError::Unavailable(format!("cannot subscribe for deliveries: {err}"))
        })?;
        membership::start(inner.clone()).await?;
        registrar::start(inner.clone());
        tokio::spawn(watch_applied(inner.clone(), applied_rx));
        info!(node = %node, raft_id, "cluster router started");
        Ok(Self { inner })
    }

    /// This node's id.
    pub fn node_id(&self) -> &NodeId {
        &self.inner.node
    }

    /// Registers a session; returns once the registration is committed by the cluster.
    pub async fn register(&self, key: &SessionKey, epoch: Epoch) -> Result<(), RouterError> {
        if !self.is_ready() {
            return Err(RouterError::Unavailable(
                "this node has not joined the cluster yet".into(),
            ));
        }
        self.inner.registrar.register(key.clone(), epoch).await
    }

    /// Withdraws a registration (batched, not awaited beyond queueing).
    pub fn unregister(&self, key: &SessionKey, epoch: Epoch) {
        self.inner.registrar.unregister(key.clone(), epoch);
    }

    /// Delivers to every target wherever it is held: this node's sessions directly, other
    /// nodes' through one NATS request per owner.
    pub async fn deliver(&self, request: &DeliveryRequest) -> Vec<DeliveryStatus> {
        self.inner.deliver(request).await
    }

    /// Delivers several requests at once (`/v1/send/batch`): their cross-node parts share
    /// NATS requests and one round trip, and messages to one session keep their order.
    pub async fn deliver_all(&self, requests: &[DeliveryRequest]) -> Vec<Vec<DeliveryStatus>> {
        self.inner.deliver_all(requests).await
    }

    /// Sends `payload` to every session of the cluster: one NATS publish, each node fans out.
    pub async fn broadcast(
        &self,
        payload: &oort_common::Payload,
        request_id: &str,
    ) -> Result<(), RouterError> {
        self.inner.broadcast(payload, request_id).await
    }

    /// The node holding `key`: this one, else the local replica, else the leader's linearizable
    /// answer (so "none" is never a replica merely lagging).
    pub async fn owner(&self, key: &str) -> Result<Option<Owner>, RouterError> {
        if let Some(owner) = self.inner.directory.owner(key) {
            return Ok(Some(owner));
        }
        let request = ControlRequest::Lookup {
            keys: vec![SessionKey::from(key)],
        };
        match self.inner.call_leader(request).await? {
            ControlResponse::Owners(mut owners) => Ok(owners.pop().flatten()),
            other => Err(RouterError::Unavailable(format!(
                "unexpected lookup answer: {other:?}"
            ))),
        }
    }

    /// Ready for clients: connected to NATS, a member with a known leader, and our `NodeUp`
    /// applied (so the directory has caught up at least to our own joining).
    pub fn is_ready(&self) -> bool {
        let inner = &self.inner;
        inner.nats_connected.load(Ordering::Acquire)
            && inner.node_up.load(Ordering::Acquire)
            && !inner.leaving.load(Ordering::Acquire)
            && inner.raft.metrics().borrow().current_leader.is_some()
    }

    /// A view of the cluster for `/v1/cluster`.
    pub fn status(&self) -> ClusterStatus {
        status::build(&self.inner)
    }

    /// Leaves the cluster: the leader removes this node at once and purges its sessions.
    /// Bounded by the route timeout; then raft stops.
    pub async fn leave(&self) {
        let inner = &self.inner;
        inner.leaving.store(true, Ordering::Release);
        membership::announce(inner).await;
        let request = ControlRequest::Leave {
            node: inner.node.clone(),
        };
        match tokio::time::timeout(inner.config.route_timeout.0 * 2, inner.call_leader(request))
            .await
        {
            Ok(Ok(ControlResponse::Done)) => info!("left the cluster"),
            Ok(Ok(other)) => warn!(answer = ?other, "leaving the cluster was refused"),
            Ok(Err(err)) => warn!(error = %err, "could not leave the cluster"),
            Err(_) => warn!("leaving the cluster timed out"),
        }
        inner.stop.cancel();
        if let Err(err) = inner.raft.shutdown().await {
            warn!(error = %err, "raft did not stop cleanly");
        }
        let _ = inner.nats.flush().await;
    }
}

impl Inner {
    /// The current leader's raft id, as this node knows it.
    fn leader(&self) -> Option<RaftId> {
        self.raft.metrics().borrow().current_leader
    }

    fn is_leader(&self) -> bool {
        self.leader() == Some(self.raft_id)
    }

    /// The name of a member by raft id.
    fn member_name(&self, id: RaftId) -> Option<NodeId> {
        let metrics = self.raft.metrics().borrow().clone();
        metrics
            .membership_config
            .nodes()
            .find(|(member, _)| **member == id)
            .map(|(_, info)| NodeId::from(info.name.as_str()))
    }
}

fn raft_config(config: &ClusterConfig) -> Result<openraft::Config, RouterError> {
    let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let election = millis(config.election_timeout.0);
    openraft::Config {
        cluster_name: config.name.clone(),
        heartbeat_interval: millis(config.raft_heartbeat.0),
        election_timeout_min: election,
        election_timeout_max: election * 2,
        install_snapshot_timeout: millis(config.route_timeout.0).max(1000),
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(config.snapshot_every),
        // Keep a little log behind each snapshot (at most one snapshot interval) so a
        // briefly lagging follower catches up from the log instead of a whole snapshot.
        max_in_snapshot_log_to_keep: config.snapshot_every.min(1_000),
        // Below NATS's default 1 MiB maximum payload, with room for the envelope.
        snapshot_max_chunk_size: 256 * 1024,
        // Entries are batches of at most `registrar::MAX_BATCH_BYTES`, so one append stays
        // below NATS's maximum payload.
        max_payload_entries: 16,
        ..openraft::Config::default()
    }
    .validate()
    .map_err(|err| RouterError::Unavailable(format!("invalid raft settings: {err}")))
}

/// Reacts to applied directory commands that concern this node.
async fn watch_applied(
    inner: Arc<Inner>,
    mut applied: tokio::sync::mpsc::UnboundedReceiver<oort_common::cluster::DirectoryCommand>,
) {
    use oort_common::cluster::DirectoryCommand;
    while let Some(command) = applied.recv().await {
        match command {
            DirectoryCommand::NodeDown { node }
                if node == inner.node && !inner.leaving.load(Ordering::Acquire) =>
            {
                // The cluster declared this node dead (a partition, say) and purged its
                // sessions; their clients must reconnect, and this node must come up again.
                warn!("the cluster declared this node down: closing every session");
                inner.node_up.store(false, Ordering::Release);
                inner.sessions.close_all();
            }
            DirectoryCommand::Register { node, sessions } if node != inner.node => {
                for (key, _) in sessions {
                    // The key was registered on another node: the newer registration wins.
                    inner.sessions.evict(&key);
                }
            }
            _ => {}
        }
    }
}

/// The next message of `subscriber`, or `None` once it ends or the router stops: the loop of
/// every subscription this node serves.
async fn next_message(
    subscriber: &mut async_nats::Subscriber,
    stop: &CancellationToken,
) -> Option<async_nats::Message> {
    use futures_util::StreamExt;
    tokio::select! {
        message = subscriber.next() => message,
        () = stop.cancelled() => None,
    }
}
