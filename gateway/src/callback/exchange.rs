//! One callback exchange: a turn under `callback.max_concurrency`, the request, the whole answer,
//! all within the callback timeout, with its metrics.

use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use http::StatusCode;
use http::header;
use oort_router::trace;
use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt};

use super::{CONNECTION_ROTATION_SECS, CallbackClient, CallbackError, error};
use crate::metrics::{CallbackKind, Metrics};

impl CallbackClient {
    /// Exchanges `request` and expects 200.
    pub(super) async fn expect_ok(
        &self,
        kind: CallbackKind,
        request: reqwest::RequestBuilder,
        metrics: &Metrics,
    ) -> Result<(), CallbackError> {
        let status = self
            .exchange(kind, request, metrics, |response, _| response.status())
            .await?;
        if status == StatusCode::OK {
            Ok(())
        } else {
            metrics.count_callback_error(kind);
            Err(CallbackError::Status {
                callback: kind.as_str(),
                status,
            })
        }
    }

    /// Waits for a turn under `callback.max_concurrency`, then sends the request and reads the
    /// whole body. Connect, establish and receive callbacks do all of it within the callback
    /// timeout (which so also covers a slow body, unlike kuiperbelt's); a close callback may
    /// wait for its turn as long as it takes, since the shutdown grace period bounds a drain,
    /// and then has the whole timeout for its request.
    pub(super) async fn exchange<T>(
        &self,
        kind: CallbackKind,
        mut request: reqwest::RequestBuilder,
        metrics: &Metrics,
        finish: impl FnOnce(&reqwest::Response, Bytes) -> T,
    ) -> Result<T, CallbackError> {
        let callback = kind.as_str();
        let (_slot, deadline) = self.take_turn(kind, metrics).await?;
        if self.rotation_due() {
            request = request.header(header::CONNECTION, "close");
        }
        // A traced connect (or other callback) continues its trace at the backend.
        let traced = trace::sampled_current().map(|parent| {
            trace::child(
                &parent,
                "oort.callback",
                SpanKind::Client,
                vec![KeyValue::new("oort.callback", callback)],
            )
        });
        if let Some(traceparent) = traced.as_ref().and_then(trace::traceparent) {
            request = request.header(trace::TRACEPARENT, traceparent);
        }
        let started = Instant::now();
        let outcome = tokio::time::timeout_at(deadline, async {
            let mut response = request
                .send()
                .await
                .map_err(|err| CallbackError::Transport {
                    callback,
                    message: error::describe(&err),
                })?;
            let mut body = BytesMut::new();
            while let Some(chunk) =
                response
                    .chunk()
                    .await
                    .map_err(|err| CallbackError::Transport {
                        callback,
                        message: error::describe(&err),
                    })?
            {
                if body.len() + chunk.len() > self.max_body {
                    return Err(CallbackError::BodyTooLarge {
                        callback,
                        limit: self.max_body,
                    });
                }
                body.extend_from_slice(&chunk);
            }
            Ok(finish(&response, body.freeze()))
        })
        .await
        .unwrap_or(Err(CallbackError::Timeout {
            callback,
            timeout: self.timeout,
        }));
        metrics.observe_callback(kind, started.elapsed().as_secs_f64());
        if outcome.is_err() {
            metrics.count_callback_error(kind);
        }
        if let Some(cx) = traced {
            if let Err(err) = &outcome {
                cx.span().set_status(Status::error(err.to_string()));
            }
            cx.span().end();
        }
        outcome
    }

    /// Waits for a turn under `callback.max_concurrency`: within the callback timeout, except
    /// for a close callback, which may wait as long as a drain allows. Returns the turn and the
    /// deadline of the exchange.
    pub(super) async fn take_turn(
        &self,
        kind: CallbackKind,
        metrics: &Metrics,
    ) -> Result<(super::slots::Slot<'_>, tokio::time::Instant), CallbackError> {
        let turn_deadline =
            (kind != CallbackKind::Close).then(|| tokio::time::Instant::now() + self.timeout);
        let Some(slot) = self.slots.take(turn_deadline).await else {
            metrics.count_callback_error(kind);
            return Err(CallbackError::NoTurn {
                callback: kind.as_str(),
                timeout: self.timeout,
                limit: self.slots.limit(),
            });
        };
        let deadline = turn_deadline.unwrap_or_else(|| tokio::time::Instant::now() + self.timeout);
        Ok((slot, deadline))
    }

    fn rotation_due(&self) -> bool {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.last_rotation.load(Ordering::Relaxed);
        now >= last + CONNECTION_ROTATION_SECS
            && self
                .last_rotation
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}
