//! `callback.max_concurrency`: the callbacks one node has in flight, so that a drain of 100k
//! sessions, or a burst of connects, never opens more connections to the backend than it can
//! take. Turns are given in order of arrival (tokio's semaphore is fair).

use metrics::Gauge;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

/// The turns, and gauges of who holds and who waits for one.
pub(super) struct CallbackSlots {
    turns: Semaphore,
    limit: usize,
    in_flight: Gauge,
    waiting: Gauge,
}

/// One callback's turn, given back when dropped (also when the callback is abandoned midway,
/// say because its connection ended).
pub(super) struct Slot<'a> {
    _turn: SemaphorePermit<'a>,
    in_flight: &'a Gauge,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.in_flight.decrement(1.0);
    }
}

/// Counts one waiter for as long as it waits, however the wait ends.
struct Waiting<'a>(&'a Gauge);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

impl CallbackSlots {
    pub(super) fn new(limit: usize, in_flight: Gauge, waiting: Gauge) -> Self {
        Self {
            // Validation keeps the limit above 0; the cap keeps tokio's constructor from
            // panicking on absurd values.
            turns: Semaphore::new(limit.clamp(1, Semaphore::MAX_PERMITS)),
            limit,
            in_flight,
            waiting,
        }
    }

    /// `callback.max_concurrency`.
    pub(super) fn limit(&self) -> usize {
        self.limit
    }

    /// Waits for a turn until `deadline` (forever when `None`); `None` if it did not come.
    pub(super) async fn take(&self, deadline: Option<Instant>) -> Option<Slot<'_>> {
        let turn = match self.turns.try_acquire() {
            Ok(turn) => turn,
            Err(_) => {
                self.waiting.increment(1.0);
                let _waiting = Waiting(&self.waiting);
                let acquire = self.turns.acquire();
                let acquired = match deadline {
                    Some(deadline) => tokio::time::timeout_at(deadline, acquire).await.ok()?,
                    None => acquire.await,
                };
                // The semaphore is never closed, so acquiring fails only by timing out.
                acquired.ok()?
            }
        };
        self.in_flight.increment(1.0);
        Some(Slot {
            _turn: turn,
            in_flight: &self.in_flight,
        })
    }
}
