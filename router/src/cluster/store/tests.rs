//! Tests of the raft storage: openraft's conformance suite, durability across a reopen, and
//! snapshot round trips (in memory, and through the disk as a restarting node would).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use oort_common::cluster::{DirectoryCommand, NodeInfo};
use oort_common::{Epoch, NodeId, SessionKey};
use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{CommittedLeaderId, EntryPayload, Membership, RaftLogReader, RaftSnapshotBuilder};

use super::{LogStore, StateMachine};
use crate::cluster::types::{Entry, LogId, StorageError, TypeConfig, Vote};

/// A fresh directory under the system's temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        Self(std::env::temp_dir().join(format!(
            "oort-raft-store-{}-{nanos}-{n}",
            std::process::id()
        )))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Builds a log store in a fresh directory and a state machine persisting its snapshots there.
struct Persistent;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for Persistent {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError> {
        let dir = TempDir::new();
        let store = LogStore::open(&dir.0).unwrap();
        let machine = StateMachine::open(&store, None).await.unwrap();
        Ok((dir, store, machine))
    }
}

/// Like [`Persistent`], with a state machine keeping its snapshots in memory only.
struct Volatile;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for Volatile {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError> {
        let dir = TempDir::new();
        let store = LogStore::open(&dir.0).unwrap();
        Ok((dir, store, StateMachine::new(None)))
    }
}

#[test]
fn passes_openraft_storage_suite_with_persisted_snapshots() {
    Suite::test_all(Persistent).unwrap();
}

#[test]
fn passes_openraft_storage_suite_with_in_memory_snapshots() {
    Suite::test_all(Volatile).unwrap();
}

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn entry(term: u64, index: u64, payload: EntryPayload<TypeConfig>) -> Entry {
    Entry {
        log_id: log_id(term, index),
        payload,
    }
}

fn node_up(node: &str) -> EntryPayload<TypeConfig> {
    EntryPayload::Normal(DirectoryCommand::NodeUp {
        node: NodeId::from(node),
        epoch: Epoch(1),
    })
}

fn register(node: &str, keys: &[&str]) -> EntryPayload<TypeConfig> {
    let sessions = keys
        .iter()
        .map(|key| (SessionKey::from(*key), Epoch(5)))
        .collect();
    EntryPayload::Normal(DirectoryCommand::Register {
        node: NodeId::from(node),
        sessions,
    })
}

/// A membership entry, a few nodes up and five sessions registered over two nodes.
fn directory_entries() -> Vec<Entry> {
    let members = [
        (1, NodeInfo { name: "a".into() }),
        (2, NodeInfo { name: "b".into() }),
    ];
    let membership = Membership::new(
        vec![[1, 2].into()],
        std::collections::BTreeMap::from(members),
    );
    vec![
        entry(1, 1, EntryPayload::Membership(membership)),
        entry(1, 2, EntryPayload::Blank),
        entry(1, 3, node_up("a")),
        entry(1, 4, node_up("b")),
        entry(1, 5, register("a", &["k1", "k2", "k3"])),
        entry(2, 6, register("b", &["k4", "k5"])),
    ]
}

const KEYS: [&str; 6] = ["k1", "k2", "k3", "k4", "k5", "absent"];

fn owners(machine: &StateMachine) -> Vec<Option<oort_common::cluster::Owner>> {
    let keys: Vec<SessionKey> = KEYS.iter().map(|key| SessionKey::from(*key)).collect();
    machine.reader().owners(&keys)
}

#[tokio::test]
async fn a_reopened_log_store_has_the_same_vote_entries_and_committed_id() {
    let dir = TempDir::new();
    let entries = directory_entries();
    let vote = Vote::new_committed(2, 1);
    {
        let mut store = LogStore::open(&dir.0).unwrap();
        store.save_vote(&vote).await.unwrap();
        store.blocking_append(entries.clone()).await.unwrap();
        store.save_committed(Some(log_id(1, 5))).await.unwrap();
        store.purge(log_id(1, 1)).await.unwrap();
        store.truncate(log_id(2, 6)).await.unwrap();
    }
    let mut store = LogStore::open(&dir.0).unwrap();
    assert_eq!(store.read_vote().await.unwrap(), Some(vote));
    assert_eq!(store.read_committed().await.unwrap(), Some(log_id(1, 5)));
    assert_eq!(
        store.try_get_log_entries(0..100).await.unwrap(),
        entries[1..5].to_vec()
    );
    assert_eq!(
        store.try_get_log_entries(3..=3).await.unwrap(),
        entries[2..3].to_vec()
    );
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 1)));
    assert_eq!(state.last_log_id, Some(log_id(1, 5)));
}

#[tokio::test]
async fn a_snapshot_installed_elsewhere_answers_the_same_owners() {
    let (applied_tx, mut applied_rx) = tokio::sync::mpsc::channel(64);
    let mut leader = StateMachine::new(Some(applied_tx));
    let responses = leader.apply(directory_entries()).await.unwrap();
    assert_eq!(
        responses.iter().map(|r| r.changed).collect::<Vec<_>>(),
        [0, 0, 0, 0, 3, 2]
    );
    // The listener hears every Normal command, in log order.
    let mut heard = Vec::new();
    while let Ok((index, command, _)) = applied_rx.try_recv() {
        heard.push((index, command));
    }
    let normal: Vec<_> = directory_entries()
        .into_iter()
        .filter_map(|entry| match entry.payload {
            EntryPayload::Normal(command) => Some((entry.log_id.index, command)),
            _ => None,
        })
        .collect();
    assert_eq!(heard, normal);

    let snapshot = leader
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let size = snapshot.snapshot.get_ref().len() as u64;
    assert_eq!(leader.reader().last_snapshot_bytes(), size);

    let mut follower = StateMachine::new(None);
    let mut received = follower.begin_receiving_snapshot().await.unwrap();
    *received = *snapshot.snapshot;
    follower
        .install_snapshot(&snapshot.meta, received)
        .await
        .unwrap();

    assert_eq!(owners(&follower), owners(&leader));
    assert_eq!(
        owners(&follower)[3]
            .as_ref()
            .map(|owner| owner.node.as_str()),
        Some("b")
    );
    let reader = follower.reader();
    assert_eq!(reader.len(), 5);
    assert_eq!(reader.nodes(), leader.reader().nodes());
    assert_eq!(reader.last_applied_index(), Some(6));
    assert_eq!(reader.last_snapshot_bytes(), size);
    assert_eq!(
        follower.applied_state().await.unwrap(),
        leader.applied_state().await.unwrap()
    );
    let current = follower.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta, snapshot.meta);
}

#[tokio::test]
async fn a_restarted_state_machine_starts_from_its_last_snapshot() {
    let dir = TempDir::new();
    let before = {
        let store = LogStore::open(&dir.0).unwrap();
        let mut machine = StateMachine::open(&store, None).await.unwrap();
        machine.apply(directory_entries()).await.unwrap();
        let snapshot = machine
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        (
            owners(&machine),
            machine.applied_state().await.unwrap(),
            snapshot.meta,
        )
    };
    let store = LogStore::open(&dir.0).unwrap();
    let mut machine = StateMachine::open(&store, None).await.unwrap();
    assert_eq!(owners(&machine), before.0);
    assert_eq!(machine.applied_state().await.unwrap(), before.1);
    assert_eq!(
        machine.get_current_snapshot().await.unwrap().unwrap().meta,
        before.2
    );
    assert!(machine.reader().last_snapshot_bytes() > 0);
}

#[tokio::test]
async fn a_snapshot_whose_data_contradicts_its_metadata_is_refused() {
    let mut leader = StateMachine::new(None);
    leader.apply(directory_entries()).await.unwrap();
    let snapshot = leader
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let mut meta = snapshot.meta.clone();
    meta.last_log_id = Some(log_id(9, 60));
    let mut follower = StateMachine::new(None);
    assert!(
        follower
            .install_snapshot(&meta, snapshot.snapshot)
            .await
            .is_err()
    );
    assert!(follower.reader().is_empty());
    assert!(follower.get_current_snapshot().await.unwrap().is_none());
}

/// A node that crashed after its log was purged behind a snapshot: openraft's start-up (the same
/// `get_initial_state` that `Raft::new` runs) rebuilds the directory from the stored snapshot
/// and re-applies the committed entries after it. Without a stored snapshot it cannot start.
#[tokio::test]
async fn a_node_restarts_after_its_log_was_purged() {
    let dir = TempDir::new();
    let mut entries = directory_entries();
    entries.push(entry(2, 7, register("a", &["k6"])));
    {
        let mut store = LogStore::open(&dir.0).unwrap();
        let mut machine = StateMachine::open(&store, None).await.unwrap();
        store.blocking_append(entries.clone()).await.unwrap();
        machine.apply(entries[..6].to_vec()).await.unwrap();
        machine
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        store.purge(log_id(1, 5)).await.unwrap();
        // Entry 7 is committed but the node stops before applying it.
        store.save_committed(Some(log_id(2, 7))).await.unwrap();
    }

    let mut store = LogStore::open(&dir.0).unwrap();
    let mut machine = StateMachine::open(&store, None).await.unwrap();
    let state = openraft::StorageHelper::new(&mut store, &mut machine)
        .get_initial_state()
        .await
        .unwrap();
    assert_eq!(state.committed, Some(log_id(2, 7)));
    let reader = machine.reader();
    assert_eq!(reader.last_applied_index(), Some(7));
    assert_eq!(
        reader.owner("k6").map(|owner| owner.node.to_string()),
        Some("a".into())
    );
    assert_eq!(
        reader.owner("k4").map(|owner| owner.node.to_string()),
        Some("b".into())
    );
    assert_eq!(reader.len(), 6);
    drop((store, machine));

    let mut store = LogStore::open(&dir.0).unwrap();
    let mut volatile = StateMachine::new(None);
    let result = openraft::StorageHelper::new(&mut store, &mut volatile)
        .get_initial_state()
        .await;
    assert!(
        result.is_err(),
        "entries 1..=5 are gone: only the stored snapshot had them"
    );
}
