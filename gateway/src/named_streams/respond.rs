//! Answers of named streams as HTTP (PROTOCOL.md sections 5 and 10): statuses, the `Stream-*`
//! headers, bodies (concatenated bytes, or a JSON array), ETags, SSE events, errors as JSON.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use http::StatusCode;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use oort_common::cluster::{
    NamedPosition, NamedStreamAnswer, ProducerClaim, StreamRefusal, StreamStanding,
};

use super::request::{Live, ReadQuery, Refused, is_json};
use super::{offset, perform, read_op};
use crate::error_code::ErrorCode;
use crate::state::AppState;
use crate::stream::{error, error_coded};

const STREAM_NEXT_OFFSET: HeaderName = HeaderName::from_static("stream-next-offset");
const STREAM_UP_TO_DATE: HeaderName = HeaderName::from_static("stream-up-to-date");
const STREAM_CLOSED: HeaderName = HeaderName::from_static("stream-closed");
const STREAM_CURSOR: HeaderName = HeaderName::from_static("stream-cursor");
const STREAM_TTL: HeaderName = HeaderName::from_static("stream-ttl");
const STREAM_EXPIRES_AT: HeaderName = HeaderName::from_static("stream-expires-at");
const STREAM_SSE_DATA_ENCODING: HeaderName = HeaderName::from_static("stream-sse-data-encoding");
const PRODUCER_EPOCH: HeaderName = HeaderName::from_static("producer-epoch");
const PRODUCER_SEQ: HeaderName = HeaderName::from_static("producer-seq");
const PRODUCER_EXPECTED_SEQ: HeaderName = HeaderName::from_static("producer-expected-seq");
const PRODUCER_RECEIVED_SEQ: HeaderName = HeaderName::from_static("producer-received-seq");
const TRUE: HeaderValue = HeaderValue::from_static("true");

/// Headers a browser may read, and may send (CORS).
const EXPOSED: &str = "Stream-Next-Offset, Stream-Cursor, Stream-Up-To-Date, Stream-Closed, \
                       Stream-TTL, Stream-Expires-At, Stream-SSE-Data-Encoding, Producer-Epoch, \
                       Producer-Seq, Producer-Expected-Seq, Producer-Received-Seq, ETag, \
                       Location, Content-Type, Retry-After";
const ALLOWED_HEADERS: &str = "Authorization, Content-Type, If-None-Match, Stream-Seq, \
                               Stream-TTL, Stream-Expires-At, Stream-Closed, Producer-Id, \
                               Producer-Epoch, Producer-Seq, Oort-Public";
const ALLOWED_METHODS: &str = "GET, HEAD, PUT, POST, DELETE, OPTIONS";

/// What every answer carries: the browser security headers the protocol asks for, and CORS
/// for any origin (streams are authorized by bearer tokens, never cookies).
pub(super) fn common_headers(headers: &mut HeaderMap) {
    headers.insert(
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("cross-origin"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSED),
    );
}

pub(super) fn preflight() -> Response {
    (
        StatusCode::NO_CONTENT,
        [
            (header::ACCESS_CONTROL_ALLOW_METHODS, ALLOWED_METHODS),
            (header::ACCESS_CONTROL_ALLOW_HEADERS, ALLOWED_HEADERS),
            (header::ACCESS_CONTROL_MAX_AGE, "600"),
        ],
    )
        .into_response()
}

pub(super) fn refused(refused: Refused) -> Response {
    error(refused.0, &refused.1)
}

pub(super) fn method_not_allowed() -> Response {
    let mut response = error(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("allowed methods: {ALLOWED_METHODS}"),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(ALLOWED_METHODS));
    response
}

pub(super) fn unauthorized(reason: &str) -> Response {
    let mut response = error(
        StatusCode::UNAUTHORIZED,
        &format!("writing a stream needs the API token: {reason}"),
    );
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

pub(super) fn unavailable(reason: &str) -> Response {
    let mut response = error_coded(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::OwnerUnavailable,
        reason,
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

fn insert(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::try_from(value) {
        headers.insert(name, value);
    }
}

fn tail_offset(standing: &StreamStanding) -> String {
    offset::format(standing.generation, standing.tail)
}

/// Every answer that is not what its operation asked for.
pub(super) fn refusal(answer: NamedStreamAnswer) -> Response {
    let refusal = match answer {
        NamedStreamAnswer::Refused(refusal) => refusal,
        NamedStreamAnswer::NotHere => StreamRefusal::NotFound,
        other => {
            tracing::warn!(answer = ?other, "unexpected named stream answer");
            return unavailable("unexpected answer from the stream's node");
        }
    };
    match refusal {
        StreamRefusal::NotFound => error_coded(
            StatusCode::NOT_FOUND,
            ErrorCode::StreamNotFound,
            "no such stream",
        ),
        StreamRefusal::SettingsDiffer => error_coded(
            StatusCode::CONFLICT,
            ErrorCode::Conflict,
            "the stream exists with another content type, lifetime or closed state",
        ),
        StreamRefusal::ContentTypeMismatch => error_coded(
            StatusCode::CONFLICT,
            ErrorCode::ContentTypeMismatch,
            "the Content-Type is not the stream's",
        ),
        StreamRefusal::SeqConflict => error_coded(
            StatusCode::CONFLICT,
            ErrorCode::StreamSeqConflict,
            "Stream-Seq must sort after the last one given",
        ),
        StreamRefusal::Closed { standing } => {
            let mut response = error_coded(
                StatusCode::CONFLICT,
                ErrorCode::StreamClosed,
                "the stream is closed",
            );
            let headers = response.headers_mut();
            headers.insert(STREAM_CLOSED, TRUE);
            insert(headers, STREAM_NEXT_OFFSET, &tail_offset(&standing));
            response
        }
        StreamRefusal::Gone => error_coded(
            StatusCode::GONE,
            ErrorCode::OffsetGone,
            "the stream no longer keeps messages at this offset (retention, or the stream was \
             started again); read from -1",
        ),
        StreamRefusal::Ahead => error_coded(
            StatusCode::BAD_REQUEST,
            ErrorCode::OffsetAhead,
            "the offset is past the stream's tail",
        ),
        StreamRefusal::Unauthorized => {
            let mut response = error(
                StatusCode::UNAUTHORIZED,
                "reading this stream needs a read token for it (POST /v1/stream-tokens) or \
                 the API token",
            );
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
        StreamRefusal::StaleEpoch { current } => {
            let mut response = error_coded(
                StatusCode::FORBIDDEN,
                ErrorCode::ProducerStaleEpoch,
                "a newer epoch of this producer is writing (Producer-Epoch is stale)",
            );
            insert(response.headers_mut(), PRODUCER_EPOCH, &current.to_string());
            response
        }
        StreamRefusal::SequenceGap { expected, received } => {
            let mut response = error_coded(
                StatusCode::CONFLICT,
                ErrorCode::ProducerSeqInvalid,
                &format!("Producer-Seq {received} skips ahead; the stream expects {expected}"),
            );
            let headers = response.headers_mut();
            insert(headers, PRODUCER_EXPECTED_SEQ, &expected.to_string());
            insert(headers, PRODUCER_RECEIVED_SEQ, &received.to_string());
            response
        }
        StreamRefusal::EpochMustStartAtZero => error_coded(
            StatusCode::BAD_REQUEST,
            ErrorCode::ProducerSeqInvalid,
            "a new Producer-Epoch starts at Producer-Seq 0",
        ),
        StreamRefusal::Full { reason } => {
            let status = if reason.contains("streams.max_bytes") {
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                StatusCode::INSUFFICIENT_STORAGE
            };
            error_coded(status, ErrorCode::StreamFull, &reason)
        }
    }
}

/// The answer to a `PUT`, `POST` or `DELETE`.
pub(super) fn written(
    location: &str,
    answer: NamedStreamAnswer,
    producer: Option<&(ProducerClaim, bool)>,
) -> Response {
    match answer {
        NamedStreamAnswer::Created { created, standing } => {
            let mut headers = HeaderMap::with_capacity(4);
            insert(
                &mut headers,
                header::CONTENT_TYPE,
                &standing.settings.content_type,
            );
            insert(&mut headers, STREAM_NEXT_OFFSET, &tail_offset(&standing));
            if standing.closed {
                headers.insert(STREAM_CLOSED, TRUE);
            }
            if created {
                insert(&mut headers, header::LOCATION, location);
                (StatusCode::CREATED, headers).into_response()
            } else {
                (StatusCode::OK, headers).into_response()
            }
        }
        NamedStreamAnswer::Appended {
            standing,
            duplicate,
        } => {
            let mut headers = HeaderMap::with_capacity(4);
            if duplicate.is_none() || standing.closed {
                insert(&mut headers, STREAM_NEXT_OFFSET, &tail_offset(&standing));
            }
            if standing.closed {
                headers.insert(STREAM_CLOSED, TRUE);
            }
            let Some((producer, appended)) = producer else {
                return (StatusCode::NO_CONTENT, headers).into_response();
            };
            insert(&mut headers, PRODUCER_EPOCH, &producer.epoch.to_string());
            let seq = duplicate.unwrap_or(producer.seq);
            insert(&mut headers, PRODUCER_SEQ, &seq.to_string());
            let status = if duplicate.is_some() || !appended {
                StatusCode::NO_CONTENT
            } else {
                StatusCode::OK
            };
            (status, headers).into_response()
        }
        NamedStreamAnswer::Deleted => StatusCode::NO_CONTENT.into_response(),
        other => refusal(other),
    }
}

pub(super) fn head(standing: &StreamStanding) -> Response {
    let mut headers = HeaderMap::with_capacity(6);
    insert(
        &mut headers,
        header::CONTENT_TYPE,
        &standing.settings.content_type,
    );
    insert(&mut headers, STREAM_NEXT_OFFSET, &tail_offset(standing));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if standing.closed {
        headers.insert(STREAM_CLOSED, TRUE);
    }
    if let Some(ttl) = standing.settings.ttl_secs {
        insert(&mut headers, STREAM_TTL, &ttl.to_string());
    }
    if let Some((text, _)) = &standing.settings.expires_at {
        insert(&mut headers, STREAM_EXPIRES_AT, text);
    }
    (StatusCode::OK, headers).into_response()
}

/// The body of `messages` as the stream's content type reads: a JSON array, or the bytes
/// one after the other.
fn body(content_type: &str, messages: &[Vec<u8>]) -> Vec<u8> {
    if !is_json(content_type) {
        return messages.concat();
    }
    let mut body = Vec::with_capacity(2 + messages.iter().map(|m| m.len() + 1).sum::<usize>());
    body.push(b'[');
    for (i, message) in messages.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(message);
    }
    body.push(b']');
    body
}

/// A catch-up or long-poll answer.
pub(super) fn chunk(
    query: &ReadQuery,
    answer: NamedStreamAnswer,
    if_none_match: Option<&HeaderValue>,
) -> Response {
    let NamedStreamAnswer::Chunk {
        messages,
        next,
        up_to_date,
        standing,
    } = answer
    else {
        return refusal(answer);
    };
    let next_offset = offset::format(standing.generation, next);
    let at_closed_end = standing.closed && up_to_date;
    let mut headers = HeaderMap::with_capacity(8);
    insert(
        &mut headers,
        header::CONTENT_TYPE,
        &standing.settings.content_type,
    );
    insert(&mut headers, STREAM_NEXT_OFFSET, &next_offset);
    if up_to_date {
        headers.insert(STREAM_UP_TO_DATE, TRUE);
    }
    if at_closed_end {
        headers.insert(STREAM_CLOSED, TRUE);
    }
    if query.live == Live::LongPoll {
        if !at_closed_end {
            insert(
                &mut headers,
                STREAM_CURSOR,
                &crate::stream::offset::cursor(query.cursor.as_deref()),
            );
        }
        if messages.is_empty() {
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            return (StatusCode::NO_CONTENT, headers).into_response();
        }
    }
    if query.from == NamedPosition::Now || up_to_date {
        // The tail moves: never cache it.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    } else {
        // A range of messages never changes; readers with a token may cache it privately.
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, max-age=60"),
        );
    }
    let etag = format!(
        "\"{}:{}:{next_offset}{}\"",
        standing.generation,
        query.offset_text,
        if at_closed_end { ":c" } else { "" }
    );
    insert(&mut headers, header::ETAG, &etag);
    if if_none_match.is_some_and(|value| value.as_bytes() == etag.as_bytes()) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    let body = body(&standing.settings.content_type, &messages);
    (StatusCode::OK, headers, body).into_response()
}

/// How SSE data is written: UTF-8 text (text/* and JSON) or base64.
fn sse_base64(content_type: &str) -> bool {
    !(content_type.starts_with("text/") || is_json(content_type))
}

struct Sse {
    state: Arc<AppState>,
    name: String,
    authorized: bool,
    first: Option<NamedStreamAnswer>,
    generation: u64,
    at: u64,
    cursor: Option<String>,
    ends_at: tokio::time::Instant,
    done: bool,
}

/// An SSE response (PROTOCOL.md section 5.8): each chunk of messages is one `data` event
/// followed by a `control` event with the next offset; a closed stream's end is a last
/// control event with `streamClosed`, after which the response ends. The response also ends
/// after `streams.sse_max_duration` (the client reconnects from its offset).
pub(super) fn sse(
    state: Arc<AppState>,
    name: String,
    first: NamedStreamAnswer,
    cursor: Option<String>,
    authorized: bool,
) -> Response {
    let NamedStreamAnswer::Chunk { standing, .. } = &first else {
        return refusal(first);
    };
    let base64 = sse_base64(&standing.settings.content_type);
    let generation = standing.generation;
    let ends_at = tokio::time::Instant::now() + state.config.streams.sse_max_duration.0;
    let events = futures_util::stream::unfold(
        Sse {
            state,
            name,
            authorized,
            first: Some(first),
            generation,
            at: 0,
            cursor,
            ends_at,
            done: false,
        },
        |mut sse| async move {
            if sse.done {
                return None;
            }
            let answer = match sse.first.take() {
                Some(first) => first,
                None => sse.next_answer().await?,
            };
            let bytes = sse.events(answer);
            Some((Ok::<Bytes, Infallible>(bytes), sse))
        },
    );
    let mut response = Response::new(Body::from_stream(events));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if base64 {
        headers.insert(STREAM_SSE_DATA_ENCODING, HeaderValue::from_static("base64"));
    }
    response
}

impl Sse {
    /// The next answer from the owner: messages after `at`, waiting at the tail until the
    /// response's end. `None` ends the response.
    async fn next_answer(&mut self) -> Option<NamedStreamAnswer> {
        let now = tokio::time::Instant::now();
        if now >= self.ends_at {
            return None;
        }
        let config = &self.state.config.streams;
        let wait = (self.ends_at - now).min(config.long_poll_timeout.0);
        let from = NamedPosition::At {
            generation: self.generation,
            position: self.at,
        };
        let op = read_op(from, wait, config.max_read_bytes, self.authorized);
        match perform(&self.state, &self.name, op, wait).await {
            Ok(answer @ NamedStreamAnswer::Chunk { .. }) => Some(answer),
            // The stream went away (deleted, expired, its node lost): end the response; the
            // client's reconnect learns why.
            _ => None,
        }
    }

    fn events(&mut self, answer: NamedStreamAnswer) -> Bytes {
        let NamedStreamAnswer::Chunk {
            messages,
            next,
            up_to_date,
            standing,
        } = answer
        else {
            self.done = true;
            return Bytes::new();
        };
        let mut out = Vec::new();
        let content_type = &standing.settings.content_type;
        if !messages.is_empty() {
            let data = body(content_type, &messages);
            out.extend_from_slice(b"event: data\n");
            if sse_base64(content_type) {
                let encoded = base64::engine::general_purpose::STANDARD.encode(&data);
                write_data(&mut out, encoded.as_bytes());
            } else {
                write_data(&mut out, &data);
            }
        }
        self.at = next;
        let next_offset = offset::format(standing.generation, next);
        let closed = standing.closed && up_to_date;
        let control = if closed {
            self.done = true;
            serde_json::json!({ "streamNextOffset": next_offset, "streamClosed": true })
        } else {
            let cursor = crate::stream::offset::cursor(self.cursor.as_deref());
            self.cursor = Some(cursor.clone());
            let mut control =
                serde_json::json!({ "streamNextOffset": next_offset, "streamCursor": cursor });
            if up_to_date {
                control["upToDate"] = serde_json::Value::Bool(true);
            }
            control
        };
        out.extend_from_slice(b"event: control\n");
        write_data(&mut out, control.to_string().as_bytes());
        Bytes::from(out)
    }
}

/// `data:` lines for `payload`: every line break (CR, LF or CRLF) starts a new `data:` line,
/// so a payload can never end an event or inject one.
fn write_data(out: &mut Vec<u8>, payload: &[u8]) {
    let mut rest = payload;
    loop {
        let end = rest
            .iter()
            .position(|b| *b == b'\n' || *b == b'\r')
            .unwrap_or(rest.len());
        out.extend_from_slice(b"data:");
        out.extend_from_slice(&rest[..end]);
        out.push(b'\n');
        if end == rest.len() {
            break;
        }
        let skip = if rest[end] == b'\r' && rest.get(end + 1) == Some(&b'\n') {
            2
        } else {
            1
        };
        rest = &rest[end + skip..];
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_breaks_in_a_payload_start_new_data_lines() {
        let mut out = Vec::new();
        write_data(&mut out, b"a\r\nevent: x\rb\nc");
        assert_eq!(out, b"data:a\ndata:event: x\ndata:b\ndata:c\n\n");
    }

    #[test]
    fn json_bodies_are_arrays_and_bytes_concatenate() {
        let messages = vec![b"1".to_vec(), b"{\"a\":2}".to_vec()];
        assert_eq!(body("application/json", &messages), b"[1,{\"a\":2}]");
        assert_eq!(body("application/json", &[]), b"[]");
        assert_eq!(body("text/plain", &messages), b"1{\"a\":2}");
    }
}
