//! The client connect flow: limits and origin checks, the connect callback, registration, then
//! the WebSocket upgrade.
//!
//! Order matters. Everything that can refuse a client without the backend (draining, the
//! connection limit, the origin policy, a malformed handshake) is checked first, so the backend
//! never accepts a session that cannot connect. The session is registered, with its first
//! message queued, before the 101 is sent, so a send that follows the upgrade always finds it.

mod channels;
mod origin;
mod reject;
mod resume;
mod user;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{CONTENT_TYPE, UPGRADE};
use http::{HeaderMap, StatusCode};
use http_body_util::{BodyExt, Limited};
use oort_common::{FrameKind, Payload, SessionKey};
use oort_router::trace;
use opentelemetry::KeyValue;
use opentelemetry::context::FutureExt;
use opentelemetry::trace::{SpanKind, TraceContextExt};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::admission::{AddressSlot, PeerTicket, Refusal, RefusalReason, Reservation};
use crate::callback::{ConnectAnswer, ConnectForward, ConnectGateRefusal};
use crate::connection::{self, Registration};
use crate::durable::{Durable, protocol};
use crate::error_code::ErrorCode;
use crate::metrics::ErrorKind;
use crate::peer::PeerAddr;
use crate::sessions::{CloseCommand, Committed, Session};
use crate::state::AppState;

pub(crate) use channels::{CHANNELS_HEADER, join as join_channels};
pub(crate) use reject::reject;
pub(crate) use user::{USER_HEADER, check_user, refusal_status};

/// `GET {path.connect}`.
pub(crate) async fn handle(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let peer = request
        .extensions()
        .get::<PeerAddr>()
        .and_then(|peer| peer.0);
    let span = info_span!(
        "connect",
        peer = ?peer,
        session = tracing::field::Empty,
        trace_id = tracing::field::Empty
    );
    traced_connect(state, request, Transport::WebSocket, span).await
}

/// [`connect`] in its span, and in a trace's server span when traces are on: the callback and
/// the registration are its children.
async fn traced_connect(
    state: Arc<AppState>,
    request: Request,
    transport: Transport,
    span: tracing::Span,
) -> Response {
    let traceparent = request
        .headers()
        .get(trace::TRACEPARENT)
        .and_then(|value| value.to_str().ok());
    let traced = trace::server_span("oort.connect", traceparent, || {
        vec![KeyValue::new(
            "oort.transport",
            match transport {
                Transport::WebSocket => "websocket",
                Transport::Http => "http",
            },
        )]
    });
    let Some(cx) = traced else {
        return connect(state, request, transport).instrument(span).await;
    };
    span.record(
        "trace_id",
        tracing::field::display(cx.span().span_context().trace_id()),
    );
    let response = connect(state, request, transport)
        .instrument(span)
        .with_context(cx.clone())
        .await;
    let status = response.status().as_u16();
    cx.span().set_attribute(KeyValue::new(
        "http.response.status_code",
        i64::from(status),
    ));
    cx.span().end();
    response
}

/// A Comet connect (`GET|POST {session.stream_path}`): the same checks and connect callback as
/// a WebSocket connect, and a session read over HTTP as a Durable Stream.
pub(crate) async fn handle_http(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let peer = request
        .extensions()
        .get::<PeerAddr>()
        .and_then(|peer| peer.0);
    let span = info_span!("connect", peer = ?peer, transport = "http", session = tracing::field::Empty, trace_id = tracing::field::Empty);
    traced_connect(state, request, Transport::Http, span).await
}

/// How the connecting client will read its session.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Transport {
    WebSocket,
    /// Durable Streams reads (catch-up, long-poll, SSE) of a session with no connection.
    Http,
}

async fn connect(state: Arc<AppState>, request: Request, transport: Transport) -> Response {
    let stats_count = state.stats.connection_started();
    let (mut parts, body) = request.into_parts();
    let headers = &parts.headers;
    if state.is_draining() {
        return refuse(
            &state,
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Draining,
            "the server is shutting down",
            headers,
        );
    }
    let peer = parts.extensions.get::<PeerAddr>().and_then(|peer| peer.0);
    let ticket = parts.extensions.get::<PeerTicket>().cloned();
    let address_slot = match admit_forwarded(&state, ticket.as_ref(), peer, headers) {
        Ok(slot) => slot,
        Err(refusal) => return refuse_by_limit(&state, refusal, headers),
    };
    let Some(slot) = state.try_connection_slot() else {
        return refuse(
            &state,
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Overloaded,
            "too many connections",
            headers,
        );
    };
    if !origin::allowed(state.config.origin_policy, headers) {
        return refuse(
            &state,
            StatusCode::FORBIDDEN,
            ErrorCode::OriginRefused,
            "origin not allowed",
            headers,
        );
    }
    // A request that claims to be a WebSocket handshake must be a valid one before the backend
    // is asked. A plain request still reaches the backend, as in kuiperbelt, so its refusals
    // (a 403 for a bad cookie, say) are relayed to any client.
    let claims_websocket = transport == Transport::WebSocket
        && headers
            .get(UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let offers_oort_v1 = offers_subprotocol(headers, protocol::SUBPROTOCOL);
    let upgrade = if claims_websocket {
        match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
            Ok(upgrade) => Some(upgrade),
            Err(rejection) => {
                state.stats.connect_error();
                state.metrics.count_error(ErrorKind::ConnectRejected);
                return reject::handshake(&rejection, &parts.headers);
            }
        }
    } else {
        None
    };
    let held = Held {
        _slot: slot,
        _stats_count: stats_count,
        _ticket: ticket,
        _address_slot: address_slot,
    };
    if transport == Transport::WebSocket
        && let Some(request) = resume::requested(parts.uri.query())
    {
        return resume_connect(&state, request, upgrade, offers_oort_v1, peer, &parts, held).await;
    }
    let headers = &parts.headers;
    if !state.callbacks.has_connect() {
        return refuse(
            &state,
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "no connect callback is configured",
            headers,
        );
    }
    let _connect_pass = match state.callbacks.admit_connect() {
        Ok(pass) => pass,
        Err(refusal) => {
            let refusal = gate_refusal(&state, refusal, peer);
            return refuse_by_limit(&state, refusal, headers);
        }
    };
    let body_bytes = body_reservation_size(&body, &state.config.limits);
    let _body_reservation = match reserve_body(&state, body_bytes, peer).await {
        Ok(reservation) => reservation,
        Err(refusal) => return refuse_by_limit(&state, refusal, headers),
    };
    let body = match read_body(body, state.config.limits.max_connect_body).await {
        Ok(body) => body,
        Err(status) => {
            return refuse(
                &state,
                status,
                ErrorCode::for_status(status),
                "the request body is too large or broken",
                headers,
            );
        }
    };
    let forward = ConnectForward {
        method: &parts.method,
        query: parts.uri.query(),
        headers,
        body,
    };
    let answer = match state.callbacks.connect(forward, &state.metrics).await {
        Ok(answer) => answer,
        Err(err) => {
            warn!(error = %err, "connect callback failed");
            return refuse(
                &state,
                StatusCode::BAD_GATEWAY,
                ErrorCode::CallbackFailed,
                &err.to_string(),
                headers,
            );
        }
    };
    if answer.status != StatusCode::OK {
        return relay_refusal(&state, answer);
    }
    let Some(key) = answer.session_key.clone() else {
        let reason = format!(
            "the connect callback answered 200 without a {} header",
            state.session_header
        );
        return refuse(
            &state,
            StatusCode::BAD_REQUEST,
            ErrorCode::CallbackInvalid,
            &reason,
            headers,
        );
    };
    tracing::Span::current().record("session", key.as_str());
    let channels = match channels::named(&answer.channels, &state) {
        Ok(channels) => channels,
        Err(reason) => return refuse_invalid_answer(&state, &reason, headers),
    };
    let user = match user::named(answer.user.as_ref()) {
        Ok(user) => user,
        Err(reason) => return refuse_invalid_answer(&state, &reason, headers),
    };
    if transport == Transport::Http {
        let named = crate::stream::Named {
            channels: &channels,
            user: user.as_deref(),
        };
        return crate::stream::connected(&state, SessionKey::from(key), answer, peer, named).await;
    }
    let Some(upgrade) = upgrade else {
        return refuse(
            &state,
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidHandshake,
            "the backend accepted the session, but this is not a WebSocket handshake",
            headers,
        );
    };
    let kind = FrameKind::from_content_type(answer.content_type.as_ref().map(|v| v.as_bytes()));
    let first_message = match Payload::new(kind, answer.body) {
        Ok(payload) => payload,
        Err(err) => {
            return refuse_invalid_answer(
                &state,
                &format!("the connect callback's first message: {err}"),
                headers,
            );
        }
    };
    // A client that offers `oort.v1` gets it, unless the backend chose a subprotocol itself.
    let durable = offers_oort_v1 && answer.subprotocol.is_none();
    let subprotocol = if durable {
        Some(http::HeaderValue::from_static(protocol::SUBPROTOCOL))
    } else {
        answer.subprotocol
    };
    let key = SessionKey::from(key);
    let session_of = NewSession {
        key: key.clone(),
        user: user.as_deref(),
        durable,
    };
    let registration = match register(&state, session_of, first_message, peer).await {
        Ok(registration) => registration,
        Err(refusal) => {
            return refuse(
                &state,
                refusal.status,
                refusal.code,
                &refusal.reason,
                headers,
            );
        }
    };
    channels::join(&state, &key, &channels).await;
    upgrade_response(&state, upgrade, subprotocol, registration, held)
}

/// Whether the client's `Sec-WebSocket-Protocol` offers `name`.
fn offers_subprotocol(headers: &HeaderMap, name: &str) -> bool {
    headers
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|offered| offered.trim() == name)
}

/// A connect that asks to resume an `oort.v1` session.
async fn resume_connect(
    state: &Arc<AppState>,
    request: Result<resume::ResumeRequest, String>,
    upgrade: Option<WebSocketUpgrade>,
    offers_oort_v1: bool,
    peer: Option<std::net::SocketAddr>,
    parts: &http::request::Parts,
    held: Held,
) -> Response {
    let headers = &parts.headers;
    let request = match request {
        Ok(request) => request,
        Err(reason) => {
            return refuse(
                state,
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidRequest,
                &reason,
                headers,
            );
        }
    };
    let Some(upgrade) = upgrade.filter(|_| offers_oort_v1) else {
        let reason = "a resume must be a WebSocket handshake offering the oort.v1 subprotocol";
        return refuse(
            state,
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidHandshake,
            reason,
            headers,
        );
    };
    let subprotocol = Some(http::HeaderValue::from_static(protocol::SUBPROTOCOL));
    match resume::resume(state, request, peer).await {
        resume::Outcome::Resumed(registration) => {
            if state.is_draining() {
                registration
                    .session()
                    .queue
                    .close(CloseCommand::moving(), false);
            }
            upgrade_response(state, upgrade, subprotocol, registration, held)
        }
        resume::Outcome::Reset(reason) => reset_response(upgrade, reason, held),
        resume::Outcome::Refused(status, code, reason) => {
            refuse(state, status, code, &reason, headers)
        }
    }
}

/// Upgrades only to say that the session cannot be continued: `reset`, then close 4000.
fn reset_response(upgrade: WebSocketUpgrade, reason: &'static str, held: Held) -> Response {
    debug!(reason, "resume reset");
    upgrade
        .protocols([protocol::SUBPROTOCOL])
        .on_upgrade(move |mut socket| async move {
            let _held = held;
            let bye = async {
                socket.send(protocol::reset(reason)).await?;
                let close = axum::extract::ws::CloseFrame {
                    code: protocol::CLOSE_RESET,
                    reason: "session lost; reconnect".into(),
                };
                socket
                    .send(axum::extract::ws::Message::Close(Some(close)))
                    .await?;
                // Read until the client answers the close (or goes).
                while let Some(Ok(_)) = socket.next().await {}
                Ok::<_, axum::Error>(())
            };
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), bye).await;
        })
}

/// What an upgraded connection holds for as long as it lives: its place under
/// `limits.max_connections`, kuiperbelt's connection count, and its client address's slot
/// (the peer's, or the one a trusted proxy named).
struct Held {
    _slot: crate::state::ConnectionSlot,
    _stats_count: crate::stats::ConnectionCount,
    _ticket: Option<PeerTicket>,
    _address_slot: Option<AddressSlot>,
}

/// A connect whose connection was not checked per address (it came through a trusted proxy,
/// or on a backend API connection) is checked against its client address now.
fn admit_forwarded(
    state: &AppState,
    ticket: Option<&PeerTicket>,
    peer: Option<std::net::SocketAddr>,
    headers: &HeaderMap,
) -> Result<Option<AddressSlot>, Refusal> {
    match ticket {
        Some(ticket) if !ticket.0.address_checked => state.admission.admit_forwarded(peer, headers),
        _ => Ok(None),
    }
}

fn gate_refusal(
    state: &AppState,
    refusal: ConnectGateRefusal,
    peer: Option<std::net::SocketAddr>,
) -> Refusal {
    let (reason, retry_after) = match refusal {
        ConnectGateRefusal::Concurrency => (
            RefusalReason::ConnectConcurrency,
            std::time::Duration::from_secs(1),
        ),
        ConnectGateRefusal::Rate(wait) => (RefusalReason::ConnectRate, wait),
    };
    state.admission.refuse(reason, retry_after, peer)
}

/// How much of `limits.handshake_memory` a request body needs: at most its declared length, at
/// most `limits.max_connect_body` (a WebSocket handshake has no body and needs nothing).
fn body_reservation_size(body: &Body, limits: &oort_common::config::LimitsConfig) -> usize {
    use axum::body::HttpBody as _;
    let hint = body.size_hint();
    hint.upper()
        .map_or(limits.max_connect_body, |upper| {
            usize::try_from(upper).unwrap_or(usize::MAX)
        })
        .min(limits.max_connect_body)
}

/// A request body is read into memory before the connect callback, so it takes room in
/// `limits.handshake_memory` first.
async fn reserve_body(
    state: &AppState,
    bytes: usize,
    peer: Option<std::net::SocketAddr>,
) -> Result<Option<Reservation>, Refusal> {
    if bytes == 0 {
        return Ok(None);
    }
    let deadline = tokio::time::Instant::now() + state.config.limits.client_head_timeout.0;
    state
        .admission
        .reserve_body(bytes, deadline, peer)
        .await
        .map(Some)
}

/// Creates the session with its first message queued and registers it with the router. Only
/// once the registration committed does it become a delivery target and take its key over from
/// an older connection (which is closed after the messages already queued for it).
async fn register(
    state: &Arc<AppState>,
    new: NewSession<'_>,
    first_message: Payload,
    peer: Option<std::net::SocketAddr>,
) -> Result<Registration, RegistrationRefusal> {
    let NewSession { key, user, durable } = new;
    let session = Session::new(key.clone(), state.registry.next_epoch(), peer);
    let first_message = (!first_message.is_empty()).then_some(first_message);
    if first_message.is_some() {
        state.stats.add_messages(1);
    }
    if durable {
        let token = state.tokens.issue(&key, session.epoch.0);
        let welcome = protocol::welcome(&key, &token, 0, state.router.node_id().as_str());
        let limits = state.registry.buffer_limits();
        let durable = Durable::start(&session, welcome, first_message.as_ref(), limits);
        session.set_durable(durable);
    } else if let Some(first_message) = &first_message {
        session.queue.push_first(
            crate::sessions::frame_for(first_message),
            first_message.len(),
        );
    }
    if state.is_draining() {
        state.registry.abandon(&session);
        return Err(RegistrationRefusal::unavailable(
            "the server is shutting down",
        ));
    }
    state.registry.begin(session.clone());
    let registered = trace::in_span(
        "oort.register",
        SpanKind::Internal,
        || vec![KeyValue::new("oort.epoch", session.epoch.0 as i64)],
        state.router.register(&key, session.epoch, user),
    );
    let index = match registered.await {
        Ok(index) => index,
        Err(err) => {
            state.registry.abandon(&session);
            // The write may still commit after this answer (a leader that lost its quorum
            // keeps it in its log); its unregister, queued behind it, removes it then.
            state.router.unregister(&key, session.epoch);
            warn!(error = %err, "registration failed");
            let status = refusal_status(&err);
            return Err(RegistrationRefusal {
                status,
                code: refusal_code(status),
                reason: err.to_string(),
            });
        }
    };
    match state.registry.commit(&session, index) {
        Committed::Live => {}
        Committed::Superseded => {
            if let Some(durable) = session.durable() {
                durable.end(None);
            }
            info!("a newer connection with this session key registered first");
            return Err(RegistrationRefusal {
                status: StatusCode::CONFLICT,
                code: ErrorCode::SessionTaken,
                reason: "a newer connection took this session key".to_owned(),
            });
        }
    }
    let registration = Registration::new(session.clone(), state.clone());
    // The drain may have closed every session between the check above and the commit; a
    // session that arrives that late closes itself, so the drain never waits for it.
    if state.is_draining() {
        session.queue.close(CloseCommand::shutdown(), false);
    }
    Ok(registration)
}

/// A session the connect callback accepted: its key, its user, and whether it speaks
/// `oort.v1`.
struct NewSession<'a> {
    key: SessionKey,
    user: Option<&'a str>,
    durable: bool,
}

/// Why a registration was refused: the status and reason the client gets.
struct RegistrationRefusal {
    status: StatusCode,
    code: ErrorCode,
    reason: String,
}

impl RegistrationRefusal {
    fn unavailable(reason: &str) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: ErrorCode::Unavailable,
            reason: reason.to_owned(),
        }
    }
}

fn upgrade_response(
    state: &Arc<AppState>,
    upgrade: WebSocketUpgrade,
    subprotocol: Option<http::HeaderValue>,
    registration: Registration,
    held: Held,
) -> Response {
    let ws = &state.config.websocket;
    let mut upgrade = upgrade
        .read_buffer_size(ws.read_buffer_size)
        // Frames queued together go out in one write (the writer flushes once per batch):
        // 2.3 instead of 7.4 µs of CPU per frame for batched sends. The buffer only grows while
        // a batch is being written.
        .write_buffer_size(8192)
        .max_message_size(ws.max_message_size)
        .max_frame_size(ws.max_message_size);
    if let Some(protocol) = subprotocol.as_ref().and_then(|v| v.to_str().ok()) {
        upgrade = upgrade.protocols([protocol.to_owned()]);
        if upgrade.selected_protocol().is_none() {
            warn!(
                protocol,
                "the backend chose a subprotocol the client did not offer; none is selected"
            );
        }
    }
    let state = state.clone();
    let tracker_token = state.connections.token();
    let span = tracing::Span::current();
    upgrade
        .on_failed_upgrade(|err| debug!(error = %err, "the WebSocket upgrade failed"))
        .on_upgrade(move |socket| {
            // Split here so the connection's long-lived future does not keep room for the
            // unsplit socket.
            let (sink, stream) = socket.split();
            async move {
                let _tracked = tracker_token;
                let _held = held;
                connection::run(sink, stream, registration, state).await;
            }
            .instrument(span)
        })
}

async fn read_body(body: Body, limit: usize) -> Result<Bytes, StatusCode> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => {
            Err(StatusCode::PAYLOAD_TOO_LARGE)
        }
        Err(_) => Err(StatusCode::BAD_REQUEST),
    }
}

/// Counts a refusal as kuiperbelt's `connect_errors` does, and answers it.
fn refuse(
    state: &AppState,
    status: StatusCode,
    code: ErrorCode,
    reason: &str,
    headers: &HeaderMap,
) -> Response {
    debug!(%status, %code, reason, "connect refused");
    state.stats.connect_error();
    state.metrics.count_error(ErrorKind::ConnectRejected);
    reject(status, code, reason, headers)
}

/// The connect callback accepted, but with an answer Oort cannot use (502).
fn refuse_invalid_answer(state: &AppState, reason: &str, headers: &HeaderMap) -> Response {
    refuse(
        state,
        StatusCode::BAD_GATEWAY,
        ErrorCode::CallbackInvalid,
        reason,
        headers,
    )
}

/// The code of a registration the directory refused: the user's session limit (429), else
/// the directory could not answer.
pub(crate) fn refusal_code(status: StatusCode) -> ErrorCode {
    if status == StatusCode::TOO_MANY_REQUESTS {
        ErrorCode::UserLimit
    } else {
        ErrorCode::Unavailable
    }
}

/// A refusal by a protection limit: counted like any refused connect, with `Retry-After`.
fn refuse_by_limit(state: &AppState, refusal: Refusal, headers: &HeaderMap) -> Response {
    let status = refusal.reason.status();
    let code = if status == StatusCode::TOO_MANY_REQUESTS {
        ErrorCode::RateLimited
    } else {
        ErrorCode::Overloaded
    };
    let mut response = refuse(state, status, code, refusal.reason.message(), headers);
    response
        .headers_mut()
        .insert(http::header::RETRY_AFTER, refusal.retry_after_secs().into());
    response
}

/// The backend's refusal goes to the client as it was: status, Content-Type and body. A 403 is
/// an authorization failure, not an error, as in kuiperbelt.
fn relay_refusal(state: &AppState, answer: ConnectAnswer) -> Response {
    if answer.status == StatusCode::FORBIDDEN {
        info!("authorization failed");
    } else {
        debug!(status = %answer.status, "the connect callback refused the client");
        state.stats.connect_error();
    }
    let mut response = (answer.status, answer.body).into_response();
    response.headers_mut().remove(CONTENT_TYPE);
    if let Some(content_type) = answer.content_type {
        response.headers_mut().insert(CONTENT_TYPE, content_type);
    }
    response
}
