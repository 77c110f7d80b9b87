//! Refusals are logged at a bounded rate: an attack refused a million times must not write a
//! million lines. One line per reason at most every [`LOG_PERIOD`], carrying how many refusals
//! of that reason went unlogged since the last line.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota};
use tracing::warn;

use super::refusal::RefusalReason;

/// At most one line per reason in this period.
pub(crate) const LOG_PERIOD: Duration = Duration::from_secs(10);

/// One log budget per reason.
pub(crate) struct RefusalLog {
    reasons: [ReasonLog; RefusalReason::ALL.len()],
}

struct ReasonLog {
    turns: DefaultDirectRateLimiter,
    unlogged: AtomicU64,
}

impl RefusalLog {
    pub(crate) fn new() -> Self {
        let quota = Quota::with_period(LOG_PERIOD)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::MIN);
        Self {
            reasons: RefusalReason::ALL.map(|_| ReasonLog {
                turns: DefaultDirectRateLimiter::direct(quota),
                unlogged: AtomicU64::new(0),
            }),
        }
    }

    /// Logs this refusal if the reason's turn has come, else counts it for the next line.
    /// `address` is the client address the refusal concerns, if one does.
    pub(crate) fn refused(&self, reason: RefusalReason, address: Option<&dyn std::fmt::Display>) {
        let Some(index) = RefusalReason::ALL.iter().position(|r| *r == reason) else {
            return;
        };
        let log = &self.reasons[index];
        if log.turns.check().is_err() {
            log.unlogged.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let unlogged = log.unlogged.swap(0, Ordering::Relaxed);
        let address = address.map(ToString::to_string);
        warn!(
            reason = reason.as_str(),
            address,
            also_refused_since_last_line = unlogged,
            "refused: {}",
            reason.message()
        );
    }
}
