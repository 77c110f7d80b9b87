//! The directory's raft: openraft's type configuration, short names for its types, and the
//! envelope its RPCs travel in on `oort.<cluster>.raft.<raft_id>`.

use std::io::Cursor;

use openraft::error::InstallSnapshotError;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};

use super::{DirectoryCommand, DirectoryResponse, NodeInfo};

openraft::declare_raft_types!(
    /// The directory's raft: commands are [`DirectoryCommand`]s, members are named nodes.
    pub TypeConfig:
        D = DirectoryCommand,
        R = DirectoryResponse,
        NodeId = u64,
        Node = NodeInfo,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A raft node id ([`super::raft_id`] of the node's name).
pub type RaftId = u64;
/// A log entry.
pub type Entry = openraft::Entry<TypeConfig>;
/// A log id.
pub type LogId = openraft::LogId<RaftId>;
/// A vote.
pub type Vote = openraft::Vote<RaftId>;
/// Stored membership.
pub type StoredMembership = openraft::StoredMembership<RaftId, NodeInfo>;
/// Snapshot metadata.
pub type SnapshotMeta = openraft::SnapshotMeta<RaftId, NodeInfo>;
/// A raft error with an API-specific part.
pub type RaftError<E = openraft::error::Infallible> = openraft::error::RaftError<RaftId, E>;

/// One raft RPC.
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftRequest {
    /// Append entries (or a heartbeat, with none).
    Append(AppendEntriesRequest<TypeConfig>),
    /// A vote request.
    Vote(VoteRequest<RaftId>),
    /// One chunk of a snapshot.
    Snapshot(InstallSnapshotRequest<TypeConfig>),
}

/// The answer to a [`RaftRequest`], with the remote raft's error if it failed.
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftReply {
    /// To an append.
    Append(Result<AppendEntriesResponse<RaftId>, RaftError>),
    /// To a vote request.
    Vote(Result<VoteResponse<RaftId>, RaftError>),
    /// To a snapshot chunk.
    Snapshot(Result<InstallSnapshotResponse<RaftId>, RaftError<InstallSnapshotError>>),
}
