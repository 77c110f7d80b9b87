//! Channel joins and leaves on this node, waiting to be reported to the backend
//! (`callback.presence`), coalesced: a join and a leave of the same session and channel
//! between two reports cancel out, so churn costs the backend nothing it would not see.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use oort_common::SessionKey;
use serde::Serialize;

/// Changes waiting at most; past it the oldest are not reported (and are counted).
const MAX_PENDING: usize = 100_000;

/// One change in a report.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub(crate) struct PresenceChange {
    pub channel: String,
    pub session: SessionKey,
    pub joined: bool,
}

/// The changes since the last report.
#[derive(Default)]
pub(crate) struct PresenceLog {
    pending: Mutex<Pending>,
}

#[derive(Default)]
struct Pending {
    /// (channel, session) -> joined (`true`) or left, net of what was reported.
    changes: HashMap<(Arc<str>, SessionKey), bool>,
    /// Changes not reported because `MAX_PENDING` were waiting.
    dropped: u64,
}

impl PresenceLog {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records that `session` joined (`true`) or left `channel`.
    pub(crate) fn record(&self, channel: &Arc<str>, session: &SessionKey, joined: bool) {
        let mut pending = self.lock();
        let pair = (channel.clone(), session.clone());
        match pending.changes.get(&pair) {
            // The opposite change is waiting: together they are no change.
            Some(waiting) if *waiting != joined => {
                pending.changes.remove(&pair);
            }
            Some(_) => {}
            None if pending.changes.len() >= MAX_PENDING => pending.dropped += 1,
            None => {
                pending.changes.insert(pair, joined);
            }
        }
    }

    /// Takes the changes to report, and how many were dropped since the last report.
    pub(crate) fn take(&self) -> (Vec<PresenceChange>, u64) {
        let mut pending = self.lock();
        let dropped = std::mem::take(&mut pending.dropped);
        let changes = std::mem::take(&mut pending.changes)
            .into_iter()
            .map(|((channel, session), joined)| PresenceChange {
                channel: channel.to_string(),
                session,
                joined,
            })
            .collect();
        (changes, dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_join_and_a_leave_between_reports_cancel_out() {
        let log = PresenceLog::default();
        let room: Arc<str> = Arc::from("room");
        let (a, b) = (SessionKey::from("a"), SessionKey::from("b"));
        log.record(&room, &a, true);
        log.record(&room, &a, false);
        log.record(&room, &b, true);
        log.record(&room, &b, true);
        let (changes, dropped) = log.take();
        assert_eq!(dropped, 0);
        assert_eq!(
            changes,
            [PresenceChange {
                channel: "room".into(),
                session: b,
                joined: true
            }]
        );
        assert!(log.take().0.is_empty(), "taken once");
    }
}
