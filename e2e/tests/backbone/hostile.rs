//! Hostile input on the backbone: a NATS client that is not a node publishes garbage,
//! truncated, oversized and well-formed-but-forged messages to every subject of a live
//! three-node cluster. Afterwards every node must be alive, ready and routing, with the same
//! membership, leader and term, every session still registered, and no forged frame delivered
//! to any client (proved by a marker sent after the attack arriving first).

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use oort_common::cluster::raft::{RaftRequest, TypeConfig};
use oort_common::cluster::{
    BroadcastHeader, ControlRequest, DeliverHeader, DirectoryCommand, Hello, Subjects,
    encode_framed, encode_records, raft_id,
};
use oort_common::envelope::Sealer;
use oort_common::{DeliveryMode, Epoch, FrameKind, NodeId, SessionKey, wire};
use oort_e2e::cluster::{FAST_TIMINGS, TestCluster};
use oort_e2e::nats::NatsServer;
use oort_e2e::{WsClient, eventually};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::{CommittedLeaderId, EntryPayload, LogId, SnapshotMeta, Vote};

use crate::{CONVERGE, connect, v1_send};

const NODES: [&str; 3] = ["n1", "n2", "n3"];

/// A NATS client that is not part of the cluster.
struct Attacker {
    nats: async_nats::Client,
    subjects: Subjects,
    /// Seals like a node of a cluster with no secret.
    plain: Sealer,
    /// Seals with a secret that is not the cluster's.
    wrong_secret: Sealer,
    sent: usize,
}

impl Attacker {
    async fn connect(nats_url: &str, cluster: &str) -> Self {
        Self {
            nats: async_nats::connect(nats_url)
                .await
                .expect("attacker connects"),
            subjects: Subjects::new(cluster),
            plain: Sealer::new(None, cluster),
            wrong_secret: Sealer::new(Some(b"not-the-cluster-secret"), cluster),
            sent: 0,
        }
    }

    /// Every subject a node listens on.
    fn subjects(&self) -> Vec<String> {
        let mut subjects = vec![self.subjects.hello(), self.subjects.broadcast()];
        for node in NODES {
            let id = raft_id(&NodeId::from(node));
            subjects.push(self.subjects.raft(id));
            subjects.push(self.subjects.control(id));
            subjects.push(self.subjects.deliver(id));
        }
        subjects
    }

    /// Sends `payload` as a request (so an answer would be seen) and asserts that no node
    /// answers it: everything sent here must be dropped.
    async fn fire(&mut self, subject: &str, payload: Vec<u8>) {
        let answer = self.request(subject, payload).await;
        assert!(
            answer.is_err(),
            "a node answered hostile input on {subject}: {:?}",
            answer.map(|m| m.payload)
        );
    }

    /// Sends `payload` as a request; an answer (an error for the sender) is allowed.
    async fn request(
        &mut self,
        subject: &str,
        payload: Vec<u8>,
    ) -> Result<async_nats::Message, async_nats::RequestError> {
        self.sent += 1;
        let request = async_nats::Request::new()
            .payload(Bytes::from(payload))
            .timeout(Some(Duration::from_millis(150)));
        self.nats.send_request(subject.to_owned(), request).await
    }

    /// A body wrapped as an unauthenticated node would.
    fn plain(&self, subject: &str, body: &[u8]) -> Vec<u8> {
        self.plain.seal(subject.as_bytes(), body).0
    }
}

/// A byte pattern that is not random, so failures reproduce.
fn garbage(seed: usize, length: usize) -> Vec<u8> {
    (0..length)
        .map(|i| (i.wrapping_mul(31).wrapping_add(seed * 17) % 251) as u8)
        .collect()
}

/// bincode's varint marker for a u64 length, a length of 2^44, and three bytes: the message
/// that aborted every node before decoding was bounded.
fn length_bomb() -> Vec<u8> {
    let mut bomb = vec![0xfd];
    bomb.extend_from_slice(&(1u64 << 44).to_le_bytes());
    bomb.extend_from_slice(b"abc");
    bomb
}

fn log_id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 7), index)
}

/// Raft requests that no correct peer sends and that would stop openraft's core.
fn impossible_raft_requests(victim: u64) -> Vec<RaftRequest> {
    let blank = |index| oort_common::cluster::raft::Entry {
        log_id: log_id(3, index),
        payload: EntryPayload::Blank,
    };
    let snapshot = |offset, data: Vec<u8>, done| {
        RaftRequest::Snapshot(InstallSnapshotRequest::<TypeConfig> {
            vote: Vote::new_committed(1 << 40, 7),
            meta: SnapshotMeta {
                snapshot_id: "forged".into(),
                ..SnapshotMeta::default()
            },
            offset,
            data,
            done,
        })
    };
    vec![
        // Entries with a gap: openraft panics applying them.
        RaftRequest::Append(AppendEntriesRequest {
            vote: Vote::new_committed(3, 7),
            prev_log_id: Some(log_id(3, 1)),
            entries: vec![blank(2), blank(9)],
            leader_commit: Some(log_id(3, 9)),
        }),
        // A term whose successor overflows.
        RaftRequest::Vote(VoteRequest::new(Vote::new(u64::MAX, 7), None)),
        // The victim's own name as leader: it would lead without an election.
        RaftRequest::Append(AppendEntriesRequest {
            vote: Vote::new_committed(9, victim),
            prev_log_id: None,
            entries: vec![],
            leader_commit: None,
        }),
        // A snapshot chunk a terabyte in: the buffer would grow to match.
        snapshot(1 << 40, vec![1], false),
        // A whole snapshot that does not decode: installing it would stop raft for good.
        snapshot(0, garbage(5, 300), true),
    ]
}

/// Messages a node would act on, were they authentic: they must be refused when the cluster
/// has a secret and they do not carry its tag.
fn forged_but_well_formed(attacker: &Attacker, victim: &str) -> Vec<(String, Vec<u8>)> {
    let victim_id = raft_id(&NodeId::from(victim));
    let subjects = &attacker.subjects;
    let hello = Hello {
        node: NodeId::from(victim),
        incarnation: Epoch(1),
        in_cluster: true,
        leader: Some(NodeId::from("nobody")),
        term: 1 << 30,
        applied: 0,
        leaving: true,
    };
    let delivery = encode_records(&[encode_framed(
        &DeliverHeader {
            request_id: "forged".into(),
            targets: NODES
                .iter()
                .map(|n| SessionKey::from(format!("k-{n}")))
                .collect(),
            kind: FrameKind::Text,
            mode: DeliveryMode::Send,
        },
        b"forged",
    )]);
    let broadcast = encode_framed(
        &BroadcastHeader {
            kind: FrameKind::Text,
            origin: NodeId::from(victim),
        },
        b"forged",
    );
    let mut forged = vec![
        (subjects.hello(), wire::encode(&hello)),
        (subjects.broadcast(), broadcast),
    ];
    for node in NODES {
        let id = raft_id(&NodeId::from(node));
        let leave = ControlRequest::Leave {
            node: NodeId::from(victim),
            incarnation: Epoch(1),
        };
        let purge = ControlRequest::Write(DirectoryCommand::NodeDown {
            node: NodeId::from(victim),
        });
        let vote = RaftRequest::Vote(VoteRequest::new(Vote::new(1 << 20, victim_id), None));
        forged.push((subjects.control(id), wire::encode(&leave)));
        forged.push((subjects.control(id), wire::encode(&purge)));
        forged.push((subjects.raft(id), wire::encode(&vote)));
        forged.push((subjects.deliver(id), delivery.clone()));
    }
    forged
}

/// Sum of `oort_cluster_rejected_messages_total` with `reason` over every node.
async fn rejected(cluster: &TestCluster, reason: &str) -> u64 {
    let mut total = 0;
    for node in cluster.running() {
        let text = cluster
            .http()
            .get(format!("{}/metrics", cluster.node(&node).api_url()))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text");
        let needle = format!("reason=\"{reason}\"");
        total += text
            .lines()
            .filter(|line| {
                line.starts_with("oort_cluster_rejected_messages_total") && line.contains(&needle)
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64;
    }
    total
}

/// The leader, term and voters every node reports; they must all agree.
async fn membership(cluster: &TestCluster) -> (String, u64, BTreeSet<String>) {
    let mut views = BTreeSet::new();
    for node in cluster.running() {
        let status = cluster.status(&node).await.expect("status");
        let voters: BTreeSet<String> = status["members"]
            .as_array()
            .expect("members")
            .iter()
            .filter(|m| m["role"] == "voter")
            .map(|m| m["node"].as_str().unwrap().to_owned())
            .collect();
        views.insert((
            status["leader"].as_str().unwrap_or_default().to_owned(),
            status["term"].as_u64().unwrap_or_default(),
            voters,
        ));
    }
    assert_eq!(views.len(), 1, "every node has the same view: {views:?}");
    views.pop_first().unwrap()
}

/// Every node is alive and ready, and a send through every node reaches every client, the
/// marker arriving before anything else (so no forged frame was delivered).
async fn assert_alive_ready_and_routing(cluster: &TestCluster, clients: &mut [WsClient]) {
    for node in NODES {
        let ready = cluster
            .http()
            .get(format!("{}/readyz", cluster.node(node).api_url()))
            .send()
            .await
            .expect("the node answers")
            .status();
        assert_eq!(ready, 200, "{node} is ready");
    }
    let keys: Vec<String> = NODES.iter().map(|n| format!("k-{n}")).collect();
    let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    for node in NODES {
        let marker = format!("marker via {node}");
        let statuses = v1_send(cluster, node, &key_refs, &marker).await;
        assert!(statuses.iter().all(|s| s == "ok"), "{node}: {statuses:?}");
        for client in clients.iter_mut() {
            assert_eq!(
                client.recv_text().await,
                marker,
                "nothing forged came first"
            );
        }
    }
}

async fn cluster_with(extra: &str) -> (NatsServer, TestCluster, Vec<WsClient>) {
    let nats = NatsServer::start().await;
    let mut cluster = TestCluster::new(vec![nats.url()], &format!("{FAST_TIMINGS}{extra}")).await;
    for name in NODES {
        cluster.add(name, 3).await;
    }
    cluster.wait_converged(3, 3, CONVERGE).await;
    let mut clients = Vec::new();
    for node in NODES {
        clients.push(connect(&cluster, node, &format!("k-{node}")).await);
    }
    (nats, cluster, clients)
}

/// Without a cluster secret (a NATS that only the cluster uses): garbage, cut and oversized
/// messages, length prefixes claiming 2^44 bytes, and raft requests that would stop openraft,
/// on every subject. None of them may hurt a node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_every_subject_hurts_no_node() {
    let (nats, cluster, mut clients) = cluster_with("").await;
    let before = membership(&cluster).await;
    let mut attacker = Attacker::connect(&nats.url(), cluster.name()).await;
    for subject in attacker.subjects() {
        for (seed, length) in [(1, 0), (2, 1), (3, 7), (4, 64), (5, 4096)] {
            attacker.fire(&subject, garbage(seed, length)).await;
            let wrapped = attacker.plain(&subject, &garbage(seed, length));
            attacker.fire(&subject, wrapped).await;
        }
        attacker.fire(&subject, length_bomb()).await;
        let bomb = attacker.plain(&subject, &length_bomb());
        attacker.fire(&subject, bomb).await;
        // A valid message cut short.
        let hello = wire::encode(&Hello {
            node: NodeId::from("x"),
            incarnation: Epoch(1),
            in_cluster: false,
            leader: None,
            term: 0,
            applied: 0,
            leaving: false,
        });
        let cut = attacker.plain(&subject, &hello[..hello.len() / 2]);
        attacker.fire(&subject, cut).await;
    }
    // Announcements are small: anything near NATS's limit is refused unread.
    let hello = attacker.subjects.hello();
    let oversized = attacker.plain(&hello, &garbage(9, 200 << 10));
    attacker.fire(&hello, oversized).await;
    for node in NODES {
        let id = raft_id(&NodeId::from(node));
        let subject = attacker.subjects.raft(id);
        for request in impossible_raft_requests(id) {
            // Most are dropped unanswered; a snapshot that does not decode is answered with
            // an error, so that a real sender starts over.
            let message = attacker.plain(&subject, &wire::encode(&request));
            let _ = attacker.request(&subject, message).await;
        }
    }
    eprintln!("sent {} hostile messages", attacker.sent);
    cluster.wait_converged(3, 3, CONVERGE).await;
    assert_eq!(
        membership(&cluster).await,
        before,
        "no membership or term change"
    );
    assert_alive_ready_and_routing(&cluster, &mut clients).await;
    for reason in ["malformed", "oversize", "invalid"] {
        let count = rejected(&cluster, reason).await;
        assert!(count > 0, "drops for {reason} are counted");
    }
}

/// With a cluster secret: every message above, plus messages nodes would act on if they were
/// authentic (a leave and a purge of a node, a vote with a higher term, deliveries and a
/// broadcast to every session, a hello saying a node leaves), sent without a tag and with the
/// tag of another secret. All are refused as unauthenticated; nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_messages_are_refused_when_the_cluster_has_a_secret() {
    let (nats, cluster, mut clients) =
        cluster_with("  secret: e2e-cluster-secret-0123456789\n").await;
    let before = membership(&cluster).await;
    let mut attacker = Attacker::connect(&nats.url(), cluster.name()).await;
    for victim in NODES {
        for (subject, body) in forged_but_well_formed(&attacker, victim) {
            let plain = attacker.plain(&subject, &body);
            attacker.fire(&subject, plain).await;
            let wrong = attacker.wrong_secret.seal(subject.as_bytes(), &body).0;
            attacker.fire(&subject, wrong).await;
        }
    }
    for subject in attacker.subjects() {
        attacker.fire(&subject, length_bomb()).await;
        attacker.fire(&subject, garbage(3, 100)).await;
    }
    eprintln!("sent {} forged messages", attacker.sent);
    // Give a forged leave or purge every chance to be acted on before looking: one node
    // timeout is when the leader would next reconsider its members.
    let leader = before.0.clone();
    eventually(CONVERGE, "a heartbeat round after the attack", || async {
        let status = cluster.status(&leader).await?;
        (status["applied_index"].as_u64()? > 0).then_some(())
    })
    .await;
    assert_eq!(
        membership(&cluster).await,
        before,
        "no membership or term change"
    );
    for node in NODES {
        let key = format!("k-{node}");
        assert_eq!(
            crate::owner_in_replica(&cluster, node, &key)
                .await
                .as_deref(),
            Some(node),
            "{key} is still registered at {node}"
        );
    }
    assert_alive_ready_and_routing(&cluster, &mut clients).await;
    assert!(rejected(&cluster, "unauthenticated").await >= attacker.sent as u64 / 2);
}
