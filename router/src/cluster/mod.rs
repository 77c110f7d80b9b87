//! The clustered router: a session directory replicated with raft (openraft) among the nodes
//! of a cluster, with NATS as the only transport. See docs/router.md for the flows.
//!
//! A node needs only NATS URLs, a cluster name and a node id: it announces itself on
//! `oort.<cluster>.hello`, the first `bootstrap_expect` nodes form the raft cluster, later
//! nodes join as learners, and the leader keeps `voters` voters.
//!
//! The parts, each holding only what it uses: `Core` (identity, raft, replica, bus), `Control`
//! (control requests, and following the leader), `Membership` (announcements, joining, the
//! leader's upkeep), `Registrar` (group commit), `Delivery` (routing sends), and the leader
//! watch (fast failover).

pub mod api_service;
mod bus;
mod channels;
mod control;
mod core;
mod deliver;
pub mod events;
mod leader_watch;
mod membership;
mod nats;
mod network;
mod owner_link;
mod peers;
pub(crate) mod raft_checks;
mod registrar;
mod replies;
mod snapshot_receiver;
mod status;
pub mod store;
mod stream;
pub mod types;
mod voters;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use oort_common::cluster::{
    ControlRequest, ControlResponse, DirectoryCommand, HandoverTail, NamedStreamAnswer,
    NamedStreamRequest, Owner, StreamAnswer, StreamRequest, Subjects,
};
use oort_common::config::{ClusterConfig, NatsAccess};
use oort_common::envelope::Sealer;
use oort_common::{DeliveryStatus, Epoch, NodeId, SessionKey};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use bus::{RejectReason, RejectedCounters};
pub use channels::MAX_PRESENCE_PAGE;
pub use status::{ClusterStatus, MemberStatus};

use crate::directory::StreamOwner;
use crate::epochs::EpochSource;
use crate::request::{DeliveryRequest, LocalSessions};
use crate::{Presence, PublishOutcome, RouterError};
use channels::Channels;
use control::Control;
use core::{AppendClock, Core, NatsState};
use deliver::Delivery;
use membership::Membership;
use peers::PeerTable;
use registrar::Registrar;
use store::{LogStore, StateMachine};
use types::Raft;

/// Applied commands waiting for the router at most; beyond, applying waits.
const APPLIED_QUEUE: usize = 1024;

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
    /// Registration epochs (persisted beside the raft data).
    pub epochs: Arc<EpochSource>,
    /// Log each delivery this node makes for another node (with its request id), as the
    /// access log does for API requests.
    pub log_deliveries: bool,
    /// `limits.max_sessions_per_user` and its policy.
    pub user_limit: oort_common::cluster::UserLimit,
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
    /// Messages from NATS dropped before use, by subject kind and reason.
    pub rejected: RejectedCounters,
    /// Round trips of the NATS requests carrying deliveries, per owner node.
    pub round_trip: OwnerHistograms,
}

/// Makes the round-trip histogram of one owner node (labelled by its id: as many series as
/// the cluster has had members, never one per session or request).
#[derive(Clone)]
pub struct OwnerHistograms(Arc<dyn Fn(&str) -> metrics::Histogram + Send + Sync>);

impl OwnerHistograms {
    /// Histograms made by `make(owner)`.
    pub fn new(make: impl Fn(&str) -> metrics::Histogram + Send + Sync + 'static) -> Self {
        Self(Arc::new(make))
    }

    pub(crate) fn for_owner(&self, owner: &str) -> metrics::Histogram {
        (self.0)(owner)
    }
}

/// A node of the cluster.
#[derive(Clone)]
pub struct ClusterRouter {
    core: Arc<Core>,
    control: Arc<Control>,
    membership: Arc<Membership>,
    registrar: Arc<Registrar>,
    delivery: Arc<Delivery>,
    channels: Arc<Channels>,
}

impl ClusterRouter {
    /// Connects to NATS, opens the raft storage and starts raft. The node starts serving the
    /// cluster in the background, once it is sure no other process uses its id.
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
            epochs,
            log_deliveries,
            user_limit,
        } = settings;
        let raft_id = oort_common::cluster::raft_id(&node);
        let subjects = Subjects::new(&config.name);
        let nats_state = Arc::new(NatsState::default());
        let nats = nats::connect(
            &config,
            &nats_access,
            &node,
            nats_state.clone(),
            metrics.clone(),
        )
        .await?;
        let secret = nats_access.cluster_secret.as_ref();
        let sealer = Sealer::new(secret.map(|s| s.expose().as_bytes()), &config.name);
        let bus = bus::Bus::new(nats.clone(), subjects, sealer, metrics.rejected.clone());
        let log_store = LogStore::open(&data_dir).map_err(|err| {
            RouterError::Unavailable(format!(
                "cannot open raft storage in {}: {err}",
                data_dir.display()
            ))
        })?;
        let (applied_tx, applied_rx) = mpsc::channel(APPLIED_QUEUE);
        // Consumed from now on: openraft re-applies the committed log inside `Raft::new`, and a
        // full channel would stall it there. What it re-applies is history, ignored until the
        // router exists.
        let watched = Arc::new(std::sync::OnceLock::new());
        tokio::spawn(watch_applied(watched.clone(), sessions.clone(), applied_rx));
        // The state machine starts from the snapshot saved beside the log, so a node whose log
        // was purged behind a snapshot restarts without the purged entries.
        let state_machine = StateMachine::open(&log_store, Some(applied_tx))
            .await
            .map_err(|err| {
                RouterError::Unavailable(format!("cannot open the directory snapshot: {err}"))
            })?;
        let directory = state_machine.reader();
        let network = network::NatsNetwork { bus: bus.clone() };
        let raft = Raft::new(
            raft_id,
            Arc::new(raft_config(&config)?),
            network,
            log_store,
            state_machine,
        )
        .await
        .map_err(|err| RouterError::Unavailable(format!("cannot start raft: {err}")))?;
        let incarnation = epochs.next();
        let core = Arc::new(Core {
            node: node.clone(),
            raft_id,
            incarnation,
            config,
            raft,
            directory,
            bus,
            metrics,
            nats: nats_state,
            last_append: AppendClock::default(),
            stop: CancellationToken::new(),
        });
        let peers = Arc::new(PeerTable::new(node.clone(), incarnation));
        let control = Arc::new(Control::new(core.clone(), peers.clone(), sessions.clone()));
        let membership = Arc::new(Membership::new(
            core.clone(),
            control.clone(),
            peers,
            epochs,
        ));
        let registrar = Arc::new(Registrar::new(user_limit));
        let delivery = Arc::new(Delivery::new(
            core.clone(),
            control.clone(),
            sessions.clone(),
            log_deliveries,
        ));
        let channels = Channels::new(
            core.clone(),
            control.clone(),
            registrar.clone(),
            delivery.clone(),
        );
        control.set_channels(channels.clone());
        membership.listen().await?;
        let router = Self {
            core,
            control,
            membership,
            registrar,
            delivery,
            channels,
        };
        let _ = watched.set(router.clone());
        tokio::spawn(router.clone().serve_when_unique());
        info!(node = %node, raft_id, "cluster router started");
        Ok(router)
    }

    /// Joins the cluster's traffic once no other process announces this node's id.
    async fn serve_when_unique(self) {
        self.membership.wait_until_unique().await;
        if self.core.stop.is_cancelled() {
            return;
        }
        let subscribed = async {
            network::serve(self.core.clone()).await?;
            self.control.serve().await?;
            stream::serve(&self.core, self.delivery.sessions()).await?;
            replies::serve(&self.core, self.delivery.sessions()).await?;
            self.delivery.serve().await
        };
        if let Err(err) = subscribed.await {
            warn!(error = %err, "cannot subscribe to the cluster's subjects; this node stays not ready");
            return;
        }
        self.membership.start();
        self.channels.start_sweeping();
        registrar::start(
            self.core.clone(),
            self.control.clone(),
            self.registrar.clone(),
        );
        tokio::spawn(leader_watch::run(
            self.core.clone(),
            self.membership.clone(),
        ));
    }

    /// This node's id.
    pub fn node_id(&self) -> &NodeId {
        &self.core.node
    }

    /// Registers a session; returns once the registration is committed by the cluster, with
    /// the log index it was committed at (which orders it against registrations of the same key
    /// elsewhere). Waits for a leader (bounded) when there is none just now.
    ///
    /// `user` is `Some` for a new session (with the user the connect callback named, if any)
    /// and `None` for a session moving from another node, which keeps its user.
    pub async fn register(
        &self,
        key: &SessionKey,
        epoch: Epoch,
        user: Option<Option<&str>>,
    ) -> Result<u64, RouterError> {
        if !self.membership.is_up() || !self.core.nats.is_connected() {
            return Err(RouterError::Unavailable(
                "this node has not joined the cluster".into(),
            ));
        }
        let user = user.map(|user| user.map(str::to_owned));
        self.registrar.register(key.clone(), epoch, user).await
    }

    /// The user's sessions and their nodes, from this node's replica.
    pub fn user_sessions(&self, user: &str) -> Vec<(SessionKey, oort_common::NodeId)> {
        self.core
            .directory
            .user_sessions(user)
            .into_iter()
            .map(|(key, owner)| (key, owner.node))
            .collect()
    }

    /// Withdraws a registration (batched, not awaited beyond queueing).
    pub fn unregister(&self, key: &SessionKey, epoch: Epoch) {
        self.registrar.unregister(key.clone(), epoch);
    }

    /// Delivers to every target wherever it is held: this node's sessions directly, other
    /// nodes' through one NATS request per owner.
    pub async fn deliver(&self, request: &DeliveryRequest) -> Vec<DeliveryStatus> {
        self.delivery.deliver(request).await
    }

    /// Delivers several requests at once (`/v1/send/batch`): their cross-node parts share
    /// NATS requests and one round trip, and messages to one session keep their order.
    pub async fn deliver_all(&self, requests: &[DeliveryRequest]) -> Vec<Vec<DeliveryStatus>> {
        self.delivery.deliver_all(requests).await
    }

    /// Sends `payload` to every session of the cluster: one NATS publish, each node fans out.
    pub async fn broadcast(
        &self,
        payload: &oort_common::Payload,
        request_id: &str,
    ) -> Result<(), RouterError> {
        self.delivery.broadcast(payload, request_id).await
    }

    /// Adds `keys` to `channels` (or removes them) wherever they are held.
    pub async fn subscribe(
        &self,
        keys: &[SessionKey],
        channels: &[String],
        join: bool,
    ) -> Vec<DeliveryStatus> {
        self.channels.subscribe(keys, channels, join).await
    }

    /// Publishes to `channels`: this node's subscribers directly, other nodes' over NATS
    /// (one message per channel, heard only by the nodes holding its subscribers).
    pub async fn publish(
        &self,
        channels: &[String],
        payload: &oort_common::Payload,
        request_id: &str,
    ) -> PublishOutcome {
        self.channels.publish(channels, payload, request_id).await
    }

    /// Serves the backend API over NATS with `service` (see [`api_service`]).
    pub async fn serve_api(
        &self,
        service: Arc<dyn api_service::ApiService>,
    ) -> Result<(), RouterError> {
        api_service::serve(&self.core, service).await
    }

    /// Where client events for backend workers go (`callback.nats_events`).
    pub fn events(&self) -> events::EventChannel {
        events::EventChannel::new(
            self.core.bus.plain().clone(),
            self.core.bus.subjects().clone(),
        )
    }

    /// This node's prefix for request correlation ids.
    pub fn reply_prefix(&self) -> String {
        replies::prefix(&self.core)
    }

    /// Carries a client's reply to the node waiting for it.
    pub async fn forward_reply(
        &self,
        id: &str,
        session: &SessionKey,
        payload: oort_common::Payload,
    ) {
        replies::forward(&self.core, &*self.delivery.sessions(), id, session, payload).await;
    }

    /// Who is subscribed to `channel`, cluster-wide.
    pub async fn presence(&self, channel: &str, after: Option<&str>, limit: usize) -> Presence {
        self.channels.presence(channel, after, limit).await
    }

    /// The node holding `key`: the local replica, else the leader's linearizable answer (so
    /// "none" is never a replica merely lagging).
    pub async fn owner(&self, key: &str) -> Result<Option<Owner>, RouterError> {
        if let Some(owner) = self.core.directory.owner(key) {
            return Ok(Some(owner));
        }
        let request = ControlRequest::Lookup {
            keys: vec![SessionKey::from(key)],
        };
        match self.control.call_leader(request).await? {
            ControlResponse::Owners(mut owners) => Ok(owners.pop().flatten()),
            other => Err(RouterError::Unavailable(format!(
                "unexpected lookup answer: {other:?}"
            ))),
        }
    }

    /// Claims the Durable Stream `name` for this node: a raft write, committed by a majority,
    /// then read back from this node's replica once it has applied it. The answer is the
    /// stream's owner after the claim: this node (live) when it won, or was the live owner
    /// already; another node (live) when that node holds it. `Unavailable` when the write did
    /// not commit in time (no leader, no quorum, bounded by twice `cluster.route_timeout`), or
    /// the directory refused the claim because this node is not up there.
    pub async fn claim_stream(&self, name: &str) -> Result<StreamOwner, RouterError> {
        if !self.membership.is_up() || !self.core.nats.is_connected() {
            return Err(RouterError::Unavailable(
                "this node has not joined the cluster".into(),
            ));
        }
        let command = DirectoryCommand::ClaimStream {
            node: self.core.node.clone(),
            name: name.to_owned(),
        };
        let (response, index) = self.write(command).await?;
        // The leader answers once the entry is committed; this replica applies it a moment
        // later (the next append tells it the commit). Waiting for that makes the answer this
        // replica's, so that later reads here agree with it.
        let deadline = tokio::time::Instant::now() + self.core.config.route_timeout.0;
        let applied = self
            .core
            .wait_until(deadline, |m| {
                m.last_applied.is_some_and(|applied| applied.index >= index)
            })
            .await;
        let owner = if applied {
            self.core.directory.stream(name)
        } else {
            // Not applied here in time: the leader knows.
            self.lookup_stream(name).await?
        };
        match owner {
            Some(owner) if response.refused.is_empty() || owner.live => Ok(owner),
            // Refused with no live owner to show for it: this node is down or unknown in the
            // directory (declared dead, or its NodeUp not applied yet).
            _ => Err(RouterError::Unavailable(
                "the directory refused the claim: this node is not up there".into(),
            )),
        }
    }

    /// The owner of the Durable Stream `name`: this node's replica when it names a live owner,
    /// else the leader's linearizable answer, so that "no such stream" and "its owner is gone"
    /// are never a replica merely lagging. `Unavailable` when the leader could not be asked.
    pub async fn stream_owner(&self, name: &str) -> Result<Option<StreamOwner>, RouterError> {
        match self.core.directory.stream(name) {
            Some(owner) if owner.live => Ok(Some(owner)),
            _ => self.lookup_stream(name).await,
        }
    }

    /// The owner of the Durable Stream `name` in this node's own replica, asking nobody.
    pub fn stream_owner_in_replica(&self, name: &str) -> Option<StreamOwner> {
        self.core.directory.stream(name)
    }

    /// Withdraws this node's claim of `name` made under `generation` (a raft write); a newer
    /// claim, by any node, is left alone. Returns once committed.
    pub async fn drop_stream(&self, name: &str, generation: u64) -> Result<(), RouterError> {
        let command = DirectoryCommand::DropStream {
            node: self.core.node.clone(),
            name: name.to_owned(),
            generation,
        };
        self.write(command).await.map(|_| ())
    }

    /// Asks the leader for the stream's entry, read linearizably.
    async fn lookup_stream(&self, name: &str) -> Result<Option<StreamOwner>, RouterError> {
        let request = ControlRequest::LookupStream {
            name: name.to_owned(),
        };
        match self.control.call_leader(request).await? {
            ControlResponse::StreamOwner(found) => Ok(found.map(|(entry, live)| StreamOwner {
                node: entry.node,
                generation: entry.generation,
                live,
            })),
            ControlResponse::Failed(reason) => Err(RouterError::Unavailable(reason)),
            other => Err(RouterError::Unavailable(format!(
                "unexpected stream lookup answer: {other:?}"
            ))),
        }
    }

    /// Commits one command through the leader; answers what applying it did and its index.
    async fn write(
        &self,
        command: DirectoryCommand,
    ) -> Result<(oort_common::cluster::DirectoryResponse, u64), RouterError> {
        match self
            .control
            .call_leader(ControlRequest::Write(command))
            .await?
        {
            ControlResponse::Written { response, index } => Ok((response, index)),
            ControlResponse::Failed(reason) => Err(RouterError::Unavailable(reason)),
            other => Err(RouterError::Unavailable(format!(
                "unexpected write answer: {other:?}"
            ))),
        }
    }

    /// Asks `previous`, which held the `oort.v1` session `key` (created under `id`) before
    /// this node took it over in the directory, for what the client has not seen after
    /// `seen`. `None` when that node no longer has it (it crashed, or the session ended).
    pub async fn take_over(
        &self,
        previous: &NodeId,
        key: &SessionKey,
        id: u64,
        seen: u64,
    ) -> Result<Option<HandoverTail>, RouterError> {
        let request = ControlRequest::HandOver {
            key: key.clone(),
            id,
            seen,
        };
        match self
            .control
            .call(oort_common::cluster::raft_id(previous), &request)
            .await?
        {
            ControlResponse::Tail(tail) => Ok(tail),
            other => Err(RouterError::Unavailable(format!(
                "unexpected hand-over answer: {other:?}"
            ))),
        }
    }

    /// Serves `request` on `owner`, which holds the session's stream, over
    /// `.stream.<raft_id>`; `wait` is how long the owner may hold a read for a message.
    pub async fn stream(
        &self,
        owner: &NodeId,
        request: &StreamRequest,
        wait: Duration,
    ) -> Result<StreamAnswer, RouterError> {
        stream::call(
            &self.core,
            oort_common::cluster::raft_id(owner),
            request,
            wait,
        )
        .await
    }

    /// Serves `request` on `owner`, which owns the named stream, over `.dstream.<raft_id>`;
    /// `wait` is how long the owner may hold a read for a message.
    pub async fn named_stream(
        &self,
        owner: &NodeId,
        request: &NamedStreamRequest,
        wait: Duration,
    ) -> Result<NamedStreamAnswer, RouterError> {
        stream::call_named(
            &self.core,
            oort_common::cluster::raft_id(owner),
            request,
            wait,
        )
        .await
    }

    /// The owner of `key` in this node's own replica, without asking anyone: what this node
    /// has applied (for tests and operators checking replication).
    pub fn owner_in_replica(&self, key: &str) -> Option<Owner> {
        self.core.directory.owner(key)
    }

    /// Ready for clients: connected to NATS, a member with a known leader, our `NodeUp`
    /// applied (so the directory has caught up at least to our own joining), and not leaving.
    pub fn is_ready(&self) -> bool {
        self.core.nats.is_connected() && self.membership.is_up() && self.core.has_working_leader()
    }

    /// Resolves if this node's raft stops for good (a storage failure, say): the node can no
    /// longer serve the cluster, and the gateway exits so that it is restarted.
    pub async fn failed(&self) -> String {
        let mut metrics = self.core.raft.metrics();
        loop {
            if let Err(fatal) = &metrics.borrow().running_state {
                return fatal.to_string();
            }
            if metrics.changed().await.is_err() {
                return "raft stopped".to_owned();
            }
        }
    }

    /// A view of the cluster for `/v1/cluster`.
    pub fn status(&self) -> ClusterStatus {
        status::build(&self.core, &self.membership.peers, self.is_ready())
    }

    /// Leaves the cluster: the leader purges this node's sessions and takes it out of the
    /// membership (a voter is replaced by a caught-up learner in the same change). Bounded by
    /// twice the route timeout; then raft stops.
    pub async fn leave(&self) {
        let core = &self.core;
        self.membership.start_leaving().await;
        let request = ControlRequest::Leave {
            node: core.node.clone(),
            incarnation: core.incarnation,
        };
        match tokio::time::timeout(
            core.config.route_timeout.0 * 2,
            self.control.call_leader(request),
        )
        .await
        {
            Ok(Ok(ControlResponse::Done)) => info!("left the cluster"),
            Ok(Ok(other)) => warn!(answer = ?other, "leaving the cluster was refused"),
            Ok(Err(err)) => warn!(error = %err, "could not leave the cluster"),
            Err(_) => warn!("leaving the cluster timed out"),
        }
        core.stop.cancel();
        if let Err(err) = core.raft.shutdown().await {
            warn!(error = %err, "raft did not stop cleanly");
        }
        core.bus.flush().await;
    }
}

/// Reacts to applied directory commands that concern this node's sessions. Commands applied
/// before `router` is set are the committed log replayed at start: history, no session of this
/// run can be concerned.
async fn watch_applied(
    router: Arc<std::sync::OnceLock<ClusterRouter>>,
    sessions: Arc<dyn LocalSessions>,
    mut applied: mpsc::Receiver<store::Applied>,
) {
    while let Some((index, command, response)) = applied.recv().await {
        let Some(router) = router.get() else {
            continue;
        };
        let me = &router.core.node;
        for (key, owner) in response.evicted {
            if owner.node == *me {
                // A newer session of its user took its place (`limits.max_sessions_per_user`).
                sessions.evict(&key, owner.epoch);
            }
        }
        match command {
            DirectoryCommand::NodeDown { node }
                if node == *me
                    && !router.membership.is_leaving()
                    && router.membership.declared_down(index) =>
            {
                // The cluster declared this node dead (a partition, say) and purged its
                // sessions; their clients must reconnect, and this node must come up again.
                warn!("the cluster declared this node down: closing every session");
                router.registrar.clear_unregisters();
                sessions.close_all();
            }
            DirectoryCommand::Register {
                node,
                sessions: keys,
            } if node != *me => {
                for (key, _) in registered(keys, &response.refused) {
                    // The key was registered on another node: the newer registration wins.
                    sessions.superseded(&key, index);
                }
            }
            DirectoryCommand::Admit {
                node,
                sessions: keys,
                ..
            } if node != *me => {
                for (key, _, _) in registered(keys, &response.refused) {
                    sessions.superseded(&key, index);
                }
            }
            _ => {}
        }
    }
}

/// The entries of a registration command the directory did not refuse.
fn registered<T>(entries: Vec<T>, refused: &[u32]) -> Vec<T> {
    entries
        .into_iter()
        .enumerate()
        .filter(|(position, _)| !refused.contains(&(*position as u32)))
        .map(|(_, entry)| entry)
        .collect()
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
