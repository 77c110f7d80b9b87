//! Checks on raft RPCs before openraft sees them. openraft trusts its network: many of its
//! invariants are debug assertions, and some well-formed but impossible requests make its core
//! panic (a term of `u64::MAX` overflows at the next election; entries with a gap panic when
//! applied; a membership naming a voter without a node panics at the next election). A request
//! no correct peer sends is dropped (and counted) here; a real peer retries.
//!
//! These checks keep a node alive, not honest: without `cluster.secret` or NATS permissions,
//! anyone who can publish on the cluster's subjects can pose as a leader and rewrite the
//! directory. That is what the envelope's authentication and NATS permissions are for.

use oort_common::cluster::raft::{RaftId, RaftRequest, StoredMembership, TypeConfig};
use oort_common::cluster::raft_id;
use oort_common::{NodeId, wire::MAX_SNAPSHOT_BYTES};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::{EntryPayload, LogId, Membership, Vote};

use oort_common::cluster::NodeInfo;

/// Terms and indexes beyond these are impossible in practice and overflow openraft's arithmetic
/// near `u64::MAX`.
const MAX_TERM: u64 = 1 << 48;
const MAX_INDEX: u64 = 1 << 62;

/// Why a request is refused, for the log.
pub(crate) type Refusal = String;

/// Accepts a request that a correct peer could have sent to node `me`.
pub(crate) fn check(request: &RaftRequest, me: RaftId) -> Result<(), Refusal> {
    match request {
        RaftRequest::Append(rpc) => check_append(rpc, me),
        RaftRequest::Vote(rpc) => check_vote(rpc, me),
        RaftRequest::Snapshot(rpc) => check_snapshot_chunk(rpc, me),
    }
}

/// A leader's vote: committed, someone else's, with a sane term.
fn check_leader_vote(vote: &Vote<RaftId>, me: RaftId) -> Result<u64, Refusal> {
    if !vote.is_committed() {
        return Err("a leader's request with an uncommitted vote".into());
    }
    check_other_vote(vote, me)
}

fn check_other_vote(vote: &Vote<RaftId>, me: RaftId) -> Result<u64, Refusal> {
    let leader = vote.leader_id();
    if leader.node_id == me {
        return Err("a request in this node's own name".into());
    }
    if leader.term >= MAX_TERM {
        return Err(format!("term {} is out of range", leader.term));
    }
    Ok(leader.term)
}

/// A log id no later than term `term`, with a sane index.
fn check_log_id(log_id: &LogId<RaftId>, term: u64, what: &str) -> Result<(), Refusal> {
    if log_id.leader_id.term > term {
        return Err(format!("{what} is from a later term than the request"));
    }
    if log_id.index >= MAX_INDEX {
        return Err(format!("{what} has index {} out of range", log_id.index));
    }
    Ok(())
}

fn check_append(rpc: &AppendEntriesRequest<TypeConfig>, me: RaftId) -> Result<(), Refusal> {
    let term = check_leader_vote(&rpc.vote, me)?;
    if let Some(prev) = &rpc.prev_log_id {
        check_log_id(prev, term, "prev_log_id")?;
    }
    if let Some(commit) = &rpc.leader_commit {
        check_log_id(commit, term, "leader_commit")?;
    }
    let first = rpc.prev_log_id.map_or(0, |prev| prev.index + 1);
    let mut previous_term = rpc.prev_log_id.map_or(0, |prev| prev.leader_id.term);
    for (offset, entry) in rpc.entries.iter().enumerate() {
        check_log_id(&entry.log_id, term, "an entry")?;
        if entry.log_id.index != first + offset as u64 {
            return Err("entries do not follow prev_log_id one by one".into());
        }
        if entry.log_id.leader_id.term < previous_term {
            return Err("entries go back in term".into());
        }
        previous_term = entry.log_id.leader_id.term;
        if let EntryPayload::Membership(membership) = &entry.payload {
            check_membership(membership)?;
        }
    }
    Ok(())
}

fn check_vote(rpc: &VoteRequest<RaftId>, me: RaftId) -> Result<(), Refusal> {
    if rpc.vote.is_committed() {
        return Err("a vote request with a committed vote".into());
    }
    let term = check_other_vote(&rpc.vote, me)?;
    if let Some(last) = &rpc.last_log_id {
        check_log_id(last, term, "last_log_id")?;
    }
    Ok(())
}

fn check_snapshot_chunk(
    rpc: &InstallSnapshotRequest<TypeConfig>,
    me: RaftId,
) -> Result<(), Refusal> {
    let term = check_leader_vote(&rpc.vote, me)?;
    if let Some(last) = &rpc.meta.last_log_id {
        check_log_id(last, term, "the snapshot's last log id")?;
    }
    check_stored_membership(&rpc.meta.last_membership)?;
    // A chunk is kept in memory at its offset: an offset of 2^40 would need a terabyte.
    let end = usize::try_from(rpc.offset)
        .ok()
        .and_then(|offset| offset.checked_add(rpc.data.len()));
    match end {
        Some(end) if end <= MAX_SNAPSHOT_BYTES => Ok(()),
        _ => Err(format!(
            "snapshot chunk at offset {} would pass {MAX_SNAPSHOT_BYTES} bytes",
            rpc.offset
        )),
    }
}

/// A membership a leader could have made: one or two configurations (two while a change is in
/// progress), none empty, every voter a named node, and every name matching its id.
pub(crate) fn check_membership(membership: &Membership<RaftId, NodeInfo>) -> Result<(), Refusal> {
    let configs = membership.get_joint_config();
    if configs.is_empty() || configs.len() > 2 || configs.iter().any(|c| c.is_empty()) {
        return Err("a membership with no voters or too many configurations".into());
    }
    if let Some(voter) = membership
        .voter_ids()
        .find(|id| membership.get_node(id).is_none())
    {
        return Err(format!("voter {voter} has no node entry"));
    }
    if let Some((id, _)) = membership
        .nodes()
        .find(|(id, info)| raft_id(&NodeId::from(info.name.as_str())) != **id)
    {
        return Err(format!("node {id}'s name does not match its id"));
    }
    Ok(())
}

/// The same, for a membership that may be the empty one of a fresh node.
pub(crate) fn check_stored_membership(stored: &StoredMembership) -> Result<(), Refusal> {
    if stored.log_id().is_none() && stored.membership().get_joint_config().is_empty() {
        return Ok(());
    }
    check_membership(stored.membership())
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use oort_common::cluster::raft::Entry;
    use openraft::CommittedLeaderId;

    use super::*;

    const ME: RaftId = 100;

    fn log_id(term: u64, index: u64) -> LogId<RaftId> {
        LogId::new(CommittedLeaderId::new(term, 7), index)
    }

    fn append(term: u64, prev: Option<LogId<RaftId>>, entries: Vec<Entry>) -> RaftRequest {
        RaftRequest::Append(AppendEntriesRequest {
            vote: Vote::new_committed(term, 7),
            prev_log_id: prev,
            entries,
            leader_commit: prev,
        })
    }

    fn blank(term: u64, index: u64) -> Entry {
        Entry {
            log_id: log_id(term, index),
            payload: EntryPayload::Blank,
        }
    }

    fn named(names: &[&str]) -> Membership<RaftId, NodeInfo> {
        let nodes: BTreeMap<RaftId, NodeInfo> = names
            .iter()
            .map(|name| {
                let info = NodeInfo {
                    name: (*name).to_owned(),
                };
                (raft_id(&NodeId::from(*name)), info)
            })
            .collect();
        let voters: BTreeSet<RaftId> = nodes.keys().copied().collect();
        Membership::new(vec![voters], nodes)
    }

    #[test]
    fn what_a_leader_sends_passes() {
        assert!(
            check(
                &append(3, Some(log_id(3, 4)), vec![blank(3, 5), blank(3, 6)]),
                ME
            )
            .is_ok()
        );
        assert!(check(&append(3, None, vec![blank(0, 0)]), ME).is_ok());
        let membership = Entry {
            log_id: log_id(3, 5),
            payload: EntryPayload::Membership(named(&["n1", "n2", "n3"])),
        };
        assert!(check(&append(3, Some(log_id(3, 4)), vec![membership]), ME).is_ok());
        let vote = RaftRequest::Vote(VoteRequest::new(Vote::new(4, 7), Some(log_id(3, 6))));
        assert!(check(&vote, ME).is_ok());
    }

    #[test]
    fn impossible_requests_are_refused() {
        let gap = append(3, Some(log_id(3, 4)), vec![blank(3, 5), blank(3, 9)]);
        let not_after_prev = append(3, Some(log_id(3, 4)), vec![blank(3, 7)]);
        let huge_term = append(u64::MAX, None, vec![]);
        let later_term_entry = append(3, Some(log_id(3, 4)), vec![blank(4, 5)]);
        let mine = RaftRequest::Append(AppendEntriesRequest {
            vote: Vote::new_committed(3, ME),
            prev_log_id: None,
            entries: vec![],
            leader_commit: None,
        });
        let uncommitted = RaftRequest::Append(AppendEntriesRequest {
            vote: Vote::new(3, 7),
            prev_log_id: None,
            entries: vec![],
            leader_commit: None,
        });
        let mut nameless = named(&["n1", "n2"]);
        nameless = Membership::new(
            vec![nameless.voter_ids().chain([42]).collect()],
            nameless
                .nodes()
                .map(|(id, info)| (*id, info.clone()))
                .collect::<BTreeMap<_, _>>(),
        );
        let bad_membership = append(
            3,
            Some(log_id(3, 4)),
            vec![Entry {
                log_id: log_id(3, 5),
                payload: EntryPayload::Membership(nameless),
            }],
        );
        let committed_vote_request =
            RaftRequest::Vote(VoteRequest::new(Vote::new_committed(4, 7), None));
        for (name, request) in [
            ("gap", gap),
            ("not after prev", not_after_prev),
            ("huge term", huge_term),
            ("entry from a later term", later_term_entry),
            ("our own name", mine),
            ("uncommitted leader vote", uncommitted),
            ("voter without a node", bad_membership),
            ("committed vote request", committed_vote_request),
        ] {
            assert!(check(&request, ME).is_err(), "{name} is refused");
        }
    }

    #[test]
    fn a_snapshot_chunk_far_past_the_limit_is_refused() {
        let chunk = |offset: u64| {
            RaftRequest::Snapshot(InstallSnapshotRequest {
                vote: Vote::new_committed(3, 7),
                meta: Default::default(),
                offset,
                data: vec![0; 10],
                done: false,
            })
        };
        assert!(check(&chunk(0), ME).is_ok());
        assert!(check(&chunk(1 << 40), ME).is_err());
        assert!(check(&chunk(u64::MAX), ME).is_err());
    }
}
