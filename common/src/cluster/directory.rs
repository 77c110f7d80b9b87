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
    /// `node` holds these new sessions, each for the user the connect callback named (or
    /// none). Unlike `Register` (a session moving between nodes keeps its user), this sets the
    /// key's user, and enforces the limit on sessions per user, cluster-wide: applying it in
    /// log order is what keeps two nodes from admitting the last slot. Appended last.
    Admit {
        /// The owner.
        node: NodeId,
        /// Keys, epochs and users.
        sessions: Vec<(SessionKey, Epoch, Option<String>)>,
        /// The limit in force where the sessions connected.
        limit: UserLimit,
    },
    /// `node` wants to own the Durable Stream `name`. It gets it, under a generation greater
    /// than any the directory handed out before, when the stream has no entry or its owner is
    /// not live ([`StreamEntry`]); otherwise (the owner is live, `node` itself included) nothing
    /// changes and the claim is refused (`refused: [0]`). A node that is unknown or down claims
    /// nothing. Appended last: variants are encoded by position.
    ClaimStream {
        /// The claiming node.
        node: NodeId,
        /// The stream's name.
        name: String,
    },
    /// Generation `generation` of the stream `name` is over (deleted, or expired on its
    /// owner); `node` asks, whichever node owned it. A stale drop (the stream was claimed
    /// again since, by anyone: a newer generation) is ignored. Appended last.
    DropStream {
        /// The node that held it.
        node: NodeId,
        /// The stream's name.
        name: String,
        /// The generation it held it under.
        generation: u64,
    },
}

/// Who owns a Durable Stream, as the directory records it. The entry is **live** when its
/// node's record exists, is up, and the record's `since` equals `run`: streams are in-memory
/// state of one run of a node, so a restart (a new `since`) or a `NodeDown` leaves the entry
/// in place but not live, and readers learn that the owner is gone rather than that the stream
/// never existed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamEntry {
    /// The owner.
    pub node: NodeId,
    /// Tells claims of one name apart: every claim gets a greater one, whoever makes it.
    pub generation: u64,
    /// The owner's `since` epoch when it claimed the stream (the run that holds it).
    pub run: Epoch,
}

/// `limits.max_sessions_per_user` and what happens past it, as the admitting node applies it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserLimit {
    /// Sessions one user may hold at once, cluster-wide (0: unlimited).
    pub max_sessions: u32,
    /// Past it: the user's oldest session is closed (`true`), or the new one refused.
    pub close_oldest: bool,
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
    /// For an `Admit`: positions (also in `refused`) refused because their user holds
    /// `max_sessions` already.
    pub over_user_limit: Vec<u32>,
    /// For an `Admit`: sessions the directory dropped to make room for their user's newer
    /// ones; their owners close them.
    pub evicted: Vec<(SessionKey, Owner)>,
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
    /// Each user's sessions, oldest first.
    pub users: Vec<(String, Vec<SessionKey>)>,
    /// Every Durable Stream's owner, by name. Appended last: a snapshot written before streams
    /// existed ends before it (see [`UsersSnapshot`]).
    pub streams: Vec<(String, StreamEntry)>,
    /// The generation the next successful claim gets (0 as 1: nothing claimed yet).
    pub next_stream_generation: u64,
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
            ..Self::default()
        }
    }
}

/// A snapshot as written before Durable Streams existed (with channels and users): read by a
/// node restarting from the data directory of an earlier build. bincode refuses trailing
/// bytes and input that ends early, so each layout decodes as itself only.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsersSnapshot {
    /// The last log entry the snapshot includes.
    pub last_applied: Option<LogId>,
    /// The membership in effect at that entry.
    pub last_membership: StoredMembership,
    /// The node table.
    pub nodes: Vec<(NodeId, NodeRecord)>,
    /// Every registered session, by owner.
    pub sessions: Vec<NodeSessions>,
    /// The nodes holding subscribers of each channel.
    pub channels: Vec<(String, Vec<NodeId>)>,
    /// Each user's sessions, oldest first.
    pub users: Vec<(String, Vec<SessionKey>)>,
}

impl From<UsersSnapshot> for DirectorySnapshot {
    fn from(old: UsersSnapshot) -> Self {
        Self {
            last_applied: old.last_applied,
            last_membership: old.last_membership,
            nodes: old.nodes,
            sessions: old.sessions,
            channels: old.channels,
            users: old.users,
            ..Self::default()
        }
    }
}
