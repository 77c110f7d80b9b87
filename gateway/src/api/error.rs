//! The backend API's error answer: a status and a JSON body saying what was wrong, as a
//! stable `code` (docs/errors.md) and a human `error`.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::header::CONTENT_TYPE;

use crate::error_code::{ErrorCode, error_body};

/// A refused backend API request.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    message: String,
}

impl ApiError {
    /// A refusal whose cause its status tells; [`Self::with_code`] names a precise one.
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code: ErrorCode::for_status(status),
            message: message.into(),
        }
    }

    /// The same refusal under a more precise code.
    pub(crate) fn with_code(mut self, code: ErrorCode) -> Self {
        self.code = code;
        self
    }

    /// 400 with a reason (`invalid_request`).
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 400 for a body that is not JSON or not the request's shape (`invalid_json`).
    pub(crate) fn invalid_json(message: impl Into<String>) -> Self {
        Self::bad_request(message).with_code(ErrorCode::InvalidJson)
    }

    /// The status, the code and the message (the RPC API answers with them in its own form).
    pub(crate) fn into_parts(self) -> (StatusCode, ErrorCode, String) {
        (self.status, self.code, self.message)
    }

    /// 413 naming the limit.
    pub(crate) fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body exceeds {limit} bytes (limits.max_send_body)"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::Value::Object(error_body(self.code, &self.message)).to_string();
        (self.status, [(CONTENT_TYPE, "application/json")], body).into_response()
    }
}

/// Reads a whole request body, refusing more than `limit` bytes.
pub(crate) async fn read_body(
    body: axum::body::Body,
    limit: usize,
) -> Result<bytes::Bytes, ApiError> {
    use http_body_util::BodyExt;
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => Err(ApiError::too_large(limit)),
        Err(err) => Err(ApiError::bad_request(format!(
            "the request body could not be read: {err}"
        ))),
    }
}
