//! Refusals of a connect request, each with a status and a reason a person can act on.

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::response::{IntoResponse, Response};
use http::header::{ACCEPT, CONTENT_TYPE, HeaderValue, SEC_WEBSOCKET_VERSION};
use http::{HeaderMap, StatusCode};

use crate::error_code::{ErrorCode, error_body};

/// Answers `status` with `reason`: JSON (`error`, `code`, `status`) when the client accepts
/// JSON, otherwise text that starts with the status text as kuiperbelt's did
/// (`Bad Gateway: ...`).
pub(crate) fn reject(
    status: StatusCode,
    code: ErrorCode,
    reason: &str,
    request_headers: &HeaderMap,
) -> Response {
    let wants_json = request_headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/json"));
    if wants_json {
        let mut body = error_body(code, reason);
        body.insert("status".to_owned(), status.as_u16().into());
        let body = serde_json::Value::Object(body).to_string();
        return (status, [(CONTENT_TYPE, "application/json")], body).into_response();
    }
    let text = format!(
        "{}: {reason}\n",
        status.canonical_reason().unwrap_or("Error")
    );
    (status, [(CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
}

/// A malformed WebSocket handshake, refused before the backend is asked.
pub(crate) fn handshake(
    rejection: &WebSocketUpgradeRejection,
    request_headers: &HeaderMap,
) -> Response {
    let (status, reason) = match rejection {
        WebSocketUpgradeRejection::MethodNotGet(_) => (
            StatusCode::METHOD_NOT_ALLOWED,
            "a WebSocket handshake must use GET",
        ),
        WebSocketUpgradeRejection::InvalidConnectionHeader(_) => (
            StatusCode::BAD_REQUEST,
            "the Connection header must contain the token \"upgrade\"",
        ),
        WebSocketUpgradeRejection::InvalidUpgradeHeader(_) => (
            StatusCode::BAD_REQUEST,
            "the Upgrade header must be \"websocket\"",
        ),
        WebSocketUpgradeRejection::InvalidWebSocketVersionHeader(_) => (
            StatusCode::BAD_REQUEST,
            "unsupported Sec-WebSocket-Version (only 13 is supported)",
        ),
        WebSocketUpgradeRejection::WebSocketKeyHeaderMissing(_) => (
            StatusCode::BAD_REQUEST,
            "the Sec-WebSocket-Key header is missing",
        ),
        WebSocketUpgradeRejection::ConnectionNotUpgradable(_) => (
            StatusCode::UPGRADE_REQUIRED,
            "this connection cannot be upgraded",
        ),
        _ => (StatusCode::BAD_REQUEST, "invalid WebSocket handshake"),
    };
    let mut response = reject(status, ErrorCode::InvalidHandshake, reason, request_headers);
    // gorilla/websocket adds this to every handshake refusal; RFC 6455 asks for it on 426.
    response
        .headers_mut()
        .insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
    response
}
