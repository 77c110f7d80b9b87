//! The read-only part of `/v1`: one session (`/v1/sessions/{key}`) and the cluster
//! (`/v1/cluster`).

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use oort_common::SessionKey;
use serde::Serialize;

use crate::api::error::ApiError;
use crate::state::AppState;

#[derive(Serialize)]
struct SessionInfo {
    session: SessionKey,
    node: String,
    connected_at_unix_ms: u128,
    peer: Option<String>,
    queued_messages: usize,
    queued_bytes: usize,
}

/// `GET /v1/sessions/{key}`.
pub(crate) async fn session(
    State(state): State<Arc<AppState>>,
    key: Result<Path<String>, PathRejection>,
) -> Response {
    // A key whose percent-encoding is not UTF-8 can name no session (keys are text).
    let key = match key {
        Ok(Path(key)) => key,
        Err(rejection) => {
            return ApiError::bad_request(format!("key: {}", rejection.body_text()))
                .into_response();
        }
    };
    let Some(session) = state.registry.get(&key) else {
        // Not held here: in a cluster another node may hold it (the router answers from its
        // replica, or asks the leader before saying it does not exist).
        return match state.router.owner(&key).await {
            Ok(Some(node)) => {
                Json(serde_json::json!({ "session": key, "node": node })).into_response()
            }
            Ok(None) => {
                let body = serde_json::json!({ "error": "session not found", "session": key });
                (StatusCode::NOT_FOUND, Json(body)).into_response()
            }
            Err(err) => {
                let body = serde_json::json!({ "error": err.to_string(), "session": key });
                (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
            }
        };
    };
    let (queued_messages, queued_bytes) = session.queue.depth();
    Json(SessionInfo {
        session: session.key.clone(),
        node: state.router.node_id().to_string(),
        connected_at_unix_ms: session
            .connected_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis()),
        peer: session.peer.map(|peer| peer.to_string()),
        queued_messages,
        queued_bytes,
    })
    .into_response()
}

/// `GET /v1/cluster`: members, roles, leader, term, applied index and lag per node, and
/// session counts, as this node sees them. A single node describes itself.
pub(crate) async fn cluster(State(state): State<Arc<AppState>>) -> Response {
    match state.router.cluster_status() {
        Some(status) => Json(status).into_response(),
        None => Json(serde_json::json!({
            "cluster": null,
            "node": state.router.node_id().to_string(),
            "role": "single",
            "ready": state.is_ready(),
            "sessions": state.registry.len(),
            "members": [],
        }))
        .into_response(),
    }
}
