//! What a `PUT`, `POST` or `GET` asks, read from its headers, query and body, with a clear
//! 400 for anything malformed (PROTOCOL.md sections 5.1, 5.2, 5.6).

use http::{HeaderMap, StatusCode};
use oort_common::cluster::{NamedPosition, NamedStreamOp, ProducerClaim, StreamSettings};

use super::offset;

/// A request refused before any work: its status and what was wrong.
#[derive(Debug)]
pub(crate) struct Refused(pub StatusCode, pub String);

fn bad(reason: impl Into<String>) -> Refused {
    Refused(StatusCode::BAD_REQUEST, reason.into())
}

pub(crate) const STREAM_TTL: &str = "stream-ttl";
pub(crate) const STREAM_EXPIRES_AT: &str = "stream-expires-at";
pub(crate) const STREAM_CLOSED: &str = "stream-closed";
pub(crate) const STREAM_SEQ: &str = "stream-seq";
/// Oort's own: `PUT` with `Oort-Public: true` makes the stream readable without a token.
pub(crate) const OORT_PUBLIC: &str = "oort-public";
const PRODUCER_ID: &str = "producer-id";
const PRODUCER_EPOCH: &str = "producer-epoch";
const PRODUCER_SEQ: &str = "producer-seq";

fn text<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, Refused> {
    headers
        .get(name)
        .map(|value| {
            value
                .to_str()
                .map_err(|_| bad(format!("{name} is not visible ASCII")))
        })
        .transpose()
}

fn is_true(headers: &HeaderMap, name: &str) -> Result<bool, Refused> {
    Ok(text(headers, name)?.is_some_and(|value| value.eq_ignore_ascii_case("true")))
}

/// The media type of a `Content-Type`, lowercased and without parameters; `None` when absent
/// or not a `type/subtype`.
pub(crate) fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(http::header::CONTENT_TYPE)?.to_str().ok()?;
    let media = value.split(';').next()?.trim().to_ascii_lowercase();
    let (kind, subtype) = media.split_once('/')?;
    let token = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    (token(kind) && token(subtype)).then_some(media)
}

pub(crate) fn is_json(content_type: &str) -> bool {
    content_type == "application/json"
}

/// Splits a body into the stream's messages: a JSON stream keeps one message per value (an
/// array is flattened one level; `[]` is refused on append, an empty stream on create), any
/// other stream takes the body as one message.
pub(crate) fn messages(
    content_type: &str,
    body: &[u8],
    creating: bool,
) -> Result<Vec<Vec<u8>>, Refused> {
    if body.is_empty() {
        return Ok(Vec::new());
    }
    if !is_json(content_type) {
        return Ok(vec![body.to_vec()]);
    }
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|err| bad(format!("the body is not valid JSON: {err}")))?;
    match value {
        serde_json::Value::Array(values) if values.is_empty() && !creating => {
            Err(bad("an empty JSON array appends nothing"))
        }
        serde_json::Value::Array(values) => Ok(values
            .iter()
            .map(|value| value.to_string().into_bytes())
            .collect()),
        value => Ok(vec![value.to_string().into_bytes()]),
    }
}

/// `PUT`: the stream's settings and first messages.
pub(crate) fn create(headers: &HeaderMap, body: &[u8]) -> Result<NamedStreamOp, Refused> {
    let content_type = media_type(headers).unwrap_or_else(|| "application/octet-stream".into());
    let ttl = text(headers, STREAM_TTL)?;
    let expires = text(headers, STREAM_EXPIRES_AT)?;
    if ttl.is_some() && expires.is_some() {
        return Err(bad("Stream-TTL and Stream-Expires-At exclude each other"));
    }
    let ttl_secs = ttl
        .map(|ttl| {
            let canonical = ttl == "0" || (!ttl.starts_with('0') && !ttl.is_empty());
            ttl.bytes()
                .all(|b| b.is_ascii_digit())
                .then_some(())
                .filter(|()| canonical)
                .and_then(|()| ttl.parse::<u64>().ok())
                .ok_or_else(|| {
                    bad("Stream-TTL must be a whole number of seconds (digits, no leading zero)")
                })
        })
        .transpose()?;
    let expires_at = expires
        .map(|text| {
            rfc3339_ms(text)
                .map(|at| (text.to_owned(), at))
                .ok_or_else(|| bad("Stream-Expires-At must be an RFC 3339 timestamp"))
        })
        .transpose()?;
    let settings = StreamSettings {
        content_type: content_type.clone(),
        ttl_secs,
        expires_at,
        public: is_true(headers, OORT_PUBLIC)?,
    };
    Ok(NamedStreamOp::Create {
        messages: messages(&content_type, body, true)?,
        settings,
        closed: is_true(headers, STREAM_CLOSED)?,
    })
}

/// `POST`: an append, a close, or both.
pub(crate) fn append(headers: &HeaderMap, body: &[u8]) -> Result<NamedStreamOp, Refused> {
    let close = is_true(headers, STREAM_CLOSED)?;
    let producer = producer(headers)?;
    let seq = text(headers, STREAM_SEQ)?.map(str::to_owned);
    if body.is_empty() {
        if !close {
            return Err(bad(
                "an append needs a body (a close alone needs Stream-Closed: true)",
            ));
        }
        return Ok(NamedStreamOp::Append {
            content_type: String::new(),
            seq,
            messages: Vec::new(),
            close,
            producer,
        });
    }
    let content_type =
        media_type(headers).ok_or_else(|| bad("an append needs a Content-Type (the stream's)"))?;
    Ok(NamedStreamOp::Append {
        messages: messages(&content_type, body, false)?,
        content_type,
        seq,
        close,
        producer,
    })
}

/// The idempotent producer headers: all three or none.
fn producer(headers: &HeaderMap) -> Result<Option<ProducerClaim>, Refused> {
    let (id, epoch, seq) = (
        text(headers, PRODUCER_ID)?,
        text(headers, PRODUCER_EPOCH)?,
        text(headers, PRODUCER_SEQ)?,
    );
    let (id, epoch, seq) = match (id, epoch, seq) {
        (None, None, None) => return Ok(None),
        (Some(id), Some(epoch), Some(seq)) => (id, epoch, seq),
        _ => {
            return Err(bad(
                "Producer-Id, Producer-Epoch and Producer-Seq go together",
            ));
        }
    };
    if id.is_empty() {
        return Err(bad("Producer-Id must not be empty"));
    }
    let number = |name: &str, value: &str| {
        value
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| value.parse::<u64>().ok())
            .flatten()
            .filter(|n| *n < (1 << 53))
            .ok_or_else(|| bad(format!("{name} must be a non-negative integer")))
    };
    Ok(Some(ProducerClaim {
        id: id.to_owned(),
        epoch: number("Producer-Epoch", epoch)?,
        seq: number("Producer-Seq", seq)?,
    }))
}

/// How a `GET` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Live {
    CatchUp,
    LongPoll,
    Sse,
}

/// A `GET`'s query.
pub(crate) struct ReadQuery {
    pub from: NamedPosition,
    /// The `offset` as given (`-1` when absent), for the ETag.
    pub offset_text: String,
    pub live: Live,
    pub cursor: Option<String>,
}

pub(crate) fn read_query(query: Option<&str>) -> Result<ReadQuery, Refused> {
    let mut offset_text: Option<String> = None;
    let mut live = Live::CatchUp;
    let mut cursor = None;
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match name.as_ref() {
            "offset" if offset_text.is_some() => return Err(bad("offset may be given once")),
            "offset" => offset_text = Some(value.into_owned()),
            "cursor" => cursor = Some(value.into_owned()),
            "live" => {
                live = match value.as_ref() {
                    "long-poll" => Live::LongPoll,
                    "sse" => Live::Sse,
                    "false" | "" => Live::CatchUp,
                    other => {
                        return Err(bad(format!("live must be long-poll or sse, not {other:?}")));
                    }
                }
            }
            _ => {}
        }
    }
    if live != Live::CatchUp && offset_text.is_none() {
        return Err(bad(
            "a live read needs an offset (-1 for the start, now for the tail)",
        ));
    }
    let offset_text = offset_text.unwrap_or_else(|| "-1".into());
    let from = offset::parse(&offset_text).ok_or_else(|| {
        bad("malformed offset: -1, now, or a Stream-Next-Offset this server gave")
    })?;
    Ok(ReadQuery {
        from,
        offset_text,
        live,
        cursor,
    })
}

/// An RFC 3339 timestamp (`Z` or a numeric offset) as Unix milliseconds.
fn rfc3339_ms(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|at| at.timestamp_millis())
}
