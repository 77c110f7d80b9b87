//! The cluster as one node sees it, for `GET /v1/cluster`.

use oort_common::NodeId;
use oort_common::cluster::raft_id;
use openraft::ServerState;
use serde::Serialize;

use super::core::Core;
use super::peers::PeerTable;

/// The cluster from this node's point of view.
#[derive(Clone, Debug, Serialize)]
pub struct ClusterStatus {
    /// The cluster's name.
    pub cluster: String,
    /// This node.
    pub node: String,
    /// This node's raft role: `leader`, `follower`, `candidate` or `learner`.
    pub role: &'static str,
    /// Ready for clients (see `ClusterRouter::is_ready`).
    pub ready: bool,
    /// The leader, if known.
    pub leader: Option<String>,
    /// The current raft term.
    pub term: u64,
    /// The last log index applied here.
    pub applied_index: Option<u64>,
    /// The last log index stored here.
    pub last_log_index: Option<u64>,
    /// The last snapshot's log index.
    pub snapshot_index: Option<u64>,
    /// The log is purged up to this index (entries before it exist only in snapshots).
    pub purged_index: Option<u64>,
    /// Size of the last snapshot built or received here, in bytes.
    pub snapshot_bytes: u64,
    /// Sessions registered cluster-wide (this node's replica).
    pub sessions: usize,
    /// Every node the directory's node table lists, up or down.
    pub directory_nodes: Vec<String>,
    /// Every member, and nodes heard from that are not members yet.
    pub members: Vec<MemberStatus>,
    /// This node's NATS connection.
    pub nats: NatsStatus,
}

/// This node's NATS connection, for operators (`oort status`).
#[derive(Clone, Debug, Serialize)]
pub struct NatsStatus {
    /// `connected` or `disconnected` (a single node has no NATS and says `none`).
    pub state: &'static str,
    /// The configured servers, without credentials (a URL may carry `user:password@`).
    pub servers: Vec<String>,
}

/// One node.
#[derive(Clone, Debug, Serialize)]
pub struct MemberStatus {
    /// The node's id.
    pub node: String,
    /// `voter`, `learner`, `joining` (heard from, not a member yet) or `gone` (not a member,
    /// silent).
    pub role: &'static str,
    /// Heard from within the node timeout (always true for this node).
    pub alive: bool,
    /// Milliseconds since its last announcement (none for this node).
    pub last_seen_ms: Option<u64>,
    /// The last log index it applied, as it announced.
    pub applied_index: Option<u64>,
    /// How far its applied index trails this node's.
    pub lag: Option<u64>,
    /// Up in the directory (false once declared down).
    pub up: bool,
    /// Sessions it holds.
    pub sessions: u64,
}

pub(super) fn build(core: &Core, peers: &PeerTable, ready: bool) -> ClusterStatus {
    let inner = core;
    let metrics = inner.raft.metrics().borrow().clone();
    let membership = metrics.membership_config.membership().clone();
    let directory_nodes = inner.directory.nodes();
    let seen = peers.last_seen();
    let applied_here = metrics.last_applied.map(|log| log.index);
    let timeout = inner.config.node_timeout.0;
    let member = |name: &NodeId, role: &'static str| {
        let record = directory_nodes.get(name);
        let (alive, last_seen_ms, applied) = if *name == inner.node {
            (true, None, applied_here)
        } else {
            match seen.get(name) {
                Some((age, applied)) => {
                    (*age < timeout, Some(age.as_millis() as u64), Some(*applied))
                }
                None => (false, None, None),
            }
        };
        MemberStatus {
            node: name.to_string(),
            role,
            alive,
            last_seen_ms,
            applied_index: applied,
            lag: applied_here
                .zip(applied)
                .map(|(here, there)| here.saturating_sub(there)),
            up: record.is_some_and(|r| r.up),
            sessions: record.map_or(0, |r| r.sessions),
        }
    };
    let mut members: Vec<MemberStatus> = membership
        .nodes()
        .map(|(id, info)| {
            let role = if membership.voter_ids().any(|voter| voter == *id) {
                "voter"
            } else {
                "learner"
            };
            member(&NodeId::from(info.name.as_str()), role)
        })
        .collect();
    for (name, (age, _)) in &seen {
        if membership.get_node(&raft_id(name)).is_none() {
            members.push(member(
                name,
                if *age < timeout { "joining" } else { "gone" },
            ));
        }
    }
    members.sort_by(|a, b| a.node.cmp(&b.node));
    let role = match metrics.state {
        ServerState::Leader => "leader",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Follower => "follower",
        ServerState::Shutdown => "shutdown",
    };
    ClusterStatus {
        cluster: inner.config.name.clone(),
        node: inner.node.to_string(),
        role,
        ready,
        leader: metrics
            .current_leader
            .and_then(|id| inner.member_name(id))
            .map(|n| n.to_string()),
        term: metrics.current_term,
        applied_index: applied_here,
        last_log_index: metrics.last_log_index,
        snapshot_index: metrics.snapshot.map(|log| log.index),
        purged_index: metrics.purged.map(|log| log.index),
        snapshot_bytes: inner.directory.last_snapshot_bytes(),
        sessions: inner.directory.len(),
        directory_nodes: directory_nodes.keys().map(ToString::to_string).collect(),
        members,
        nats: NatsStatus {
            state: if inner.nats.is_connected() {
                "connected"
            } else {
                "disconnected"
            },
            servers: inner
                .config
                .nats
                .iter()
                .map(|url| without_credentials(url))
                .collect(),
        },
    }
}

/// `url` without the `user:password@` (or `token@`) a NATS URL may carry.
fn without_credentials(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    if scheme.is_empty() {
        host.to_owned()
    } else {
        format!("{scheme}://{host}")
    }
}

#[cfg(test)]
mod tests {
    use super::without_credentials;

    #[test]
    fn server_urls_lose_their_credentials() {
        assert_eq!(
            without_credentials("nats://u:p@host:4222"),
            "nats://host:4222"
        );
        assert_eq!(
            without_credentials("nats://tok@host:4222"),
            "nats://host:4222"
        );
        assert_eq!(without_credentials("tls://host:4222"), "tls://host:4222");
        assert_eq!(without_credentials("host:4222"), "host:4222");
    }
}
