//! Named Durable Streams (docs/streams.md): append-only streams created by name with `PUT`
//! under `streams.path`, read by offset (catch-up, long-poll, SSE) from any node. Not to be
//! confused with `stream/`, which serves a *session* as a Durable Stream.
//!
//! Each stream is owned by one node, recorded in the raft directory with a generation
//! (docs/router.md, "Durable Streams ownership"). The node a request lands on parses it
//! (`request.rs`), runs it on the owner (`store.rs`, here or over NATS: [`perform`]), and
//! answers (`respond.rs`). Writes need the API token; reads need it, a read token naming the
//! stream (`read_token.rs`), or a stream created public.

mod offset;
mod owner;
mod read_token;
mod request;
mod respond;
mod store;

pub(crate) use owner::serve as serve_as_owner;
pub(crate) use store::{Retention, StreamStore};

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use oort_common::cluster::{
    NamedStreamAnswer, NamedStreamOp, NamedStreamRequest, StreamRefusal, StreamSettings,
};

use oort_router::StreamOwner;

use crate::state::AppState;
use request::Refused;

/// The routes of named streams, when `streams.path` is set.
pub(crate) fn routes(state: &Arc<AppState>) -> Option<Router<Arc<AppState>>> {
    let base = state.config.streams.path.as_str();
    if base.is_empty() {
        return None;
    }
    Some(Router::new().route(&format!("{base}/{{*name}}"), any(stream_route)))
}

async fn stream_route(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    let mut response = match check_name(&name) {
        Err(refused) => respond::refused(refused),
        Ok(()) => match *request.method() {
            Method::OPTIONS => respond::preflight(),
            Method::GET => read(&state, &name, request).await,
            Method::HEAD => head(&state, &name, request.headers()).await,
            Method::PUT | Method::POST | Method::DELETE => write(&state, &name, request).await,
            _ => respond::method_not_allowed(),
        },
    };
    respond::common_headers(response.headers_mut());
    response
}

/// Names are what follows the prefix: printable, and short enough to be a key.
fn check_name(name: &str) -> Result<(), Refused> {
    if name.is_empty() || name.chars().count() > 256 {
        return Err(Refused(
            StatusCode::BAD_REQUEST,
            "a stream name has 1 to 256 characters".into(),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(Refused(
            StatusCode::BAD_REQUEST,
            "a stream name holds no control characters".into(),
        ));
    }
    Ok(())
}

/// `PUT`, `POST`, `DELETE`: the API token, then the body, then the owner.
async fn write(state: &Arc<AppState>, name: &str, request: Request) -> Response {
    if let Err(reason) = crate::api::check_token(state, request.headers()) {
        return respond::unauthorized(reason);
    }
    let method = request.method().clone();
    let (parts, body) = request.into_parts();
    let limit = state.config.streams.max_append_bytes;
    let body: Bytes = match axum::body::to_bytes(body, limit).await {
        Ok(body) => body,
        Err(_) => {
            return respond::refused(Refused(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than streams.max_append_bytes ({limit})"),
            ));
        }
    };
    let op = match method {
        Method::PUT => request::create(&parts.headers, &body),
        Method::POST => request::append(&parts.headers, &body),
        _ => Ok(NamedStreamOp::Delete),
    };
    let op = match op {
        Ok(op) => op,
        Err(refused) => return respond::refused(refused),
    };
    let location = location(&parts.headers, parts.uri.path());
    // An idempotent producer's append answers 200 with its headers; its close alone, 204.
    let producer = match &op {
        NamedStreamOp::Append {
            producer, messages, ..
        } if !messages.is_empty() => producer.clone().map(|claim| (claim, true)),
        NamedStreamOp::Append { producer, .. } => producer.clone().map(|claim| (claim, false)),
        _ => None,
    };
    match perform(state, name, op, Duration::ZERO).await {
        Ok(answer) => respond::written(&location, answer, producer.as_ref()),
        Err(response) => response,
    }
}

/// The absolute URL of the stream, for `Location` (the protocol's clients parse it as one).
fn location(headers: &HeaderMap, path: &str) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("localhost");
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|value| value.to_str().ok())
        .filter(|proto| *proto == "https")
        .unwrap_or("http");
    format!("{scheme}://{host}{path}")
}

/// Whether the request may read `name`: the API token, or a read token for it. (A public
/// stream needs neither; its owner knows, so the answer travels with the operation.)
fn may_read(state: &AppState, name: &str, headers: &HeaderMap) -> bool {
    if crate::api::check_token(state, headers).is_ok() {
        return true;
    }
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.split_at_checked(7)?;
            scheme.eq_ignore_ascii_case("bearer ").then_some(token)
        })
        .is_some_and(|token| read_token::allows(&state.tokens, token.trim(), name))
}

async fn head(state: &Arc<AppState>, name: &str, headers: &HeaderMap) -> Response {
    let op = NamedStreamOp::Head {
        authorized: may_read(state, name, headers),
    };
    match perform(state, name, op, Duration::ZERO).await {
        Ok(NamedStreamAnswer::Head(standing)) => respond::head(&standing),
        Ok(other) => respond::refusal(other),
        Err(response) => response,
    }
}

async fn read(state: &Arc<AppState>, name: &str, request: Request) -> Response {
    let query = match request::read_query(request.uri().query()) {
        Ok(query) => query,
        Err(refused) => return respond::refused(refused),
    };
    let authorized = may_read(state, name, request.headers());
    let config = &state.config.streams;
    let wait = match query.live {
        request::Live::LongPoll => config.long_poll_timeout.0,
        request::Live::CatchUp | request::Live::Sse => Duration::ZERO,
    };
    let op = read_op(query.from, wait, config.max_read_bytes, authorized);
    let answer = match perform(state, name, op, wait).await {
        Ok(answer) => answer,
        Err(response) => return response,
    };
    let if_none_match = request.headers().get(header::IF_NONE_MATCH).cloned();
    match (query.live, answer) {
        (request::Live::Sse, chunk @ NamedStreamAnswer::Chunk { .. }) => respond::sse(
            state.clone(),
            name.to_owned(),
            chunk,
            query.cursor,
            authorized,
        ),
        (_, chunk @ NamedStreamAnswer::Chunk { .. }) => {
            respond::chunk(&query, chunk, if_none_match.as_ref())
        }
        (_, other) => respond::refusal(other),
    }
}

fn read_op(
    from: oort_common::cluster::NamedPosition,
    wait: Duration,
    max_bytes: usize,
    authorized: bool,
) -> NamedStreamOp {
    NamedStreamOp::Read {
        from,
        wait_ms: u32::try_from(wait.as_millis()).unwrap_or(u32::MAX),
        max_bytes: u32::try_from(max_bytes).unwrap_or(u32::MAX),
        authorized,
    }
}

/// Runs `op` on stream `name` where it is owned: here, on its owner over NATS, or, for a
/// create (or an append to a stream whose owner is gone), here after claiming it in the
/// directory. `wait` bounds how long a read may be held there.
pub(crate) async fn perform(
    state: &Arc<AppState>,
    name: &str,
    op: NamedStreamOp,
    wait: Duration,
) -> Result<NamedStreamAnswer, Response> {
    if let Some(generation) = state.streams.generation(name) {
        let deleting = matches!(op, NamedStreamOp::Delete);
        let answer = owner::serve(state, name, generation, op).await;
        if deleting && answer == NamedStreamAnswer::Deleted {
            release(state, name, generation).await?;
        }
        return Ok(answer);
    }
    // Boxed: an idle SSE response keeps this future for as long as it waits.
    Box::pin(perform_elsewhere(state, name, op, wait)).await
}

/// [`perform`] for a stream this node does not hold.
async fn perform_elsewhere(
    state: &Arc<AppState>,
    name: &str,
    op: NamedStreamOp,
    wait: Duration,
) -> Result<NamedStreamAnswer, Response> {
    let writes = matches!(
        op,
        NamedStreamOp::Create { .. } | NamedStreamOp::Append { .. }
    );
    let owner = state
        .router
        .stream_owner(name)
        .await
        .map_err(|err| respond::unavailable(&err.to_string()))?;
    let (owner, claimed) = match owner {
        Some(owner) if owner.live => (owner, false),
        Some(owner) if !writes => {
            return Err(respond::unavailable(&format!(
                "the node that owned this stream ({}) is gone and its messages with it; \
                 a write starts the stream again, empty",
                owner.node
            )));
        }
        None if !matches!(op, NamedStreamOp::Create { .. }) => {
            return Ok(NamedStreamAnswer::Refused(StreamRefusal::NotFound));
        }
        // No owner, or a lost one: this node claims the stream.
        _ => (claim(state, name).await?, true),
    };
    let retry = matches!(op, NamedStreamOp::Create { .. }).then(|| op.clone());
    let answer = run_on(state, &owner, name, op, claimed, wait).await?;
    if let (NamedStreamAnswer::NotHere, Some(create)) = (&answer, retry) {
        // That generation is over (deleted or expired, its directory entry's drop still on
        // its way): end it, and claim the name again under a newer one.
        release(state, name, owner.generation).await?;
        let owner = claim(state, name).await?;
        return run_on(state, &owner, name, create, true, wait).await;
    }
    Ok(answer)
}

async fn claim(state: &Arc<AppState>, name: &str) -> Result<StreamOwner, Response> {
    state
        .router
        .claim_stream(name)
        .await
        .map_err(|err| respond::unavailable(&err.to_string()))
}

/// Runs `op` on `owner`: this node, or another over NATS.
async fn run_on(
    state: &Arc<AppState>,
    owner: &StreamOwner,
    name: &str,
    op: NamedStreamOp,
    claimed: bool,
    wait: Duration,
) -> Result<NamedStreamAnswer, Response> {
    if owner.node == *state.router.node_id() {
        return Ok(apply_as_owner(state, name, owner.generation, op, claimed).await);
    }
    let deleting = matches!(op, NamedStreamOp::Delete);
    let request = NamedStreamRequest {
        name: name.to_owned(),
        generation: owner.generation,
        op,
    };
    let answer = state
        .router
        .named_stream(&owner.node, &request, wait)
        .await
        .map_err(|err| respond::unavailable(&err.to_string()))?;
    if deleting && answer == NamedStreamAnswer::Deleted {
        release(state, name, owner.generation).await?;
    }
    Ok(answer)
}

/// `op` on generation `generation`, which the directory says this node owns but which this
/// node does not hold yet (`claimed` just now) or any more (deleted or expired, its entry's
/// drop still on its way, or lost in a restart). A create makes it; an append to a stream
/// just claimed from a lost owner starts it again, empty, with the append's content type;
/// anything else finds nothing.
async fn apply_as_owner(
    state: &Arc<AppState>,
    name: &str,
    generation: u64,
    op: NamedStreamOp,
    claimed: bool,
) -> NamedStreamAnswer {
    if let NamedStreamOp::Append { content_type, .. } = &op
        && claimed
        && !content_type.is_empty()
    {
        let settings = StreamSettings {
            content_type: content_type.clone(),
            ..StreamSettings::default()
        };
        let create = NamedStreamOp::Create {
            settings,
            messages: Vec::new(),
            closed: false,
        };
        state.streams.apply(name, generation, create).await;
    }
    // NotHere stays: a create then claims a newer generation; anything else answers 404.
    owner::serve(state, name, generation, op).await
}

/// Drops generation `generation` of `name` from the directory, so the name can be created
/// again (with a newer generation).
async fn release(state: &Arc<AppState>, name: &str, generation: u64) -> Result<(), Response> {
    state
        .router
        .drop_stream(name, generation)
        .await
        .map_err(|err| respond::unavailable(&err.to_string()))
}

/// The stream of `channel`, when there is one: `<streams.channel_prefix><channel>`, held
/// here or live in this node's replica of the directory. (A stream created a moment ago on
/// another node is seen once the directory's entry reaches this replica.)
pub(crate) fn channel_stream(state: &AppState, channel: &str) -> Option<String> {
    let config = &state.config.streams;
    if !config.enabled() || config.channel_prefix.is_empty() {
        return None;
    }
    let name = format!("{}{channel}", config.channel_prefix);
    let held = state.streams.generation(&name).is_some()
        || state
            .router
            .stream_owner_in_replica(&name)
            .is_some_and(|owner| owner.live);
    held.then_some(name)
}

/// What a channel publish through its stream did.
pub(crate) struct ChannelPublish {
    pub sessions: u64,
    pub nodes: Vec<oort_common::NodeId>,
    pub unreachable: Vec<oort_common::NodeId>,
    /// `Stream-Next-Offset` after the message.
    pub offset: String,
}

/// Publishes `payload` to `channel` through its stream's owner, which appends it and then
/// delivers it (so readers and subscribers see one order). The error says why not.
pub(crate) async fn publish(
    state: &Arc<AppState>,
    channel: &str,
    payload: &oort_common::Payload,
    request_id: &str,
) -> Result<ChannelPublish, String> {
    let Some(name) = channel_stream(state, channel) else {
        return Err("the channel has no stream".into());
    };
    let op = NamedStreamOp::Publish {
        channel: channel.to_owned(),
        text: payload.kind() == oort_common::FrameKind::Text,
        payload: payload.data().to_vec(),
        request_id: request_id.to_owned(),
    };
    match perform(state, &name, op, Duration::ZERO).await {
        Ok(NamedStreamAnswer::Published {
            standing,
            sessions,
            nodes,
            unreachable,
        }) => Ok(ChannelPublish {
            sessions,
            nodes,
            unreachable,
            offset: offset::format(standing.generation, standing.tail),
        }),
        Ok(NamedStreamAnswer::Refused(StreamRefusal::Closed { .. })) => {
            Err("the channel's stream is closed".into())
        }
        Ok(other) => Err(format!(
            "the channel's stream refused the message: {other:?}"
        )),
        Err(_) => Err("the channel's stream is unavailable".into()),
    }
}

/// Removes expired streams every second, and drops their directory entries.
pub(crate) async fn sweep_expired(state: std::sync::Weak<AppState>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(state) = state.upgrade() else { return };
        for expired in state.streams.sweep() {
            if let Err(err) = state
                .router
                .drop_stream(&expired.name, expired.generation)
                .await
            {
                tracing::warn!(stream = %expired.name, error = %err, "cannot drop an expired stream from the directory; its entry stays until the node leaves");
            }
        }
    }
}

/// `POST /v1/stream-tokens`: a read token for a stream, for a backend to hand to a client.
pub(crate) async fn issue_read_token(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Ask {
        stream: String,
        #[serde(default)]
        ttl_secs: Option<u64>,
    }
    let ask: Ask = match serde_json::from_slice(&body) {
        Ok(ask) => ask,
        Err(err) => {
            return respond::refused(Refused(
                StatusCode::BAD_REQUEST,
                format!("expected {{\"stream\": name, \"ttl_secs\": optional}}: {err}"),
            ));
        }
    };
    if let Err(refused) = check_name(&ask.stream) {
        return respond::refused(refused);
    }
    let ttl = ask
        .ttl_secs
        .unwrap_or(state.config.streams.read_token_ttl.0.as_secs());
    let (token, expiry) = read_token::issue(&state.tokens, &ask.stream, ttl);
    let body = serde_json::json!({ "stream": ask.stream, "token": token, "expires_at": expiry });
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body.to_string(),
    )
        .into_response()
}
