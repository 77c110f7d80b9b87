//! Per-address limits: connections open at once and connection attempts per second, counted by
//! [`AddressKey`].

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use super::address::AddressKey;

/// Attempts between two sweeps of the rate limiter's table, which keeps an entry for every
/// address seen until that address's bucket has filled up again.
const SWEEP_EVERY: u32 = 4096;

/// The counts and buckets of every client address.
pub(crate) struct AddressLimits {
    max_connections: usize,
    /// Connections whose first request line has not arrived yet (what a silent flood holds).
    pending: Counts,
    /// Client connections: handshakes past their first line, and upgraded connections.
    open: Counts,
    rate: Option<DefaultKeyedRateLimiter<AddressKey>>,
    attempts: AtomicU32,
}

/// Connections per address, with no entry for an address that has none.
#[derive(Default)]
struct Counts(Mutex<HashMap<AddressKey, usize>>);

impl Counts {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<AddressKey, usize>> {
        // The map stays consistent whatever a panicking holder did: every change is one step.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds one for `key` if it has fewer than `max` (0: no limit).
    fn add(&self, key: AddressKey, max: usize) -> bool {
        let mut counts = self.lock();
        let count = counts.entry(key).or_insert(0);
        if max > 0 && *count >= max {
            return false;
        }
        *count += 1;
        true
    }

    fn remove(&self, key: AddressKey) {
        let mut counts = self.lock();
        if let Some(count) = counts.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&key);
            }
        }
    }
}

/// Why an address was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AddressRefusal {
    /// `limits.address_connections` connections are open from it.
    TooManyConnections,
    /// It went over `limits.address_connect_rate`; the next attempt may succeed after this.
    TooFast(Duration),
}

/// One connection of an address, pending or open, given back when dropped.
pub(crate) struct AddressSlot {
    limits: Arc<AddressLimits>,
    key: AddressKey,
    pending: bool,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let counts = if self.pending {
            &self.limits.pending
        } else {
            &self.limits.open
        };
        counts.remove(self.key);
    }
}

impl AddressLimits {
    /// Limits of `max_connections` open connections (0: none) and `rate` attempts per second
    /// with bursts of `burst` (rate 0: none).
    pub(crate) fn new(max_connections: usize, rate: u32, burst: u32) -> Self {
        let rate = NonZeroU32::new(rate).map(|per_second| {
            let burst = NonZeroU32::new(burst).unwrap_or(per_second);
            DefaultKeyedRateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst))
        });
        Self {
            max_connections,
            pending: Counts::default(),
            open: Counts::default(),
            rate,
            attempts: AtomicU32::new(0),
        }
    }

    /// True when neither limit is set, so nothing needs counting.
    pub(crate) fn unlimited(&self) -> bool {
        self.max_connections == 0 && self.rate.is_none()
    }

    /// Counts one attempt from `key` and, if it is within both limits, one open connection.
    pub(crate) fn admit(self: &Arc<Self>, key: AddressKey) -> Result<AddressSlot, AddressRefusal> {
        self.attempt(key)?;
        self.hold(key)
    }

    /// Counts one attempt from `key` against `limits.address_connect_rate`.
    pub(crate) fn attempt(&self, key: AddressKey) -> Result<(), AddressRefusal> {
        let Some(rate) = &self.rate else {
            return Ok(());
        };
        if self.attempts.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            rate.retain_recent();
            rate.shrink_to_fit();
        }
        rate.check_key(&key).map_err(|not_until| {
            AddressRefusal::TooFast(not_until.wait_time_from(DefaultClock::default().now()))
        })
    }

    /// Counts one open client connection from `key` against `limits.address_connections`.
    pub(crate) fn hold(self: &Arc<Self>, key: AddressKey) -> Result<AddressSlot, AddressRefusal> {
        self.take(key, false)
    }

    /// Counts one connection from `key` whose first request line has not arrived, against
    /// `limits.address_connections` too (but apart from the open ones, so that a backend's
    /// fresh connection is not refused because clients of its address hold their places).
    pub(crate) fn hold_pending(
        self: &Arc<Self>,
        key: AddressKey,
    ) -> Result<AddressSlot, AddressRefusal> {
        self.take(key, true)
    }

    fn take(
        self: &Arc<Self>,
        key: AddressKey,
        pending: bool,
    ) -> Result<AddressSlot, AddressRefusal> {
        let counts = if pending { &self.pending } else { &self.open };
        if !counts.add(key, self.max_connections) {
            return Err(AddressRefusal::TooManyConnections);
        }
        Ok(AddressSlot {
            limits: self.clone(),
            key,
            pending,
        })
    }

    /// Addresses with a connection open or pending (for tests of the bookkeeping).
    #[cfg(test)]
    fn addresses_counted(&self) -> usize {
        self.pending.lock().len() + self.open.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> AddressKey {
        AddressKey::of(text.parse().unwrap())
    }

    #[test]
    fn connections_are_counted_per_address_and_given_back() {
        let limits = Arc::new(AddressLimits::new(2, 0, 0));
        let one = limits.admit(key("192.0.2.1")).unwrap();
        let _two = limits.admit(key("192.0.2.1")).unwrap();
        assert_eq!(
            limits.admit(key("192.0.2.1")).err(),
            Some(AddressRefusal::TooManyConnections)
        );
        let _other = limits.admit(key("192.0.2.2")).unwrap();
        // Connections still pending are counted apart: a fresh one is not refused here.
        let pending = limits.hold_pending(key("192.0.2.1")).unwrap();
        drop(pending);
        drop(one);
        let _three = limits.admit(key("192.0.2.1")).unwrap();
        drop(_three);
        drop(_two);
        drop(_other);
        assert_eq!(
            limits.addresses_counted(),
            0,
            "no entry outlives its connections"
        );
    }

    #[test]
    fn attempts_beyond_the_burst_wait_for_the_rate() {
        let limits = Arc::new(AddressLimits::new(0, 1, 3));
        for _ in 0..3 {
            drop(limits.admit(key("2001:db8::1")).unwrap());
        }
        // Another address of the same /64 shares the bucket.
        match limits.admit(key("2001:db8::2")) {
            Err(AddressRefusal::TooFast(wait)) => assert!(wait <= Duration::from_secs(1)),
            other => panic!("expected TooFast, got {:?}", other.err()),
        }
        assert!(limits.admit(key("2001:db8:0:1::1")).is_ok());
    }
}
