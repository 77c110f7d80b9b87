//! Property tests of every decoder that reads what arrives over NATS or from disk: random bytes,
//! valid messages cut short, and valid messages with bytes flipped, inserted or removed. None
//! may panic or abort (which an unbounded length prefix would), and every valid message must
//! round-trip. cargo-fuzz needs a nightly compiler, which these machines do not have; proptest
//! runs the same idea as an ordinary bounded test.

use bytes::Bytes;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::{CommittedLeaderId, EntryPayload, LogId, Membership, SnapshotMeta, Vote};
use proptest::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::raft::{Entry, RaftRequest, TypeConfig};
use super::*;
use crate::envelope::Sealer;
use crate::{DeliveryMode, DeliveryStatus, Epoch, FrameKind, NodeId, SessionKey, wire};

fn node(name: &str) -> NodeId {
    NodeId::from(name)
}

fn keys(count: usize) -> Vec<(SessionKey, Epoch)> {
    (0..count)
        .map(|i| (SessionKey::from(format!("key-{i}")), Epoch(i as u64 + 1)))
        .collect()
}

fn stream_entry() -> StreamEntry {
    StreamEntry {
        node: node("n1"),
        generation: 7,
        run: Epoch(1),
    }
}

fn log_id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 7), index)
}

/// One valid message of every kind a node decodes, encoded.
fn samples() -> Vec<(&'static str, Vec<u8>)> {
    let command = DirectoryCommand::Register {
        node: node("n1"),
        sessions: keys(3),
    };
    let entry = Entry {
        log_id: log_id(2, 5),
        payload: EntryPayload::Normal(command.clone()),
    };
    let membership = Membership::new(vec![std::collections::BTreeSet::from([1, 2, 3])], None);
    let append: AppendEntriesRequest<TypeConfig> = AppendEntriesRequest {
        vote: Vote::new_committed(2, 7),
        prev_log_id: Some(log_id(2, 4)),
        entries: vec![
            entry.clone(),
            Entry {
                log_id: log_id(2, 6),
                payload: EntryPayload::Membership(membership),
            },
        ],
        leader_commit: Some(log_id(2, 4)),
    };
    let snapshot: InstallSnapshotRequest<TypeConfig> = InstallSnapshotRequest {
        vote: Vote::new_committed(2, 7),
        meta: SnapshotMeta::default(),
        offset: 0,
        data: vec![1, 2, 3],
        done: true,
    };
    let hello = Hello {
        node: node("n2"),
        incarnation: Epoch(9),
        in_cluster: true,
        leader: Some(node("n1")),
        term: 3,
        applied: 40,
        leaving: false,
    };
    let header = DeliverHeader {
        request_id: "r1".into(),
        targets: vec![SessionKey::from("a"), SessionKey::from("b")],
        kind: FrameKind::Text,
        mode: DeliveryMode::Close {
            code: 4000,
            reason: "bye".into(),
            send_payload: true,
        },
    };
    let snapshot_state = DirectorySnapshot {
        last_applied: Some(log_id(2, 6)),
        nodes: vec![(
            node("n1"),
            NodeRecord {
                up: true,
                since: Epoch(1),
                sessions: 3,
            },
        )],
        sessions: vec![NodeSessions {
            node: node("n1"),
            sessions: keys(3),
        }],
        streams: vec![("orders".into(), stream_entry())],
        next_stream_generation: 8,
        ..DirectorySnapshot::default()
    };
    let users_snapshot = UsersSnapshot {
        last_applied: Some(log_id(2, 6)),
        users: vec![("user".into(), vec![SessionKey::from("key-0")])],
        ..UsersSnapshot::default()
    };
    vec![
        ("hello", wire::encode(&hello)),
        (
            "control",
            wire::encode(&ControlRequest::Leave {
                node: node("n3"),
                incarnation: Epoch(4),
            }),
        ),
        (
            "control response",
            wire::encode(&ControlResponse::Written {
                response: DirectoryResponse {
                    changed: 2,
                    refused: vec![1],
                    over_user_limit: vec![1],
                    evicted: vec![(
                        SessionKey::from("old"),
                        super::Owner {
                            node: node("n2"),
                            epoch: Epoch(3),
                        },
                    )],
                },
                index: 12,
            }),
        ),
        ("command", wire::encode(&command)),
        ("entry", wire::encode(&entry)),
        ("append", wire::encode(&RaftRequest::Append(append))),
        (
            "vote",
            wire::encode(&RaftRequest::Vote(VoteRequest::new(
                Vote::new(3, 2),
                Some(log_id(2, 6)),
            ))),
        ),
        (
            "snapshot chunk",
            wire::encode(&RaftRequest::Snapshot(snapshot)),
        ),
        ("deliver header", wire::encode(&header)),
        (
            "statuses",
            wire::encode(&vec![vec![DeliveryStatus::Ok, DeliveryStatus::NotFound]]),
        ),
        ("snapshot", wire::encode(&snapshot_state)),
        ("snapshot before streams", wire::encode(&users_snapshot)),
        (
            "claim stream",
            wire::encode(&DirectoryCommand::ClaimStream {
                node: node("n1"),
                name: "orders".into(),
            }),
        ),
        (
            "drop stream",
            wire::encode(&DirectoryCommand::DropStream {
                node: node("n1"),
                name: "orders".into(),
                generation: 7,
            }),
        ),
        (
            "lookup stream",
            wire::encode(&ControlRequest::LookupStream {
                name: "orders".into(),
            }),
        ),
        (
            "stream owner",
            wire::encode(&ControlResponse::StreamOwner(Some((stream_entry(), true)))),
        ),
        (
            "admit",
            wire::encode(&DirectoryCommand::Admit {
                node: node("n1"),
                sessions: vec![(SessionKey::from("k"), Epoch(5), Some("user".into()))],
                limit: super::UserLimit {
                    max_sessions: 2,
                    close_oldest: true,
                },
            }),
        ),
        (
            "interest",
            wire::encode(&DirectoryCommand::Interest {
                node: node("n1"),
                changes: vec![("room".into(), true)],
            }),
        ),
        (
            "subscribe",
            wire::encode(&ControlRequest::Subscribe {
                keys: keys(2).into_iter().map(|(key, _)| key).collect(),
                channels: vec!["room".into()],
                join: true,
            }),
        ),
        (
            "publish header",
            wire::encode(&super::PublishHeader {
                origin: node("n1"),
                request_id: "r".into(),
                kind: FrameKind::Binary,
                channels: vec!["a".into(), "b".into()],
                position: 1,
            }),
        ),
        (
            "named stream append",
            wire::encode(&NamedStreamRequest {
                name: "channels/room".into(),
                generation: 7,
                op: NamedStreamOp::Append {
                    content_type: "application/json".into(),
                    seq: Some("001".into()),
                    messages: vec![b"{}".to_vec(), b"[1]".to_vec()],
                    close: true,
                    producer: Some(ProducerClaim {
                        id: "p".into(),
                        epoch: 1,
                        seq: 2,
                    }),
                },
            }),
        ),
        (
            "named stream chunk",
            wire::encode(&NamedStreamAnswer::Chunk {
                messages: vec![b"abc".to_vec()],
                next: 3,
                up_to_date: true,
                standing: StreamStanding {
                    generation: 7,
                    tail: 3,
                    closed: false,
                    settings: StreamSettings {
                        content_type: "text/plain".into(),
                        ttl_secs: Some(60),
                        expires_at: None,
                        public: true,
                    },
                },
            }),
        ),
        (
            "publish receipt",
            wire::encode(&super::PublishReceipt {
                node: node("n2"),
                sessions: 9,
            }),
        ),
    ]
}

/// Feeds `bytes` to every decoder; none may panic. Returns how many accepted it.
fn decode_everything(bytes: &[u8]) -> usize {
    fn ok<T: DeserializeOwned>(bytes: &[u8]) -> usize {
        usize::from(wire::decode::<T>(bytes).is_ok())
    }
    let shared = Bytes::copy_from_slice(bytes);
    ok::<Hello>(bytes)
        + ok::<ControlRequest>(bytes)
        + ok::<ControlResponse>(bytes)
        + ok::<DirectoryCommand>(bytes)
        + ok::<Entry>(bytes)
        + ok::<RaftRequest>(bytes)
        + ok::<super::raft::RaftReply>(bytes)
        + ok::<DeliverHeader>(bytes)
        + ok::<BroadcastHeader>(bytes)
        + ok::<super::PublishHeader>(bytes)
        + ok::<super::PublishReceipt>(bytes)
        + ok::<Vec<Vec<DeliveryStatus>>>(bytes)
        + ok::<NamedStreamRequest>(bytes)
        + ok::<NamedStreamAnswer>(bytes)
        + ok::<StreamRequest>(bytes)
        + ok::<StreamAnswer>(bytes)
        + usize::from(wire::decode_snapshot::<DirectorySnapshot>(bytes).is_ok())
        + usize::from(wire::decode_snapshot::<UsersSnapshot>(bytes).is_ok())
        + usize::from(wire::decode_snapshot::<SessionsSnapshot>(bytes).is_ok())
        + usize::from(decode_framed::<DeliverHeader>(&shared).is_ok())
        + usize::from(decode_records(&shared).is_ok())
        + usize::from(
            Sealer::new(Some(b"0123456789abcdef"), "c")
                .open(b"s", bytes)
                .is_ok(),
        )
        + usize::from(Sealer::new(None, "c").open(b"s", bytes).is_ok())
}

fn round_trips<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(value: &T) {
    assert_eq!(&wire::decode::<T>(&wire::encode(value)).unwrap(), value);
}

#[test]
fn every_valid_sample_round_trips() {
    round_trips(&DirectoryCommand::ForgetNode { node: node("x") });
    round_trips(&ControlRequest::Ping);
    round_trips(&ControlResponse::StreamOwner(None));
    for (name, bytes) in samples() {
        assert!(decode_everything(&bytes) > 0, "{name} decodes as itself");
    }
}

#[test]
fn length_prefixes_claiming_huge_sizes_are_errors() {
    // bincode varint 0xfd: a u64 follows. Claim 2^44 bytes and provide three.
    let mut bomb = vec![0xfd];
    bomb.extend_from_slice(&(1u64 << 44).to_le_bytes());
    bomb.extend_from_slice(b"abc");
    for prefix in [vec![], vec![0], vec![1], vec![0, 0], vec![2, 0]] {
        let mut message = prefix;
        message.extend_from_slice(&bomb);
        decode_everything(&message);
    }
}

fn mutated(sample: Vec<u8>, edits: Vec<(usize, u8, u8)>) -> Vec<u8> {
    let mut bytes = sample;
    for (position, value, kind) in edits {
        let at = position % (bytes.len() + 1);
        match kind % 4 {
            0 if at < bytes.len() => bytes[at] = value,
            1 => bytes.insert(at, value),
            2 if at < bytes.len() => {
                bytes.remove(at);
            }
            _ => bytes.truncate(at),
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        decode_everything(&bytes);
    }

    #[test]
    fn mutated_valid_messages_never_panic(
        pick in any::<usize>(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..8),
    ) {
        let samples = samples();
        let (_, sample) = samples[pick % samples.len()].clone();
        decode_everything(&mutated(sample, edits));
    }

    #[test]
    fn every_cut_of_a_valid_message_is_refused_or_decodes(pick in any::<usize>(), cut in any::<usize>()) {
        let samples = samples();
        let (_, sample) = &samples[pick % samples.len()];
        decode_everything(&sample[..cut % (sample.len() + 1)]);
    }
}
