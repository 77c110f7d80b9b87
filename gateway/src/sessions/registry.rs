//! The table of this node's sessions, keyed by session key.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::ws::{Message, Utf8Bytes};
use dashmap::DashMap;
use oort_common::{DeliveryMode, DeliveryStatus, Epoch, FrameKind, Payload, SessionKey};
use oort_router::LocalSessions;

use super::{CloseCause, CloseCommand, QueueLimits, Session};

/// This node's sessions.
pub(crate) struct SessionRegistry {
    sessions: DashMap<SessionKey, Arc<Session>>,
    limits: QueueLimits,
    next_epoch: AtomicU64,
}

impl SessionRegistry {
    pub(crate) fn new(limits: QueueLimits) -> Self {
        // Epochs start at the wall clock (in microseconds) so that they keep growing across
        // restarts of this node, and a stale unregister from a previous run can never match.
        let start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros());
        Self {
            sessions: DashMap::new(),
            limits,
            next_epoch: AtomicU64::new(u64::try_from(start).unwrap_or(0)),
        }
    }

    /// A fresh epoch for a new registration.
    pub(crate) fn next_epoch(&self) -> Epoch {
        Epoch(self.next_epoch.fetch_add(1, Ordering::Relaxed))
    }

    /// Adds a session, returning the older session with the same key, which the caller closes.
    pub(crate) fn insert(&self, session: Arc<Session>) -> Option<Arc<Session>> {
        self.sessions.insert(session.key.clone(), session)
    }

    /// Removes `key` only if it is still the registration made under `epoch`, so that the end
    /// of an older connection never removes a newer one that reused the key.
    pub(crate) fn remove(&self, key: &SessionKey, epoch: Epoch) -> bool {
        self.sessions
            .remove_if(key, |_, session| session.epoch == epoch)
            .is_some()
    }

    /// The session with this key, if any.
    pub(crate) fn get(&self, key: &str) -> Option<Arc<Session>> {
        self.sessions.get(key).map(|entry| entry.value().clone())
    }

    /// Number of sessions.
    pub(crate) fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Asks every session to close, after the messages already queued; returns how many.
    pub(crate) fn close_all(&self, close: &CloseCommand) -> usize {
        self.sessions
            .iter()
            .filter(|entry| entry.value().queue.close(close.clone(), false))
            .count()
    }
}

/// Builds the frame once per delivery; every session gets a reference-counted clone.
pub(crate) fn frame_for(payload: &Payload) -> Message {
    match payload.kind() {
        // `Payload` guarantees text is UTF-8, so this conversion cannot fail; an empty frame
        // is the harmless fallback if that guarantee were ever broken.
        FrameKind::Text => {
            Message::Text(Utf8Bytes::try_from(payload.data().clone()).unwrap_or_default())
        }
        FrameKind::Binary => Message::Binary(payload.data().clone()),
    }
}

impl LocalSessions for SessionRegistry {
    fn deliver(
        &self,
        targets: &[SessionKey],
        payload: &Payload,
        mode: &DeliveryMode,
    ) -> Vec<DeliveryStatus> {
        let frame = frame_for(payload);
        let size = payload.len();
        targets
            .iter()
            .map(|key| {
                let Some(session) = self.sessions.get(key.as_str()) else {
                    return DeliveryStatus::NotFound;
                };
                match mode {
                    DeliveryMode::Send => session.queue.push(frame.clone(), size, &self.limits),
                    DeliveryMode::Close {
                        code,
                        reason,
                        send_payload,
                    } => {
                        let close =
                            CloseCommand::new(*code, reason.clone(), CloseCause::ClosedByBackend);
                        let last_word = send_payload.then(|| (frame.clone(), size));
                        session.queue.push_last(last_word, close)
                    }
                }
            })
            .collect()
    }

    fn holds(&self, key: &str) -> bool {
        self.sessions
            .get(key)
            .is_some_and(|session| !session.queue.is_closing())
    }

    fn broadcast(&self, payload: &Payload) -> usize {
        let frame = frame_for(payload);
        let size = payload.len();
        self.sessions
            .iter()
            .filter(|entry| {
                entry.value().queue.push(frame.clone(), size, &self.limits) == DeliveryStatus::Ok
            })
            .count()
    }

    fn close_all(&self) {
        SessionRegistry::close_all(self, &CloseCommand::node_down());
    }

    fn evict(&self, key: &SessionKey) {
        if let Some(session) = self.sessions.get(key.as_str())
            && session.is_registered()
        {
            session.queue.close(CloseCommand::replaced(), false);
        }
    }

    fn fresh_epoch(&self) -> Epoch {
        self.next_epoch()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn registry() -> SessionRegistry {
        SessionRegistry::new(QueueLimits {
            max_messages: 4,
            max_bytes: 1024,
            slow_consumer_timeout: Duration::from_secs(5),
        })
    }

    #[test]
    fn a_stale_remove_keeps_the_newer_registration() {
        let registry = registry();
        let key = SessionKey::from("dup");
        let older = Session::new(key.clone(), registry.next_epoch(), None);
        let newer = Session::new(key.clone(), registry.next_epoch(), None);
        assert!(registry.insert(older.clone()).is_none());
        let replaced = registry
            .insert(newer.clone())
            .expect("the older session is handed back");
        assert_eq!(replaced.epoch, older.epoch);
        assert!(!registry.remove(&key, older.epoch));
        assert_eq!(registry.get("dup").map(|s| s.epoch), Some(newer.epoch));
        assert!(registry.remove(&key, newer.epoch));
        assert!(registry.get("dup").is_none());
    }

    #[test]
    fn epochs_increase() {
        let registry = registry();
        let first = registry.next_epoch();
        assert!(registry.next_epoch() > first);
    }

    #[test]
    fn deliver_reports_each_target() {
        let registry = registry();
        registry.insert(Session::new(
            SessionKey::from("a"),
            registry.next_epoch(),
            None,
        ));
        let closing = Session::new(SessionKey::from("c"), registry.next_epoch(), None);
        closing.queue.close(CloseCommand::shutdown(), false);
        registry.insert(closing);
        let targets = ["a", "nobody", "c"].map(SessionKey::from);
        let statuses = registry.deliver(&targets, &Payload::text("hi"), &DeliveryMode::Send);
        assert_eq!(
            statuses,
            [
                DeliveryStatus::Ok,
                DeliveryStatus::NotFound,
                DeliveryStatus::Closed
            ]
        );
        assert!(registry.holds("a"));
        assert!(
            !registry.holds("c"),
            "a closing session does not count for strict mode"
        );
    }
}
