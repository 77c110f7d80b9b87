//! The session directory's raft commands, what applying one answers, and the snapshot format.

use serde::{Deserialize, Serialize};

use super::raft::{LogId, StoredMembership};
use crate::{Epoch, NodeId, SessionKey};

/// A change to the session directory. Each is one raft log entry; registrations and
/// unregistrations come in batches (group commit).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DirectoryCommand {
    /// `node` holds these sessions now (each under its registration epoch).
    Register {
        /// The owner.
        node: NodeId,
        /// Keys and their epochs.
        sessions: Vec<(SessionKey, Epoch)>,
    },
    /// `node` no longer holds these registrations; a key registered since (elsewhere, or under
    /// a newer epoch) is left alone.
    Unregister {
        /// The node that held them.
        node: NodeId,
        /// Keys and the epochs they were registered under.
        sessions: Vec<(SessionKey, Epoch)>,
    },
    /// `node` (re)started: registrations from it with an epoch below `epoch` belong to an
    /// earlier run and are refused.
    NodeUp {
        /// The node.
        node: NodeId,
        /// Its first epoch in this run.
        epoch: Epoch,
    },
    /// `node` is gone: every session it held is purged, and it registers nothing until it
    /// comes up again.
    NodeDown {
        /// The node.
        node: NodeId,
    },
    /// `node` is down and gone for good: its record is dropped, so the node table does not
    /// grow with every node that ever existed. A node that is up is left alone.
    ForgetNode {
        /// The node.
        node: NodeId,
    },
    /// `node` began (`true`) or stopped (`false`) holding subscribers of these channels, in
    /// order. The directory records interest per node, not per session: it tells a publishing
    /// node how many nodes will answer, and a presence query whom to ask. Appended last:
    /// variants are encoded by position.
    Interest {
        /// The node.
        node: NodeId,
        /// Channel names, each with whether the node holds subscribers of it now.
        changes: Vec<(String, bool)>,
    },
}

/// What applying a [`DirectoryCommand`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryResponse {
    /// How many sessions the command added or removed.
    pub changed: u64,
    /// For a `Register`: positions (in the command's list) of the registrations the directory
    /// refused (the node is unknown or down, or the epoch is from an earlier run). Such a
    /// session is not reachable through the cluster and must not be acknowledged.
    pub refused: Vec<u32>,
}

/// Where a session is held.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Owner {
    /// The node holding it.
    pub node: NodeId,
    /// The registration's epoch.
    pub epoch: Epoch,
}

/// What the directory knows of a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Up (accepting registrations) or down (purged).
    pub up: bool,
    /// Registrations below this epoch are from an earlier run of the node and are refused.
    pub since: Epoch,
    /// Sessions the node holds.
    pub sessions: u64,
}

/// One node's sessions in a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSessions {
    /// The owner.
    pub node: NodeId,
    /// Its sessions and their registration epochs.
    pub sessions: Vec<(SessionKey, Epoch)>,
}

/// A snapshot of the directory state machine, as it is sent to lagging nodes and kept on disk.
/// Sessions are grouped by owner so a node's name is stored once, not once per session.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectorySnapshot {
    /// The last log entry the snapshot includes.
    pub last_applied: Option<LogId>,
    /// The membership in effect at that entry.
    pub last_membership: StoredMembership,
    /// The node table.
    pub nodes: Vec<(NodeId, NodeRecord)>,
    /// Every registered session, by owner.
    pub sessions: Vec<NodeSessions>,
    /// The nodes holding subscribers of each channel. Appended last: a snapshot written before
    /// channels existed ends before it (see [`SessionsSnapshot`]).
    pub channels: Vec<(String, Vec<NodeId>)>,
}

/// A snapshot as written before channels existed: read by a node restarting from the data
/// directory of an earlier build.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionsSnapshot {
    /// The last log entry the snapshot includes.
    pub last_applied: Option<LogId>,
    /// The membership in effect at that entry.
    pub last_membership: StoredMembership,
    /// The node table.
    pub nodes: Vec<(NodeId, NodeRecord)>,
    /// Every registered session, by owner.
    pub sessions: Vec<NodeSessions>,
}

impl From<SessionsSnapshot> for DirectorySnapshot {
    fn from(old: SessionsSnapshot) -> Self {
        Self {
            last_applied: old.last_applied,
            last_membership: old.last_membership,
            nodes: old.nodes,
            sessions: old.sessions,
            channels: Vec::new(),
        }
    }
}
