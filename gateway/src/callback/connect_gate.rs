//! `callback.connect_concurrency` and `callback.connect_rate`: how many connects may be at the
//! callback stage at once, and how many may start per second. Past either, a connect is refused
//! at once with 503 instead of piling up on the backend. Within them, connect callbacks still
//! take their turn under `callback.max_concurrency` with every other callback.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota};

/// The connects at the callback stage, and the rate at which they may start.
pub(super) struct ConnectGate {
    pending: AtomicUsize,
    limit: usize,
    rate: Option<DefaultDirectRateLimiter>,
}

/// A connect at the callback stage, counted until dropped.
pub(crate) struct ConnectPass<'a>(&'a AtomicUsize);

impl Drop for ConnectPass<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why a connect was not let through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConnectGateRefusal {
    /// `callback.connect_concurrency` connects are at the callback stage.
    Concurrency,
    /// `callback.connect_rate` was used up; the next connect may start after this.
    Rate(Duration),
}

impl ConnectGate {
    pub(super) fn new(limit: usize, rate: u32) -> Self {
        let rate = NonZeroU32::new(rate)
            .map(|per_second| DefaultDirectRateLimiter::direct(Quota::per_second(per_second)));
        Self {
            pending: AtomicUsize::new(0),
            limit,
            rate,
        }
    }

    /// Lets one more connect through to the callback stage, or says why not.
    pub(super) fn enter(&self) -> Result<ConnectPass<'_>, ConnectGateRefusal> {
        self.pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |pending| {
                (pending < self.limit).then_some(pending + 1)
            })
            .map_err(|_| ConnectGateRefusal::Concurrency)?;
        let pass = ConnectPass(&self.pending);
        if let Some(rate) = &self.rate
            && let Err(not_until) = rate.check()
        {
            return Err(ConnectGateRefusal::Rate(
                not_until.wait_time_from(DefaultClock::default().now()),
            ));
        }
        Ok(pass)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connects_beyond_the_concurrency_are_refused_until_one_leaves() {
        let gate = ConnectGate::new(2, 0);
        let one = gate.enter().unwrap();
        let _two = gate.enter().unwrap();
        assert_eq!(gate.enter().err(), Some(ConnectGateRefusal::Concurrency));
        drop(one);
        assert!(gate.enter().is_ok());
    }

    #[test]
    fn connects_beyond_the_rate_are_refused_and_leave_no_count_behind() {
        let gate = ConnectGate::new(10, 2);
        drop(gate.enter().unwrap());
        drop(gate.enter().unwrap());
        match gate.enter() {
            Err(ConnectGateRefusal::Rate(wait)) => assert!(wait <= Duration::from_secs(1)),
            other => panic!("expected a rate refusal, got {:?}", other.err()),
        }
        assert_eq!(gate.pending.load(Ordering::Acquire), 0);
    }
}
