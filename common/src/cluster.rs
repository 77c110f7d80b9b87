//! What cluster nodes say to each other: the directory's raft commands, discovery heartbeats,
//! control requests, and the NATS subjects they travel on (all under `oort.<cluster>.`).
//!
//! **Architecture Invariant:** every Oort message on NATS is defined here. (Raft's own RPCs
//! are openraft's types, encoded with [`crate::wire`].)

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::wire::{self, DecodeError};
use crate::{DeliveryMode, Epoch, FrameKind, NodeId, SessionKey};

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

/// One delivery to sessions one node holds. Deliveries for one owner travel together on
/// `oort.<cluster>.deliver.<raft_id>`, each framed ([`encode_framed`], the payload after the
/// header, so it is never re-encoded) and the frames joined by [`encode_records`]; the answer is
/// a `Vec<Vec<DeliveryStatus>>`, one list per delivery in target order.
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

/// NATS header carrying a send's request id from node to node, so one grep follows it.
pub const REQUEST_ID_HEADER: &str = "Oort-Request-Id";

/// `[header length: u32 LE][header (bincode)][payload]`.
pub fn encode_framed<T: Serialize>(header: &T, payload: &[u8]) -> Vec<u8> {
    let header = wire::encode(header);
    let length = u32::try_from(header.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(4 + header.len() + payload.len());
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(payload);
    out
}

/// Splits what [`encode_framed`] made; the payload is a slice of `bytes`, not a copy.
pub fn decode_framed<T: serde::de::DeserializeOwned>(
    bytes: &Bytes,
) -> Result<(T, Bytes), DecodeError> {
    let short = || DecodeError::from("message shorter than its header");
    let length_bytes: [u8; 4] = bytes
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(short)?;
    let length = u32::from_le_bytes(length_bytes) as usize;
    let header_end = 4usize
        .checked_add(length)
        .filter(|end| *end <= bytes.len())
        .ok_or_else(short)?;
    let header = wire::decode(&bytes[4..header_end])?;
    Ok((header, bytes.slice(header_end..)))
}

/// Joins records into one message: `([record length: u32 LE][record])*`.
pub fn encode_records<R: AsRef<[u8]>>(records: &[R]) -> Vec<u8> {
    let total = records.iter().map(|r| 4 + r.as_ref().len()).sum();
    let mut out = Vec::with_capacity(total);
    for record in records {
        let record = record.as_ref();
        let length = u32::try_from(record.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&length.to_le_bytes());
        out.extend_from_slice(record);
    }
    out
}

/// Splits what [`encode_records`] made; each record is a slice of `bytes`, not a copy.
pub fn decode_records(bytes: &Bytes) -> Result<Vec<Bytes>, DecodeError> {
    let mut records = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let length_bytes: [u8; 4] = bytes
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| DecodeError::from("record length cut short"))?;
        let start = at + 4;
        let end = start
            .checked_add(u32::from_le_bytes(length_bytes) as usize)
            .filter(|end| *end <= bytes.len())
            .ok_or_else(|| DecodeError::from("record longer than the message"))?;
        records.push(bytes.slice(start..end));
        at = end;
    }
    Ok(records)
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

    /// Deliveries to the sessions of the node with this raft id.
    pub fn deliver(&self, raft_id: u64) -> String {
        format!("{}.deliver.{raft_id}", self.prefix)
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
    fn framed_messages_keep_the_payload_apart() {
        let header = DeliverHeader {
            request_id: "r1".into(),
            targets: vec![SessionKey::from("a")],
            kind: FrameKind::Binary,
            mode: DeliveryMode::Send,
        };
        let bytes = Bytes::from(encode_framed(&header, b"\x00payload"));
        let (decoded, payload): (DeliverHeader, Bytes) = decode_framed(&bytes).unwrap();
        assert_eq!(decoded, header);
        assert_eq!(&payload[..], b"\x00payload");
        assert!(decode_framed::<DeliverHeader>(&bytes.slice(..3)).is_err());
        assert!(
            decode_framed::<DeliverHeader>(&Bytes::from_static(&[255, 255, 255, 255, 1])).is_err()
        );
    }

    #[test]
    fn records_round_trip_and_reject_truncation() {
        let records: Vec<&[u8]> = vec![b"one", b"", b"three"];
        let bytes = Bytes::from(encode_records(&records));
        let decoded = decode_records(&bytes).unwrap();
        assert_eq!(decoded, vec![&b"one"[..], &b""[..], &b"three"[..]]);
        assert!(decode_records(&Bytes::new()).unwrap().is_empty());
        assert!(decode_records(&bytes.slice(..bytes.len() - 1)).is_err());
        assert!(decode_records(&bytes.slice(..2)).is_err());
    }

    #[test]
    fn subjects_are_scoped_by_cluster() {
        let subjects = Subjects::new("blue");
        assert_eq!(subjects.hello(), "oort.blue.hello");
        assert_eq!(subjects.raft(7), "oort.blue.raft.7");
        assert_eq!(subjects.control(7), "oort.blue.ctl.7");
    }
}
