//! `POST /v1/request`: a message to one session's client that the client answers, and the
//! answer (docs/channels.md, "Request/reply"). The request travels like a send (any node to
//! the session's owner) as an `oort.v1` request frame; the reply travels back to this node,
//! wherever the client is by then.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use http::StatusCode;
use oort_common::{DeliveryMode, DeliveryStatus, FrameKind, Payload, SessionKey};
use oort_router::DeliveryRequest;
use serde::Deserialize;
use serde_json::json;

use super::id_of;
use super::request::{parse, present, required_payload};
use crate::api::access_log::RequestId;
use crate::api::error::ApiError;
use crate::error_code::{ErrorCode, error_body};
use crate::state::AppState;

/// How long a request waits for its reply when it names no `timeout_ms`.
const DEFAULT_TIMEOUT_MS: u64 = 5_000;

/// The body of `/v1/request`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RequestBody {
    session: String,
    #[serde(default, deserialize_with = "present")]
    data: Option<String>,
    #[serde(default, deserialize_with = "present")]
    data_base64: Option<String>,
    #[serde(default, deserialize_with = "present")]
    binary: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    timeout_ms: Option<u64>,
}

/// `POST /v1/request`.
pub(crate) async fn request(
    State(state): State<Arc<AppState>>,
    request_id: Option<Extension<RequestId>>,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let body: RequestBody = parse(&state, body).await?;
    let payload = required_payload(body.data, body.data_base64, body.binary, "")?;
    let session = SessionKey::from(body.session);
    let outcome = ask(
        &state,
        session.clone(),
        payload,
        body.timeout_ms,
        id_of(&request_id),
    )
    .await?;
    Ok(match outcome {
        RequestOutcome::Undelivered(status) => {
            Json(json!({ "session": session, "status": status })).into_response()
        }
        RequestOutcome::Answered { status, reply } => {
            let reply = match reply.kind() {
                FrameKind::Text => {
                    json!({ "data": std::str::from_utf8(reply.data()).unwrap_or_default() })
                }
                FrameKind::Binary => json!({
                    "data_base64": base64::engine::general_purpose::STANDARD.encode(reply.data())
                }),
            };
            Json(json!({ "session": session, "status": status, "reply": reply })).into_response()
        }
        RequestOutcome::TimedOut { status, message } => {
            let mut body = error_body(ErrorCode::ReplyTimeout, &message);
            body.insert("session".to_owned(), json!(session));
            body.insert("status".to_owned(), json!(status));
            (StatusCode::GATEWAY_TIMEOUT, Json(body)).into_response()
        }
    })
}

/// What became of a request to a client.
pub(crate) enum RequestOutcome {
    /// The request did not reach the client: why.
    Undelivered(DeliveryStatus),
    /// The client's reply; `status`: the request's delivery status (`ok`, or `buffered` when
    /// the client was away and answered once it resumed).
    Answered {
        status: DeliveryStatus,
        reply: Payload,
    },
    /// No reply in time (`status`: the request's delivery status).
    TimedOut {
        status: DeliveryStatus,
        message: String,
    },
}

/// Sends `payload` to `session` as a request and waits up to `timeout_ms` (default 5 s) for
/// the client's reply (`/v1/request`, RPC `RequestReply`).
pub(crate) async fn ask(
    state: &AppState,
    session: SessionKey,
    payload: Payload,
    timeout_ms: Option<u64>,
    request_id: &str,
) -> Result<RequestOutcome, ApiError> {
    let max = state.config.limits.max_request_timeout.0;
    let timeout = Duration::from_millis(timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS));
    if timeout.is_zero() || timeout > max {
        return Err(ApiError::bad_request(format!(
            "timeout_ms: must be between 1 and {} (limits.max_request_timeout)",
            max.as_millis()
        )));
    }
    if session.as_str().is_empty() {
        return Err(ApiError::bad_request("session: must name a session key"));
    }
    let mut waiting = state
        .registry
        .replies
        .wait(&state.router.reply_prefix(), &session);
    let delivery = DeliveryRequest {
        targets: vec![session.clone()],
        payload,
        mode: DeliveryMode::Request {
            id: waiting.id.clone(),
        },
        strict: false,
        request_id: request_id.to_owned(),
    };
    let statuses = state.router.deliver(&delivery).await;
    state.metrics.count_deliveries(&statuses);
    let status = statuses
        .first()
        .copied()
        .unwrap_or(DeliveryStatus::OwnerUnreachable);
    if !status.is_success() {
        state.metrics.count_request("undelivered");
        return Ok(RequestOutcome::Undelivered(status));
    }
    match tokio::time::timeout(timeout, &mut waiting.reply).await {
        Ok(Ok(reply)) => {
            state.metrics.count_request("answered");
            Ok(RequestOutcome::Answered { status, reply })
        }
        _ => {
            state.metrics.count_request("timeout");
            Ok(RequestOutcome::TimedOut {
                status,
                message: format!("no reply within {} ms", timeout.as_millis()),
            })
        }
    }
}
