//! Requests to clients waiting for their replies (`/v1/request`), by correlation id.
//!
//! An id is this node's reply prefix, a dot, and 64 random bits in hex: a client cannot guess
//! another request's id, and a reply is taken only from the session the request went to.
//! Replies nobody waits for (late, unknown, or from the wrong session) are dropped and
//! counted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use oort_common::{Payload, SessionKey};
use tokio::sync::oneshot;

/// Requests waiting here for their clients' replies.
#[derive(Default)]
pub(crate) struct PendingReplies {
    waiting: Mutex<HashMap<String, (SessionKey, oneshot::Sender<Payload>)>>,
    /// Replies dropped because no request here waited for them.
    unmatched: AtomicU64,
}

/// A request's place among the waiting: its id, and where the reply arrives. Dropping it
/// stops the wait.
pub(crate) struct Waiting<'a> {
    pending: &'a PendingReplies,
    /// The correlation id the request frame carries.
    pub id: String,
    /// Resolves with the client's reply.
    pub reply: oneshot::Receiver<Payload>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.pending.lock().remove(&self.id);
    }
}

impl PendingReplies {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, (SessionKey, oneshot::Sender<Payload>)>> {
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts waiting for `session`'s reply to a new request; `prefix` names this node.
    pub(crate) fn wait(&self, prefix: &str, session: &SessionKey) -> Waiting<'_> {
        let id = format!("{prefix}.{:016x}", rand::random::<u64>());
        let (done, reply) = oneshot::channel();
        self.lock().insert(id.clone(), (session.clone(), done));
        Waiting {
            pending: self,
            id,
            reply,
        }
    }

    /// A reply arrived: it goes to the request waiting for it, if `session` is the one asked.
    pub(crate) fn answer(&self, id: &str, session: &SessionKey, payload: Payload) {
        let mut waiting = self.lock();
        match waiting.get(id) {
            Some((asked, _)) if asked == session => {
                if let Some((_, done)) = waiting.remove(id) {
                    let _ = done.send(payload);
                }
            }
            _ => {
                self.unmatched.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Replies dropped so far because nothing here waited for them.
    pub(crate) fn unmatched(&self) -> u64 {
        self.unmatched.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_reaches_its_request_only_from_the_session_asked() {
        let pending = PendingReplies::default();
        let alice = SessionKey::from("alice");
        let mut waiting = pending.wait("0", &alice);
        assert!(waiting.id.starts_with("0."));
        pending.answer(
            &waiting.id,
            &SessionKey::from("mallory"),
            Payload::text("forged"),
        );
        pending.answer("0.unknown", &alice, Payload::text("stray"));
        assert_eq!(pending.unmatched(), 2);
        pending.answer(&waiting.id, &alice, Payload::text("yes"));
        assert_eq!(waiting.reply.try_recv().unwrap(), Payload::text("yes"));
        let id = waiting.id.clone();
        drop(waiting);
        pending.answer(&id, &alice, Payload::text("late"));
        assert_eq!(pending.unmatched(), 3, "a late reply is not taken");
    }
}
