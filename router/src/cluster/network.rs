//! Raft's RPCs over NATS: each node answers `oort.<cluster>.raft.<raft_id>`, and a request
//! carries one bincode-encoded `RaftRequest`. Snapshots travel in chunks of
//! `snapshot_max_chunk_size`, kept well below NATS's maximum payload.
//!
//! What arrives is checked before openraft sees it (`raft_checks.rs`): openraft trusts its
//! network, and some well-formed but impossible requests would make it allocate without bound
//! or stop. Snapshot chunks are put together here (`snapshot_receiver.rs`), not by openraft.

use std::sync::Arc;
use std::time::Duration;

use oort_common::cluster::raft::{RaftReply, RaftRequest};
use oort_common::cluster::{NodeInfo, SubjectKind};
use oort_common::wire;
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use super::bus::{Bus, RejectReason, RequestError};
use super::core::Core;
use super::raft_checks;
use super::snapshot_receiver::SnapshotReceiver;
use super::types::{RaftId, RpcError, TypeConfig};

/// Raft requests served at once; more wait in NATS's buffer.
const CONCURRENT_REQUESTS: usize = 64;

/// Makes a connection per target node; each is just the target's subject.
pub(crate) struct NatsNetwork {
    pub bus: Bus,
}

impl RaftNetworkFactory<TypeConfig> for NatsNetwork {
    type Network = NatsConnection;

    async fn new_client(&mut self, target: RaftId, _node: &NodeInfo) -> NatsConnection {
        NatsConnection {
            bus: self.bus.clone(),
            subject: self.bus.subjects().raft(target),
            target,
        }
    }
}

/// Sends raft RPCs to one node.
pub(crate) struct NatsConnection {
    bus: Bus,
    subject: String,
    target: RaftId,
}

impl NatsConnection {
    async fn call(&self, request: &RaftRequest, ttl: Duration) -> Result<RaftReply, RequestError> {
        let answer = self
            .bus
            .request(self.subject.clone(), &wire::encode(request), ttl)
            .await?;
        wire::decode(&answer).map_err(|err| {
            self.bus
                .reject(SubjectKind::Reply, RejectReason::Malformed, &err);
            RequestError::Failed(err.to_string())
        })
    }

    fn rpc_error<E: std::error::Error>(&self, error: RequestError, entries: usize) -> RpcError<E> {
        match error {
            // Nobody listens on the subject: the node is down. openraft backs off.
            RequestError::NoResponders => RpcError::Unreachable(Unreachable::new(&StringError(
                format!("node {} does not answer", self.target),
            ))),
            RequestError::TooLarge => {
                let hint = (entries / 2).max(1) as u64;
                RpcError::PayloadTooLarge(PayloadTooLarge::new_entries_hint(hint))
            }
            other => RpcError::Network(NetworkError::new(&StringError(other.to_string()))),
        }
    }

    fn mismatch<E: std::error::Error>() -> RpcError<E> {
        RpcError::Network(NetworkError::new(&StringError(
            "mismatched raft reply".into(),
        )))
    }
}

#[derive(Debug)]
struct StringError(String);

impl std::fmt::Display for StringError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StringError {}

impl RaftNetwork<TypeConfig> for NatsConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<RaftId>, RpcError> {
        let entries = rpc.entries.len();
        match self
            .call(&RaftRequest::Append(rpc), option.hard_ttl())
            .await
        {
            Ok(RaftReply::Append(result)) => {
                result.map_err(|err| RpcError::RemoteError(RemoteError::new(self.target, err)))
            }
            Ok(_) => Err(Self::mismatch()),
            Err(err) => Err(self.rpc_error(err, entries)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<RaftId>, RpcError<InstallSnapshotError>> {
        match self
            .call(&RaftRequest::Snapshot(rpc), option.hard_ttl())
            .await
        {
            Ok(RaftReply::Snapshot(result)) => {
                result.map_err(|err| RpcError::RemoteError(RemoteError::new(self.target, err)))
            }
            Ok(_) => Err(Self::mismatch()),
            Err(err) => Err(self.rpc_error(err, 1)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<RaftId>,
        option: RPCOption,
    ) -> Result<VoteResponse<RaftId>, RpcError> {
        match self.call(&RaftRequest::Vote(rpc), option.hard_ttl()).await {
            Ok(RaftReply::Vote(result)) => {
                result.map_err(|err| RpcError::RemoteError(RemoteError::new(self.target, err)))
            }
            Ok(_) => Err(Self::mismatch()),
            Err(err) => Err(self.rpc_error(err, 1)),
        }
    }
}

/// Answers raft RPCs addressed to this node until the router stops. Requests are handled in
/// their own tasks (a slow append never delays a vote), a bounded number at a time.
pub(crate) async fn serve(core: Arc<Core>) -> Result<(), async_nats::SubscribeError> {
    let inbox = core
        .bus
        .subscribe(core.bus.subjects().raft(core.raft_id), SubjectKind::Raft)
        .await?;
    let stop = core.stop.clone();
    let snapshots = Arc::new(SnapshotReceiver::default());
    inbox.serve_concurrently(stop, CONCURRENT_REQUESTS, move |message| {
        let core = core.clone();
        let snapshots = snapshots.clone();
        async move {
            let Some(reply_to) = message.reply else {
                return;
            };
            let request = match wire::decode::<RaftRequest>(&message.body) {
                Ok(request) => request,
                Err(err) => {
                    core.bus
                        .reject(SubjectKind::Raft, RejectReason::Malformed, &err);
                    return;
                }
            };
            if let Err(reason) = raft_checks::check(&request, core.raft_id) {
                core.bus
                    .reject(SubjectKind::Raft, RejectReason::Invalid, &reason);
                return;
            }
            let reply = match request {
                RaftRequest::Append(rpc) => {
                    core.last_append.record();
                    RaftReply::Append(core.raft.append_entries(rpc).await)
                }
                RaftRequest::Vote(rpc) => RaftReply::Vote(core.raft.vote(rpc).await),
                RaftRequest::Snapshot(rpc) => {
                    core.last_append.record();
                    RaftReply::Snapshot(snapshots.receive(&core, rpc).await)
                }
            };
            core.bus.answer(reply_to, &wire::encode(&reply)).await;
        }
    });
    Ok(())
}
