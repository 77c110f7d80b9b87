//! Oort's own messages between nodes: announcements, control requests, deliveries and
//! broadcasts.

use serde::{Deserialize, Serialize};

use super::{DirectoryCommand, DirectoryResponse, Owner, StreamEntry};
use crate::{DeliveryMode, Epoch, FrameKind, NodeId, SessionKey};

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
    /// Remove `node` now: it is shutting down (sent to the leader). A voter is replaced by a
    /// caught-up learner in the same membership change.
    Leave {
        /// The leaving node.
        node: NodeId,
        /// The run of the node that leaves, so that a late or repeated request cannot remove
        /// a later run of the same node.
        incarnation: Epoch,
    },
    /// Commit this command (sent to the leader by a follower).
    Write(DirectoryCommand),
    /// Owners of these keys, read linearizably (sent to the leader).
    Lookup {
        /// The keys.
        keys: Vec<SessionKey>,
    },
    /// Is anyone there? Answered at once; a node uses it to notice that the leader is gone
    /// (NATS answers "no responders" as soon as the leader's connection is gone).
    Ping,
    /// Hand over the `oort.v1` session `key` (created under `id`): the asking node took it
    /// over in the directory, and its client has every message up to `seen`. Appended last:
    /// variants are encoded by position.
    HandOver {
        /// The session key.
        key: SessionKey,
        /// The session's id (the epoch it was created under).
        id: u64,
        /// The client's position.
        seen: u64,
    },
    /// Add these sessions, which the receiving node holds, to `channels` (or, with `join`
    /// false, remove them). Answered `Statuses`, one per key, once the node's interest in
    /// every channel it gained is committed. Appended last: variants are encoded by position.
    Subscribe {
        /// The sessions.
        keys: Vec<SessionKey>,
        /// The channels.
        channels: Vec<String>,
        /// Subscribe (`true`) or unsubscribe.
        join: bool,
    },
    /// How many of the receiving node's sessions are subscribed to `channel`, and up to
    /// `limit` of their keys after `after` in key order. Answered `Presence`. Appended last.
    Presence {
        /// The channel.
        channel: String,
        /// List keys after this one (none: from the first).
        after: Option<SessionKey>,
        /// Keys to list at most.
        limit: u32,
    },
    /// The owner of the Durable Stream `name`, read linearizably (sent to the leader), so that
    /// "no such stream" or "its owner is gone" is never a replica merely lagging. Answered
    /// `StreamOwner`. Appended last.
    LookupStream {
        /// The stream's name.
        name: String,
    },
}

/// What a client resuming elsewhere has not seen of its session: the messages after its
/// position, framed as they were for it, and where numbering continues.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoverTail {
    /// The sequence number of the next message.
    pub next_seq: u64,
    /// The highest sequence number dropped unacknowledged (0: none).
    pub dropped_through: u64,
    /// The kept messages, oldest first, contiguous, ending at `next_seq - 1`.
    pub messages: Vec<KeptMessage>,
    /// The channels the session is in: it stays in them on its new node.
    pub channels: Vec<String>,
}

/// One message of a [`HandoverTail`]: the `oort.v1` frame as written to the client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptMessage {
    /// Its sequence number.
    pub seq: u64,
    /// Text or binary frame.
    pub kind: FrameKind,
    /// The frame's payload (the sequence number is inside).
    pub frame: Vec<u8>,
}

/// The answer to a [`ControlRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlResponse {
    /// Bootstrap grant or refusal.
    Grant(bool),
    /// Join, leave or ping done.
    Done,
    /// The write committed at log index `index`.
    Written {
        /// What applying it did.
        response: DirectoryResponse,
        /// The log index it was committed at.
        index: u64,
    },
    /// Owners, in request order.
    Owners(Vec<Option<Owner>>),
    /// This node is not the leader; try `leader`.
    NotLeader {
        /// The leader, if known.
        leader: Option<NodeId>,
    },
    /// The request failed.
    Failed(String),
    /// The answer to [`ControlRequest::HandOver`]: `None` when this node no longer has the
    /// session. Appended last: variants are encoded by position.
    Tail(Option<HandoverTail>),
    /// One status per session of a [`ControlRequest::Subscribe`]. Appended last.
    Statuses(Vec<crate::DeliveryStatus>),
    /// The answer to [`ControlRequest::Presence`]. Appended last.
    Presence {
        /// Sessions of the node subscribed to the channel.
        count: u64,
        /// Some of their keys, in order.
        sessions: Vec<SessionKey>,
    },
    /// The answer to [`ControlRequest::LookupStream`]: the stream's entry and whether it is
    /// live on the leader (its owner is up in the run that claimed it), or `None` when the
    /// directory has no entry for it. Appended last.
    StreamOwner(Option<(StreamEntry, bool)>),
}

/// One delivery to sessions one node holds. Deliveries for one owner travel together on
/// `oort.<cluster>.deliver.<raft_id>`, each framed ([`super::encode_framed`], the payload after
/// the header, so it is never re-encoded) and the frames joined by [`super::encode_records`];
/// the answer is a `Vec<Vec<DeliveryStatus>>`, one list per delivery in target order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliverHeader {
    /// The backend request this delivery serves, for the owner's logs.
    pub request_id: String,
    /// Sessions the receiving node is believed to hold.
    pub targets: Vec<SessionKey>,
    /// Text or binary frame.
    pub kind: FrameKind,
    /// Plain message, or last word and close.
    pub mode: DeliveryMode,
}

/// A message for every session of the cluster, on `oort.<cluster>.broadcast`; the payload
/// follows the header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BroadcastHeader {
    /// Text or binary frame.
    pub kind: FrameKind,
    /// The node the broadcast came in through.
    pub origin: NodeId,
}

/// A publish to one channel, on `oort.<cluster>.chan.<channel>`, heard by the nodes holding
/// its subscribers; the payload follows the header. Every receiving node answers a
/// [`PublishReceipt`] to the message's reply subject.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishHeader {
    /// The node the publish came in through (which delivers to its own sessions itself).
    pub origin: NodeId,
    /// The backend request, for the logs.
    pub request_id: String,
    /// Text or binary frame.
    pub kind: FrameKind,
    /// Every channel of the publish, in the order the publisher sent them (one message each).
    pub channels: Vec<String>,
    /// Which of `channels` this message is for. A session subscribed to several of them gets
    /// the publish once: through the first of them it is in.
    pub position: u32,
}

/// A client's reply to a request, on `oort.<cluster>.replies.<raft_id>` of the node waiting
/// for it; the payload follows the header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientReplyHeader {
    /// The request's correlation id.
    pub id: String,
    /// The session that answered (the waiting node checks it is the one it asked).
    pub session: SessionKey,
    /// Text or binary.
    pub kind: FrameKind,
}

/// What one node did with a [`PublishHeader`] message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishReceipt {
    /// The node.
    pub node: NodeId,
    /// Sessions that took the message (`ok` or `buffered`).
    pub sessions: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire;

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
}
