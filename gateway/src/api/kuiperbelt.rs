//! kuiperbelt's backend API: `/send`, `/close`, `/ping` and `/stats`, answering byte for byte
//! as kuiperbelt does (see docs/kuiperbelt-compat.md for the deliberate differences).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Extension;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::header::CONTENT_TYPE;
use http::{HeaderMap, Method, StatusCode};
use oort_common::{DeliveryMode, DeliveryStatus, FrameKind, Payload, SessionKey};
use oort_router::DeliveryRequest;
use serde::Serialize;

use super::access_log::RequestId;
use super::error::read_body;
use crate::state::AppState;

const JSON_UTF8: &str = "application/json; charset=utf-8";

#[derive(Serialize)]
struct KuiperbeltError<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    session: Option<&'a str>,
}

#[derive(Serialize)]
struct KuiperbeltAnswer<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<KuiperbeltError<'a>>,
    result: &'static str,
}

/// An answer with errors ends in a newline, as kuiperbelt's `json.Encoder` output does; the
/// plain success answer does not.
fn answer(status: StatusCode, errors: Vec<KuiperbeltError<'_>>, result: &'static str) -> Response {
    let newline = !errors.is_empty();
    let mut body = serde_json::to_string(&KuiperbeltAnswer { errors, result }).unwrap_or_default();
    if newline {
        body.push('\n');
    }
    (status, [(CONTENT_TYPE, JSON_UTF8)], body).into_response()
}

/// A refusal before any session is looked up. kuiperbelt writes these as literal strings, so
/// unlike [`answer`] with errors there is no trailing newline.
fn failure(status: StatusCode, message: &str) -> Response {
    let errors = vec![KuiperbeltError {
        error: message,
        session: None,
    }];
    let body = serde_json::to_string(&KuiperbeltAnswer {
        errors,
        result: "NG",
    })
    .unwrap_or_default();
    (status, [(CONTENT_TYPE, JSON_UTF8)], body).into_response()
}

/// `POST {path.send}`: the body goes to every session named by a session header.
pub(crate) async fn send(
    State(state): State<Arc<AppState>>,
    request_id: Option<Extension<RequestId>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let request_id = request_id.map(|Extension(id)| id).unwrap_or_default();
    deliver(state, request_id, headers, body, DeliveryMode::Send).await
}

/// `POST {path.close}`: the body is each session's last frame, then the connection closes.
pub(crate) async fn close(
    State(state): State<Arc<AppState>>,
    request_id: Option<Extension<RequestId>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let request_id = request_id.map(|Extension(id)| id).unwrap_or_default();
    let mode = DeliveryMode::Close {
        code: 1000,
        reason: String::new(),
        send_payload: true,
    };
    deliver(state, request_id, headers, body, mode).await
}

/// `{path.send}` or `{path.close}` with another method than POST: kuiperbelt's 405 body (the
/// router adds `Allow: POST`, which kuiperbelt did not send).
pub(crate) async fn post_required() -> Response {
    failure(StatusCode::METHOD_NOT_ALLOWED, "required POST method")
}

/// `{path.ping}` or `{path.stats}` with a method the contract does not list (see
/// `listed_methods` in the routes), in kuiperbelt's error shape.
pub(crate) async fn method_not_listed(method: Method) -> Response {
    failure(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("{method} is not allowed here"),
    )
}

async fn deliver(
    state: Arc<AppState>,
    request_id: RequestId,
    headers: HeaderMap,
    body: Body,
    mode: DeliveryMode,
) -> Response {
    // Each header line is one key; a line is never split on commas (`alice, bob` is one key).
    let targets: Vec<SessionKey> = headers
        .get_all(&state.session_header)
        .iter()
        .map(|value| SessionKey::from(String::from_utf8_lossy(value.as_bytes()).into_owned()))
        .collect();
    if targets.is_empty() {
        return failure(StatusCode::BAD_REQUEST, "session header is missing");
    }
    let data = match read_body(body, state.config.limits.max_send_body).await {
        Ok(data) => data,
        Err(_) => {
            let message = format!(
                "request body exceeds {} bytes",
                state.config.limits.max_send_body
            );
            return failure(StatusCode::PAYLOAD_TOO_LARGE, &message);
        }
    };
    let kind = FrameKind::from_content_type(headers.get(CONTENT_TYPE).map(|v| v.as_bytes()));
    let payload = match Payload::new(kind, data) {
        Ok(payload) => payload,
        Err(err) => {
            return failure(
                StatusCode::BAD_REQUEST,
                &format!("{err}; send binary data as application/octet-stream"),
            );
        }
    };
    let request = DeliveryRequest {
        targets,
        payload,
        mode,
        strict: state.config.strict_broadcast,
        request_id: request_id.0,
    };
    let statuses = state.router.deliver(&request).await;
    state.metrics.count_deliveries(&statuses);
    let attempted = statuses
        .iter()
        .filter(|s| !matches!(s, DeliveryStatus::NotFound | DeliveryStatus::Skipped))
        .count();
    state.stats.add_messages(attempted as u64);
    let strict_failure = request.strict && statuses.contains(&DeliveryStatus::NotFound);
    let errors: Vec<KuiperbeltError<'_>> = request
        .targets
        .iter()
        .zip(&statuses)
        .filter(|(_, status)| !strict_failure || **status == DeliveryStatus::NotFound)
        .filter_map(|(key, status)| {
            status.kuiperbelt_error().map(|error| KuiperbeltError {
                error,
                session: Some(key.as_str()),
            })
        })
        .collect();
    if strict_failure {
        answer(StatusCode::BAD_REQUEST, errors, "NG")
    } else {
        answer(StatusCode::OK, errors, "OK")
    }
}

/// `{path.ping}`, any listed method.
pub(crate) async fn ping() -> Response {
    (
        StatusCode::OK,
        [(CONTENT_TYPE, JSON_UTF8)],
        r#"{"result":"OK"}"#,
    )
        .into_response()
}

/// `{path.stats}`, any listed method: JSON, or TSV with `format=tsv|txt|text` in the query or
/// a form body.
pub(crate) async fn stats(
    State(state): State<Arc<AppState>>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // kuiperbelt read `format` with Go's `FormValue`, which reads a form body only for these.
    let reads_body = [Method::POST, Method::PUT, Method::PATCH].contains(&method);
    let is_form = reads_body
        && headers.get(CONTENT_TYPE).is_some_and(|v| {
            v.as_bytes()
                .starts_with(b"application/x-www-form-urlencoded")
        });
    let form = if is_form {
        read_body(body, 64 << 10).await.unwrap_or_default()
    } else {
        bytes::Bytes::new()
    };
    let format = [query.as_deref().unwrap_or_default().as_bytes(), &form]
        .into_iter()
        .flat_map(|source| url::form_urlencoded::parse(source))
        .find(|(key, _)| key == "format")
        .map(|(_, value)| value.into_owned());
    if matches!(format.as_deref(), Some("tsv" | "txt" | "text")) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        return (
            StatusCode::OK,
            [(CONTENT_TYPE, "text/plain")],
            state.stats.to_tsv(now),
        )
            .into_response();
    }
    (
        StatusCode::OK,
        [(CONTENT_TYPE, "application/json")],
        state.stats.to_json(),
    )
        .into_response()
}
