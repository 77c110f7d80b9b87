//! A registered session that must be unregistered exactly once, however the connection ends,
//! including when the upgrade never completes.

use std::sync::Arc;

use crate::sessions::{CloseCause, Session};
use crate::state::AppState;

/// Owns a session's place in the table and the router until the connection is done.
pub(crate) struct Registration {
    session: Arc<Session>,
    state: Arc<AppState>,
    finished: bool,
}

impl Registration {
    pub(crate) fn new(session: Arc<Session>, state: Arc<AppState>) -> Self {
        Self {
            session,
            state,
            finished: false,
        }
    }

    pub(crate) fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// Unregisters the session (unless a newer connection took its key) and sends the close
    /// callback when `cause` calls for one.
    pub(crate) async fn finish(mut self, cause: CloseCause) {
        self.finished = true;
        self.unregister();
        super::after_close(&self.state, &self.session.key, cause).await;
    }

    fn unregister(&self) {
        let session = &self.session;
        if self.state.registry.remove(&session.key, session.epoch) {
            // Cluster mode queues this for the next group commit; nothing waits for it.
            self.state.router.unregister(&session.key, session.epoch);
        }
    }
}

impl Drop for Registration {
    /// The upgrade failed (the client went away before the 101 was written): the session never
    /// served, so it is removed without a close callback, as kuiperbelt never registered it.
    fn drop(&mut self) {
        if !self.finished {
            self.unregister();
            self.state.metrics.count_close(CloseCause::ConnectionLost);
        }
    }
}
