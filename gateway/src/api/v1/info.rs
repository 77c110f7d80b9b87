//! The read-only part of `/v1`: one session (`/v1/sessions/{key}`) and the cluster
//! (`/v1/cluster`).

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use oort_common::SessionKey;
use serde::{Deserialize, Serialize};

use crate::api::error::ApiError;
use crate::error_code::{ErrorCode, error_body};
use crate::state::AppState;

#[derive(Serialize)]
struct SessionInfo {
    session: SessionKey,
    node: String,
    connected_at_unix_ms: u128,
    peer: Option<String>,
    queued_messages: usize,
    queued_bytes: usize,
    /// The channels the session is in.
    channels: Vec<String>,
    /// Only for `oort.v1` sessions.
    #[serde(skip_serializing_if = "Option::is_none")]
    durable: Option<DurableInfo>,
}

/// What an `oort.v1` session keeps for its client.
#[derive(Serialize)]
struct DurableInfo {
    /// A connection is attached (false while the session lingers).
    connected: bool,
    /// The last sequence number given out.
    last_seq: u64,
    /// Messages and bytes kept until the client acknowledges them.
    unacked_messages: usize,
    unacked_bytes: usize,
}

impl DurableInfo {
    fn of(durable: &crate::durable::Durable, connected: bool) -> Self {
        let (unacked_messages, unacked_bytes, last_seq) = durable.depth();
        Self {
            connected,
            last_seq,
            unacked_messages,
            unacked_bytes,
        }
    }
}

/// `?replica=true`: answer from this node's own replica of the directory.
#[derive(Deserialize)]
pub(crate) struct SessionQuery {
    #[serde(default)]
    replica: bool,
}

/// `GET /v1/sessions/{key}`.
pub(crate) async fn session(
    State(state): State<Arc<AppState>>,
    key: Result<Path<String>, PathRejection>,
    query: Result<Query<SessionQuery>, QueryRejection>,
) -> Response {
    let replica_only = match query {
        Ok(Query(query)) => query.replica,
        Err(rejection) => {
            return ApiError::bad_request(format!("replica: {}", rejection.body_text()))
                .into_response();
        }
    };
    // A key whose percent-encoding is not UTF-8 can name no session (keys are text).
    let key = match key {
        Ok(Path(key)) => key,
        Err(rejection) => {
            return ApiError::bad_request(format!("key: {}", rejection.body_text()))
                .into_response();
        }
    };
    let held_here = state.registry.get(&key);
    if held_here.is_none()
        && !replica_only
        && let Some(durable) = state.registry.durable(&key)
    {
        // Lingering: no connection, but the session goes on here.
        return Json(serde_json::json!({
            "session": key,
            "node": state.router.node_id().to_string(),
            "channels": state.registry.channels_of(&key),
            "durable": DurableInfo::of(&durable, false),
        }))
        .into_response();
    }
    let Some(session) = held_here.filter(|_| !replica_only) else {
        // Not held here, or the replica alone is asked: in a cluster another node may hold it
        // (the router answers from its replica, or asks the leader before saying it does not
        // exist, unless only the replica is asked).
        let owner = if replica_only {
            Ok(state.router.owner_in_replica(&key))
        } else {
            state.router.owner(&key).await
        };
        return match owner {
            Ok(Some(node)) => {
                Json(serde_json::json!({ "session": key, "node": node })).into_response()
            }
            Ok(None) => {
                let mut body = error_body(ErrorCode::SessionNotFound, "session not found");
                body.insert("session".to_owned(), key.into());
                (StatusCode::NOT_FOUND, Json(body)).into_response()
            }
            Err(err) => {
                let mut body = error_body(ErrorCode::Unavailable, &err.to_string());
                body.insert("session".to_owned(), key.into());
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
        channels: state.registry.channels_of(session.key.as_str()),
        durable: session
            .durable()
            .map(|durable| DurableInfo::of(durable, true)),
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
            // No NATS: a single node's bus is in-process.
            "nats": { "state": "none", "servers": [] },
        }))
        .into_response(),
    }
}
