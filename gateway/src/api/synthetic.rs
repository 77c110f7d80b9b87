//! `POST /v1/cluster/synthetic-sessions`: registers sessions that have no connection, through
//! the path a connect takes (the registrar's group commit, raft, every replica's apply), so
//! `oort-bench directory` can fill the directory with a million entries on a machine that holds
//! 20,000 sockets (docs/scale.md). Served only with `cluster.synthetic_sessions: true`, which
//! the node warns about at start: the directory then names sessions nothing can reach.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::StatusCode;
use oort_common::SessionKey;
use serde::Deserialize;

use super::error::ApiError;
use crate::state::AppState;

/// Registrations in flight at most: below the registrar's queue (16,384), so none is refused
/// for a full queue.
const MAX_CONCURRENCY: usize = 8_192;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch {
    /// Keys are `<prefix><n>` for n in `start..start + count`.
    prefix: String,
    start: u64,
    count: u64,
    /// Registrations in flight at once (default and most: 8,192).
    #[serde(default)]
    concurrency: Option<usize>,
}

pub(crate) async fn register(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    if !state.config.cluster.synthetic_sessions {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "synthetic sessions are off (cluster.synthetic_sessions)",
        )
        .into_response();
    }
    let batch: Batch = match serde_json::from_slice(&body) {
        Ok(batch) => batch,
        Err(err) => return ApiError::invalid_json(err.to_string()).into_response(),
    };
    if batch.prefix.is_empty() || batch.count == 0 || batch.count > 10_000_000 {
        return ApiError::bad_request("need a prefix and a count from 1 to 10,000,000")
            .into_response();
    }
    let concurrency = batch
        .concurrency
        .unwrap_or(MAX_CONCURRENCY)
        .clamp(1, MAX_CONCURRENCY);
    let next = Arc::new(AtomicU64::new(batch.start));
    let end = batch.start.saturating_add(batch.count);
    let prefix: Arc<str> = batch.prefix.into();
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.min(batch.count as usize) {
        let (state, next, prefix) = (state.clone(), next.clone(), prefix.clone());
        workers.spawn(async move {
            let mut latencies = Vec::new();
            let mut refused = 0_u64;
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= end {
                    return (latencies, refused);
                }
                let key = SessionKey::from(format!("{prefix}{n}"));
                let epoch = state.registry.next_epoch();
                let asked = Instant::now();
                match state.router.register(&key, epoch, None).await {
                    Ok(_) => latencies.push(asked.elapsed()),
                    Err(_) => refused += 1,
                }
            }
        });
    }
    let mut latencies: Vec<Duration> = Vec::with_capacity(batch.count as usize);
    let mut refused = 0;
    while let Some(done) = workers.join_next().await {
        if let Ok((mut some, not)) = done {
            latencies.append(&mut some);
            refused += not;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    Json(serde_json::json!({
        "registered": latencies.len(),
        "refused": refused,
        "seconds": seconds,
        "per_second": latencies.len() as f64 / seconds.max(1e-9),
        "commit_ms": { "p50": at(0.5), "p99": at(0.99), "max": at(1.0) },
    }))
    .into_response()
}
