//! `limits.handshake_memory`: memory reserved for client connections the connect callback has
//! not accepted yet. A connection reserves its share from accept until it is upgraded or closed,
//! so however many arrive, their heads and bodies together stay within the budget.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use metrics::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Reservations are counted in KiB, so that a budget of gigabytes fits the semaphore's `u32`
/// acquisitions.
const UNIT: usize = 1024;

/// The budget and gauges of what is reserved from it.
pub(crate) struct HandshakeBudget {
    units: Arc<Semaphore>,
    /// Connections waiting for room, and how many may: a waiting connection costs a few KiB
    /// (its task and socket), so their number is bounded too.
    waiting: AtomicUsize,
    max_waiting: usize,
    reserved_bytes: Gauge,
    handshakes: Gauge,
}

/// Counts one waiter until dropped.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A share of the budget, given back when dropped.
pub(crate) struct Reservation {
    _permit: OwnedSemaphorePermit,
    bytes: f64,
    reserved_bytes: Gauge,
    handshakes: Option<Gauge>,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.reserved_bytes.decrement(self.bytes);
        if let Some(handshakes) = &self.handshakes {
            handshakes.decrement(1.0);
        }
    }
}

impl HandshakeBudget {
    /// A budget of `bytes`; at most `max_waiting` connections wait for room at once (more are
    /// refused at once).
    pub(crate) fn new(
        bytes: usize,
        max_waiting: usize,
        reserved_bytes: Gauge,
        handshakes: Gauge,
    ) -> Self {
        let units = (bytes / UNIT).clamp(1, Semaphore::MAX_PERMITS);
        Self {
            units: Arc::new(Semaphore::new(units)),
            waiting: AtomicUsize::new(0),
            max_waiting,
            reserved_bytes,
            handshakes,
        }
    }

    /// Reserves room for one more handshake of `bytes`, waiting (in order of arrival) until
    /// `deadline`; `None` if no room was made by then, or too many wait already.
    pub(crate) async fn reserve_handshake(
        &self,
        bytes: usize,
        deadline: Instant,
    ) -> Option<Reservation> {
        let mut reservation = self.reserve(bytes, deadline).await?;
        self.handshakes.increment(1.0);
        reservation.handshakes = Some(self.handshakes.clone());
        Some(reservation)
    }

    /// Reserves `bytes` more for a handshake already counted (its body), until `deadline`.
    pub(crate) async fn reserve(&self, bytes: usize, deadline: Instant) -> Option<Reservation> {
        let units = u32::try_from(bytes.div_ceil(UNIT)).ok()?;
        let permit = match self.units.clone().try_acquire_many_owned(units) {
            Ok(permit) => permit,
            Err(_) => {
                let waiters = self.waiting.fetch_add(1, Ordering::AcqRel);
                let _waiting = Waiting(&self.waiting);
                if waiters >= self.max_waiting {
                    return None;
                }
                let acquire = self.units.clone().acquire_many_owned(units);
                // The semaphore is never closed, so acquiring fails only by timing out.
                tokio::time::timeout_at(deadline, acquire)
                    .await
                    .ok()?
                    .ok()?
            }
        };
        let bytes = (units as usize * UNIT) as f64;
        self.reserved_bytes.increment(bytes);
        Some(Reservation {
            _permit: permit,
            bytes,
            reserved_bytes: self.reserved_bytes.clone(),
            handshakes: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn budget(bytes: usize) -> HandshakeBudget {
        HandshakeBudget::new(bytes, 1, Gauge::noop(), Gauge::noop())
    }

    #[tokio::test(start_paused = true)]
    async fn a_spent_budget_makes_the_next_handshake_wait_until_one_ends() {
        let budget = budget(64 << 10);
        let soon = Instant::now() + Duration::from_secs(1);
        let first = budget.reserve_handshake(40 << 10, soon).await.unwrap();
        assert!(budget.reserve_handshake(40 << 10, soon).await.is_none());
        let later = Instant::now() + Duration::from_secs(1);
        let (second, ()) = tokio::join!(budget.reserve_handshake(40 << 10, later), async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            drop(first);
        });
        assert!(second.is_some(), "room was made before the deadline");
    }

    #[tokio::test(start_paused = true)]
    async fn beyond_the_waiting_bound_a_connection_is_refused_at_once() {
        let budget = budget(64 << 10);
        let later = Instant::now() + Duration::from_secs(10);
        let _all = budget.reserve_handshake(64 << 10, later).await.unwrap();
        let started = Instant::now();
        let (first, second) = tokio::join!(budget.reserve_handshake(1024, later), async {
            // The first waiter is in line by now; the second finds the line full.
            tokio::task::yield_now().await;
            budget.reserve_handshake(1024, later).await
        });
        assert!(second.is_none());
        assert!(first.is_none(), "the first waited until its deadline");
        assert!(started.elapsed() >= Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn more_than_the_whole_budget_is_never_granted() {
        let budget = budget(64 << 10);
        let soon = Instant::now() + Duration::from_secs(1);
        assert!(budget.reserve(65 << 10, soon).await.is_none());
        assert!(budget.reserve(64 << 10, soon).await.is_some());
    }
}
