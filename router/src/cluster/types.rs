//! openraft's type configuration for the session directory, and short names for its types.

use std::io::Cursor;

use oort_common::cluster::{DirectoryCommand, DirectoryResponse, NodeInfo};

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

/// A raft node id ([`oort_common::cluster::raft_id`] of the node's name).
pub type RaftId = u64;
/// The raft instance.
pub type Raft = openraft::Raft<TypeConfig>;
/// A log entry.
pub type Entry = openraft::Entry<TypeConfig>;
/// A log id.
pub type LogId = openraft::LogId<RaftId>;
/// A vote.
pub type Vote = openraft::Vote<RaftId>;
/// A storage error.
pub type StorageError = openraft::StorageError<RaftId>;
/// Stored membership.
pub type StoredMembership = openraft::StoredMembership<RaftId, NodeInfo>;
/// Snapshot metadata.
pub type SnapshotMeta = openraft::SnapshotMeta<RaftId, NodeInfo>;
/// A snapshot.
pub type Snapshot = openraft::Snapshot<TypeConfig>;
/// A raft error with an API-specific part.
pub type RaftError<E = openraft::error::Infallible> = openraft::error::RaftError<RaftId, E>;
/// An RPC error as openraft's network layer reports it.
pub type RpcError<E = openraft::error::Infallible> =
    openraft::error::RPCError<RaftId, NodeInfo, RaftError<E>>;
