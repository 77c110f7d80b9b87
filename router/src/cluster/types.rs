//! Short names for openraft's types as the directory's raft uses them. The type configuration
//! itself is a wire format and lives in `oort_common::cluster::raft`.

use oort_common::cluster::NodeInfo;
pub use oort_common::cluster::raft::{
    Entry, LogId, RaftError, RaftId, SnapshotMeta, StoredMembership, TypeConfig, Vote,
};

/// The raft instance.
pub type Raft = openraft::Raft<TypeConfig>;
/// A storage error.
pub type StorageError = openraft::StorageError<RaftId>;
/// A snapshot.
pub type Snapshot = openraft::Snapshot<TypeConfig>;
/// An RPC error as openraft's network layer reports it.
pub type RpcError<E = openraft::error::Infallible> =
    openraft::error::RPCError<RaftId, NodeInfo, RaftError<E>>;
