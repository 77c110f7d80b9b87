//! Health and metrics endpoints.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::header::CONTENT_TYPE;

use crate::state::AppState;

/// `/livez`: the process is up and serving HTTP.
pub(crate) async fn livez() -> Response {
    (
        StatusCode::OK,
        [(CONTENT_TYPE, "application/json")],
        r#"{"status":"ok"}"#,
    )
        .into_response()
}

/// `/readyz`: ready for new clients (false while draining, and later while the cluster
/// directory is not caught up).
pub(crate) async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.is_ready() {
        return (
            StatusCode::OK,
            [(CONTENT_TYPE, "application/json")],
            r#"{"status":"ready"}"#,
        )
            .into_response();
    }
    let reason = if state.is_draining() {
        "draining"
    } else {
        "not_ready"
    };
    let body = serde_json::json!({ "status": reason }).to_string();
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// `/metrics`: Prometheus exposition format.
pub(crate) async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    state.metrics.sessions.set(state.registry.len() as f64);
    state
        .metrics
        .lingering_sessions
        .set(state.registry.lingering().len() as f64);
    let (streams, stream_bytes) = state.streams.usage();
    state.metrics.streams.set(streams as f64);
    state.metrics.stream_bytes.set(stream_bytes as f64);
    if let Some(status) = state.router.cluster_status() {
        state.metrics.set_cluster(&status);
    }
    state
        .metrics
        .unmatched_replies
        .absolute(state.registry.replies.unmatched());
    for (channel, gauge) in &state.channel_gauges {
        gauge.set(state.registry.channel_count(channel) as f64);
    }
    (
        StatusCode::OK,
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// `POST /v1/drain`: starts the same drain as SIGTERM (readiness false, listeners closed,
/// clients closed with 1001, leave the cluster) and answers at once; the process exits when the
/// drain is done. Kubernetes runs this from the preStop hook (`oort drain`).
pub(crate) async fn drain(State(state): State<Arc<AppState>>) -> Response {
    state.drain_requested.cancel();
    (
        StatusCode::ACCEPTED,
        [(CONTENT_TYPE, "application/json")],
        r#"{"result":"draining"}"#,
    )
        .into_response()
}
