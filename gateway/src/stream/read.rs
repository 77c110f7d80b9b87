//! Reading a session's stream: catch-up `GET`, `live=long-poll`, `live=sse`, and `HEAD`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};
use oort_common::cluster::{KeptMessage, StreamAnswer, StreamOp, StreamPosition};

use super::render::{self, Control};
use super::{Refused, offset, perform, refusal};
use crate::durable::token::Claims;
use crate::metrics::{Transport, TransportOpen};
use crate::state::AppState;

/// Bytes of messages one response (or one SSE event) carries at most.
const MAX_CHUNK_BYTES: u32 = 256 * 1024;
/// An idle SSE stream sends a comment this often.
const SSE_KEEP_ALIVE: Duration = Duration::from_secs(15);

const STREAM_NEXT_OFFSET: HeaderName = HeaderName::from_static("stream-next-offset");
const STREAM_UP_TO_DATE: HeaderName = HeaderName::from_static("stream-up-to-date");
const STREAM_CLOSED: HeaderName = HeaderName::from_static("stream-closed");
const STREAM_CURSOR: HeaderName = HeaderName::from_static("stream-cursor");
const TRUE: HeaderValue = HeaderValue::from_static("true");

/// How the client reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Live {
    CatchUp,
    LongPoll,
    Sse,
}

/// What the query asks.
struct ReadQuery {
    from: StreamPosition,
    live: Live,
    cursor: Option<String>,
}

fn parse_query(query: Option<&str>, id: u64) -> Result<ReadQuery, Refused> {
    let mut offset_text = None;
    let mut live = Live::CatchUp;
    let mut cursor = None;
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match name.as_ref() {
            "offset" => offset_text = Some(value.into_owned()),
            "cursor" => cursor = Some(value.into_owned()),
            "live" => {
                live = match value.as_ref() {
                    "long-poll" => Live::LongPoll,
                    "sse" => Live::Sse,
                    other => {
                        return Err(Refused(
                            StatusCode::BAD_REQUEST,
                            format!("live must be long-poll or sse, not {other:?}"),
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    if live != Live::CatchUp && offset_text.is_none() {
        return Err(Refused(
            StatusCode::BAD_REQUEST,
            "a live read needs an offset (-1 for the start, now for the tail)".into(),
        ));
    }
    let from = offset::parse(offset_text.as_deref(), id).map_err(|err| {
        let reason = match err {
            offset::OffsetError::Malformed => {
                "malformed offset: -1, now, or one from Stream-Next-Offset"
            }
            offset::OffsetError::OtherSession => "the offset belongs to another session",
        };
        Refused(StatusCode::BAD_REQUEST, reason.into())
    })?;
    Ok(ReadQuery { from, live, cursor })
}

/// `GET {stream}`.
pub(super) async fn get(state: &Arc<AppState>, claims: &Claims, request: Request) -> Response {
    let query = match parse_query(request.uri().query(), claims.id) {
        Ok(query) => query,
        Err(refused) => return refused.into_response(),
    };
    let wait = match query.live {
        Live::CatchUp | Live::Sse => Duration::ZERO,
        Live::LongPoll => state.config.session.long_poll_timeout.0,
    };
    let op = read_op(query.from, true, wait);
    let _open =
        (query.live == Live::LongPoll).then(|| state.metrics.transport_open(Transport::LongPoll));
    let answer = match perform(state, claims, op, wait).await {
        Ok(answer) => answer,
        Err(response) => return response,
    };
    let StreamAnswer::Chunk {
        messages,
        next,
        up_to_date,
        closed,
    } = answer
    else {
        return refusal(answer);
    };
    let next_offset = offset::format(claims.id, next);
    if query.live == Live::Sse {
        let first = SseChunk {
            messages,
            next,
            up_to_date,
            closed,
        };
        return sse(state.clone(), claims.clone(), first, query.cursor);
    }
    let cursor = (query.live == Live::LongPoll).then(|| offset::cursor(query.cursor.as_deref()));
    let mut headers = HeaderMap::with_capacity(8);
    headers.insert(header::CONTENT_TYPE, json());
    headers.insert(header::CACHE_CONTROL, no_store());
    insert(&mut headers, STREAM_NEXT_OFFSET, &next_offset);
    if up_to_date {
        headers.insert(STREAM_UP_TO_DATE, TRUE);
    }
    if closed {
        headers.insert(STREAM_CLOSED, TRUE);
    } else if let Some(cursor) = &cursor {
        insert(&mut headers, STREAM_CURSOR, cursor);
    }
    if query.live == Live::LongPoll && messages.is_empty() {
        return (StatusCode::NO_CONTENT, headers).into_response();
    }
    let from = match query.from {
        StreamPosition::After(seq) => offset::format(claims.id, seq),
        StreamPosition::Start => "start".to_owned(),
        StreamPosition::Now => "now".to_owned(),
    };
    let etag = format!(
        "\"{}:{from}:{next_offset}{}\"",
        claims.id,
        if closed { ":c" } else { "" }
    );
    insert(&mut headers, header::ETAG, &etag);
    let unchanged = request
        .headers()
        .get(header::IF_NONE_MATCH)
        .is_some_and(|value| value.as_bytes() == etag.as_bytes());
    if unchanged {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (StatusCode::OK, headers, render::json_array(&messages)).into_response()
}

/// `HEAD {stream}`: the tail and whether the backend closed the stream.
pub(super) async fn head(state: &Arc<AppState>, claims: &Claims) -> Response {
    let answer = match perform(state, claims, StreamOp::Head, Duration::ZERO).await {
        Ok(answer) => answer,
        Err(response) => return response,
    };
    let StreamAnswer::Tail { last, closed } = answer else {
        return refusal(answer);
    };
    let mut headers = HeaderMap::with_capacity(4);
    headers.insert(header::CONTENT_TYPE, json());
    headers.insert(header::CACHE_CONTROL, no_store());
    insert(
        &mut headers,
        STREAM_NEXT_OFFSET,
        &offset::format(claims.id, last),
    );
    if closed {
        headers.insert(STREAM_CLOSED, TRUE);
    }
    (StatusCode::OK, headers).into_response()
}

fn read_op(from: StreamPosition, fresh: bool, wait: Duration) -> StreamOp {
    StreamOp::Read {
        from,
        fresh,
        wait_ms: u32::try_from(wait.as_millis()).unwrap_or(u32::MAX),
        max_bytes: MAX_CHUNK_BYTES,
    }
}

struct SseChunk {
    messages: Vec<KeptMessage>,
    next: u64,
    up_to_date: bool,
    closed: bool,
}

/// Where an SSE response stands between events.
struct SseState {
    state: Arc<AppState>,
    claims: Claims,
    /// The first chunk, read before the response started (so its errors are statuses).
    first: Option<SseChunk>,
    /// Counts the response in `oort_transport_connections` until the stream drops.
    _open: TransportOpen,
    at: u64,
    cursor: Option<String>,
    ends_at: tokio::time::Instant,
    done: bool,
}

/// `live=sse`: data and control events as messages arrive, a comment when idle, and an end
/// after `session.sse_duration` (the client reads on from its last offset), at the stream's
/// end, or when the node drains.
fn sse(state: Arc<AppState>, claims: Claims, first: SseChunk, cursor: Option<String>) -> Response {
    let ends_at = tokio::time::Instant::now() + state.config.session.sse_duration.0;
    let at = first.next;
    let events = futures_util::stream::unfold(
        SseState {
            _open: state.metrics.transport_open(Transport::Sse),
            state,
            claims,
            first: Some(first),
            at,
            cursor,
            ends_at,
            done: false,
        },
        |mut sse| async move {
            if sse.done {
                return None;
            }
            let bytes = match sse.first.take() {
                Some(first) => {
                    // Always say where the stream stands first, even with nothing to send.
                    sse.events(first)
                }
                None => sse.next_events().await?,
            };
            Some((Ok::<Bytes, Infallible>(bytes), sse))
        },
    );
    let mut response = Response::new(Body::from_stream(events));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, no_store());
    // nginx would otherwise buffer the stream.
    headers.insert(
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    response
}

impl SseState {
    /// Waits for the next messages; `None` once the response should end.
    async fn next_events(&mut self) -> Option<Bytes> {
        let now = tokio::time::Instant::now();
        if now >= self.ends_at || self.state.is_draining() {
            return None;
        }
        let wait = SSE_KEEP_ALIVE.min(self.ends_at - now);
        let op = read_op(StreamPosition::After(self.at), false, wait);
        let answer = perform(&self.state, &self.claims, op, wait).await.ok()?;
        match answer {
            StreamAnswer::Chunk {
                messages,
                next,
                up_to_date,
                closed,
            } => {
                if messages.is_empty() && !closed {
                    return Some(Bytes::from_static(render::SSE_KEEP_ALIVE));
                }
                Some(self.events(SseChunk {
                    messages,
                    next,
                    up_to_date,
                    closed,
                }))
            }
            // Over, moved, gone: the client's next request learns which.
            _ => None,
        }
    }

    fn events(&mut self, chunk: SseChunk) -> Bytes {
        self.at = chunk.next;
        self.done = chunk.closed;
        let next_offset = offset::format(self.claims.id, chunk.next);
        let cursor = (!chunk.closed).then(|| offset::cursor(self.cursor.as_deref()));
        if let Some(cursor) = &cursor {
            self.cursor = Some(cursor.clone());
        }
        let control = Control {
            stream_next_offset: &next_offset,
            stream_cursor: cursor.as_deref(),
            up_to_date: chunk.up_to_date || chunk.closed,
            stream_closed: chunk.closed,
        };
        render::sse_events(&chunk.messages, &control)
    }
}

fn insert(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::try_from(value) {
        headers.insert(name, value);
    }
}

fn json() -> HeaderValue {
    HeaderValue::from_static("application/json")
}

/// Session data is for its one client: never stored by a shared cache.
fn no_store() -> HeaderValue {
    HeaderValue::from_static("private, no-store")
}
