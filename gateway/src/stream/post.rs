//! A client's messages over HTTP (`POST {stream}`, to the receive callback) and its end of the
//! session (`DELETE {stream}`).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::StatusCode;
use http::header::CONTENT_TYPE;
use http_body_util::{BodyExt, Limited};
use oort_common::FrameKind;
use oort_common::cluster::{StreamAnswer, StreamOp};
use tracing::warn;

use super::{error, error_coded, perform, refusal};
use crate::callback::CallbackError;
use crate::durable::token::Claims;
use crate::error_code::ErrorCode;
use crate::state::AppState;

/// `POST {stream}`: one message for the backend's receive callback, answered once the
/// callback answered. A client that waits for each answer before the next (as oort.js does)
/// has its messages delivered in order, whichever nodes its requests reach.
pub(super) async fn message(state: &Arc<AppState>, claims: &Claims, request: Request) -> Response {
    let kind = match request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
    {
        Some(kind) if kind.starts_with("text/") || kind.starts_with("application/json") => {
            FrameKind::Text
        }
        _ => FrameKind::Binary,
    };
    let limit = state.config.websocket.max_message_size;
    let data = match Limited::new(request.into_body(), limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("a message is at most {limit} bytes (websocket.max_message_size)"),
            );
        }
        Err(_) => return error(StatusCode::BAD_REQUEST, "the request body is broken"),
    };
    if kind == FrameKind::Text && std::str::from_utf8(&data).is_err() {
        return error(
            StatusCode::BAD_REQUEST,
            "a text message must be UTF-8 (send other bytes as application/octet-stream)",
        );
    }
    // Only a session that still goes on takes messages.
    match perform(state, claims, StreamOp::Head, Duration::ZERO).await {
        Ok(StreamAnswer::Tail { closed: false, .. }) => {}
        Ok(StreamAnswer::Tail { closed: true, .. }) => {
            return error_coded(
                StatusCode::CONFLICT,
                ErrorCode::SessionClosed,
                "the backend closed the session",
            );
        }
        Ok(other) => return refusal(other),
        Err(response) => return response,
    }
    deliver(state, claims, kind, data).await
}

async fn deliver(state: &AppState, claims: &Claims, kind: FrameKind, data: Bytes) -> Response {
    state.metrics.messages_received.increment(1);
    if !state.callbacks.has_receive() {
        return StatusCode::NO_CONTENT.into_response();
    }
    match state
        .callbacks
        .receive(&claims.key, kind, data, &state.metrics)
        .await
    {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(CallbackError::Status { status, .. }) => error_coded(
            status,
            ErrorCode::CallbackFailed,
            &format!("the backend's receive callback answered {status}"),
        ),
        Err(err) => {
            warn!(error = %err, "receive callback failed");
            error_coded(
                StatusCode::BAD_GATEWAY,
                ErrorCode::CallbackFailed,
                &err.to_string(),
            )
        }
    }
}

/// `DELETE {stream}`: the client ends its session; the backend's close callback follows.
pub(super) async fn end(state: &Arc<AppState>, claims: &Claims) -> Response {
    match perform(state, claims, StreamOp::End, Duration::ZERO).await {
        Ok(StreamAnswer::Done) => StatusCode::NO_CONTENT.into_response(),
        Ok(other) => refusal(other),
        Err(response) => response,
    }
}
