//! Sessions over plain HTTP, as Durable Streams: for clients whose WebSocket does not get
//! through (corporate proxies, old middleboxes). docs/protocol.md documents the wire format.
//!
//! `GET|POST {session.stream_path}` is a Comet connect: the connect callback runs once, as for
//! a WebSocket, and the answer names the session's stream and a bearer token (the resume token
//! of `oort.v1`, so the client may switch between WebSocket and HTTP on one session). Below it,
//! `/{key}` is the stream: `GET` reads (catch-up, `live=long-poll`, `live=sse`), `HEAD` tells
//! the tail, `POST` sends a message to the backend, `DELETE` ends the session.
//!
//! Any node serves any request: the node holding the session answers, over NATS when that is
//! another node (docs/router.md, "HTTP transports: sticky-free").

mod connect;
pub(crate) mod offset;
mod post;
mod read;
mod render;
mod take_over;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, StatusCode};
use oort_common::cluster::{StreamAnswer, StreamOp, StreamRequest};

pub(crate) use connect::{Named, connected};

use crate::durable::token::Claims;
use crate::error_code::{ErrorCode, error_body};
use crate::state::AppState;

/// The routes of the HTTP transports, when `session.stream_path` is set.
pub(crate) fn routes(state: &Arc<AppState>) -> Option<Router<Arc<AppState>>> {
    let base = state.config.session.stream_path.as_str();
    if base.is_empty() {
        return None;
    }
    Some(
        Router::new()
            .route(base, any(connect_route))
            .route(&format!("{base}/{{key}}"), any(session_route)),
    )
}

async fn connect_route(state: State<Arc<AppState>>, request: Request) -> Response {
    let origin = request.headers().get(header::ORIGIN).cloned();
    let mut response = match *request.method() {
        Method::GET | Method::POST => crate::connect::handle_http(state, request).await,
        Method::OPTIONS => preflight(&origin),
        _ => method_not_allowed("GET, POST, OPTIONS"),
    };
    cors(response.headers_mut(), origin.as_ref());
    response
}

async fn session_route(
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
    request: Request,
) -> Response {
    let origin = request.headers().get(header::ORIGIN).cloned();
    let mut response = match *request.method() {
        Method::OPTIONS => preflight(&origin),
        Method::GET | Method::HEAD | Method::POST | Method::DELETE => {
            match authorize(&state, &key, request.headers()) {
                Ok(claims) => {
                    let renew = claims.wants_renewal(state.tokens.ttl());
                    let mut response = serve(&state, &claims, request).await;
                    if renew {
                        let fresh = state.tokens.issue(&claims.key, claims.id);
                        if let Ok(value) = HeaderValue::try_from(fresh) {
                            response.headers_mut().insert(OORT_TOKEN, value);
                        }
                    }
                    response
                }
                Err(refused) => refused.into_response(),
            }
        }
        _ => method_not_allowed(ALLOWED),
    };
    if let Ok(node) = HeaderValue::try_from(state.router.node_id().as_str()) {
        response.headers_mut().insert(OORT_NODE, node);
    }
    cors(response.headers_mut(), origin.as_ref());
    response
}

async fn serve(state: &Arc<AppState>, claims: &Claims, request: Request) -> Response {
    match *request.method() {
        Method::GET => read::get(state, claims, request).await,
        Method::HEAD => read::head(state, claims).await,
        Method::POST => post::message(state, claims, request).await,
        _ => post::end(state, claims).await,
    }
}

const ALLOWED: &str = "GET, HEAD, POST, DELETE, OPTIONS";

/// A fresh bearer token for the session, when the one presented is past half its life.
const OORT_TOKEN: HeaderName = HeaderName::from_static("oort-token");
/// The node that answered (the demo shows it; operators see where clients land).
const OORT_NODE: HeaderName = HeaderName::from_static("oort-node");

/// A request refused before any work: its status and what was wrong.
struct Refused(StatusCode, String);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        error(self.0, &self.1)
    }
}

/// The bearer token must be genuine, unexpired, and for the session in the path.
fn authorize(state: &AppState, key: &str, headers: &HeaderMap) -> Result<Claims, Refused> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| {
            Refused(
                StatusCode::UNAUTHORIZED,
                "a session stream needs Authorization: Bearer <token>, the token of its connect"
                    .into(),
            )
        })?;
    let claims = state
        .tokens
        .verify(token)
        .map_err(|err| Refused(StatusCode::UNAUTHORIZED, err.to_string()))?;
    if claims.key.as_str() != key {
        return Err(Refused(
            StatusCode::FORBIDDEN,
            "the token is for another session".into(),
        ));
    }
    Ok(claims)
}

/// Runs `op` on the session's stream where the session is held: here, or on its node over
/// NATS. `wait` bounds how long a read may be held there.
async fn perform(
    state: &Arc<AppState>,
    claims: &Claims,
    op: StreamOp,
    wait: Duration,
) -> Result<StreamAnswer, Response> {
    let request = StreamRequest {
        key: claims.key.clone(),
        id: claims.id,
        op,
    };
    if state.registry.durable(claims.key.as_str()).is_some() {
        return Ok(state.registry.serve_stream(request).await);
    }
    // Boxed: an idle SSE response keeps this future for as long as it waits, and the lookup,
    // the NATS request and a take-over are kilobytes that a local wait does not need.
    Box::pin(perform_elsewhere(state, claims, request, wait)).await
}

/// [`perform`] for a session this node does not hold.
async fn perform_elsewhere(
    state: &Arc<AppState>,
    claims: &Claims,
    request: StreamRequest,
    wait: Duration,
) -> Result<StreamAnswer, Response> {
    let owner = match state.router.owner(claims.key.as_str()).await {
        Ok(Some(owner)) if owner != *state.router.node_id() => owner,
        Ok(_) => return Ok(StreamAnswer::Over),
        Err(err) => return Err(unavailable(&err.to_string())),
    };
    let answer = state
        .router
        .stream(&owner, &request, wait)
        .await
        .map_err(|err| unavailable(&err.to_string()))?;
    // Its node is shutting down: a read moves the session here (other requests are told to
    // retry, so that two requests of one client never race to move it).
    if answer != StreamAnswer::Draining || !matches!(request.op, StreamOp::Read { .. }) {
        return Ok(answer);
    }
    take_over::take_over(state, claims, &owner).await?;
    Ok(state.registry.serve_stream(request).await)
}

/// The answers every operation shares: the ones that are not what it asked for.
fn refusal(answer: StreamAnswer) -> Response {
    match answer {
        StreamAnswer::Over => error_coded(
            StatusCode::NOT_FOUND,
            ErrorCode::SessionNotFound,
            "the session is over",
        ),
        StreamAnswer::Gone => error_coded(
            StatusCode::GONE,
            ErrorCode::OffsetGone,
            "messages after this offset are no longer kept; connect again",
        ),
        StreamAnswer::Ahead { last } => error_coded(
            StatusCode::BAD_REQUEST,
            ErrorCode::OffsetAhead,
            &format!("the offset is past the session's last message ({last})"),
        ),
        StreamAnswer::Displaced => error_coded(
            StatusCode::CONFLICT,
            ErrorCode::SessionTaken,
            "another reader or a WebSocket took this session",
        ),
        StreamAnswer::Moving | StreamAnswer::Draining => {
            let mut response = error_coded(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::SessionMoving,
                "the session is moving to another node; retry",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
        other => {
            tracing::warn!(answer = ?other, "unexpected stream answer");
            unavailable("unexpected answer from the session's node")
        }
    }
}

/// The session's node (or the directory that names it) cannot be reached.
fn unavailable(reason: &str) -> Response {
    error_coded(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::OwnerUnavailable,
        reason,
    )
}

/// A JSON error body whose cause its status tells (a malformed header, a bad token).
pub(crate) fn error(status: StatusCode, reason: &str) -> Response {
    error_coded(status, ErrorCode::for_status(status), reason)
}

/// A JSON error body saying what was wrong (`error`, `code`, `status`), never cached (named
/// streams answer with it too).
pub(crate) fn error_coded(status: StatusCode, code: ErrorCode, reason: &str) -> Response {
    let mut body = error_body(code, reason);
    body.insert("status".to_owned(), status.as_u16().into());
    let body = serde_json::Value::Object(body).to_string();
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

fn method_not_allowed(allowed: &'static str) -> Response {
    let mut response = error(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("allowed methods: {allowed}"),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allowed));
    response
}

/// Headers a browser may read from these responses.
const EXPOSED: &str = "Stream-Next-Offset, Stream-Cursor, Stream-Up-To-Date, Stream-Closed, \
                       ETag, Location, Oort-Token, Oort-Node, Retry-After";

/// CORS for browser clients on other origins. Streams are authorized by their bearer token,
/// not by cookies, so any origin may read with one; the Comet connect forwards cookies to the
/// backend, whose connect callback decides (as for WebSockets, `origin_policy` applies).
fn cors(headers: &mut HeaderMap, origin: Option<&HeaderValue>) {
    let Some(origin) = origin else { return };
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSED),
    );
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
}

fn preflight(origin: &Option<HeaderValue>) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    if origin.is_some() {
        let headers = response.headers_mut();
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(ALLOWED),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(
                "Authorization, Content-Type, If-None-Match, Stream-Seq, Stream-Closed",
            ),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
    }
    response
}

/// The browser client (`/oort.js`, an ES module) and its TypeScript declarations.
pub(crate) fn client_script_routes() -> Router<Arc<AppState>> {
    const SCRIPT: &str = include_str!("../client/oort.js");
    const DECLARATIONS: &str = include_str!("../client/oort.d.ts");
    let serve = |body: &'static str, kind: &'static str| {
        axum::routing::get(move || async move {
            (
                [
                    (header::CONTENT_TYPE, kind),
                    (header::CACHE_CONTROL, "public, max-age=300"),
                    (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
                ],
                body,
            )
        })
    };
    Router::new()
        .route("/oort.js", serve(SCRIPT, "text/javascript; charset=utf-8"))
        .route(
            "/oort.d.ts",
            serve(DECLARATIONS, "application/typescript; charset=utf-8"),
        )
}
