//! A registered session that must be unregistered exactly once, however the connection ends,
//! including when the upgrade never completes.
//!
//! An `oort.v1` connection is different: when it ends, its session may go on without it
//! (lingering for `session.linger`, or resumed elsewhere), so the directory entry stays until
//! the session itself ends.

use std::sync::Arc;

use crate::durable::{Detached, Durable};
use crate::sessions::{CloseCause, Session};
use crate::state::AppState;

/// Owns a session's place in the table and the router until the connection is done.
pub(crate) struct Registration {
    session: Arc<Session>,
    state: Arc<AppState>,
    /// The client resumed an `oort.v1` session (the establish callback is told).
    resumed: bool,
    finished: bool,
}

impl Registration {
    pub(crate) fn new(session: Arc<Session>, state: Arc<AppState>) -> Self {
        Self {
            session,
            state,
            resumed: false,
            finished: false,
        }
    }

    /// The registration of a connection that resumed an `oort.v1` session.
    pub(crate) fn resumed(session: Arc<Session>, state: Arc<AppState>) -> Self {
        Self {
            session,
            state,
            resumed: true,
            finished: false,
        }
    }

    pub(crate) fn session(&self) -> &Arc<Session> {
        &self.session
    }

    pub(crate) fn is_resume(&self) -> bool {
        self.resumed
    }

    /// Unregisters the session (unless a newer connection took its key) and sends the close
    /// callback when `cause` calls for one.
    pub(crate) async fn finish(mut self, cause: CloseCause) {
        self.finished = true;
        match self.session.durable().cloned() {
            None => {
                self.unregister();
                super::after_close(&self.state, &self.session.key, cause).await;
            }
            Some(durable) => {
                if let Some(ending) = self.detach(&durable, cause) {
                    ending.await;
                }
            }
        }
    }

    fn unregister(&self) {
        let session = &self.session;
        if self.state.registry.remove(&session.key, session.epoch) {
            // Cluster mode queues this for the next group commit; nothing waits for it.
            self.state.router.unregister(&session.key, session.epoch);
        }
    }

    /// The connection of an `oort.v1` session ended: the session lingers, or ends (the future
    /// returned then withdraws it and tells the backend), or already went on elsewhere.
    fn detach(
        &self,
        durable: &Arc<Durable>,
        cause: CloseCause,
    ) -> Option<impl Future<Output = ()> + use<>> {
        let state = self.state.clone();
        state.registry.remove(&self.session.key, self.session.epoch);
        match durable.detach(&self.session, cause) {
            Detached::Ended => {
                let durable = durable.clone();
                Some(async move { super::end_durable(&state, &durable, cause).await })
            }
            Detached::Away(generation) => {
                state.metrics.count_close(cause);
                tracing::debug!(
                    cause = cause.as_str(),
                    "connection ended; the session lingers"
                );
                super::linger(state, durable.clone(), generation);
                None
            }
            Detached::NotAttached => {
                state.metrics.count_close(cause);
                None
            }
        }
    }
}

impl Drop for Registration {
    /// The upgrade failed (the client went away before the 101 was written): the session never
    /// served, so it is removed without a close callback, as kuiperbelt never registered it.
    /// An `oort.v1` session lingers instead: its client may still resume it.
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        match self.session.durable().cloned() {
            None => {
                self.unregister();
                self.state.metrics.count_close(CloseCause::ConnectionLost);
            }
            Some(durable) => {
                if let Some(ending) = self.detach(&durable, CloseCause::ConnectionLost) {
                    tokio::spawn(ending);
                }
            }
        }
    }
}
