//! What cluster nodes say to each other: the directory's raft commands, discovery heartbeats,
//! control requests, and the NATS subjects they travel on (all under `oort.<cluster>.`).
//!
//! **Architecture Invariant:** every Oort message on NATS is defined here. (Raft's own RPCs
//! are openraft's types, encoded with [`crate::wire`].)

use serde::{Deserialize, Serialize};

use crate::{Epoch, NodeId, SessionKey};

/// The raft id of a node: a stable 64-bit hash (FNV-1a) of its name, so that a node's name is
/// all it needs to be configured with. Never 0.
pub fn raft_id(node: &NodeId) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = node.as_str().bytes().fold(OFFSET, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    });
    hash.max(1)
}

/// A raft member as openraft stores it: the node's name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node's configured id.
    pub name: String,
}

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
}

/// What applying a [`DirectoryCommand`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryResponse {
    /// How many sessions the command added or removed.
    pub changed: u64,
}

/// A node's periodic announcement on `oort.<cluster>.hello`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The sender.
    pub node: NodeId,
    /// Its first epoch in this run (tells restarts apart).
    pub incarnation: Epoch,
    /// True when the sender belongs to an initialized raft cluster.
    pub in_cluster: bool,
    /// The leader as the sender knows it.
    pub leader: Option<NodeId>,
    /// The sender's raft term.
    pub term: u64,
    /// The last log index the sender applied (to show each node's lag).
    pub applied: u64,
    /// The sender is shutting down and should be removed at once.
    pub leaving: bool,
}

/// A request to one node's control subject, `oort.<cluster>.ctl.<raft_id>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlRequest {
    /// May `candidate` initialize a cluster whose voters are `members`? A node grants this to
    /// one candidate only, and never once it knows of a cluster.
    BootstrapGrant {
        /// Who asks.
        candidate: NodeId,
        /// The proposed voters.
        members: Vec<NodeId>,
    },
    /// Add `node` as a learner (sent to the leader).
    Join {
        /// The new node.
        node: NodeId,
    },
    /// Remove `node` now: it is shutting down (sent to the leader).
    Leave {
        /// The leaving node.
        node: NodeId,
    },
    /// Commit this command (sent to the leader by a follower).
    Write(DirectoryCommand),
    /// Owners of these keys, read linearizably (sent to the leader).
    Lookup {
        /// The keys.
        keys: Vec<SessionKey>,
    },
}

/// The answer to a [`ControlRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlResponse {
    /// Bootstrap grant or refusal.
    Grant(bool),
    /// Join or leave accepted.
    Done,
    /// The write committed.
    Written(DirectoryResponse),
    /// Owners, in request order.
    Owners(Vec<Option<Owner>>),
    /// This node is not the leader; try `leader`.
    NotLeader {
        /// The leader, if known.
        leader: Option<NodeId>,
    },
    /// The request failed.
    Failed(String),
}

/// Where a session is held.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Owner {
    /// The node holding it.
    pub node: NodeId,
    /// The registration's epoch.
    pub epoch: Epoch,
}

/// The NATS subjects of one cluster.
#[derive(Clone, Debug)]
pub struct Subjects {
    prefix: String,
}

impl Subjects {
    /// Subjects for cluster `name`.
    pub fn new(name: &str) -> Self {
        Self {
            prefix: format!("oort.{name}"),
        }
    }

    /// Discovery heartbeats.
    pub fn hello(&self) -> String {
        format!("{}.hello", self.prefix)
    }

    /// Raft RPCs to the node with this raft id.
    pub fn raft(&self, raft_id: u64) -> String {
        format!("{}.raft.{raft_id}", self.prefix)
    }

    /// Control requests to the node with this raft id.
    pub fn control(&self, raft_id: u64) -> String {
        format!("{}.ctl.{raft_id}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire;

    #[test]
    fn raft_ids_are_stable_and_distinct() {
        let a = raft_id(&NodeId::from("oort-0"));
        assert_eq!(a, raft_id(&NodeId::from("oort-0")));
        assert_ne!(a, raft_id(&NodeId::from("oort-1")));
        assert_ne!(raft_id(&NodeId::from("")), 0);
    }

    #[test]
    fn commands_round_trip() {
        let command = DirectoryCommand::Register {
            node: NodeId::from("n1"),
            sessions: vec![
                (SessionKey::from("a"), Epoch(1)),
                (SessionKey::from("b"), Epoch(2)),
            ],
        };
        assert_eq!(
            wire::decode::<DirectoryCommand>(&wire::encode(&command)).unwrap(),
            command
        );
        let request = ControlRequest::Lookup {
            keys: vec![SessionKey::from("k")],
        };
        assert_eq!(
            wire::decode::<ControlRequest>(&wire::encode(&request)).unwrap(),
            request
        );
    }

    #[test]
    fn subjects_are_scoped_by_cluster() {
        let subjects = Subjects::new("blue");
        assert_eq!(subjects.hello(), "oort.blue.hello");
        assert_eq!(subjects.raft(7), "oort.blue.raft.7");
        assert_eq!(subjects.control(7), "oort.blue.ctl.7");
    }
}
