//! What cluster nodes say to each other and keep on disk: the directory's raft commands and
//! snapshots, raft's RPCs, discovery heartbeats, control requests, deliveries, and the NATS
//! subjects they travel on (all under `oort.<cluster>.`).
//!
//! **Architecture Invariant:** every format that crosses a process boundary between nodes, or
//! outlives a process on disk, is defined in this module: a change here is a protocol change.

mod directory;
mod framing;
#[cfg(test)]
mod hostile_input_tests;
mod messages;
mod named_stream;
pub mod raft;
mod stream;

use serde::{Deserialize, Serialize};

pub use directory::{
    DirectoryCommand, DirectoryResponse, DirectorySnapshot, NodeRecord, NodeSessions, Owner,
    SessionsSnapshot, StreamEntry, UserLimit, UsersSnapshot,
};
pub use framing::{decode_framed, decode_records, encode_framed, encode_records};
pub use messages::{
    BroadcastHeader, ClientReplyHeader, ControlRequest, ControlResponse, DeliverHeader,
    HandoverTail, Hello, KeptMessage, PublishHeader, PublishReceipt,
};
pub use named_stream::{
    NamedPosition, NamedStreamAnswer, NamedStreamOp, NamedStreamRequest, ProducerClaim,
    StreamRefusal, StreamSettings, StreamStanding,
};
pub use stream::{StreamAnswer, StreamOp, StreamPosition, StreamRequest};

use crate::NodeId;

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

/// NATS header carrying a send's request id from node to node, so one grep follows it.
pub const REQUEST_ID_HEADER: &str = "Oort-Request-Id";

/// The kinds of subject a node listens on, for metric labels and limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SubjectKind {
    /// Discovery heartbeats.
    Hello,
    /// Raft RPCs.
    Raft,
    /// Control requests.
    Control,
    /// Deliveries to sessions.
    Deliver,
    /// Cluster-wide broadcasts.
    Broadcast,
    /// Answers to this node's own requests.
    Reply,
    /// Reads of session streams held here (HTTP transports).
    Stream,
    /// Publishes to channels this node holds subscribers of.
    Channel,
    /// Clients' replies to requests this node is waiting for.
    ClientReply,
    /// Operations on the named Durable Streams this node owns.
    NamedStream,
}

impl SubjectKind {
    /// Every kind, in a stable order (for pre-registered metrics).
    pub const ALL: [Self; 10] = [
        Self::Hello,
        Self::Raft,
        Self::Control,
        Self::Deliver,
        Self::Broadcast,
        Self::Reply,
        Self::Stream,
        Self::Channel,
        Self::ClientReply,
        Self::NamedStream,
    ];

    /// The kind as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hello => "hello",
            Self::Raft => "raft",
            Self::Control => "ctl",
            Self::Deliver => "deliver",
            Self::Broadcast => "broadcast",
            Self::Reply => "reply",
            Self::Stream => "stream",
            Self::Channel => "chan",
            Self::ClientReply => "replies",
            Self::NamedStream => "dstream",
        }
    }
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

    /// Every subject of the cluster, as a NATS wildcard (for permissions).
    pub fn all(&self) -> String {
        format!("{}.>", self.prefix)
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

    /// Deliveries to the sessions of the node with this raft id.
    pub fn deliver(&self, raft_id: u64) -> String {
        format!("{}.deliver.{raft_id}", self.prefix)
    }

    /// Reads of the session streams held by the node with this raft id.
    pub fn stream(&self, raft_id: u64) -> String {
        format!("{}.stream.{raft_id}", self.prefix)
    }

    /// Operations on the named Durable Streams owned by the node with this raft id.
    pub fn named_stream(&self, raft_id: u64) -> String {
        format!("{}.dstream.{raft_id}", self.prefix)
    }

    /// Publishes to `channel` (a name [`crate::channel::check_channel_name`] accepted): heard
    /// only by the nodes that subscribe to it, which are the nodes holding its subscribers.
    pub fn channel(&self, channel: &str) -> String {
        format!("{}.chan.{channel}", self.prefix)
    }

    /// Clients' replies to requests the node with this raft id waits for.
    pub fn client_replies(&self, raft_id: u64) -> String {
        format!("{}.replies.{raft_id}", self.prefix)
    }

    /// The backend API as a NATS service: `.api.<operation>` (every node serves it, in one
    /// queue group). This is the wildcard every node subscribes to.
    pub fn api(&self) -> String {
        format!("{}.api.*", self.prefix)
    }

    /// The queue group every node serves the API in (one node answers each request).
    pub fn api_group(&self) -> String {
        format!("{}.api", self.prefix)
    }

    /// Client events for backend workers: `.events.<kind>` (`connect`, `message`, `close`).
    pub fn events(&self, kind: &str) -> String {
        format!("{}.events.{kind}", self.prefix)
    }

    /// Cluster-wide broadcasts.
    pub fn broadcast(&self) -> String {
        format!("{}.broadcast", self.prefix)
    }

    /// The prefix of this cluster's reply subjects, in place of NATS's usual `_INBOX`: answers
    /// then travel under the cluster's prefix too, so the one permission `oort.<cluster>.>`
    /// covers all of a node's traffic and no other NATS user can read the answers.
    pub fn inbox_prefix(&self) -> String {
        format!("{}.inbox", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raft_ids_are_stable_and_distinct() {
        let a = raft_id(&NodeId::from("oort-0"));
        assert_eq!(a, raft_id(&NodeId::from("oort-0")));
        assert_ne!(a, raft_id(&NodeId::from("oort-1")));
        assert_ne!(raft_id(&NodeId::from("")), 0);
    }

    #[test]
    fn subjects_are_scoped_by_cluster() {
        let subjects = Subjects::new("blue");
        assert_eq!(subjects.hello(), "oort.blue.hello");
        assert_eq!(subjects.raft(7), "oort.blue.raft.7");
        assert_eq!(subjects.control(7), "oort.blue.ctl.7");
        assert_eq!(subjects.all(), "oort.blue.>");
    }
}
