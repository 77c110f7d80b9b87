//! The four callback handlers: record each request, then answer as the module docs of
//! [`super`] describe.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::{CallbackKind, Recorded, Shared};

fn record(
    shared: &Shared,
    kind: CallbackKind,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) {
    shared.recorded.lock().unwrap().push(Recorded {
        kind,
        method,
        uri,
        headers,
        body,
    });
    shared.changed.notify_waiters();
}

fn session_of(shared: &Shared, headers: &HeaderMap) -> String {
    let header = shared.session_header.lock().unwrap().clone();
    headers
        .get(header.as_str())
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

pub(super) async fn connect(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record(&shared, CallbackKind::Connect, method, uri, headers, body);
    let params: HashMap<String, String> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    if let Some(delay) = params.get("delay_ms").and_then(|v| v.parse().ok()) {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if let Some(status) = params.get("status").and_then(|v| v.parse::<u16>().ok()) {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = params.get("body").cloned().unwrap_or_default();
        return (status, [("Content-Type", "text/plain")], body).into_response();
    }
    let mut response = params
        .get("first")
        .cloned()
        .unwrap_or_default()
        .into_response();
    let response_headers = response.headers_mut();
    response_headers.remove("content-type");
    if params.contains_key("binary") {
        response_headers.insert("content-type", "application/octet-stream".parse().unwrap());
    }
    if !params.contains_key("nokey") {
        let key = match params.get("key").map(String::as_str) {
            // Tools that open many connections to one URL (Autobahn|Testsuite) need distinct
            // sessions.
            Some("auto") => format!("auto-{:016x}", rand::random::<u64>()),
            Some(key) => key.to_owned(),
            None => "default".to_owned(),
        };
        let header = shared.session_header.lock().unwrap().clone();
        response_headers.insert(
            axum::http::HeaderName::try_from(header).unwrap(),
            key.parse().unwrap(),
        );
    }
    if let Some(protocol) = params.get("protocol") {
        response_headers.insert("sec-websocket-protocol", protocol.parse().unwrap());
    }
    if let Some(user) = params.get("user")
        && let Ok(value) = user.parse()
    {
        response_headers.insert("x-oort-user", value);
    }
    if let Some(channels) = params.get("channels")
        && let Ok(value) = channels.parse()
    {
        response_headers.insert("x-oort-channels", value);
    }
    response
}

pub(super) async fn establish(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let key = session_of(&shared, &headers);
    record(&shared, CallbackKind::Establish, method, uri, headers, body);
    shared.hold_if_asked(CallbackKind::Establish).await;
    if key.starts_with("establish-fail") {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}

pub(super) async fn close(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    record(&shared, CallbackKind::Close, method, uri, headers, body);
    shared.hold_if_asked(CallbackKind::Close).await;
    StatusCode::OK
}

pub(super) async fn receive(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let key = session_of(&shared, &headers);
    let content_type = headers.get("content-type").cloned();
    record(
        &shared,
        CallbackKind::Receive,
        method,
        uri,
        headers,
        body.clone(),
    );
    shared.hold_if_asked(CallbackKind::Receive).await;
    if key.starts_with("receive-fail") {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let echo_to = shared.echo_to.lock().unwrap().clone();
    if let Some(gateway) = echo_to {
        let header = shared.session_header.lock().unwrap().clone();
        let mut request = shared
            .http
            .post(format!("{gateway}/send"))
            .header(header, key)
            .body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        if let Err(err) = request.send().await {
            eprintln!("test backend: echo failed: {err}");
        }
    }
    StatusCode::OK
}

pub(super) async fn presence(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    record(&shared, CallbackKind::Presence, method, uri, headers, body);
    StatusCode::OK
}
