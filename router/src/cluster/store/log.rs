//! The raft log, the vote and the committed log id, persisted in a redb database
//! (`<data_dir>/raft.redb`), plus the latest state-machine snapshot kept in the same file.
//!
//! Raft is only safe if what a node acknowledged survives a crash: a vote it granted, the entries
//! it appended. So every write transaction here commits with redb's immediate durability (an
//! fsync) before openraft hears that the write is done. The snapshot lives here too because the
//! directory state machine is in memory: once openraft has purged the log behind a snapshot, that
//! snapshot is the only copy of the purged entries, and a restarting node rebuilds its directory
//! from it (see [`super::StateMachine::open`]).
//!
//! redb is synchronous and fsyncs block, so every disk access runs on tokio's blocking pool.

use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use oort_common::wire::{self, DecodeError};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{RaftLogReader, StorageIOError};
use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition,
    WriteTransaction,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cluster::types::{Entry, LogId, SnapshotMeta, StorageError, TypeConfig, Vote};

/// Log entries by index, each the wire encoding of an [`Entry`].
const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("logs");
/// Small records by name: [`VOTE`], [`COMMITTED`], [`PURGED`].
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// The latest snapshot: [`SNAPSHOT_META`] and [`SNAPSHOT_DATA`].
const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot");

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const PURGED: &str = "last_purged";
const SNAPSHOT_META: &str = "meta";
const SNAPSHOT_DATA: &str = "data";

/// The file the store keeps in its directory.
const FILE_NAME: &str = "raft.redb";

/// Why a storage operation failed, before openraft is told which operation it was.
#[derive(Debug, thiserror::Error)]
pub(super) enum DbError {
    #[error(transparent)]
    Redb(#[from] redb::Error),
    #[error("corrupt record: {0}")]
    Decode(#[from] DecodeError),
    #[error("storage task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("cannot create the data directory: {0}")]
    Io(#[from] io::Error),
}

/// redb has one error type per operation; all of them convert into `redb::Error`.
macro_rules! from_redb {
    ($($error:ty),*) => {$(
        impl From<$error> for DbError {
            fn from(err: $error) -> Self {
                Self::Redb(err.into())
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// The raft storage could not be opened (or its snapshot could not be loaded).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct OpenError(pub(super) Box<dyn std::error::Error + Send + Sync>);

impl From<DbError> for OpenError {
    fn from(err: DbError) -> Self {
        Self(Box::new(err))
    }
}

/// redb's page cache (see `open`).
const CACHE_BYTES: usize = 32 << 20;

/// The durable raft log and vote. Cloning is cheap and shares the database: openraft reads the
/// log through clones (one per replication stream) while it writes through the original.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
}

impl LogStore {
    /// Opens (or creates) the store in `dir`, creating the directory if needed.
    pub fn open(dir: &Path) -> Result<LogStore, OpenError> {
        let open = || -> Result<Database, DbError> {
            std::fs::create_dir_all(dir)?;
            // redb caches up to 1 GiB by default, and keeps what it cached: with a snapshot of
            // every directory entry written to it again and again, that was tens of bytes of
            // RSS per entry (docs/scale.md). The log reads only its recent entries.
            let db = redb::Builder::new()
                .set_cache_size(CACHE_BYTES)
                .create(dir.join(FILE_NAME))?;
            // Create the tables up front, so that read transactions never meet a missing one.
            write(&db, |txn| {
                txn.open_table(LOGS)?;
                txn.open_table(META)?;
                txn.open_table(SNAPSHOT)?;
                Ok(())
            })?;
            Ok(db)
        };
        Ok(LogStore {
            db: Arc::new(open()?),
        })
    }

    /// Runs `f` on the blocking pool: redb reads may touch the disk and commits fsync.
    async fn blocking<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, DbError> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db)).await?
    }

    /// Durably replaces the stored snapshot. Blocking: call it from the blocking pool.
    pub(super) fn save_snapshot_blocking(
        &self,
        meta: &SnapshotMeta,
        data: &[u8],
    ) -> Result<(), DbError> {
        let meta = wire::encode(meta);
        write(&self.db, |txn| {
            let mut table = txn.open_table(SNAPSHOT)?;
            table.insert(SNAPSHOT_META, meta.as_slice())?;
            table.insert(SNAPSHOT_DATA, data)?;
            Ok(())
        })
    }

    /// The stored snapshot, if any. Blocking: call it from the blocking pool.
    pub(super) fn load_snapshot_blocking(
        &self,
    ) -> Result<Option<(SnapshotMeta, Vec<u8>)>, DbError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SNAPSHOT)?;
        let (Some(meta), Some(data)) = (table.get(SNAPSHOT_META)?, table.get(SNAPSHOT_DATA)?)
        else {
            return Ok(None);
        };
        Ok(Some((wire::decode(meta.value())?, data.value().to_vec())))
    }
}

/// Runs `f` in a write transaction and commits it durably (fsync) before returning.
fn write(
    db: &Database,
    f: impl FnOnce(&WriteTransaction) -> Result<(), DbError>,
) -> Result<(), DbError> {
    let mut txn = db.begin_write()?;
    // Immediate is redb's default; it is set anyway because raft's safety depends on it.
    txn.set_durability(Durability::Immediate)?;
    f(&txn)?;
    txn.commit()?;
    Ok(())
}

fn read_meta<T: DeserializeOwned>(txn: &ReadTransaction, key: &str) -> Result<Option<T>, DbError> {
    let table = txn.open_table(META)?;
    let value = table.get(key)?;
    Ok(value.map(|bytes| wire::decode(bytes.value())).transpose()?)
}

fn write_meta<T: Serialize>(db: &Database, key: &str, value: &T) -> Result<(), DbError> {
    let bytes = wire::encode(value);
    write(db, |txn| {
        txn.open_table(META)?.insert(key, bytes.as_slice())?;
        Ok(())
    })
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + std::fmt::Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let bounds = (range.start_bound().cloned(), range.end_bound().cloned());
        self.blocking(move |db| {
            if is_empty(&bounds) {
                return Ok(Vec::new());
            }
            let txn = db.begin_read()?;
            let table = txn.open_table(LOGS)?;
            let mut entries = Vec::new();
            for item in table.range::<u64>(bounds)? {
                let (_, bytes) = item?;
                entries.push(wire::decode::<Entry>(bytes.value())?);
            }
            Ok(entries)
        })
        .await
        .map_err(|err| StorageIOError::read_logs(&err).into())
    }
}

/// True when `bounds` holds no index (redb is not asked about inverted ranges).
fn is_empty(bounds: &(Bound<u64>, Bound<u64>)) -> bool {
    let start = match bounds.0 {
        Bound::Included(start) => start,
        Bound::Excluded(start) => match start.checked_add(1) {
            Some(start) => start,
            None => return true,
        },
        Bound::Unbounded => 0,
    };
    match bounds.1 {
        Bound::Included(end) => start > end,
        Bound::Excluded(end) => start >= end,
        Bound::Unbounded => false,
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        self.blocking(|db| {
            // One read transaction: the purge mark and the entries from the same moment.
            let txn = db.begin_read()?;
            let last_purged_log_id: Option<LogId> = read_meta(&txn, PURGED)?;
            let table = txn.open_table(LOGS)?;
            let last = match table.last()? {
                Some((_, bytes)) => Some(wire::decode::<Entry>(bytes.value())?.log_id),
                None => None,
            };
            Ok(LogState {
                last_purged_log_id,
                last_log_id: last.or(last_purged_log_id),
            })
        })
        .await
        .map_err(|err| StorageIOError::read_logs(&err).into())
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let vote = *vote;
        self.blocking(move |db| write_meta(db, VOTE, &vote))
            .await
            .map_err(|err| StorageIOError::write_vote(&err).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.blocking(|db| read_meta(&db.begin_read()?, VOTE))
            .await
            .map_err(|err| StorageIOError::read_vote(&err).into())
    }

    // Saving the committed id lets a restarting node re-apply committed entries at once rather
    // than wait for the leader to tell it again.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.blocking(move |db| write_meta(db, COMMITTED, &committed))
            .await
            .map_err(|err| StorageIOError::write(&err).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        self.blocking(|db| Ok(read_meta::<Option<LogId>>(&db.begin_read()?, COMMITTED)?.flatten()))
            .await
            .map_err(|err| StorageIOError::read(&err).into())
    }

    // The write is awaited here, then the callback is called: the entries are readable when this
    // returns (openraft's requirement) and every write stays in order behind the previous one.
    // Raft's core waits for the fsync, which group commit upstream amortizes.
    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let records: Vec<(u64, Vec<u8>)> = entries
            .into_iter()
            .map(|entry| (entry.log_id.index, wire::encode(&entry)))
            .collect();
        let result = self
            .blocking(move |db| {
                write(db, |txn| {
                    let mut table = txn.open_table(LOGS)?;
                    for (index, bytes) in &records {
                        table.insert(*index, bytes.as_slice())?;
                    }
                    Ok(())
                })
            })
            .await;
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(err) => {
                callback.log_io_completed(Err(io::Error::other(err.to_string())));
                Err(StorageIOError::write_logs(&err).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.blocking(move |db| {
            write(db, |txn| {
                txn.open_table(LOGS)?
                    .retain_in(log_id.index.., |_, _| false)?;
                Ok(())
            })
        })
        .await
        .map_err(|err| StorageIOError::write_logs(&err).into())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let purged = wire::encode(&log_id);
        self.blocking(move |db| {
            // One transaction: the purge mark and the deletion are seen together or not at all.
            write(db, |txn| {
                txn.open_table(META)?.insert(PURGED, purged.as_slice())?;
                txn.open_table(LOGS)?
                    .retain_in(..=log_id.index, |_, _| false)?;
                Ok(())
            })
        })
        .await
        .map_err(|err| StorageIOError::write_logs(&err).into())
    }
}
