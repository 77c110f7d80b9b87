//! Raft storage: the durable log and vote (`log.rs`, in redb under `cluster.data_dir`) and the
//! in-memory directory state machine (`state_machine.rs`), whose snapshots are kept in the same
//! redb file so that a restarting node can rebuild its directory after the log was purged.

mod log;
mod state_machine;
#[cfg(test)]
mod tests;

pub use log::{LogStore, OpenError};
pub use state_machine::{Applied, AppliedSender, DirectoryReader, StateMachine, check_snapshot};
