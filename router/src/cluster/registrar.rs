//! Group commit of registrations. Connects queue their registration here; one task takes
//! everything queued while the previous write was in flight and commits it as one raft entry,
//! so a connect storm costs a few raft round trips, not one per client. Writes go out one at
//! a time, in order, so a session's unregister can never overtake its registration.

use std::sync::Arc;
use std::time::Instant;

use oort_common::cluster::{ControlRequest, ControlResponse, DirectoryCommand};
use oort_common::{Epoch, SessionKey};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use super::Inner;
use crate::RouterError;

/// Bytes of session keys per raft entry, so one append of `max_payload_entries` entries stays
/// well below NATS's 1 MiB maximum payload.
pub(crate) const MAX_BATCH_BYTES: usize = 48 * 1024;

enum Job {
    Register(SessionKey, Epoch, oneshot::Sender<Result<(), RouterError>>),
    Unregister(SessionKey, Epoch),
}

/// The queue of pending registrations.
pub(crate) struct Registrar {
    jobs: mpsc::UnboundedSender<Job>,
    pending: std::sync::Mutex<Option<mpsc::UnboundedReceiver<Job>>>,
}

impl Registrar {
    pub(crate) fn new() -> Self {
        let (jobs, pending) = mpsc::unbounded_channel();
        Self {
            jobs,
            pending: std::sync::Mutex::new(Some(pending)),
        }
    }

    /// Queues a registration and waits for its commit.
    pub(crate) async fn register(&self, key: SessionKey, epoch: Epoch) -> Result<(), RouterError> {
        let (done, committed) = oneshot::channel();
        self.jobs
            .send(Job::Register(key, epoch, done))
            .map_err(|_| RouterError::Unavailable("the router is stopping".into()))?;
        committed
            .await
            .map_err(|_| RouterError::Unavailable("the router stopped".into()))?
    }

    /// Queues an unregistration; it is committed in the next batch.
    pub(crate) fn unregister(&self, key: SessionKey, epoch: Epoch) {
        let _ = self.jobs.send(Job::Unregister(key, epoch));
    }
}

/// Starts the committing task.
pub(super) fn start(inner: Arc<Inner>) {
    let pending = inner
        .registrar
        .pending
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    let Some(mut pending) = pending else { return };
    tokio::spawn(async move {
        loop {
            let first = tokio::select! {
                job = pending.recv() => job,
                () = inner.stop.cancelled() => None,
            };
            let Some(first) = first else { return };
            let mut registers = Vec::new();
            let mut waiters = Vec::new();
            let mut unregisters = Vec::new();
            let mut bytes = 0;
            let mut take = |job: Job, bytes: &mut usize| match job {
                Job::Register(key, epoch, done) => {
                    *bytes += key.as_str().len() + 16;
                    registers.push((key, epoch));
                    waiters.push(done);
                }
                Job::Unregister(key, epoch) => {
                    *bytes += key.as_str().len() + 16;
                    unregisters.push((key, epoch));
                }
            };
            take(first, &mut bytes);
            while bytes < MAX_BATCH_BYTES {
                match pending.try_recv() {
                    Ok(job) => take(job, &mut bytes),
                    Err(_) => break,
                }
            }
            if !registers.is_empty() {
                let command = DirectoryCommand::Register {
                    node: inner.node.clone(),
                    sessions: registers,
                };
                let outcome = commit(&inner, command).await;
                for waiter in waiters {
                    let _ = waiter.send(outcome.clone());
                }
            }
            if !unregisters.is_empty() {
                let command = DirectoryCommand::Unregister {
                    node: inner.node.clone(),
                    sessions: unregisters,
                };
                if let Err(err) = commit(&inner, command).await {
                    // The entries stay until this node is declared down or the keys are
                    // registered again; sends to them are answered by this node as unknown.
                    warn!(error = %err, "unregistrations were not committed");
                }
            }
        }
    });
}

async fn commit(inner: &Inner, command: DirectoryCommand) -> Result<(), RouterError> {
    let started = Instant::now();
    let outcome = match inner.call_leader(ControlRequest::Write(command)).await {
        Ok(ControlResponse::Written(_)) => Ok(()),
        Ok(other) => Err(RouterError::Unavailable(format!(
            "directory write refused: {other:?}"
        ))),
        Err(err) => Err(err),
    };
    inner
        .metrics
        .commit_seconds
        .record(started.elapsed().as_secs_f64());
    outcome
}
