//! The table of this node's sessions, keyed by session key.
//!
//! A session is *pending* from the connect callback's answer until its registration commits,
//! and *live* after. Only live sessions are delivery targets: a send never reaches a session
//! whose registration may still fail (it answers `not_found`, truthfully, since the client has
//! not been told it is connected). A newer connection with the same key replaces the live one
//! only once its own registration committed, so a failed registration leaves the older
//! connection as it was.
//!
//! In a cluster, the same key may also be registered on another node. The later registration
//! in the directory's log wins, here as in the directory: a live session committed before the
//! other node's registration is closed, and a pending one is refused when it commits before
//! it. Each slot is changed under its map entry's lock, so a commit and the news of another
//! node's registration cannot pass each other.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::ws::{Message, Utf8Bytes};
use dashmap::DashMap;
use oort_common::{DeliveryMode, DeliveryStatus, Epoch, FrameKind, Payload, SessionKey};
use oort_router::{EpochSource, LocalSessions};

use super::{CloseCause, CloseCommand, QueueLimits, Session};

/// One key's sessions.
#[derive(Default)]
struct Slot {
    live: Option<Arc<Session>>,
    pending: Option<Box<Pending>>,
}

/// Sessions of one key whose registration is in flight.
struct Pending {
    sessions: Vec<Arc<Session>>,
    /// The highest log index at which another node registered the key meanwhile.
    superseded_at: u64,
}

impl Slot {
    fn is_empty(&self) -> bool {
        self.live.is_none() && self.pending.is_none()
    }
}

/// What became of a registration that committed.
#[derive(Debug)]
pub(crate) enum Committed {
    /// The session is live; the older connection it replaced (if any) is closing.
    Live,
    /// A newer registration of the key (on another node, or a newer connection here) won; the
    /// session is not live and must be closed.
    Superseded,
}

/// This node's sessions.
pub(crate) struct SessionRegistry {
    slots: DashMap<SessionKey, Slot>,
    live: AtomicUsize,
    limits: QueueLimits,
    epochs: Arc<EpochSource>,
}

impl SessionRegistry {
    pub(crate) fn new(limits: QueueLimits, epochs: Arc<EpochSource>) -> Self {
        Self {
            slots: DashMap::new(),
            live: AtomicUsize::new(0),
            limits,
            epochs,
        }
    }

    /// A fresh epoch for a new registration, above every earlier one.
    pub(crate) fn next_epoch(&self) -> Epoch {
        self.epochs.next()
    }

    /// Adds a session whose registration is about to start.
    pub(crate) fn begin(&self, session: Arc<Session>) {
        let mut slot = self.slots.entry(session.key.clone()).or_default();
        let pending = slot.pending.get_or_insert_with(|| {
            Box::new(Pending {
                sessions: Vec::new(),
                superseded_at: 0,
            })
        });
        pending.sessions.push(session);
    }

    /// The session's registration committed at `index`: it becomes live, replacing an older
    /// connection with the same key (closed after the messages already queued for it), unless
    /// a newer registration of the key won meanwhile.
    pub(crate) fn commit(&self, session: &Arc<Session>, index: u64) -> Committed {
        let mut slot = self.slots.entry(session.key.clone()).or_default();
        let superseded_at = take_pending(&mut slot, session);
        session.set_committed_at(index);
        let newer_here = slot
            .live
            .as_ref()
            .is_some_and(|live| live.epoch > session.epoch);
        if superseded_at > index || newer_here {
            return Committed::Superseded;
        }
        if let Some(older) = slot.live.replace(session.clone()) {
            older.queue.close(CloseCommand::replaced(), false);
        } else {
            self.live.fetch_add(1, Ordering::Relaxed);
        }
        Committed::Live
    }

    /// The session's registration failed: it goes, and nothing else changes.
    pub(crate) fn abandon(&self, session: &Arc<Session>) {
        if let Some(mut slot) = self.slots.get_mut(&session.key) {
            take_pending(&mut slot, session);
            let empty = slot.is_empty();
            drop(slot);
            if empty {
                self.slots
                    .remove_if(&session.key, |_, slot| slot.is_empty());
            }
        }
    }

    /// Removes `key` only if its live session is still the one registered under `epoch`, so
    /// that the end of an older connection never removes a newer one that reused the key.
    pub(crate) fn remove(&self, key: &SessionKey, epoch: Epoch) -> bool {
        let Some(mut slot) = self.slots.get_mut(key) else {
            return false;
        };
        if slot.live.as_ref().is_none_or(|live| live.epoch != epoch) {
            return false;
        }
        slot.live = None;
        self.live.fetch_sub(1, Ordering::Relaxed);
        let empty = slot.is_empty();
        drop(slot);
        if empty {
            self.slots.remove_if(key, |_, slot| slot.is_empty());
        }
        true
    }

    /// The live session with this key, if any.
    pub(crate) fn get(&self, key: &str) -> Option<Arc<Session>> {
        self.slots.get(key).and_then(|slot| slot.live.clone())
    }

    /// Number of live sessions.
    pub(crate) fn len(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Asks every live session to close, after the messages already queued; returns how many.
    pub(crate) fn close_all(&self, close: &CloseCommand) -> usize {
        self.slots
            .iter()
            .filter_map(|slot| slot.live.clone())
            .filter(|session| session.queue.close(close.clone(), false))
            .count()
    }
}

/// Takes `session` out of the slot's pending list; returns the index at which the key was
/// registered elsewhere meanwhile (0: it was not).
fn take_pending(slot: &mut Slot, session: &Arc<Session>) -> u64 {
    let Some(pending) = slot.pending.as_mut() else {
        return 0;
    };
    pending
        .sessions
        .retain(|other| !Arc::ptr_eq(other, session));
    let superseded_at = pending.superseded_at;
    if pending.sessions.is_empty() {
        slot.pending = None;
    }
    superseded_at
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
                let Some(session) = self.get(key.as_str()) else {
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
        self.get(key)
            .is_some_and(|session| !session.queue.is_closing())
    }

    fn broadcast(&self, payload: &Payload) -> usize {
        let frame = frame_for(payload);
        let size = payload.len();
        self.slots
            .iter()
            .filter_map(|slot| slot.live.clone())
            .filter(|session| {
                session.queue.push(frame.clone(), size, &self.limits) == DeliveryStatus::Ok
            })
            .count()
    }

    fn close_all(&self) {
        SessionRegistry::close_all(self, &CloseCommand::node_down());
    }

    fn superseded(&self, key: &SessionKey, index: u64) {
        let Some(mut slot) = self.slots.get_mut(key.as_str()) else {
            return;
        };
        if slot
            .live
            .as_ref()
            .is_some_and(|live| live.committed_at() < index)
            && let Some(live) = slot.live.take()
        {
            self.live.fetch_sub(1, Ordering::Relaxed);
            live.queue.close(CloseCommand::replaced(), false);
        }
        if let Some(pending) = slot.pending.as_mut() {
            pending.superseded_at = pending.superseded_at.max(index);
        }
        let empty = slot.is_empty();
        drop(slot);
        if empty {
            self.slots
                .remove_if(key.as_str(), |_, slot| slot.is_empty());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn registry() -> SessionRegistry {
        SessionRegistry::new(
            QueueLimits {
                max_messages: 4,
                max_bytes: 1024,
                slow_consumer_timeout: Duration::from_secs(5),
            },
            Arc::new(EpochSource::in_memory()),
        )
    }

    fn live(registry: &SessionRegistry, key: &str, index: u64) -> Arc<Session> {
        let session = Session::new(SessionKey::from(key), registry.next_epoch(), None);
        registry.begin(session.clone());
        assert!(matches!(registry.commit(&session, index), Committed::Live));
        session
    }

    #[test]
    fn a_stale_remove_keeps_the_newer_registration() {
        let registry = registry();
        let key = SessionKey::from("dup");
        let older = live(&registry, "dup", 1);
        let newer = live(&registry, "dup", 2);
        assert!(older.queue.is_closing(), "the older connection is replaced");
        assert!(!registry.remove(&key, older.epoch));
        assert_eq!(registry.get("dup").map(|s| s.epoch), Some(newer.epoch));
        assert!(registry.remove(&key, newer.epoch));
        assert!(registry.get("dup").is_none());
        assert_eq!(registry.len(), 0);
    }

    #[test]
    fn a_pending_session_is_no_target_and_a_failed_one_leaves_the_older_alone() {
        let registry = registry();
        let older = live(&registry, "k", 1);
        let newer = Session::new(SessionKey::from("k"), registry.next_epoch(), None);
        registry.begin(newer.clone());
        let statuses = registry.deliver(
            &[SessionKey::from("k")],
            &Payload::text("to the older"),
            &DeliveryMode::Send,
        );
        assert_eq!(statuses, [DeliveryStatus::Ok]);
        assert_eq!(older.queue.depth().0, 1, "the live session got it");
        assert_eq!(newer.queue.depth().0, 0, "the pending one did not");
        registry.abandon(&newer);
        assert!(
            !older.queue.is_closing(),
            "a failed registration replaces nothing"
        );
        assert_eq!(registry.get("k").map(|s| s.epoch), Some(older.epoch));
        let only_pending = Session::new(SessionKey::from("p"), registry.next_epoch(), None);
        registry.begin(only_pending);
        assert!(!registry.holds("p"));
        assert_eq!(
            registry.deliver(
                &[SessionKey::from("p")],
                &Payload::text("x"),
                &DeliveryMode::Send
            ),
            [DeliveryStatus::NotFound]
        );
    }

    #[test]
    fn the_later_registration_in_the_log_wins_across_nodes() {
        let registry = registry();
        // Committed here at 5, registered elsewhere at 7: the local one goes.
        let here = live(&registry, "a", 5);
        registry.superseded(&SessionKey::from("a"), 7);
        assert!(here.queue.is_closing());
        assert!(registry.get("a").is_none());
        // Registered elsewhere at 3, committed here at 5: the local one stays.
        let kept = live(&registry, "b", 5);
        registry.superseded(&SessionKey::from("b"), 3);
        assert!(!kept.queue.is_closing());
        // Pending here while another node registers at 9; committed here at 8: refused.
        let pending = Session::new(SessionKey::from("c"), registry.next_epoch(), None);
        registry.begin(pending.clone());
        registry.superseded(&SessionKey::from("c"), 9);
        assert!(matches!(
            registry.commit(&pending, 8),
            Committed::Superseded
        ));
        assert!(registry.get("c").is_none());
        // The same, but committed here at 10: it wins.
        let later = Session::new(SessionKey::from("d"), registry.next_epoch(), None);
        registry.begin(later.clone());
        registry.superseded(&SessionKey::from("d"), 9);
        assert!(matches!(registry.commit(&later, 10), Committed::Live));
    }

    #[test]
    fn of_two_connections_here_the_newer_epoch_wins_whatever_commits_last() {
        let registry = registry();
        let first = Session::new(SessionKey::from("k"), registry.next_epoch(), None);
        let second = Session::new(SessionKey::from("k"), registry.next_epoch(), None);
        registry.begin(first.clone());
        registry.begin(second.clone());
        assert!(matches!(registry.commit(&second, 4), Committed::Live));
        assert!(matches!(registry.commit(&first, 4), Committed::Superseded));
        assert_eq!(registry.get("k").map(|s| s.epoch), Some(second.epoch));
    }

    #[test]
    fn deliver_reports_each_target() {
        let registry = registry();
        live(&registry, "a", 0);
        let closing = live(&registry, "c", 0);
        closing.queue.close(CloseCommand::shutdown(), false);
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
