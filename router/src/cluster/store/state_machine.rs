//! The raft state machine: the session [`Directory`] in memory, with the last applied log id
//! and membership, and its snapshots.
//!
//! The directory is small enough to hold in memory and is read on every routed message, so it is
//! not kept on disk entry by entry. What makes it survive a restart is the snapshot: with
//! [`StateMachine::open`] every snapshot built or installed is written durably to the
//! [`LogStore`] before openraft may purge the log behind it, and a restarting node starts from
//! that snapshot and re-applies the log after it.
//!
//! The router reads the directory through a [`DirectoryReader`], without going through openraft,
//! and hears about applied commands through an optional channel.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use oort_common::cluster::{
    DirectoryCommand, DirectoryResponse, DirectorySnapshot, NodeRecord, Owner, SessionsSnapshot,
    StreamEntry, UsersSnapshot,
};
use oort_common::wire::{self, DecodeError};
use oort_common::{NodeId, SessionKey};
use openraft::storage::RaftStateMachine;
use openraft::storage::SnapshotSignature;
use openraft::{EntryPayload, RaftSnapshotBuilder, StorageIOError};
use tokio::sync::mpsc::Sender;

use super::LogStore;
use super::log::{DbError, OpenError};
use crate::cluster::types::{
    Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use crate::directory::{Directory, StreamOwner};

/// Applied commands, with their log index, as the router hears of them.
pub type AppliedSender = Sender<Applied>;

/// One applied command, as the router hears of it: its log index, the command, and what
/// applying it did (registrations refused, sessions evicted past a user's limit).
pub type Applied = (u64, DirectoryCommand, DirectoryResponse);

/// The replicated state. A snapshot's data is its `DirectorySnapshot` form.
#[derive(Default)]
struct State {
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    directory: Directory,
}

impl State {
    fn encode(&self) -> Vec<u8> {
        self.directory
            .encode_snapshot(&self.last_applied, &self.last_membership)
    }

    fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        // A snapshot from an earlier build lacks the fields added since: before Durable
        // Streams (`UsersSnapshot`), or before channels (`SessionsSnapshot`). Each layout
        // decodes as itself only (no trailing bytes, no early end), so the order of the tries
        // does not matter; the newest goes first because it is the usual case.
        let snapshot: DirectorySnapshot = match wire::decode_snapshot(data) {
            Ok(snapshot) => snapshot,
            Err(err) => {
                if let Ok(old) = wire::decode_snapshot::<UsersSnapshot>(data) {
                    old.into()
                } else if let Ok(old) = wire::decode_snapshot::<SessionsSnapshot>(data) {
                    old.into()
                } else {
                    return Err(err);
                }
            }
        };
        Ok(Self {
            last_applied: snapshot.last_applied,
            last_membership: snapshot.last_membership.clone(),
            directory: Directory::from_snapshot(snapshot),
        })
    }
}

/// Why building, installing or loading a snapshot failed. Kept small inside this module and turned
/// into openraft's (large) error where a trait method returns.
#[derive(Debug, thiserror::Error)]
enum SnapshotError {
    #[error("the directory could not be encoded")]
    Encode,
    #[error("undecodable snapshot: {0}")]
    Decode(#[from] DecodeError),
    #[error("the snapshot's data does not match its metadata")]
    Mismatch,
    #[error("cannot store the snapshot: {0}")]
    Store(#[from] DbError),
    #[error("snapshot task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl SnapshotError {
    fn into_storage(self, signature: Option<SnapshotSignature<u64>>) -> StorageError {
        match self {
            Self::Encode => StorageIOError::read_state_machine(&self),
            Self::Decode(_) | Self::Mismatch => StorageIOError::read_snapshot(signature, &self),
            Self::Store(_) | Self::Task(_) => StorageIOError::write_snapshot(signature, &self),
        }
        .into()
    }
}

impl From<SnapshotError> for OpenError {
    fn from(err: SnapshotError) -> Self {
        Self(Box::new(err))
    }
}

/// The current snapshot. The data is shared so that handing out a copy does not hold the lock.
struct CurrentSnapshot {
    meta: SnapshotMeta,
    data: Arc<Vec<u8>>,
}

/// What the state machine, its snapshot builders and the readers share.
#[derive(Default)]
struct Shared {
    state: RwLock<State>,
    current: Mutex<Option<CurrentSnapshot>>,
    /// Held (on the blocking pool only) while a snapshot is persisted and made current, so that
    /// a slow build finishing after a newer install cannot replace it.
    replacing: Mutex<()>,
    /// Size of the last snapshot built or installed, for metrics.
    snapshot_bytes: AtomicU64,
    /// Tells apart snapshots built at the same log id.
    builds: AtomicU64,
}

// A poisoned lock means a panic while it was held. Applying a command never panics halfway
// (`Directory::apply` has no panicking paths), so the data behind it is still whole.
impl Shared {
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn current(&self) -> MutexGuard<'_, Option<CurrentSnapshot>> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Encodes the state and makes it the current snapshot. Blocking (encoding a large directory,
    /// writing it to disk): runs on the blocking pool.
    fn build(&self, store: Option<&LogStore>) -> Result<Snapshot, SnapshotError> {
        // Encoding under the read lock delays appliers (not readers) for the encoding's length,
        // which is cheaper than cloning the directory first.
        let started = std::time::Instant::now();
        let (data, last_applied, last_membership) = {
            let state = self.read();
            (
                state.encode(),
                state.last_applied,
                state.last_membership.clone(),
            )
        };
        if data.is_empty() {
            return Err(SnapshotError::Encode);
        }
        let build = self.builds.fetch_add(1, Ordering::Relaxed) + 1;
        let snapshot_id = match last_applied {
            Some(id) => format!("{}-{}-{build}", id.leader_id, id.index),
            None => format!("--{build}"),
        };
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership,
            snapshot_id,
        };
        let data = Arc::new(data);
        let _replacing = self
            .replacing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let newer_exists = self
            .current()
            .as_ref()
            .is_some_and(|current| current.meta.last_log_id > last_applied);
        if !newer_exists {
            if let Some(store) = store {
                store.save_snapshot_blocking(&meta, &data)?;
            }
            self.keep(meta.clone(), data.clone());
        }
        // Timed for docs/scale.md (oort-bench directory reads these lines).
        tracing::info!(
            bytes = data.len(),
            index = last_applied.map_or(0, |id| id.index),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "snapshot built"
        );
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data.to_vec())),
        })
    }

    /// Replaces the state with a snapshot's. Blocking: runs on the blocking pool.
    fn install(
        &self,
        store: Option<&LogStore>,
        meta: SnapshotMeta,
        data: Vec<u8>,
    ) -> Result<(), SnapshotError> {
        let started = std::time::Instant::now();
        let state = State::decode(&data)?;
        if state.last_applied != meta.last_log_id || state.last_membership != meta.last_membership {
            return Err(SnapshotError::Mismatch);
        }
        let _replacing = self
            .replacing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Durable first: if the write fails, nothing has changed.
        if let Some(store) = store {
            store.save_snapshot_blocking(&meta, &data)?;
        }
        *self.write() = state;
        tracing::info!(
            bytes = data.len(),
            index = meta.last_log_id.map_or(0, |id| id.index),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "snapshot installed"
        );
        self.keep(meta, Arc::new(data));
        Ok(())
    }

    fn keep(&self, meta: SnapshotMeta, data: Arc<Vec<u8>>) {
        self.snapshot_bytes
            .store(data.len() as u64, Ordering::Relaxed);
        *self.current() = Some(CurrentSnapshot { meta, data });
    }
}

/// Whether `data` is a snapshot this node could install for `meta`: it decodes, says the same
/// last log id and membership as its metadata, and the membership is one a leader could make.
/// Checked before a snapshot from another node is handed to raft, since the state machine
/// failing to install it would stop raft for good.
pub fn check_snapshot(meta: &SnapshotMeta, data: &[u8]) -> Result<(), String> {
    let state = State::decode(data).map_err(|err| err.to_string())?;
    if state.last_applied != meta.last_log_id || state.last_membership != meta.last_membership {
        return Err(SnapshotError::Mismatch.to_string());
    }
    crate::cluster::raft_checks::check_stored_membership(&state.last_membership)
}

/// The directory state machine. Clones share the state (openraft's snapshot builder is a clone).
#[derive(Clone)]
pub struct StateMachine {
    shared: Arc<Shared>,
    /// Told every applied `Normal` command and its index, after it is applied. Bounded: a
    /// listener that falls behind slows applying down rather than buffering without end.
    applied: Option<AppliedSender>,
    /// Where snapshots are persisted; `None` keeps them in memory only.
    store: Option<LogStore>,
}

impl StateMachine {
    /// An empty state machine whose snapshots live in memory only. Such a node cannot restart
    /// once its log has been purged (the purged entries would be gone for good): a node that
    /// keeps its log across restarts uses [`StateMachine::open`].
    pub fn new(applied: Option<AppliedSender>) -> Self {
        Self {
            shared: Arc::default(),
            applied,
            store: None,
        }
    }

    /// A state machine that persists its snapshots in `store`, starting from the last one saved
    /// there (or empty); openraft then re-applies the committed log after it.
    pub async fn open(store: &LogStore, applied: Option<AppliedSender>) -> Result<Self, OpenError> {
        let machine = Self {
            shared: Arc::default(),
            applied,
            store: Some(store.clone()),
        };
        let (shared, store) = (machine.shared.clone(), store.clone());
        let load = move || -> Result<(), SnapshotError> {
            match store.load_snapshot_blocking()? {
                Some((meta, data)) => shared.install(None, meta, data),
                None => Ok(()),
            }
        };
        tokio::task::spawn_blocking(load)
            .await
            .map_err(SnapshotError::from)??;
        Ok(machine)
    }

    /// A reader of the directory for the router's hot paths.
    pub fn reader(&self) -> DirectoryReader {
        DirectoryReader {
            shared: self.shared.clone(),
        }
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let (shared, store) = (self.shared.clone(), self.store.clone());
        tokio::task::spawn_blocking(move || shared.build(store.as_ref()))
            .await
            .map_err(SnapshotError::from)
            .and_then(|built| built)
            .map_err(|err| err.into_storage(None))
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let state = self.shared.read();
        Ok((state.last_applied, state.last_membership.clone()))
    }

    // Applying is cheap map work, done inline. The write lock is taken per entry so that readers
    // wait at most one entry, and last_applied always matches the directory they see.
    async fn apply<I>(&mut self, entries: I) -> Result<Vec<DirectoryResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut responses = Vec::new();
        for entry in entries {
            let index = entry.log_id.index;
            let (response, command) = {
                let mut state = self.shared.write();
                state.last_applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => (DirectoryResponse::default(), None),
                    EntryPayload::Normal(command) => {
                        (state.directory.apply(&command), Some(command))
                    }
                    EntryPayload::Membership(membership) => {
                        state.last_membership =
                            StoredMembership::new(Some(entry.log_id), membership);
                        (DirectoryResponse::default(), None)
                    }
                }
            };
            let heard = self.applied.as_ref().map(|_| response.clone());
            responses.push(response);
            if let (Some(command), Some(listener), Some(response)) = (command, &self.applied, heard)
            {
                // A closed channel means the router is stopping; the directory is still right.
                let _ = listener.send((index, command, response)).await;
            }
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let signature = Some(meta.signature());
        let (shared, store, meta) = (self.shared.clone(), self.store.clone(), meta.clone());
        tokio::task::spawn_blocking(move || {
            shared.install(store.as_ref(), meta, snapshot.into_inner())
        })
        .await
        .map_err(SnapshotError::from)
        .and_then(|installed| installed)
        .map_err(|err| err.into_storage(signature))
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let current = self
            .shared
            .current()
            .as_ref()
            .map(|current| (current.meta.clone(), current.data.clone()));
        Ok(current.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data.to_vec())),
        }))
    }
}

/// Reads the directory as this replica has applied it. Cheap to clone; every call takes a read
/// lock only for its own length.
#[derive(Clone)]
pub struct DirectoryReader {
    shared: Arc<Shared>,
}

impl DirectoryReader {
    /// The owner of `key`, if registered.
    pub fn owner(&self, key: &str) -> Option<Owner> {
        self.shared.read().directory.owner(key)
    }

    /// The owners of `keys`, in order, read under one lock.
    pub fn owners(&self, keys: &[SessionKey]) -> Vec<Option<Owner>> {
        let state = self.shared.read();
        keys.iter()
            .map(|key| state.directory.owner(key.as_str()))
            .collect()
    }

    /// The user's sessions, oldest first, with their owners.
    pub fn user_sessions(&self, user: &str) -> Vec<(SessionKey, Owner)> {
        self.shared.read().directory.user_sessions(user)
    }

    /// The nodes holding subscribers of `channel`.
    pub fn channel_nodes(&self, channel: &str) -> Vec<NodeId> {
        self.shared.read().directory.channel_nodes(channel)
    }

    /// The owner of the Durable Stream `name`, and whether it is live.
    pub fn stream(&self, name: &str) -> Option<StreamOwner> {
        self.shared.read().directory.stream(name)
    }

    /// The entry of the Durable Stream `name` and whether it is live, read under one lock
    /// (the answer to a linearizable lookup).
    pub fn stream_entry(&self, name: &str) -> Option<(StreamEntry, bool)> {
        let state = self.shared.read();
        let entry = state.directory.stream_entry(name)?.clone();
        let live = state.directory.stream(name).is_some_and(|owner| owner.live);
        Some((entry, live))
    }

    /// Every node the directory has heard of.
    pub fn nodes(&self) -> BTreeMap<NodeId, NodeRecord> {
        self.shared.read().directory.nodes().clone()
    }

    /// Number of registered sessions, cluster-wide.
    pub fn len(&self) -> usize {
        self.shared.read().directory.len()
    }

    /// True when no session is registered.
    pub fn is_empty(&self) -> bool {
        self.shared.read().directory.is_empty()
    }

    /// Index of the last log entry applied here.
    pub fn last_applied_index(&self) -> Option<u64> {
        self.shared.read().last_applied.map(|id| id.index)
    }

    /// Size in bytes of the last snapshot built or installed here (0 before the first).
    pub fn last_snapshot_bytes(&self) -> u64 {
        self.shared.snapshot_bytes.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use oort_common::cluster::{NodeSessions, UsersSnapshot};
    use oort_common::{Epoch, SessionKey};

    use super::*;

    fn earlier_snapshot() -> UsersSnapshot {
        UsersSnapshot {
            nodes: vec![(
                NodeId::from("a"),
                NodeRecord {
                    up: true,
                    since: Epoch(1),
                    sessions: 1,
                },
            )],
            sessions: vec![NodeSessions {
                node: NodeId::from("a"),
                sessions: vec![(SessionKey::from("k"), Epoch(2))],
            }],
            channels: vec![("room".into(), vec![NodeId::from("a")])],
            users: vec![("u".into(), vec![SessionKey::from("k")])],
            ..UsersSnapshot::default()
        }
    }

    #[test]
    fn snapshots_of_earlier_builds_still_load() {
        let old = earlier_snapshot();
        let state = State::decode(&wire::encode(&old)).expect("the layout before streams");
        assert_eq!(state.directory.channel_nodes("room"), [NodeId::from("a")]);
        assert_eq!(state.directory.user_sessions("u").len(), 1);
        assert_eq!(state.directory.stream_count(), 0);
        let oldest = SessionsSnapshot {
            nodes: old.nodes.clone(),
            sessions: old.sessions.clone(),
            ..SessionsSnapshot::default()
        };
        let state = State::decode(&wire::encode(&oldest)).expect("the layout before channels");
        assert!(state.directory.owner("k").is_some());
    }

    #[test]
    fn a_snapshot_keeps_streams_and_their_generations() {
        let mut state = State::decode(&wire::encode(&earlier_snapshot())).expect("decodes");
        state.directory.apply(&DirectoryCommand::ClaimStream {
            node: NodeId::from("a"),
            name: "orders".into(),
        });
        let again = State::decode(&state.encode()).expect("decodes");
        assert_eq!(again.directory, state.directory);
        assert_eq!(
            again
                .directory
                .stream("orders")
                .map(|owner| owner.generation),
            Some(1)
        );
    }
}
