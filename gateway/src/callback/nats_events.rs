//! The connect, receive and close callbacks as NATS requests to backend workers
//! (`callback.nats_events`; docs/nats-interface.md). Same turns under
//! `callback.max_concurrency`, same timeout, same metrics as the HTTP callbacks; the payloads
//! are JSON carrying what the HTTP callbacks carry in headers and bodies.

use std::collections::BTreeMap;
use std::time::Instant;

use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use oort_common::{FrameKind, SessionKey};
use oort_router::{EventChannel, EventError};
use serde::{Deserialize, Serialize};

use super::{CallbackClient, CallbackError, ConnectAnswer};
use crate::metrics::{CallbackKind, Metrics};

/// The connect event: the client's request as the HTTP connect callback would forward it.
#[derive(Serialize)]
struct ConnectEvent<'a> {
    method: &'a str,
    query: &'a str,
    /// Header names (lower case) to their values, repeated values joined by `, `.
    headers: BTreeMap<&'a str, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body_base64: Option<String>,
}

/// A worker's answer to a connect event.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectReply {
    /// 200 accepts; anything else is relayed to the client with `body`.
    status: u16,
    session: Option<String>,
    #[serde(default)]
    channels: Vec<String>,
    user: Option<String>,
    /// The first message (text), or `data_base64` (binary).
    data: Option<String>,
    data_base64: Option<String>,
    subprotocol: Option<String>,
    /// A refusal's body.
    #[serde(default)]
    body: String,
}

/// A client message or the end of a session.
#[derive(Serialize)]
struct SessionEvent<'a> {
    session: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_base64: Option<String>,
}

impl CallbackClient {
    /// Sends one event and waits for a worker's answer, within the callback's turn and timeout.
    async fn event(
        &self,
        events: &EventChannel,
        kind: CallbackKind,
        subject_kind: &str,
        body: Vec<u8>,
        metrics: &Metrics,
    ) -> Result<Bytes, CallbackError> {
        let callback = kind.as_str();
        let (_slot, _) = self.take_turn(kind, metrics).await?;
        let started = Instant::now();
        let outcome = events
            .request(subject_kind, Bytes::from(body), self.timeout)
            .await
            .map_err(|err| match err {
                EventError::Timeout(_) => CallbackError::Timeout {
                    callback,
                    timeout: self.timeout,
                },
                other => CallbackError::Transport {
                    callback,
                    message: other.to_string(),
                },
            })
            .and_then(|answer| {
                if answer.len() > self.max_body {
                    Err(CallbackError::BodyTooLarge {
                        callback,
                        limit: self.max_body,
                    })
                } else {
                    Ok(answer)
                }
            });
        metrics.observe_callback(kind, started.elapsed().as_secs_f64());
        if outcome.is_err() {
            metrics.count_callback_error(kind);
        }
        outcome
    }

    /// The connect callback over NATS.
    pub(super) async fn connect_over_nats(
        &self,
        events: &EventChannel,
        method: &http::Method,
        query: Option<&str>,
        headers: &HeaderMap,
        body: Bytes,
        metrics: &Metrics,
    ) -> Result<ConnectAnswer, CallbackError> {
        let mut joined: BTreeMap<&str, String> = BTreeMap::new();
        for (name, value) in headers {
            let Ok(value) = value.to_str() else { continue };
            joined
                .entry(name.as_str())
                .and_modify(|have| {
                    have.push_str(", ");
                    have.push_str(value);
                })
                .or_insert_with(|| value.to_owned());
        }
        let event = ConnectEvent {
            method: method.as_str(),
            query: query.unwrap_or_default(),
            headers: joined,
            body_base64: (!body.is_empty())
                .then(|| base64::engine::general_purpose::STANDARD.encode(&body)),
        };
        let payload = serde_json::to_vec(&event).unwrap_or_default();
        let answer = self
            .event(events, CallbackKind::Connect, "connect", payload, metrics)
            .await?;
        let reply: ConnectReply =
            serde_json::from_slice(&answer).map_err(|err| CallbackError::Transport {
                callback: "connect",
                message: format!("the worker's answer is not a connect reply: {err}"),
            })?;
        connect_answer(reply)
    }

    /// A client message or a session's end, over NATS.
    pub(super) async fn session_event_over_nats(
        &self,
        events: &EventChannel,
        kind: CallbackKind,
        key: &SessionKey,
        message: Option<(FrameKind, Bytes)>,
        metrics: &Metrics,
    ) -> Result<(), CallbackError> {
        let (data, data_base64) = match &message {
            Some((FrameKind::Text, data)) => (std::str::from_utf8(data).ok(), None),
            Some((FrameKind::Binary, data)) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(data)),
            ),
            None => (None, None),
        };
        let event = SessionEvent {
            session: key.as_str(),
            data,
            data_base64,
        };
        let subject_kind = match kind {
            CallbackKind::Receive => "message",
            CallbackKind::Close => "close",
            CallbackKind::Connect => "connect",
            CallbackKind::Establish => "establish",
            CallbackKind::Presence => "presence",
        };
        let payload = serde_json::to_vec(&event).unwrap_or_default();
        // Boxed: these run from connection tasks (see `post_for_session`).
        Box::pin(self.event(events, kind, subject_kind, payload, metrics))
            .await
            .map(|_| ())
    }
}

/// What a worker's connect reply means, as an HTTP connect callback's answer would.
fn connect_answer(reply: ConnectReply) -> Result<ConnectAnswer, CallbackError> {
    let invalid = |message: String| CallbackError::Transport {
        callback: "connect",
        message,
    };
    let status = StatusCode::from_u16(reply.status)
        .map_err(|_| invalid(format!("status {} is not an HTTP status", reply.status)))?;
    let header = |value: String, field: &str| {
        HeaderValue::try_from(value).map_err(|_| invalid(format!("{field} cannot be a header")))
    };
    let (body, content_type) = match (reply.data, reply.data_base64) {
        (Some(text), None) => (Bytes::from(text), None),
        (None, Some(encoded)) => (
            base64::engine::general_purpose::STANDARD
                .decode(encoded.as_bytes())
                .map(Bytes::from)
                .map_err(|err| invalid(format!("data_base64: {err}")))?,
            Some(HeaderValue::from_static("application/octet-stream")),
        ),
        (None, None) => (Bytes::from(reply.body), None),
        (Some(_), Some(_)) => return Err(invalid("data and data_base64: give one".into())),
    };
    let channels = if reply.channels.is_empty() {
        Vec::new()
    } else {
        vec![header(reply.channels.join(","), "channels")?]
    };
    Ok(ConnectAnswer {
        status,
        content_type,
        session_key: reply.session.filter(|key| !key.is_empty()),
        subprotocol: reply
            .subprotocol
            .map(|p| header(p, "subprotocol"))
            .transpose()?,
        channels,
        user: reply.user.map(|u| header(u, "user")).transpose()?,
        body,
    })
}
