//! Oort's JSON backend API: `/v1/send`, `/v1/send/batch`, `/v1/close`, `/v1/broadcast`, and
//! the lookups in `info`. Every delivery answer reports a status for every session. The
//! contract is docs/openapi.yaml; `request` holds the request bodies and their checks.

mod channels;
mod info;
mod request;
mod request_reply;
mod users;

use std::sync::Arc;

use axum::extract::State;
use axum::{Extension, Json};
use http::StatusCode;
use oort_common::{DeliveryStatus, SessionKey};
use oort_router::DeliveryRequest;
use serde::Serialize;

use super::access_log::RequestId;
use super::error::ApiError;
use crate::state::AppState;
pub(crate) use channels::{
    NO_SUBSCRIBER, NoSubscriber, checked_channels, membership_of, presence, presence_page, publish,
    publish_to, subscribe, unsubscribe,
};
pub(crate) use info::{cluster, session};
use request::{BatchRequest, BroadcastRequest, CloseRequest, SendRequest, parse};
pub(crate) use request::{batch_delivery, close_delivery, send_delivery};
pub(crate) use request_reply::{RequestOutcome, ask, request};
pub(crate) use users::{user, user_answer};

#[derive(Serialize)]
pub(crate) struct SessionResult {
    /// Absent for a user with no session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) session: Option<SessionKey>,
    pub(crate) status: DeliveryStatus,
    /// The user the session was reached through (`/v1/send` with `users`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) user: Option<String>,
}

#[derive(Serialize)]
pub(crate) struct DeliveryAnswer {
    pub(crate) results: Vec<SessionResult>,
    pub(crate) ok: usize,
    /// Kept for `oort.v1` sessions between connections; delivered when they resume.
    pub(crate) buffered: usize,
    pub(crate) failed: usize,
}

impl DeliveryAnswer {
    pub(super) fn new(targets: Vec<SessionKey>, statuses: Vec<DeliveryStatus>) -> Self {
        let ok = statuses
            .iter()
            .filter(|s| **s == DeliveryStatus::Ok)
            .count();
        let buffered = statuses
            .iter()
            .filter(|s| **s == DeliveryStatus::Buffered)
            .count();
        let failed = statuses.len() - ok - buffered;
        let results = targets
            .into_iter()
            .zip(statuses)
            .map(|(session, status)| SessionResult {
                session: Some(session),
                status,
                user: None,
            })
            .collect();
        Self {
            results,
            ok,
            buffered,
            failed,
        }
    }
}

#[derive(Serialize)]
pub(crate) struct BatchAnswer {
    pub(crate) messages: Vec<DeliveryAnswer>,
    pub(crate) ok: usize,
    pub(crate) buffered: usize,
    pub(crate) failed: usize,
}

/// `POST /v1/send`: to sessions, and to every session of users.
pub(crate) async fn send(
    State(state): State<Arc<AppState>>,
    request_id: Option<Extension<RequestId>>,
    body: axum::body::Body,
) -> Result<Json<DeliveryAnswer>, ApiError> {
    let request: SendRequest = parse(&state, body).await?;
    let (delivery, users) = request.into_delivery(state.config.strict_broadcast)?;
    Ok(Json(
        send_to(&state, delivery, &users, id_of(&request_id)).await,
    ))
}

/// Delivers a send to its sessions and to every session of `users` (`/v1/send`, RPC `Send`).
pub(crate) async fn send_to(
    state: &AppState,
    delivery: DeliveryRequest,
    users: &[String],
    request_id: &str,
) -> DeliveryAnswer {
    if users.is_empty() {
        return deliver(state, delivery, request_id).await;
    }
    users::send(state, delivery, users, request_id).await
}

/// `POST /v1/send/batch`: many messages in one request, each with its own sessions.
pub(crate) async fn send_batch(
    State(state): State<Arc<AppState>>,
    request_id: Option<Extension<RequestId>>,
    body: axum::body::Body,
) -> Result<Json<BatchAnswer>, ApiError> {
    let request: BatchRequest = parse(&state, body).await?;
    if request.messages.is_empty() {
        return Err(ApiError::bad_request(
            "messages: must hold at least one message",
        ));
    }
    let strict = request.strict.unwrap_or(state.config.strict_broadcast);
    let deliveries = request
        .messages
        .into_iter()
        .enumerate()
        .map(|(index, message)| message.into_delivery(strict, index))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(
        deliver_batch(&state, deliveries, id_of(&request_id)).await,
    ))
}

/// Delivers each message of a batch (`/v1/send/batch`, RPC `SendBatch`).
pub(crate) async fn deliver_batch(
    state: &AppState,
    mut deliveries: Vec<DeliveryRequest>,
    request_id: &str,
) -> BatchAnswer {
    let mut answer = BatchAnswer {
        messages: Vec::with_capacity(deliveries.len()),
        ok: 0,
        buffered: 0,
        failed: 0,
    };
    for delivery in &mut deliveries {
        delivery.request_id = request_id.to_owned();
    }
    let all_statuses = state.router.deliver_all(&deliveries).await;
    for (delivery, statuses) in deliveries.into_iter().zip(all_statuses) {
        let result = answer_of(state, delivery, statuses);
        answer.ok += result.ok;
        answer.buffered += result.buffered;
        answer.failed += result.failed;
        answer.messages.push(result);
    }
    answer
}

/// `POST /v1/close`: an optional last message, then a close frame with `code` and `reason`.
pub(crate) async fn close(
    State(state): State<Arc<AppState>>,
    request_id: Option<Extension<RequestId>>,
    body: axum::body::Body,
) -> Result<Json<DeliveryAnswer>, ApiError> {
    let request: CloseRequest = parse(&state, body).await?;
    let delivery = request.into_delivery()?;
    Ok(Json(deliver(&state, delivery, id_of(&request_id)).await))
}

/// `POST /v1/broadcast`: one message to every session of the cluster (one NATS publish; each
/// node fans out to its own sessions).
pub(crate) async fn broadcast(
    State(state): State<Arc<AppState>>,
    request_id: Option<Extension<RequestId>>,
    body: axum::body::Body,
) -> Result<Json<serde_json::Value>, ApiError> {
    let request: BroadcastRequest = parse(&state, body).await?;
    let payload = request.into_payload()?;
    let sessions = broadcast_all(&state, &payload, id_of(&request_id)).await?;
    Ok(Json(
        serde_json::json!({ "result": "ok", "sessions": sessions }),
    ))
}

/// One message to every session (`/v1/broadcast`, RPC `Broadcast`): the sessions it was
/// queued for, when known (a single node counts them; a cluster publishes once and does not).
pub(crate) async fn broadcast_all(
    state: &AppState,
    payload: &oort_common::Payload,
    request_id: &str,
) -> Result<Option<usize>, ApiError> {
    state
        .router
        .broadcast(payload, request_id)
        .await
        .map_err(|err| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, err.to_string()))
}

/// Delivers `request` and counts the statuses (`/v1/close`, RPC `Close`, sends to sessions).
pub(crate) async fn deliver(
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
