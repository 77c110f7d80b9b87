//! Group commit of registrations. Connects queue their registration here; one task takes
//! everything queued while the previous write was in flight and commits it as one raft entry,
//! so a connect storm costs a few raft round trips, not one per client. Writes go out one at
//! a time, in order, so a session's unregister can never overtake its registration.
//!
//! Each registration is answered by its own outcome: committed (with the log index, which
//! orders it against registrations of the same key on other nodes), or refused, when the
//! directory skipped it. Unregistrations are retried until they are applied, or until the
//! cluster declares this node down (which purges them all anyway).
//!
//! Changes of this node's channel interest (the first subscriber of a channel here, the last
//! one gone) are committed the same way, after the registrations of the same round.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oort_common::cluster::{
    ControlRequest, ControlResponse, DirectoryCommand, DirectoryResponse, UserLimit,
};
use oort_common::{Epoch, SessionKey};
use tokio::sync::{Notify, mpsc, oneshot};
use tracing::warn;

use super::control::Control;
use super::core::Core;
use crate::RouterError;

/// Bytes of session keys per raft entry, so one append of `max_payload_entries` entries stays
/// well below NATS's 1 MiB maximum payload.
pub(crate) const MAX_BATCH_BYTES: usize = 48 * 1024;

/// Registrations waiting at most; beyond, a connect is refused at once (503) rather than queued
/// without bound.
const MAX_WAITING: usize = 16_384;

/// Pause before retrying unregistrations that could not be committed.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

type Outcome = Result<u64, RouterError>;

struct Job {
    key: SessionKey,
    epoch: Epoch,
    /// A new session's user (`Some(None)`: none); `None` for a session moving between nodes,
    /// which keeps its user.
    user: Option<Option<String>>,
    done: oneshot::Sender<Outcome>,
}

impl Job {
    /// About what the registration adds to a raft entry: its key, its user, and room for the
    /// epoch and framing.
    fn encoded_len(&self) -> usize {
        let user = self
            .user
            .as_ref()
            .and_then(Option::as_ref)
            .map_or(0, String::len);
        self.key.as_str().len() + user + 16
    }
}

/// Changes of channel interest, committed in order, each answered once committed.
struct InterestJob {
    changes: Vec<(String, bool)>,
    done: oneshot::Sender<Result<(), RouterError>>,
}

impl InterestJob {
    fn encoded_len(&self) -> usize {
        self.changes
            .iter()
            .map(|(channel, _)| channel.len() + 2)
            .sum()
    }
}

/// The queues of pending registrations and unregistrations.
pub(crate) struct Registrar {
    /// `limits.max_sessions_per_user`, carried in every `Admit`.
    user_limit: UserLimit,
    registers: mpsc::Sender<Job>,
    pending: Mutex<Option<mpsc::Receiver<Job>>>,
    interest: mpsc::Sender<InterestJob>,
    interest_pending: Mutex<Option<mpsc::Receiver<InterestJob>>>,
    /// Unregistrations not yet committed. Bounded by the sessions this node held: each one
    /// ends once.
    unregisters: Mutex<VecDeque<(SessionKey, Epoch)>>,
    unregister_added: Notify,
}

impl Registrar {
    pub(crate) fn new(user_limit: UserLimit) -> Self {
        let (registers, pending) = mpsc::channel(MAX_WAITING);
        let (interest, interest_pending) = mpsc::channel(MAX_WAITING);
        Self {
            user_limit,
            registers,
            pending: Mutex::new(Some(pending)),
            interest,
            interest_pending: Mutex::new(Some(interest_pending)),
            unregisters: Mutex::new(VecDeque::new()),
            unregister_added: Notify::new(),
        }
    }

    /// Queues a registration and waits for its commit; returns the log index it was committed
    /// at.
    pub(crate) async fn register(
        &self,
        key: SessionKey,
        epoch: Epoch,
        user: Option<Option<String>>,
    ) -> Outcome {
        let (done, committed) = oneshot::channel();
        self.registers
            .try_send(Job {
                key,
                epoch,
                user,
                done,
            })
            .map_err(|err| match err {
                mpsc::error::TrySendError::Full(_) => {
                    RouterError::Unavailable("too many registrations waiting".into())
                }
                mpsc::error::TrySendError::Closed(_) => {
                    RouterError::Unavailable("the router is stopping".into())
                }
            })?;
        committed
            .await
            .map_err(|_| RouterError::Unavailable("the router stopped".into()))?
    }

    /// Queues changes of this node's channel interest and waits for their commit.
    pub(crate) async fn interest(&self, changes: Vec<(String, bool)>) -> Result<(), RouterError> {
        let (done, committed) = oneshot::channel();
        self.interest
            .try_send(InterestJob { changes, done })
            .map_err(|_| RouterError::Unavailable("too many channel changes waiting".into()))?;
        committed
            .await
            .map_err(|_| RouterError::Unavailable("the router stopped".into()))?
    }

    /// Queues an unregistration; it is committed in the next batch.
    pub(crate) fn unregister(&self, key: SessionKey, epoch: Epoch) {
        self.lock_unregisters().push_back((key, epoch));
        self.unregister_added.notify_one();
    }

    fn lock_unregisters(&self) -> std::sync::MutexGuard<'_, VecDeque<(SessionKey, Epoch)>> {
        self.unregisters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes queued unregistrations, up to one batch.
    fn take_unregisters(&self) -> Vec<(SessionKey, Epoch)> {
        let mut queue = self.lock_unregisters();
        let mut bytes = 0;
        let mut batch = Vec::new();
        while bytes < MAX_BATCH_BYTES {
            let Some(entry) = queue.pop_front() else {
                break;
            };
            bytes += entry.0.as_str().len() + 16;
            batch.push(entry);
        }
        batch
    }

    /// Puts back unregistrations that failed, ahead of newer ones.
    fn put_back(&self, failed: Vec<(SessionKey, Epoch)>) {
        let mut queue = self.lock_unregisters();
        for entry in failed.into_iter().rev() {
            queue.push_front(entry);
        }
    }

    /// Forgets every queued unregistration: the directory purged this node's sessions.
    pub(crate) fn clear_unregisters(&self) {
        self.lock_unregisters().clear();
    }
}

/// Starts the committing task.
pub(crate) fn start(core: Arc<Core>, control: Arc<Control>, registrar: Arc<Registrar>) {
    let pending = registrar
        .pending
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    let Some(mut pending) = pending else { return };
    let interest = registrar
        .interest_pending
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    let Some(mut interest) = interest else { return };
    tokio::spawn(async move {
        loop {
            let mut interest_jobs = Vec::new();
            let first = tokio::select! {
                job = pending.recv() => job,
                () = registrar.unregister_added.notified() => None,
                job = interest.recv() => {
                    interest_jobs.extend(job);
                    None
                }
                () = core.stop.cancelled() => return,
            };
            let mut jobs = Vec::new();
            let mut bytes = 0;
            if let Some(first) = first {
                bytes += first.encoded_len();
                jobs.push(first);
            }
            while bytes < MAX_BATCH_BYTES {
                let Ok(job) = pending.try_recv() else { break };
                bytes += job.encoded_len();
                jobs.push(job);
            }
            if !jobs.is_empty() {
                let (admitted, moved): (Vec<Job>, Vec<Job>) =
                    jobs.into_iter().partition(|job| job.user.is_some());
                if !moved.is_empty() {
                    commit_registrations(&core, &control, moved, None).await;
                }
                if !admitted.is_empty() {
                    let limit = Some(registrar.user_limit);
                    commit_registrations(&core, &control, admitted, limit).await;
                }
            }
            let mut interest_bytes: usize =
                interest_jobs.iter().map(InterestJob::encoded_len).sum();
            while interest_jobs.len() < MAX_INTEREST_JOBS && interest_bytes < MAX_BATCH_BYTES {
                let Ok(job) = interest.try_recv() else { break };
                interest_bytes += job.encoded_len();
                interest_jobs.push(job);
            }
            if !interest_jobs.is_empty() {
                commit_interest(&core, &control, interest_jobs).await;
            }
            let unregisters = registrar.take_unregisters();
            if !unregisters.is_empty() {
                let command = DirectoryCommand::Unregister {
                    node: core.node.clone(),
                    sessions: unregisters.clone(),
                };
                if let Err(err) = commit(&core, &control, command).await {
                    warn!(error = %err, count = unregisters.len(), "unregistrations not committed; retrying");
                    registrar.put_back(unregisters);
                    tokio::select! {
                        () = tokio::time::sleep(RETRY_PAUSE) => {}
                        () = core.stop.cancelled() => return,
                    }
                }
                if !registrar.lock_unregisters().is_empty() {
                    // More are waiting: come round again without waiting for a new one.
                    registrar.unregister_added.notify_one();
                }
            }
        }
    });
}

/// Channel-interest jobs per raft entry at most (each is a few channel names).
const MAX_INTEREST_JOBS: usize = 256;

/// Commits interest changes as one entry, in the order they were queued.
async fn commit_interest(core: &Core, control: &Control, jobs: Vec<InterestJob>) {
    let changes = jobs
        .iter()
        .flat_map(|job| job.changes.iter().cloned())
        .collect();
    let command = DirectoryCommand::Interest {
        node: core.node.clone(),
        changes,
    };
    let outcome = commit(core, control, command).await.map(|_| ());
    for job in jobs {
        let _ = job.done.send(outcome.clone());
    }
}

/// Commits one batch of registrations and answers each by its own outcome: new sessions with
/// their users (`Admit`, under `limit`), or sessions moving between nodes (`Register`).
async fn commit_registrations(
    core: &Core,
    control: &Control,
    jobs: Vec<Job>,
    limit: Option<UserLimit>,
) {
    let command = match limit {
        Some(limit) => DirectoryCommand::Admit {
            node: core.node.clone(),
            sessions: jobs
                .iter()
                .map(|job| (job.key.clone(), job.epoch, job.user.clone().flatten()))
                .collect(),
            limit,
        },
        None => DirectoryCommand::Register {
            node: core.node.clone(),
            sessions: jobs
                .iter()
                .map(|job| (job.key.clone(), job.epoch))
                .collect(),
        },
    };
    match commit(core, control, command).await {
        Ok((response, index)) => {
            for (position, job) in jobs.into_iter().enumerate() {
                let position = position as u32;
                let outcome = if response.over_user_limit.contains(&position) {
                    let user = job.user.clone().flatten().unwrap_or_default();
                    Err(RouterError::UserLimit(user))
                } else if response.refused.contains(&position) {
                    Err(RouterError::Unavailable(
                        "the directory refused the registration (this node is not up in it)".into(),
                    ))
                } else {
                    Ok(index)
                };
                let _ = job.done.send(outcome);
            }
        }
        Err(err) => {
            for job in jobs {
                let _ = job.done.send(Err(err.clone()));
            }
        }
    }
}

/// Commits `command` at the leader; returns what applying it did and the log index.
async fn commit(
    core: &Core,
    control: &Control,
    command: DirectoryCommand,
) -> Result<(DirectoryResponse, u64), RouterError> {
    let started = Instant::now();
    let outcome = match control.call_leader(ControlRequest::Write(command)).await {
        Ok(ControlResponse::Written { response, index }) => Ok((response, index)),
        Ok(other) => Err(RouterError::Unavailable(format!(
            "directory write refused: {other:?}"
        ))),
        Err(err) => Err(err),
    };
    core.metrics
        .commit_seconds
        .record(started.elapsed().as_secs_f64());
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn registrations_waiting_are_bounded_and_the_next_is_refused_at_once() {
        let registrar = Arc::new(Registrar::new(UserLimit::default()));
        // Nothing commits (no task runs): every registration waits.
        let mut waiting = Vec::new();
        for i in 0..MAX_WAITING {
            let registrar = registrar.clone();
            waiting.push(tokio::spawn(async move {
                registrar
                    .register(SessionKey::from(format!("k{i}")), Epoch(1), None)
                    .await
            }));
        }
        // Let every spawned registration queue itself.
        let queued = async {
            while registrar.registers.capacity() > 0 {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), queued)
            .await
            .expect("every registration queued");
        let refused = registrar
            .register(SessionKey::from("one too many"), Epoch(1), None)
            .await;
        assert!(
            matches!(&refused, Err(RouterError::Unavailable(reason)) if reason.contains("too many")),
            "{refused:?}"
        );
        for task in waiting {
            task.abort();
        }
    }
}
