//! Raft's RPCs over NATS: each node answers `oort.<cluster>.raft.<raft_id>`, and a request
//! carries one bincode-encoded [`RaftRequest`]. Snapshots travel in chunks of
//! `snapshot_max_chunk_size`, kept well below NATS's maximum payload.

use std::time::Duration;

use async_nats::{Client, RequestErrorKind};
use futures_util::StreamExt;
use oort_common::cluster::{NodeInfo, Subjects};
use oort_common::wire;
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use super::types::{Raft, RaftError, RaftId, RpcError, TypeConfig};

/// One raft RPC.
#[derive(Serialize, Deserialize)]
pub(crate) enum RaftRequest {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<RaftId>),
    Snapshot(InstallSnapshotRequest<TypeConfig>),
}

/// The answer to a [`RaftRequest`], with the remote raft's error if it failed.
#[derive(Serialize, Deserialize)]
pub(crate) enum RaftReply {
    Append(Result<AppendEntriesResponse<RaftId>, RaftError>),
    Vote(Result<VoteResponse<RaftId>, RaftError>),
    Snapshot(Result<InstallSnapshotResponse<RaftId>, RaftError<InstallSnapshotError>>),
}

/// Makes a connection per target node; each is just the target's subject.
pub(crate) struct NatsNetwork {
    pub nats: Client,
    pub subjects: Subjects,
}

impl RaftNetworkFactory<TypeConfig> for NatsNetwork {
    type Network = NatsConnection;

    async fn new_client(&mut self, target: RaftId, _node: &NodeInfo) -> NatsConnection {
        NatsConnection {
            nats: self.nats.clone(),
            subject: self.subjects.raft(target),
            target,
        }
    }
}

/// Sends raft RPCs to one node.
pub(crate) struct NatsConnection {
    nats: Client,
    subject: String,
    target: RaftId,
}

/// Why an RPC did not get an answer, before it is phrased as openraft's error.
enum CallError {
    Unreachable(String),
    TooLarge,
    Network(String),
}

impl NatsConnection {
    async fn call(&self, request: &RaftRequest, ttl: Duration) -> Result<RaftReply, CallError> {
        let payload = wire::encode(request);
        let request = async_nats::Request::new()
            .payload(payload.into())
            .timeout(Some(ttl));
        match self.nats.send_request(self.subject.clone(), request).await {
            Ok(message) => {
                wire::decode(&message.payload).map_err(|err| CallError::Network(err.to_string()))
            }
            Err(err) => Err(match err.kind() {
                // Nobody listens on the subject: the node is down. openraft backs off.
                RequestErrorKind::NoResponders => {
                    CallError::Unreachable(format!("node {} does not answer", self.target))
                }
                RequestErrorKind::MaxPayloadExceeded => CallError::TooLarge,
                _ => CallError::Network(err.to_string()),
            }),
        }
    }

    fn rpc_error<E: std::error::Error>(error: CallError, entries: usize) -> RpcError<E> {
        match error {
            CallError::Unreachable(reason) => {
                RpcError::Unreachable(Unreachable::new(&StringError(reason)))
            }
            CallError::TooLarge => {
                let hint = (entries / 2).max(1) as u64;
                RpcError::PayloadTooLarge(PayloadTooLarge::new_entries_hint(hint))
            }
            CallError::Network(reason) => {
                RpcError::Network(NetworkError::new(&StringError(reason)))
            }
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
            Err(err) => Err(Self::rpc_error(err, entries)),
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
            Err(err) => Err(Self::rpc_error(err, 1)),
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
            Err(err) => Err(Self::rpc_error(err, 1)),
        }
    }
}

/// Answers raft RPCs addressed to this node until the subscription ends. Each request is
/// handled in its own task, so a slow append never delays a vote.
pub(crate) async fn serve(
    nats: Client,
    subject: String,
    raft: Raft,
) -> Result<(), async_nats::SubscribeError> {
    let mut requests = nats.subscribe(subject).await?;
    tokio::spawn(async move {
        while let Some(message) = requests.next().await {
            let Some(reply_to) = message.reply.clone() else {
                continue;
            };
            let (nats, raft) = (nats.clone(), raft.clone());
            tokio::spawn(async move {
                let request = match wire::decode::<RaftRequest>(&message.payload) {
                    Ok(request) => request,
                    Err(err) => {
                        warn!(error = %err, "undecodable raft request");
                        return;
                    }
                };
                let reply = match request {
                    RaftRequest::Append(rpc) => RaftReply::Append(raft.append_entries(rpc).await),
                    RaftRequest::Vote(rpc) => RaftReply::Vote(raft.vote(rpc).await),
                    RaftRequest::Snapshot(rpc) => {
                        RaftReply::Snapshot(raft.install_snapshot(rpc).await)
                    }
                };
                if let Err(err) = nats.publish(reply_to, wire::encode(&reply).into()).await {
                    debug!(error = %err, "cannot answer a raft request");
                }
            });
        }
    });
    Ok(())
}
