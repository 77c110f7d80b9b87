//! Control requests between nodes on `oort.<cluster>.ctl.<raft_id>`: bootstrap grants, joins
//! and leaves (to the leader), forwarded directory writes, linearizable lookups (of sessions
//! and of Durable Streams' owners), pings, and
//! hand-overs of `oort.v1` sessions to the node a client resumed on; and the client side of
//! them, including following the leader as it changes.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use oort_common::cluster::{
    ControlRequest, ControlResponse, DirectoryCommand, NodeInfo, SubjectKind, raft_id,
};
use oort_common::{Epoch, NodeId, SessionKey, wire};
use openraft::ChangeMembers;
use tokio::sync::Mutex;
use tracing::{debug, info, warn};

use super::bus::{RejectReason, RequestError};
use super::core::Core;
use super::peers::PeerTable;
use super::types::RaftId;
use super::voters::{self, Change, VoterView};
use crate::RouterError;
use crate::request::LocalSessions;

/// Control requests served at once; more wait in NATS's buffer.
const CONCURRENT_REQUESTS: usize = 32;

/// A learner this close to the leader's last log index counts as caught up.
const CAUGHT_UP_ENTRIES: u64 = 100;

/// Serves control requests to this node and sends control requests to others.
pub(crate) struct Control {
    core: Arc<Core>,
    peers: Arc<PeerTable>,
    /// The candidate this node granted a bootstrap to, and when (grants are exclusive).
    bootstrap_grant: Mutex<Option<(NodeId, Instant)>>,
    /// This node's sessions, for hand-overs.
    sessions: Arc<dyn LocalSessions>,
    /// This node's channels, for subscriptions and presence queries from other nodes.
    channels: super::channels::ChannelsCell,
}

impl Control {
    pub(crate) fn new(
        core: Arc<Core>,
        peers: Arc<PeerTable>,
        sessions: Arc<dyn LocalSessions>,
    ) -> Self {
        Self {
            sessions,
            core,
            peers,
            bootstrap_grant: Mutex::new(None),
            channels: super::channels::ChannelsCell::new(),
        }
    }

    /// Hands over the channels, which are built after this.
    pub(crate) fn set_channels(&self, channels: Arc<super::channels::Channels>) {
        let _ = self.channels.set(channels);
    }

    /// Answers control requests addressed to this node until the router stops.
    pub(crate) async fn serve(self: &Arc<Self>) -> Result<(), async_nats::SubscribeError> {
        let core = &self.core;
        let inbox = core
            .bus
            .subscribe(
                core.bus.subjects().control(core.raft_id),
                SubjectKind::Control,
            )
            .await?;
        let control = self.clone();
        inbox.serve_concurrently(core.stop.clone(), CONCURRENT_REQUESTS, move |message| {
            let control = control.clone();
            async move {
                let Some(reply_to) = message.reply else {
                    return;
                };
                let timeout = control.core.config.route_timeout.0;
                let response = match wire::decode::<ControlRequest>(&message.body) {
                    // The caller gives up after the route timeout; so does the work for it.
                    Ok(request) => {
                        match tokio::time::timeout(timeout, control.handle(request)).await {
                            Ok(response) => response,
                            Err(_) => ControlResponse::Failed("timed out".into()),
                        }
                    }
                    Err(err) => {
                        control.core.bus.reject(
                            SubjectKind::Control,
                            RejectReason::Malformed,
                            &err,
                        );
                        return;
                    }
                };
                control
                    .core
                    .bus
                    .answer(reply_to, &wire::encode(&response))
                    .await;
            }
        });
        Ok(())
    }

    /// Handles one control request here.
    pub(crate) async fn handle(&self, request: ControlRequest) -> ControlResponse {
        match request {
            ControlRequest::BootstrapGrant { candidate, members } => {
                ControlResponse::Grant(self.grant_bootstrap(candidate, &members).await)
            }
            ControlRequest::Join { node } => self.as_leader(|| self.add_learner(node)).await,
            ControlRequest::Leave { node, incarnation } => {
                self.as_leader(|| self.leave(node, incarnation)).await
            }
            ControlRequest::Write(command) => self.as_leader(|| self.write_here(command)).await,
            ControlRequest::Lookup { keys } => self.as_leader(|| self.lookup_here(keys)).await,
            ControlRequest::LookupStream { name } => {
                self.as_leader(|| self.lookup_stream_here(name)).await
            }
            ControlRequest::Ping => ControlResponse::Done,
            ControlRequest::HandOver { key, id, seen } => {
                ControlResponse::Tail(self.sessions.hand_over(&key, id, seen))
            }
            ControlRequest::Subscribe {
                keys,
                channels,
                join,
            } => match self.channels.get() {
                Some(all) if valid_channels(&channels) => {
                    ControlResponse::Statuses(all.subscribe_here(&keys, &channels, join).await)
                }
                Some(_) => ControlResponse::Failed("invalid channel names".into()),
                None => ControlResponse::Failed("channels are not ready".into()),
            },
            ControlRequest::Presence {
                channel,
                after,
                limit,
            } => match self.channels.get() {
                Some(all) => all.presence_here(
                    &channel,
                    after.as_ref().map(SessionKey::as_str),
                    limit as usize,
                ),
                None => ControlResponse::Failed("channels are not ready".into()),
            },
        }
    }

    async fn as_leader<F, Fut>(&self, work: F) -> ControlResponse
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = ControlResponse>,
    {
        if self.core.is_leader() {
            work().await
        } else {
            ControlResponse::NotLeader {
                leader: self.core.leader().and_then(|id| self.core.member_name(id)),
            }
        }
    }

    /// One grant per node at a time, never once a cluster exists, and only to the lowest node
    /// id known. A grant lapses after a node timeout, so a candidate that died before forming
    /// the cluster does not block the next one forever.
    async fn grant_bootstrap(&self, candidate: NodeId, members: &[NodeId]) -> bool {
        let core = &self.core;
        let timeout = core.config.node_timeout.0;
        let initialized = core.raft.is_initialized().await.unwrap_or(true);
        let mut granted = self.bootstrap_grant.lock().await;
        let peers = self.peers.alive_names(timeout);
        let lowest = peers.iter().chain(std::iter::once(&core.node)).min();
        let free = match granted.as_ref() {
            None => true,
            Some((previous, at)) => *previous == candidate || at.elapsed() > timeout,
        };
        let ok = !initialized
            && !self.peers.cluster_seen(timeout)
            && free
            && lowest == Some(&candidate)
            && members.contains(&core.node);
        if ok {
            *granted = Some((candidate.clone(), Instant::now()));
        }
        info!(%candidate, granted = ok, "bootstrap grant requested");
        ok
    }

    async fn add_learner(&self, node: NodeId) -> ControlResponse {
        let id = raft_id(&node);
        if self.core.membership().get_node(&id).is_some() {
            return ControlResponse::Done;
        }
        let info = NodeInfo {
            name: node.to_string(),
        };
        match self.core.raft.add_learner(id, info, false).await {
            Ok(_) => {
                info!(%node, "added a learner");
                ControlResponse::Done
            }
            Err(err) => ControlResponse::Failed(err.to_string()),
        }
    }

    /// A node asks to leave. A late or repeated request from an earlier run of a node that has
    /// restarted since is ignored.
    async fn leave(&self, node: NodeId, incarnation: Epoch) -> ControlResponse {
        let current = if node == self.core.node {
            Some(self.core.incarnation)
        } else {
            self.peers.incarnation_of(&node)
        };
        if current.is_some_and(|current| current != incarnation) {
            info!(%node, "ignoring a leave from an earlier run of a node");
            return ControlResponse::Done;
        }
        self.remove_node(node, true).await
    }

    /// Purges `node`'s sessions, then takes it out of the membership if that is safe: a voter
    /// is replaced by a caught-up learner in the same change, and a change that would leave
    /// fewer live voters than a quorum is not made (`voters.rs`). `node_is_live` says whether
    /// the node can still vote in the change (a draining node can, a dead one cannot).
    pub(crate) async fn remove_node(&self, node: NodeId, node_is_live: bool) -> ControlResponse {
        if let response @ (ControlResponse::Failed(_) | ControlResponse::NotLeader { .. }) = self
            .write_here(DirectoryCommand::NodeDown { node: node.clone() })
            .await
        {
            return response;
        }
        let id = raft_id(&node);
        if self.core.membership().get_node(&id).is_none() {
            return ControlResponse::Done;
        }
        let mut view = self.voter_view().await;
        if node_is_live {
            view.live.insert(id);
        } else {
            view.live.remove(&id);
        }
        let result = match voters::remove(&view, id) {
            Change::Voters { voters, .. } => {
                info!(%node, voters = ?self.names(&voters), "replacing a voter that is going");
                self.core
                    .raft
                    .change_membership(ChangeMembers::ReplaceAllVoters(voters), false)
                    .await
            }
            Change::RemoveLearner(learner) => {
                self.core
                    .raft
                    .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([learner])), false)
                    .await
            }
            Change::Keep(reason) => {
                warn!(%node, reason, "the node stays a voter for now");
                return ControlResponse::Done;
            }
        };
        match result {
            Ok(_) => {
                info!(%node, "removed from the cluster");
                ControlResponse::Done
            }
            Err(err) => ControlResponse::Failed(err.to_string()),
        }
    }

    /// Keeps the configured number of voters: promotes a live, caught-up learner while there
    /// are fewer, and makes one a learner again when there are more. Only between membership
    /// changes: during one, the voters are the union of two sets.
    pub(crate) async fn promote_if_needed(&self) {
        let membership = self.core.membership();
        if membership.get_joint_config().len() > 1 {
            return;
        }
        let voters = membership.voter_ids().count();
        if voters > self.core.config.voters {
            let view = self.voter_view().await;
            if let Some(Change::Voters { voters, .. }) = voters::demote(&view, self.core.raft_id) {
                info!(voters = ?self.names(&voters), "one voter too many: making it a learner again");
                if let Err(err) = self
                    .core
                    .raft
                    .change_membership(ChangeMembers::ReplaceAllVoters(voters), true)
                    .await
                {
                    warn!(error = %err, "demotion failed");
                }
            }
            return;
        }
        if voters >= self.core.config.voters || membership.learner_ids().next().is_none() {
            return;
        }
        let view = self.voter_view().await;
        if let Some(Change::Voters { voters, .. }) = voters::promote(&view) {
            info!(voters = ?self.names(&voters), "promoting a learner to voter");
            if let Err(err) = self
                .core
                .raft
                .change_membership(ChangeMembers::ReplaceAllVoters(voters), true)
                .await
            {
                warn!(error = %err, "promotion failed");
            }
        }
    }

    /// The membership as the leader sees it, with liveness probed now.
    async fn voter_view(&self) -> VoterView {
        let metrics = self.core.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership().clone();
        let members: Vec<RaftId> = membership.nodes().map(|(id, _)| *id).collect();
        let leader_index = metrics.last_log_index.unwrap_or(0);
        let matched = metrics.replication.clone().unwrap_or_default();
        let caught_up = membership
            .learner_ids()
            .filter(|id| {
                matched
                    .get(id)
                    .copied()
                    .flatten()
                    .is_some_and(|log| log.index + CAUGHT_UP_ENTRIES >= leader_index)
            })
            .collect();
        VoterView {
            voters: membership.voter_ids().collect(),
            learners: membership.learner_ids().collect(),
            live: self.probe(&members).await,
            caught_up,
            target: self.core.config.voters,
        }
    }

    fn names(&self, ids: &BTreeSet<RaftId>) -> Vec<String> {
        ids.iter()
            .map(|id| {
                self.core
                    .member_name(*id)
                    .map_or_else(|| id.to_string(), |name| name.to_string())
            })
            .collect()
    }

    /// The nodes among `ids` that answer a ping now (this node always does). A node whose NATS
    /// connection is gone is known at once: NATS answers "no responders".
    pub(crate) async fn probe(&self, ids: &[RaftId]) -> BTreeSet<RaftId> {
        let timeout = self.core.config.route_timeout.0.min(Duration::from_secs(1));
        let pings = ids.iter().map(|id| async move {
            if *id == self.core.raft_id {
                return Some(*id);
            }
            let answer = self
                .call_with_timeout(*id, &ControlRequest::Ping, timeout)
                .await;
            matches!(answer, Ok(ControlResponse::Done)).then_some(*id)
        });
        futures_util::future::join_all(pings)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// Commits a command through this node's raft, which must be the leader.
    pub(crate) async fn write_here(&self, command: DirectoryCommand) -> ControlResponse {
        match self.core.raft.client_write(command).await {
            Ok(written) => ControlResponse::Written {
                response: written.data,
                index: written.log_id.index,
            },
            Err(err) => match err.forward_to_leader::<NodeInfo>() {
                Some(forward) => ControlResponse::NotLeader {
                    leader: forward
                        .leader_node
                        .as_ref()
                        .map(|n| NodeId::from(n.name.as_str())),
                },
                None => ControlResponse::Failed(err.to_string()),
            },
        }
    }

    async fn lookup_here(&self, keys: Vec<SessionKey>) -> ControlResponse {
        match self.core.raft.ensure_linearizable().await {
            Ok(_) => ControlResponse::Owners(self.core.directory.owners(&keys)),
            Err(err) => ControlResponse::Failed(err.to_string()),
        }
    }

    /// The stream's entry and its liveness, as of a linearizable read: every claim and drop
    /// committed before the request arrived is in the answer.
    async fn lookup_stream_here(&self, name: String) -> ControlResponse {
        match self.core.raft.ensure_linearizable().await {
            Ok(_) => ControlResponse::StreamOwner(self.core.directory.stream_entry(&name)),
            Err(err) => ControlResponse::Failed(err.to_string()),
        }
    }

    /// Sends a request to the leader (handling it here when this node leads), and follows the
    /// leadership: a request out to a leader that is replaced meanwhile is sent again to the
    /// new one at once, rather than after its timeout. Writes are idempotent, so sending one
    /// twice is harmless.
    pub(crate) async fn call_leader(
        &self,
        request: ControlRequest,
    ) -> Result<ControlResponse, RouterError> {
        let core = &self.core;
        let deadline = tokio::time::Instant::now() + core.config.route_timeout.0 * 2;
        loop {
            if tokio::time::Instant::now() >= deadline {
                return Err(RouterError::Unavailable(
                    "no leader answered in time".into(),
                ));
            }
            let leader = self.wait_for_leader(deadline).await?;
            let response = if leader == core.raft_id {
                // Bounded: a leader that lost its quorum cannot commit, and would wait forever.
                tokio::time::timeout_at(deadline, self.handle(request.clone()))
                    .await
                    .map_err(|_| {
                        RouterError::Unavailable("the write did not commit in time".into())
                    })
            } else {
                tokio::select! {
                    answer = self.call(leader, &request) => answer,
                    // Only a new leader cuts the wait short; at the deadline the loop ends.
                    true = self.leader_replaced(leader, deadline) => continue,
                }
            };
            let now = tokio::time::Instant::now();
            match response {
                Ok(ControlResponse::NotLeader { .. }) if now < deadline => {
                    // Leadership is moving; this node's view catches up within a heartbeat.
                    self.leader_replaced(
                        leader,
                        (now + core.config.raft_heartbeat.0).min(deadline),
                    )
                    .await;
                }
                Ok(ControlResponse::NotLeader { leader: hint }) => {
                    return Err(RouterError::Unavailable(format!(
                        "leader unknown (last hint: {hint:?})"
                    )));
                }
                Err(RouterError::Unavailable(reason)) if now < deadline => {
                    // The leader is gone or did not answer: wait for its successor.
                    debug!(reason, "the leader did not answer; waiting for a new one");
                    self.leader_replaced(leader, deadline).await;
                }
                other => return other,
            }
        }
    }

    /// The current leader, waiting for one until `deadline`.
    async fn wait_for_leader(&self, deadline: tokio::time::Instant) -> Result<RaftId, RouterError> {
        self.core
            .wait_until(deadline, |m| m.current_leader.is_some())
            .await;
        self.core
            .leader()
            .ok_or_else(|| RouterError::Unavailable("no raft leader".into()))
    }

    /// Returns once the leader is no longer `leader` (true), or at `deadline` (false).
    async fn leader_replaced(&self, leader: RaftId, deadline: tokio::time::Instant) -> bool {
        self.core
            .wait_until(deadline, |m| m.current_leader != Some(leader))
            .await
    }

    /// One control request to another node, bounded by the route timeout.
    pub(crate) async fn call(
        &self,
        target: RaftId,
        request: &ControlRequest,
    ) -> Result<ControlResponse, RouterError> {
        self.call_with_timeout(target, request, self.core.config.route_timeout.0)
            .await
    }

    async fn call_with_timeout(
        &self,
        target: RaftId,
        request: &ControlRequest,
        timeout: Duration,
    ) -> Result<ControlResponse, RouterError> {
        let bus = &self.core.bus;
        let answer = bus
            .request(
                bus.subjects().control(target),
                &wire::encode(request),
                timeout,
            )
            .await
            .map_err(|err| match err {
                RequestError::NoResponders => {
                    RouterError::Unavailable(format!("node {target} does not answer"))
                }
                other => RouterError::Unavailable(other.to_string()),
            })?;
        wire::decode(&answer).map_err(|err| {
            bus.reject(SubjectKind::Reply, RejectReason::Malformed, &err);
            RouterError::Unavailable(err.to_string())
        })
    }
}

/// Channel names from another node are checked as the API checks them: they become subjects.
fn valid_channels(channels: &[String]) -> bool {
    channels
        .iter()
        .all(|channel| oort_common::channel::check_channel_name(channel).is_ok())
}
