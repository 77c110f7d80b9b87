//! `oort-bench`: load scenarios against a real gateway, spawned here or already running.
//!
//! Results are JSON on stdout (one object per scenario) and a human summary on stderr. Every
//! scenario is bounded in connections and time and runs against loopback only.

pub mod attack;
pub mod backend;
pub mod channel_api;
pub mod channel_chat;
pub mod channel_fanout;
pub mod chat;
pub mod clients;
pub mod compare;
pub mod directory;
pub mod failover;
pub mod fanout;
pub mod http_transports;
pub mod idle;
pub mod idle_workers;
pub mod nats_stats;
pub mod procfs;
pub mod receivers;
pub mod resume;
pub mod rolling;
pub mod rpc_send;
pub mod send;
pub mod streams;
pub mod target;

use std::time::Duration;

/// Bound on any one HTTP request the bench makes. Generous (a send to every one of 100k
/// sessions on a loaded machine answers well within it), but a request never hangs a run.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Percentiles of a set of durations, in milliseconds.
#[derive(Debug, serde::Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Percentiles {
    /// Percentiles of `samples` (sorted here).
    pub fn of(samples: &mut [Duration]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let at = |q: f64| {
            let index = ((samples.len() - 1) as f64 * q).round() as usize;
            samples[index].as_secs_f64() * 1000.0
        };
        Some(Self {
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        })
    }
}
