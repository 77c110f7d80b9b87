//! Registration epochs that never go backwards, across restarts and clock steps.
//!
//! An epoch tells registrations of one key apart (a stale unregister names an older one), and a
//! node's `NodeUp` epoch tells its runs apart (registrations from a previous run are refused).
//! Both rely on epochs only growing. The wall clock alone does not promise that: it can step
//! back. So a clustered node reserves blocks of epochs in a file beside its raft data, written
//! durably before any epoch of a block is handed out; after a restart it continues above the
//! last reservation, whatever the clock says. The clock is only the floor, so that a node whose
//! data directory was lost still starts far above anything it used before.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use oort_common::Epoch;
use tracing::error;

/// Epochs reserved per write (a million connects between two writes).
const BLOCK: u64 = 1 << 20;

const FILE_NAME: &str = "epoch";

/// Hands out increasing epochs.
pub struct EpochSource {
    next: AtomicU64,
    /// The first epoch not covered by the last durable reservation (`None`: not persisted).
    reserved_until: Mutex<Option<u64>>,
    file: Option<PathBuf>,
}

impl EpochSource {
    /// Epochs from the wall clock, not persisted (a single node: nothing outlives its process).
    pub fn in_memory() -> Self {
        Self {
            next: AtomicU64::new(wall_clock_micros()),
            reserved_until: Mutex::new(None),
            file: None,
        }
    }

    /// Epochs continuing above the reservation kept in `dir` (created if missing).
    pub fn persisted(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let file = dir.join(FILE_NAME);
        let reserved = match std::fs::read_to_string(&file) {
            Ok(text) => text.trim().parse::<u64>().map_err(|err| {
                std::io::Error::other(format!("{} is corrupt: {err}", file.display()))
            })?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => 0,
            Err(err) => return Err(err),
        };
        let start = reserved.max(wall_clock_micros());
        write_durably(&file, start + BLOCK)?;
        Ok(Self {
            next: AtomicU64::new(start),
            reserved_until: Mutex::new(Some(start + BLOCK)),
            file: Some(file),
        })
    }

    /// The next epoch: above every epoch handed out before, in this run or an earlier one.
    pub fn next(&self) -> Epoch {
        let epoch = self.next.fetch_add(1, Ordering::Relaxed);
        if let Some(file) = &self.file {
            let mut reserved = self
                .reserved_until
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(until) = reserved.as_mut()
                && epoch >= *until
            {
                // Rare (once per block), so the write may block this caller briefly.
                let extended = epoch + BLOCK;
                match write_durably(file, extended) {
                    Ok(()) => *until = extended,
                    Err(err) => error!(
                        error = %err,
                        file = %file.display(),
                        "cannot persist the epoch reservation; epochs may repeat after a restart"
                    ),
                }
            }
        }
        Epoch(epoch)
    }
}

fn wall_clock_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Replaces `file` with `value` so that a crash leaves either the old or the new value.
fn write_durably(file: &Path, value: u64) -> std::io::Result<()> {
    let temporary = file.with_extension("tmp");
    {
        let mut out = std::fs::File::create(&temporary)?;
        writeln!(out, "{value}")?;
        out.sync_all()?;
    }
    std::fs::rename(&temporary, file)?;
    if let Some(dir) = file.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("oort-epochs-{:x}", rand_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn rand_suffix() -> u64 {
        wall_clock_micros() ^ u64::from(std::process::id())
    }

    #[test]
    fn a_restart_continues_above_every_epoch_handed_out_even_if_the_clock_went_back() {
        let dir = temp_dir();
        // A reservation far in the future stands for a clock that has since stepped back.
        let future = wall_clock_micros() + 10 * BLOCK;
        write_durably(&dir.join(FILE_NAME), future).unwrap();
        let first = EpochSource::persisted(&dir).unwrap();
        let a = first.next();
        assert!(a.0 >= future, "the reservation is the floor, not the clock");
        let b = first.next();
        assert!(b > a);
        drop(first);
        let second = EpochSource::persisted(&dir).unwrap();
        assert!(second.next() > b, "the next run starts above the last one");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn crossing_a_block_extends_the_reservation_on_disk() {
        let dir = temp_dir();
        let source = EpochSource::persisted(&dir).unwrap();
        let start = source.next();
        source.next.store(start.0 + BLOCK, Ordering::Relaxed);
        let crossed = source.next();
        let on_disk: u64 = std::fs::read_to_string(dir.join(FILE_NAME))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(on_disk > crossed.0);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_corrupt_file_is_an_error_not_a_reset() {
        let dir = temp_dir();
        std::fs::write(dir.join(FILE_NAME), "not a number").unwrap();
        assert!(EpochSource::persisted(&dir).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
