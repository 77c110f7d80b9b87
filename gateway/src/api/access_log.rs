//! One span per backend API request (with its request id, taken from `X-Request-Id` or made
//! up), one access-log line per request unless `suppress_access_log`, and error counts.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::HeaderValue;
use oort_router::trace;
use opentelemetry::KeyValue;
use opentelemetry::context::FutureExt;
use opentelemetry::trace::{Status, TraceContextExt};
use tracing::{Instrument, info, info_span};

use crate::metrics::ErrorKind;
use crate::state::AppState;

const REQUEST_ID: &str = "x-request-id";

/// The request's id, for handlers that pass it on (to other nodes, in logs).
#[derive(Clone, Debug, Default)]
pub(crate) struct RequestId(pub String);

pub(crate) async fn access_log(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let request_id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| !id.is_empty() && id.len() <= 128)
        .map_or_else(|| format!("{:016x}", rand::random::<u64>()), str::to_owned);
    request
        .extensions_mut()
        .insert(RequestId(request_id.clone()));
    let span = info_span!("request", method = %request.method(), path = %request.uri().path(), request_id = %request_id, trace_id = tracing::field::Empty);
    let started = Instant::now();
    let traceparent = request
        .headers()
        .get(trace::TRACEPARENT)
        .and_then(|value| value.to_str().ok());
    let traced = trace::server_span("oort.api", traceparent, || {
        vec![
            KeyValue::new("http.request.method", request.method().to_string()),
            KeyValue::new("url.path", request.uri().path().to_owned()),
            KeyValue::new("oort.request_id", request_id.clone()),
        ]
    });
    let mut response = match traced {
        Some(cx) => {
            let trace_id = cx.span().span_context().trace_id();
            span.record("trace_id", tracing::field::display(trace_id));
            let response = next
                .run(request)
                .instrument(span.clone())
                .with_context(cx.clone())
                .await;
            let otel = cx.span();
            let status = response.status().as_u16();
            otel.set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
            if status >= 500 {
                otel.set_status(Status::error(status.to_string()));
            }
            otel.end();
            response
        }
        None => next.run(request).instrument(span.clone()).await,
    };
    let status = response.status();
    match status.as_u16() {
        400 | 405 | 415 | 422 => state.metrics.count_error(ErrorKind::BadRequest),
        401 => state.metrics.count_error(ErrorKind::Unauthorized),
        413 => state.metrics.count_error(ErrorKind::BodyTooLarge),
        _ => {}
    }
    // gRPC and gRPC-Web answer errors with 200 and a `grpc-status` (in the head when the call
    // failed before its first message, as a refused token or a malformed request does).
    match response
        .headers()
        .get("grpc-status")
        .map(HeaderValue::as_bytes)
    {
        Some(b"3") => state.metrics.count_error(ErrorKind::BadRequest),
        Some(b"16") => state.metrics.count_error(ErrorKind::Unauthorized),
        Some(b"8") => state.metrics.count_error(ErrorKind::BodyTooLarge),
        _ => {}
    }
    if let Ok(value) = HeaderValue::try_from(request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    if !state.config.suppress_access_log {
        span.in_scope(|| {
            info!(
                status = status.as_u16(),
                elapsed_us = started.elapsed().as_micros() as u64,
                "request"
            )
        });
    }
    response
}
