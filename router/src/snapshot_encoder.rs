//! Encodes the directory's snapshot straight from its tables, in exactly the bytes of
//! `DirectorySnapshot` (so every reader, old layouts included, is unchanged), without the
//! owned copy `Directory::to_snapshot` makes: that copy held a `SessionKey` and a tuple per
//! session (about 56 bytes each at short keys) while the snapshot was encoded, on every node,
//! at every snapshot, and the allocator kept the pages (docs/scale.md).

use oort_common::cluster::raft::{LogId, StoredMembership};
use oort_common::cluster::{NodeRecord, StreamEntry};
use oort_common::{NodeId, SessionKey};
use serde::Serialize;
use serde::ser::{SerializeSeq, Serializer};

use crate::session_table::SessionTable;

/// `DirectorySnapshot`, borrowed: the same fields in the same order.
#[derive(Serialize)]
pub(crate) struct SnapshotRef<'a> {
    pub last_applied: &'a Option<LogId>,
    pub last_membership: &'a StoredMembership,
    pub nodes: Vec<(&'a NodeId, &'a NodeRecord)>,
    pub sessions: Vec<NodeSessionsRef<'a>>,
    pub channels: Vec<(&'a String, Vec<&'a NodeId>)>,
    pub users: Vec<(&'a String, &'a Vec<SessionKey>)>,
    pub streams: Vec<(&'a String, &'a StreamEntry)>,
    pub next_stream_generation: u64,
}

/// `NodeSessions`, borrowed: one owner and its sessions, read from the table as they are
/// written (one pass over the table per owner, nothing copied).
#[derive(Serialize)]
pub(crate) struct NodeSessionsRef<'a> {
    pub node: &'a NodeId,
    pub sessions: HeldBy<'a>,
}

pub(crate) struct HeldBy<'a> {
    pub table: &'a SessionTable,
    pub node: &'a NodeId,
    pub count: usize,
}

impl Serialize for HeldBy<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.count))?;
        for (key, node, epoch) in self.table.iter() {
            if node == self.node {
                seq.serialize_element(&(key, epoch))?;
            }
        }
        seq.end()
    }
}

/// Sessions per owner, counted in one pass (a sequence's length goes first in the encoding).
pub(crate) fn counts(table: &SessionTable) -> Vec<(&NodeId, usize)> {
    let mut counts: std::collections::BTreeMap<&NodeId, usize> = std::collections::BTreeMap::new();
    for (_, node, _) in table.iter() {
        *counts.entry(node).or_default() += 1;
    }
    counts.into_iter().collect()
}
