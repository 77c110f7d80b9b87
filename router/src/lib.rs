//! Who owns a session, and how a message gets there.
//!
//! The gateway asks a [`Router`] to register the sessions it accepts and to deliver payloads to
//! sessions wherever they are held. The router never touches a socket: it reaches the sessions
//! of its own node through the [`LocalSessions`] trait that the gateway implements.
//!
//! **Architecture Invariant:** this crate knows nothing of HTTP, WebSockets or axum.
//!
//! Single node, the router is in-process ([`Router::local`]): the gateway's session table is the
//! whole directory. The clustered router (a raft-replicated directory plus a NATS backbone) keeps
//! this interface.

mod channel;
pub mod cluster;
pub mod directory;
mod epochs;
mod local;
mod request;
mod session_table;
mod snapshot_encoder;
pub mod trace;

use std::sync::Arc;

use oort_common::{DeliveryStatus, Epoch, NodeId, SessionKey};

pub use channel::{Presence, PublishOutcome};
pub use cluster::MAX_PRESENCE_PAGE;
pub use cluster::api_service::{ApiAnswer, ApiService, STATUS_HEADER};
pub use cluster::events::{EventChannel, EventError};
pub use cluster::{
    ClusterMetrics, ClusterRouter, ClusterSettings, ClusterStatus, MemberStatus, OwnerHistograms,
    RejectReason, RejectedCounters,
};
pub use directory::StreamOwner;
pub use epochs::EpochSource;
pub use local::LocalRouter;
pub use request::{BoxedAnswer, BoxedNamedAnswer, DeliveryRequest, LocalSessions};

/// Why the router could not do what was asked.
#[derive(Clone, Debug, thiserror::Error)]
pub enum RouterError {
    /// The directory cannot take writes right now (no leader, shutting down).
    #[error("the session directory is unavailable: {0}")]
    Unavailable(String),
    /// The session's user holds `limits.max_sessions_per_user` sessions already, and the limit
    /// refuses new ones.
    #[error("user {0:?} has as many sessions as limits.max_sessions_per_user allows")]
    UserLimit(String),
    /// A setting passed validation but cannot be used: a certificate that does not parse, an
    /// NKey seed with a bad checksum. The value is a path, or `<redacted>` for a secret.
    #[error("invalid value {value:?} for key `{key}`: {reason}")]
    Config {
        /// The config key.
        key: String,
        /// What may be shown of its value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl RouterError {
    pub(crate) fn config(key: &str, value: &str, reason: impl Into<String>) -> Self {
        Self::Config {
            key: key.to_owned(),
            value: value.to_owned(),
            reason: reason.into(),
        }
    }
}

/// The router a gateway node uses. An enum rather than a trait object: there are exactly two
/// implementations, and static dispatch keeps the send path free of boxing.
pub enum Router {
    /// Single node: every session is local.
    Local(LocalRouter),
    /// A cluster: a raft-replicated directory over NATS.
    Cluster(ClusterRouter),
}

impl Router {
    /// A single-node router over the gateway's own sessions.
    pub fn local(
        node_id: NodeId,
        sessions: Arc<dyn LocalSessions>,
        user_limit: oort_common::cluster::UserLimit,
    ) -> Self {
        Self::Local(LocalRouter::new(node_id, sessions, user_limit))
    }

    /// Joins (or forms) the cluster the settings describe.
    pub async fn cluster(
        settings: ClusterSettings,
        sessions: Arc<dyn LocalSessions>,
        metrics: ClusterMetrics,
    ) -> Result<Self, RouterError> {
        ClusterRouter::start(settings, sessions, metrics)
            .await
            .map(Self::Cluster)
    }

    /// This node's id.
    pub fn node_id(&self) -> &NodeId {
        match self {
            Self::Local(router) => router.node_id(),
            Self::Cluster(router) => router.node_id(),
        }
    }

    /// Makes `key` reachable through every node. Returns once that is true, so the gateway can
    /// complete the client's upgrade knowing any send will find it. The answer is the position
    /// of the registration in the directory's history (a raft log index; 0 single node), which
    /// orders it against registrations of the same key on other nodes.
    ///
    /// `user` is the user the connect callback named for a new session (`None`: none); the
    /// registration is refused ([`RouterError::UserLimit`]) or the user's oldest session closed
    /// when that takes the user past `limits.max_sessions_per_user`. A session moving between
    /// nodes keeps its user: see [`Router::register_moved`].
    pub async fn register(
        &self,
        key: &SessionKey,
        epoch: Epoch,
        user: Option<&str>,
    ) -> Result<u64, RouterError> {
        match self {
            Self::Local(router) => router.register(key, epoch, user).map(|()| 0),
            Self::Cluster(router) => router.register(key, epoch, Some(user)).await,
        }
    }

    /// Registers a session taken over from another node: it keeps its user.
    pub async fn register_moved(&self, key: &SessionKey, epoch: Epoch) -> Result<u64, RouterError> {
        match self {
            Self::Local(_) => Ok(0),
            Self::Cluster(router) => router.register(key, epoch, None).await,
        }
    }

    /// The user's sessions, oldest first, and the nodes holding them (as this node's replica
    /// of the directory says).
    pub fn user_sessions(&self, user: &str) -> Vec<(SessionKey, NodeId)> {
        match self {
            Self::Local(router) => router.user_sessions(user),
            Self::Cluster(router) => router.user_sessions(user),
        }
    }

    /// Withdraws the registration made under `epoch`; a newer registration of the same key is
    /// left alone. Does not wait.
    pub fn unregister(&self, key: &SessionKey, epoch: Epoch) {
        match self {
            Self::Local(router) => router.unregister(key, epoch),
            Self::Cluster(router) => router.unregister(key, epoch),
        }
    }

    /// Delivers one payload to every target, wherever it is held. The statuses line up with
    /// `request.targets`.
    pub async fn deliver(&self, request: &DeliveryRequest) -> Vec<DeliveryStatus> {
        match self {
            Self::Local(router) => router.deliver(request),
            Self::Cluster(router) => router.deliver(request).await,
        }
    }

    /// Delivers several requests in order; one status list per request. In a cluster their
    /// cross-node parts travel together.
    pub async fn deliver_all(&self, requests: &[DeliveryRequest]) -> Vec<Vec<DeliveryStatus>> {
        match self {
            Self::Local(router) => requests.iter().map(|r| router.deliver(r)).collect(),
            Self::Cluster(router) => router.deliver_all(requests).await,
        }
    }

    /// Sends `payload` to every session. Single node, returns how many sessions took it;
    /// clustered, the publish is confirmed and each node fans out on its own (`None`).
    pub async fn broadcast(
        &self,
        payload: &oort_common::Payload,
        request_id: &str,
    ) -> Result<Option<usize>, RouterError> {
        match self {
            Self::Local(router) => Ok(Some(router.broadcast(payload))),
            Self::Cluster(router) => router.broadcast(payload, request_id).await.map(|()| None),
        }
    }

    /// Adds `keys` to `channels` (`join`) or removes them, wherever the sessions are held;
    /// one status per key. A join answered `ok` is in force cluster-wide: every later publish
    /// to the channel, through any node, reaches the session and counts it (once the
    /// publishing node has applied the directory entry that records its node's interest).
    pub async fn subscribe(
        &self,
        keys: &[SessionKey],
        channels: &[String],
        join: bool,
    ) -> Vec<DeliveryStatus> {
        match self {
            Self::Local(router) => router.subscribe(keys, channels, join),
            Self::Cluster(router) => router.subscribe(keys, channels, join).await,
        }
    }

    /// Sends `payload` to every session subscribed to any of `channels`, on every node; a
    /// session in several of them gets it once.
    pub async fn publish(
        &self,
        channels: &[String],
        payload: &oort_common::Payload,
        request_id: &str,
    ) -> PublishOutcome {
        match self {
            Self::Local(router) => router.publish(channels, payload),
            Self::Cluster(router) => router.publish(channels, payload, request_id).await,
        }
    }

    /// Serves the backend API as a NATS service (clustered only: a single node has no NATS).
    pub async fn serve_api(&self, service: Arc<dyn ApiService>) -> Result<(), RouterError> {
        match self {
            Self::Local(_) => Ok(()),
            Self::Cluster(router) => router.serve_api(service).await,
        }
    }

    /// Where client events for backend workers go, when clustered (`callback.nats_events`).
    pub fn events(&self) -> Option<EventChannel> {
        match self {
            Self::Local(_) => None,
            Self::Cluster(router) => Some(router.events()),
        }
    }

    /// The prefix of the correlation ids of this node's requests (`/v1/request`): whoever
    /// holds the client that answers sends the reply to the node it names.
    pub fn reply_prefix(&self) -> String {
        match self {
            Self::Local(_) => "0".to_owned(),
            Self::Cluster(router) => router.reply_prefix(),
        }
    }

    /// A client of this node answered request `id`: the reply goes to the node waiting for it
    /// (this one, or the one its id names).
    pub async fn forward_reply(
        &self,
        id: &str,
        session: &SessionKey,
        payload: oort_common::Payload,
    ) {
        match self {
            Self::Local(router) => router.sessions().client_reply(id, session, payload),
            Self::Cluster(router) => router.forward_reply(id, session, payload).await,
        }
    }

    /// Who is subscribed to `channel`, cluster-wide: the count, and up to `limit` sessions
    /// after `after` in key order.
    pub async fn presence(&self, channel: &str, after: Option<&str>, limit: usize) -> Presence {
        match self {
            Self::Local(router) => router.presence(channel, after, limit),
            Self::Cluster(router) => router.presence(channel, after, limit).await,
        }
    }

    /// The node holding `key`, if any.
    pub async fn owner(&self, key: &str) -> Result<Option<NodeId>, RouterError> {
        match self {
            Self::Local(router) => Ok(router.owner(key)),
            Self::Cluster(router) => Ok(router.owner(key).await?.map(|owner| owner.node)),
        }
    }

    /// The node holding `key` according to this node alone: its own replica of the directory,
    /// asking nobody (single node, the session table is the directory).
    pub fn owner_in_replica(&self, key: &str) -> Option<NodeId> {
        match self {
            Self::Local(router) => router.owner(key),
            Self::Cluster(router) => router.owner_in_replica(key).map(|owner| owner.node),
        }
    }

    /// Takes the `oort.v1` session `key` over from `previous` (see
    /// [`ClusterRouter::take_over`]); single node there is no other node to ask.
    pub async fn take_over(
        &self,
        previous: &NodeId,
        key: &SessionKey,
        id: u64,
        seen: u64,
    ) -> Result<Option<oort_common::cluster::HandoverTail>, RouterError> {
        match self {
            Self::Local(_) => Ok(None),
            Self::Cluster(router) => router.take_over(previous, key, id, seen).await,
        }
    }

    /// Serves `request` on the node holding the stream (`owner`, another node): see
    /// [`ClusterRouter::stream`]. Single node, every stream is local and this is never needed.
    pub async fn stream(
        &self,
        owner: &NodeId,
        request: &oort_common::cluster::StreamRequest,
        wait: std::time::Duration,
    ) -> Result<oort_common::cluster::StreamAnswer, RouterError> {
        match self {
            Self::Local(_) => Ok(oort_common::cluster::StreamAnswer::Over),
            Self::Cluster(router) => router.stream(owner, request, wait).await,
        }
    }

    /// Claims the Durable Stream `name` for this node, and answers its owner afterwards:
    /// this node when it won the claim or already held the stream live, else the live owner
    /// (compare `node` with [`Router::node_id`]). A claim wins when the stream has no entry or
    /// its owner is not live, and then gets a generation greater than any the stream had.
    ///
    /// Clustered it is a raft write (a majority's fsync, plus this replica applying it):
    /// about a commit's time, bounded by twice `cluster.route_timeout`;
    /// [`RouterError::Unavailable`] when it could not be committed, or this node is not up in
    /// the directory. Single node it always wins at once, with a generation that grows within
    /// the process and starts from the wall clock (in milliseconds), so a restart continues
    /// above the previous run's.
    pub async fn claim_stream(&self, name: &str) -> Result<StreamOwner, RouterError> {
        match self {
            Self::Local(router) => Ok(router.claim_stream()),
            Self::Cluster(router) => router.claim_stream(name).await,
        }
    }

    /// The owner of the Durable Stream `name`, live or not (`live: false`: its node is down,
    /// or restarted since its claim, and the stream's contents are gone), or `None` when the
    /// directory has no entry. Clustered, a miss or an owner that is not live in this node's
    /// replica is confirmed at the leader. Single node: always `None` (the gateway's own store
    /// is the whole truth).
    pub async fn stream_owner(&self, name: &str) -> Result<Option<StreamOwner>, RouterError> {
        match self {
            Self::Local(_) => Ok(None),
            Self::Cluster(router) => router.stream_owner(name).await,
        }
    }

    /// The owner of the Durable Stream `name` in this node's replica alone, asking nobody
    /// (`None` single node).
    pub fn stream_owner_in_replica(&self, name: &str) -> Option<StreamOwner> {
        match self {
            Self::Local(_) => None,
            Self::Cluster(router) => router.stream_owner_in_replica(name),
        }
    }

    /// Ends generation `generation` of `name` in the directory (the stream was deleted or
    /// expired; any node may ask, whichever node owned it). A newer claim, by any node, is
    /// left alone. Clustered, a raft write; nothing to do single node.
    pub async fn drop_stream(&self, name: &str, generation: u64) -> Result<(), RouterError> {
        match self {
            Self::Local(_) => Ok(()),
            Self::Cluster(router) => router.drop_stream(name, generation).await,
        }
    }

    /// Serves `request` on `owner`, the node that owns the named stream (see
    /// [`ClusterRouter::named_stream`]). Single node, every stream is local and this is never
    /// needed: the answer is [`NamedStreamAnswer::NotHere`].
    pub async fn named_stream(
        &self,
        owner: &NodeId,
        request: &oort_common::cluster::NamedStreamRequest,
        wait: std::time::Duration,
    ) -> Result<oort_common::cluster::NamedStreamAnswer, RouterError> {
        match self {
            Self::Local(_) => Ok(oort_common::cluster::NamedStreamAnswer::NotHere),
            Self::Cluster(router) => router.named_stream(owner, request, wait).await,
        }
    }

    /// True while the router can serve new clients.
    pub fn is_ready(&self) -> bool {
        match self {
            Self::Local(_) => true,
            Self::Cluster(router) => router.is_ready(),
        }
    }

    /// The cluster's state, when clustered.
    pub fn cluster_status(&self) -> Option<ClusterStatus> {
        match self {
            Self::Local(_) => None,
            Self::Cluster(router) => Some(router.status()),
        }
    }

    /// Resolves with the reason if the router fails for good; never, single node.
    pub async fn failed(&self) -> String {
        match self {
            Self::Local(_) => std::future::pending().await,
            Self::Cluster(router) => router.failed().await,
        }
    }

    /// Leaves the cluster (the leader removes this node and purges its sessions at once), then
    /// stops. Nothing to do single node.
    pub async fn leave(&self) {
        if let Self::Cluster(router) = self {
            router.leave().await;
        }
    }
}
