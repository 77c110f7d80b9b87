//! The end of a Comet connect: the backend accepted the client; the session is created without
//! a connection, registered like any session, and the client is told where its stream is.

use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::header::{self, HeaderValue};
use oort_common::{FrameKind, Payload, SessionKey};
use serde::Serialize;
use tracing::{info, warn};

use super::error_coded;
use crate::callback::ConnectAnswer;
use crate::durable::Durable;
use crate::error_code::ErrorCode;
use crate::sessions::{CloseCause, Committed, Session};
use crate::state::AppState;

/// What a Comet connect answers (201).
#[derive(Serialize)]
struct Connected<'a> {
    /// The session key, as the backend named it.
    session: &'a str,
    /// The session's stream, relative to this host.
    stream: &'a str,
    /// The bearer token for every request on the stream (and an `oort.v1` resume token).
    token: &'a str,
    /// The node that created the session.
    node: &'a str,
}

/// What the connect callback named for the session besides its key.
pub(crate) struct Named<'a> {
    /// Its channels.
    pub channels: &'a [String],
    /// Its user.
    pub user: Option<&'a str>,
}

/// Creates and registers the session the connect callback accepted, then answers 201.
pub(crate) async fn connected(
    state: &Arc<AppState>,
    key: SessionKey,
    answer: ConnectAnswer,
    peer: Option<std::net::SocketAddr>,
    named: Named<'_>,
) -> Response {
    let kind = FrameKind::from_content_type(answer.content_type.as_ref().map(|v| v.as_bytes()));
    let first_message = match Payload::new(kind, answer.body) {
        Ok(payload) => (!payload.is_empty()).then_some(payload),
        Err(err) => {
            return error_coded(
                StatusCode::BAD_GATEWAY,
                ErrorCode::CallbackInvalid,
                &format!("the connect callback's first message: {err}"),
            );
        }
    };
    if first_message.is_some() {
        state.stats.add_messages(1);
    }
    let epoch = state.registry.next_epoch();
    let limits = state.registry.buffer_limits();
    let durable = Durable::start_detached(key.clone(), epoch, first_message.as_ref(), limits);
    // Stands for the session while its registration is pending (a registration of the same
    // key elsewhere meanwhile is recorded against it), and goes once it committed.
    let placeholder = Session::new(key.clone(), epoch, peer);
    placeholder.set_durable(durable.clone());
    state.registry.begin(placeholder.clone());
    let index = match state.router.register(&key, epoch, named.user).await {
        Ok(index) => index,
        Err(err) => {
            state.registry.abandon(&placeholder);
            state.router.unregister(&key, epoch);
            warn!(error = %err, "registration failed");
            let status = crate::connect::refusal_status(&err);
            let code = crate::connect::refusal_code(status);
            return error_coded(status, code, &err.to_string());
        }
    };
    if let Committed::Superseded = state.registry.commit_detached(&placeholder, index) {
        durable.end(None);
        info!("a newer connection with this session key registered first");
        return error_coded(
            StatusCode::CONFLICT,
            ErrorCode::SessionTaken,
            "a newer connection took this session key",
        );
    }
    drop(placeholder);
    crate::connect::join_channels(state, &key, named.channels).await;
    state.metrics.connections_total.increment(1);
    if let Err(err) = state.callbacks.establish(&key, false, &state.metrics).await {
        warn!(error = %err, "establish callback refused the session");
        state.stats.connect_error();
        durable.end(None);
        crate::connection::end_durable(state, &durable, CloseCause::EstablishFailed).await;
        return error_coded(
            StatusCode::BAD_GATEWAY,
            ErrorCode::CallbackFailed,
            "session not established",
        );
    }
    state.feed.connected(&key, false).await;
    let token = state.tokens.issue(&key, epoch.0);
    let stream = format!(
        "{}/{}",
        state.config.session.stream_path,
        url::form_urlencoded::byte_serialize(key.as_str().as_bytes()).collect::<String>()
    );
    let body = serde_json::to_string(&Connected {
        session: key.as_str(),
        stream: &stream,
        token: &token,
        node: state.router.node_id().as_str(),
    })
    .unwrap_or_default();
    let mut response = (
        StatusCode::CREATED,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response();
    if let Ok(location) = HeaderValue::try_from(stream) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}
