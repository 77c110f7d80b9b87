//! Control requests between nodes on `oort.<cluster>.ctl.<raft_id>`: bootstrap grants, joins
//! and leaves (to the leader), forwarded directory writes and linearizable lookups.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::RequestErrorKind;
use oort_common::cluster::{ControlRequest, ControlResponse, DirectoryCommand, NodeInfo, raft_id};
use oort_common::{NodeId, wire};
use openraft::ChangeMembers;
use tracing::{debug, info, warn};

use super::Inner;
use super::types::RaftId;
use crate::RouterError;

/// Answers control requests addressed to this node.
pub(super) async fn serve(inner: Arc<Inner>) -> Result<(), async_nats::SubscribeError> {
    let mut requests = inner
        .nats
        .subscribe(inner.subjects.control(inner.raft_id))
        .await?;
    let stop = inner.stop.clone();
    tokio::spawn(async move {
        loop {
            let Some(message) = super::next_message(&mut requests, &stop).await else {
                break;
            };
            let Some(reply_to) = message.reply.clone() else {
                continue;
            };
            let inner = inner.clone();
            tokio::spawn(async move {
                let response = match wire::decode::<ControlRequest>(&message.payload) {
                    Ok(request) => inner.handle_control(request).await,
                    Err(err) => ControlResponse::Failed(err.to_string()),
                };
                if let Err(err) = inner
                    .nats
                    .publish(reply_to, wire::encode(&response).into())
                    .await
                {
                    debug!(error = %err, "cannot answer a control request");
                }
            });
        }
    });
    Ok(())
}

impl Inner {
    /// Handles one control request here.
    pub(super) async fn handle_control(&self, request: ControlRequest) -> ControlResponse {
        match request {
            ControlRequest::BootstrapGrant { candidate, members } => {
                ControlResponse::Grant(self.grant_bootstrap(candidate, &members).await)
            }
            ControlRequest::Join { node } => self.as_leader(|| self.add_learner(node)).await,
            ControlRequest::Leave { node } => self.as_leader(|| self.remove_node(node)).await,
            ControlRequest::Write(command) => self.as_leader(|| self.write_here(command)).await,
            ControlRequest::Lookup { keys } => self.as_leader(|| self.lookup_here(keys)).await,
        }
    }

    async fn as_leader<F, Fut>(&self, work: F) -> ControlResponse
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = ControlResponse>,
    {
        if self.is_leader() {
            work().await
        } else {
            ControlResponse::NotLeader {
                leader: self.leader().and_then(|id| self.member_name(id)),
            }
        }
    }

    /// One grant per node at a time, never once a cluster exists, and only to the lowest node
    /// id known. A grant lapses after a node timeout, so a candidate that died before forming
    /// the cluster does not block the next one forever.
    async fn grant_bootstrap(&self, candidate: NodeId, members: &[NodeId]) -> bool {
        let initialized = self.raft.is_initialized().await.unwrap_or(true);
        let mut granted = self.bootstrap_grant.lock().await;
        let peers = self.alive_nodes();
        let lowest = peers.iter().chain(std::iter::once(&self.node)).min();
        let free = match granted.as_ref() {
            None => true,
            Some((previous, at)) => {
                *previous == candidate || at.elapsed() > self.config.node_timeout.0
            }
        };
        let ok = !initialized
            && !self.cluster_seen()
            && free
            && lowest == Some(&candidate)
            && members.contains(&self.node);
        if ok {
            *granted = Some((candidate.clone(), std::time::Instant::now()));
        }
        info!(%candidate, granted = ok, "bootstrap grant requested");
        ok
    }

    async fn add_learner(&self, node: NodeId) -> ControlResponse {
        let id = raft_id(&node);
        let already = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&id)
            .is_some();
        if already {
            return ControlResponse::Done;
        }
        match self
            .raft
            .add_learner(
                id,
                NodeInfo {
                    name: node.to_string(),
                },
                false,
            )
            .await
        {
            Ok(_) => {
                info!(%node, "added a learner");
                ControlResponse::Done
            }
            Err(err) => ControlResponse::Failed(err.to_string()),
        }
    }

    /// Purges `node`'s sessions, then removes it from the membership (as voter or learner).
    /// The purge comes first because removing the leader itself ends its leadership.
    pub(super) async fn remove_node(&self, node: NodeId) -> ControlResponse {
        if let response @ (ControlResponse::Failed(_) | ControlResponse::NotLeader { .. }) = self
            .write_here(DirectoryCommand::NodeDown { node: node.clone() })
            .await
        {
            return response;
        }
        let id = raft_id(&node);
        let membership = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .clone();
        if membership.get_node(&id).is_none() {
            return ControlResponse::Done;
        }
        let is_voter = membership.voter_ids().any(|voter| voter == id);
        // A voter leaves the voters and the membership at once (retain = false); a learner is
        // just removed.
        let change = if is_voter {
            if membership.voter_ids().all(|voter| voter == id) {
                return ControlResponse::Failed("the last voter cannot leave".into());
            }
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        match self.raft.change_membership(change, false).await {
            Ok(_) => {
                info!(%node, "removed from the cluster");
                ControlResponse::Done
            }
            Err(err) => ControlResponse::Failed(err.to_string()),
        }
    }

    pub(super) async fn write_here(&self, command: DirectoryCommand) -> ControlResponse {
        match self.raft.client_write(command).await {
            Ok(response) => ControlResponse::Written(response.data),
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

    async fn lookup_here(&self, keys: Vec<oort_common::SessionKey>) -> ControlResponse {
        match self.raft.ensure_linearizable().await {
            Ok(_) => ControlResponse::Owners(
                keys.iter()
                    .map(|key| self.directory.owner(key.as_str()))
                    .collect(),
            ),
            Err(err) => ControlResponse::Failed(err.to_string()),
        }
    }

    /// Sends a request to the leader (handling it here when this node leads), following
    /// "not the leader" answers while leadership settles.
    pub(super) async fn call_leader(
        &self,
        request: ControlRequest,
    ) -> Result<ControlResponse, RouterError> {
        let timeout = self.config.route_timeout.0;
        let deadline = tokio::time::Instant::now() + timeout * 2;
        loop {
            let leader = match self.leader() {
                Some(leader) => leader,
                None => {
                    let _ = self
                        .raft
                        .wait(Some(timeout))
                        .metrics(|m| m.current_leader.is_some(), "a leader")
                        .await;
                    self.leader()
                        .ok_or_else(|| RouterError::Unavailable("no raft leader".into()))?
                }
            };
            let response = if leader == self.raft_id {
                self.handle_control(request.clone()).await
            } else {
                self.call(leader, &request).await?
            };
            match response {
                ControlResponse::NotLeader { .. } if tokio::time::Instant::now() < deadline => {
                    // Leadership is moving; our view catches up within a heartbeat or two.
                    tokio::time::sleep(self.config.raft_heartbeat.0).await;
                }
                ControlResponse::NotLeader { leader } => {
                    return Err(RouterError::Unavailable(format!(
                        "leader unknown (last hint: {leader:?})"
                    )));
                }
                other => return Ok(other),
            }
        }
    }

    /// One control request to another node.
    pub(super) async fn call(
        &self,
        target: RaftId,
        request: &ControlRequest,
    ) -> Result<ControlResponse, RouterError> {
        let payload = wire::encode(request);
        let nats_request = async_nats::Request::new()
            .payload(payload.into())
            .timeout(Some(self.config.route_timeout.0));
        match self
            .nats
            .send_request(self.subjects.control(target), nats_request)
            .await
        {
            Ok(message) => wire::decode(&message.payload)
                .map_err(|err| RouterError::Unavailable(err.to_string())),
            Err(err) if err.kind() == RequestErrorKind::NoResponders => Err(
                RouterError::Unavailable(format!("node {target} does not answer")),
            ),
            Err(err) => Err(RouterError::Unavailable(err.to_string())),
        }
    }

    /// Nodes heard from within the node timeout (this one excluded).
    pub(super) fn alive_nodes(&self) -> Vec<NodeId> {
        let timeout = self.config.node_timeout.0;
        self.peers()
            .alive(timeout)
            .map(|(node, _)| node.clone())
            .collect()
    }

    /// True when some peer reports membership of an initialized cluster.
    pub(super) fn cluster_seen(&self) -> bool {
        self.peers()
            .alive(self.config.node_timeout.0)
            .any(|(_, hello)| hello.in_cluster)
    }

    pub(super) fn peers(&self) -> std::sync::MutexGuard<'_, super::Peers> {
        self.peers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs [`Inner::come_up`] unless an attempt is already running.
    pub(super) fn come_up_in_background(self: Arc<Self>) {
        if self.coming_up.swap(true, Ordering::AcqRel) {
            return;
        }
        tokio::spawn(async move {
            self.come_up().await;
            self.coming_up.store(false, Ordering::Release);
        });
    }

    /// Commits this node's `NodeUp` once it is a member, then opens it for registrations.
    pub(super) async fn come_up(&self) {
        let epoch = self.sessions.fresh_epoch().max(self.incarnation);
        let command = DirectoryCommand::NodeUp {
            node: self.node.clone(),
            epoch,
        };
        match self.call_leader(ControlRequest::Write(command)).await {
            Ok(ControlResponse::Written(_)) => {
                // Wait until our own replica applied it, so reads here see it.
                let _ = self
                    .raft
                    .wait(Some(Duration::from_secs(5)))
                    .metrics(
                        |m| m.last_applied.map(|l| l.index) >= m.last_log_index,
                        "applied our log",
                    )
                    .await;
                self.node_up.store(true, Ordering::Release);
                info!("this node is up in the directory");
            }
            Ok(other) => warn!(answer = ?other, "NodeUp refused"),
            Err(err) => debug!(error = %err, "NodeUp failed; retrying"),
        }
    }
}
