//! Oort's JSON backend API: `/v1/send`, `/v1/send/batch`, `/v1/close` and
//! `/v1/sessions/{key}`. Every answer reports a status for every session. The contract is in
//! docs/openapi.yaml.

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine;
use bytes::Bytes;
use http::StatusCode;
use oort_common::{DeliveryMode, DeliveryStatus, FrameKind, Payload, SessionKey};
use oort_router::DeliveryRequest;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::access_log::RequestId;
use super::error::{ApiError, read_body};
use crate::state::AppState;

/// One message for a list of sessions.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Message {
    sessions: Vec<String>,
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    data_base64: Option<String>,
    #[serde(default)]
    binary: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendRequest {
    sessions: Vec<String>,
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    data_base64: Option<String>,
    #[serde(default)]
    binary: bool,
    #[serde(default)]
    strict: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchRequest {
    messages: Vec<Message>,
    #[serde(default)]
    strict: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CloseRequest {
    sessions: Vec<String>,
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    data_base64: Option<String>,
    #[serde(default)]
    binary: bool,
    #[serde(default = "normal_closure")]
    code: u16,
    #[serde(default)]
    reason: String,
}

fn normal_closure() -> u16 {
    1000
}

#[derive(Serialize)]
pub(crate) struct SessionResult {
    session: SessionKey,
    status: DeliveryStatus,
}

#[derive(Serialize)]
pub(crate) struct DeliveryAnswer {
    results: Vec<SessionResult>,
    ok: usize,
    failed: usize,
}

impl DeliveryAnswer {
    fn new(targets: Vec<SessionKey>, statuses: Vec<DeliveryStatus>) -> Self {
        let ok = statuses
            .iter()
            .filter(|s| **s == DeliveryStatus::Ok)
            .count();
        let failed = statuses.len() - ok;
        let results = targets
            .into_iter()
            .zip(statuses)
            .map(|(session, status)| SessionResult { session, status })
            .collect();
        Self {
            results,
            ok,
            failed,
        }
    }
}

#[derive(Serialize)]
pub(crate) struct BatchAnswer {
    messages: Vec<DeliveryAnswer>,
    ok: usize,
    failed: usize,
}

/// `POST /v1/send`.
pub(crate) async fn send(
    State(state): State<Arc<AppState>>,
    request_id: Option<Extension<RequestId>>,
    body: Body,
) -> Result<Json<DeliveryAnswer>, ApiError> {
    let request: SendRequest = parse(&state, body).await?;
    let strict = request.strict.unwrap_or(state.config.strict_broadcast);
    let message = Message {
        sessions: request.sessions,
        data: request.data,
        data_base64: request.data_base64,
        binary: request.binary,
    };
    let delivery = to_delivery(message, DeliveryMode::Send, strict, "")?;
    Ok(Json(deliver(&state, delivery, id_of(&request_id)).await))
}

/// `POST /v1/send/batch`: many messages in one request, each with its own sessions.
pub(crate) async fn send_batch(
    State(state): State<Arc<AppState>>,
    request_id: Option<Extension<RequestId>>,
    body: Body,
) -> Result<Json<BatchAnswer>, ApiError> {
    let request: BatchRequest = parse(&state, body).await?;
    if request.messages.is_empty() {
        return Err(ApiError::bad_request(
            "messages: must hold at least one message",
        ));
    }
    let strict = request.strict.unwrap_or(state.config.strict_broadcast);
    let mut deliveries = request
        .messages
        .into_iter()
        .enumerate()
        .map(|(index, message)| {
            to_delivery(
                message,
                DeliveryMode::Send,
                strict,
                &format!("messages[{index}]."),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut answer = BatchAnswer {
        messages: Vec::with_capacity(deliveries.len()),
        ok: 0,
        failed: 0,
    };
    for delivery in &mut deliveries {
        delivery.request_id = id_of(&request_id).to_owned();
    }
    let all_statuses = state.router.deliver_all(&deliveries).await;
    for (delivery, statuses) in deliveries.into_iter().zip(all_statuses) {
        let result = answer_of(&state, delivery, statuses);
        answer.ok += result.ok;
        answer.failed += result.failed;
        answer.messages.push(result);
    }
    Ok(Json(answer))
}

/// `POST /v1/close`: an optional last message, then a close frame with `code` and `reason`.
pub(crate) async fn close(
    State(state): State<Arc<AppState>>,
    request_id: Option<Extension<RequestId>>,
    body: Body,
) -> Result<Json<DeliveryAnswer>, ApiError> {
    let request: CloseRequest = parse(&state, body).await?;
    if !(request.code == 1000 || (3000..=4999).contains(&request.code)) {
        return Err(ApiError::bad_request(format!(
            "code: {} is not allowed; use 1000 or an application code 3000-4999",
            request.code
        )));
    }
    if request.reason.len() > 123 {
        return Err(ApiError::bad_request(
            "reason: at most 123 bytes fit in a close frame",
        ));
    }
    let send_payload = request.data.is_some() || request.data_base64.is_some();
    let mode = DeliveryMode::Close {
        code: request.code,
        reason: request.reason,
        send_payload,
    };
    let message = Message {
        sessions: request.sessions,
        data: request.data,
        data_base64: request.data_base64,
        binary: request.binary,
    };
    let delivery = to_delivery(message, mode, false, "")?;
    Ok(Json(deliver(&state, delivery, id_of(&request_id)).await))
}

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
    Path(key): Path<String>,
) -> Response {
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

async fn deliver(
    state: &AppState,
    mut request: DeliveryRequest,
    request_id: &str,
) -> DeliveryAnswer {
    request.request_id = request_id.to_owned();
    let statuses = state.router.deliver(&request).await;
    answer_of(state, request, statuses)
}

/// The answer to one delivery, counted in the metrics.
fn answer_of(
    state: &AppState,
    request: DeliveryRequest,
    statuses: Vec<DeliveryStatus>,
) -> DeliveryAnswer {
    state.metrics.count_deliveries(&statuses);
    DeliveryAnswer::new(request.targets, statuses)
}

fn id_of(request_id: &Option<Extension<RequestId>>) -> &str {
    request_id
        .as_ref()
        .map_or("", |Extension(id)| id.0.as_str())
}

/// Reads and parses a JSON body; errors name the field, e.g. `messages[2].sessions: invalid type`.
async fn parse<T: DeserializeOwned>(state: &AppState, body: Body) -> Result<T, ApiError> {
    let bytes = read_body(body, state.config.limits.max_send_body).await?;
    // serde would also accept a struct written as a JSON array; only objects are documented.
    if bytes.trim_ascii_start().first() == Some(&b'[') {
        return Err(ApiError::bad_request(
            "invalid type: an array, expected a JSON object",
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if path == "." {
            ApiError::bad_request(format!("invalid JSON: {inner}"))
        } else {
            ApiError::bad_request(format!("{path}: {inner}"))
        }
    })
}

fn to_delivery(
    message: Message,
    mode: DeliveryMode,
    strict: bool,
    at: &str,
) -> Result<DeliveryRequest, ApiError> {
    if message.sessions.is_empty() {
        return Err(ApiError::bad_request(format!(
            "{at}sessions: must list at least one session key"
        )));
    }
    let optional = matches!(mode, DeliveryMode::Close { .. });
    let payload = payload_of(
        message.data,
        message.data_base64,
        message.binary,
        optional,
        at,
    )?;
    let targets = message.sessions.into_iter().map(SessionKey::from).collect();
    Ok(DeliveryRequest {
        targets,
        payload,
        mode,
        strict,
        request_id: String::new(),
    })
}

/// The payload of a request from `data` (text) or `data_base64`; `optional` allows neither
/// (an empty payload). `at` prefixes error messages with the field's location.
fn payload_of(
    data: Option<String>,
    data_base64: Option<String>,
    binary: bool,
    optional: bool,
    at: &str,
) -> Result<Payload, ApiError> {
    let bytes = match (data, data_base64) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(format!(
                "{at}data and {at}data_base64: give one, not both"
            )));
        }
        (Some(text), None) => Bytes::from(text),
        (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
            .decode(encoded.as_bytes())
            .map(Bytes::from)
            .map_err(|err| ApiError::bad_request(format!("{at}data_base64: {err}")))?,
        (None, None) if optional => Bytes::new(),
        (None, None) => {
            return Err(ApiError::bad_request(format!(
                "{at}data or {at}data_base64 is required"
            )));
        }
    };
    let kind = if binary {
        FrameKind::Binary
    } else {
        FrameKind::Text
    };
    Payload::new(kind, bytes)
        .map_err(|err| ApiError::bad_request(format!("{at}data_base64: {err}; set binary: true")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BroadcastRequest {
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    data_base64: Option<String>,
    #[serde(default)]
    binary: bool,
}

/// `POST /v1/broadcast`: one message to every session of the cluster (one NATS publish; each
/// node fans out to its own sessions).
pub(crate) async fn broadcast(
    State(state): State<Arc<AppState>>,
    request_id: Option<Extension<RequestId>>,
    body: Body,
) -> Result<Json<serde_json::Value>, ApiError> {
    let request: BroadcastRequest = parse(&state, body).await?;
    let payload = payload_of(request.data, request.data_base64, request.binary, false, "")?;
    match state.router.broadcast(&payload, id_of(&request_id)).await {
        Ok(sessions) => Ok(Json(
            serde_json::json!({ "result": "ok", "sessions": sessions }),
        )),
        Err(err) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            err.to_string(),
        )),
    }
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
