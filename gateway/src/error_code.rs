//! The stable, machine-readable codes of every JSON error body Oort answers with (the `code`
//! beside the human `error`), and of the RPC API's errors (the `oort-error-code` header).
//!
//! docs/errors.md documents each one: a test below fails when the two disagree. A code, once
//! published, keeps its spelling and meaning; messages may change, codes may not.

use http::StatusCode;

/// Why a request was refused, as a backend or client program should branch on it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ErrorCode {
    // Any surface.
    /// A parameter, header, query or field is malformed or out of range.
    InvalidRequest,
    /// The body is not JSON or does not have the request's shape.
    InvalidJson,
    /// The API token (or a stream or session token) is missing or wrong.
    Unauthorized,
    /// The token is valid but not for what was asked.
    Forbidden,
    /// No route (or NATS operation) with this name.
    NotFound,
    /// The route exists but not with this method.
    MethodNotAllowed,
    /// The body exceeds a configured limit.
    BodyTooLarge,
    /// The directory, the NATS backbone or the raft leader cannot answer now.
    Unavailable,
    /// Oort itself is misconfigured or failed.
    Internal,
    // Backend API.
    /// No session has this key.
    SessionNotFound,
    /// A strict publish named channels without subscribers.
    NoSubscribers,
    /// `/v1/request`: the client did not reply in time.
    ReplyTimeout,
    // Connects.
    /// The node is draining (shutting down).
    Draining,
    /// The node (or the backend it protects) is at a limit for everyone.
    Overloaded,
    /// The client's address connects too often or holds too many connections.
    RateLimited,
    /// The user has `limits.max_sessions_per_user` sessions already.
    UserLimit,
    /// The `Origin` header is not allowed by `origin_policy`.
    OriginRefused,
    /// A malformed WebSocket handshake.
    InvalidHandshake,
    /// The connect callback could not be asked (unreachable, timeout, no turn).
    CallbackFailed,
    /// The backend answered in a way Oort cannot use (missing session key, bad channels...).
    CallbackInvalid,
    /// A newer connection or reader took this session.
    SessionTaken,
    // Session streams and Durable Streams.
    /// Messages from this offset are no longer kept.
    OffsetGone,
    /// The offset is past the tail.
    OffsetAhead,
    /// The session is moving to another node; retry after `Retry-After`.
    SessionMoving,
    /// The session's or stream's node cannot be reached.
    OwnerUnavailable,
    /// The backend closed the session; it takes no more messages.
    SessionClosed,
    /// No stream with this name (or it expired).
    StreamNotFound,
    /// The stream exists with other settings, or another request conflicts with this one.
    Conflict,
    /// The append's Content-Type is not the stream's.
    ContentTypeMismatch,
    /// `Stream-Seq` does not sort after the last one.
    StreamSeqConflict,
    /// The stream is closed.
    StreamClosed,
    /// A newer producer epoch writes this stream.
    ProducerStaleEpoch,
    /// `Producer-Seq` skips ahead, or a new epoch does not start at 0.
    ProducerSeqInvalid,
    /// The stream (`streams.max_bytes`) or the node's stream storage is full.
    StreamFull,
    // The event feed (RPC `WatchEvents`).
    /// `callback.event_feed` is off on this node.
    FeedOff,
    /// The consumer fell too far behind and was dropped.
    FeedOverflow,
}

impl ErrorCode {
    /// Every code, in documentation order.
    pub const ALL: [Self; 36] = [
        Self::InvalidRequest,
        Self::InvalidJson,
        Self::Unauthorized,
        Self::Forbidden,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::BodyTooLarge,
        Self::Unavailable,
        Self::Internal,
        Self::SessionNotFound,
        Self::NoSubscribers,
        Self::ReplyTimeout,
        Self::Draining,
        Self::Overloaded,
        Self::RateLimited,
        Self::UserLimit,
        Self::OriginRefused,
        Self::InvalidHandshake,
        Self::CallbackFailed,
        Self::CallbackInvalid,
        Self::SessionTaken,
        Self::OffsetGone,
        Self::OffsetAhead,
        Self::SessionMoving,
        Self::OwnerUnavailable,
        Self::SessionClosed,
        Self::StreamNotFound,
        Self::Conflict,
        Self::ContentTypeMismatch,
        Self::StreamSeqConflict,
        Self::StreamClosed,
        Self::ProducerStaleEpoch,
        Self::ProducerSeqInvalid,
        Self::StreamFull,
        Self::FeedOff,
        Self::FeedOverflow,
    ];

    /// The code as it appears in JSON bodies and the `oort-error-code` header.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidJson => "invalid_json",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::BodyTooLarge => "body_too_large",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
            Self::SessionNotFound => "session_not_found",
            Self::NoSubscribers => "no_subscribers",
            Self::ReplyTimeout => "reply_timeout",
            Self::Draining => "draining",
            Self::Overloaded => "overloaded",
            Self::RateLimited => "rate_limited",
            Self::UserLimit => "user_limit",
            Self::OriginRefused => "origin_refused",
            Self::InvalidHandshake => "invalid_handshake",
            Self::CallbackFailed => "callback_failed",
            Self::CallbackInvalid => "callback_invalid",
            Self::SessionTaken => "session_taken",
            Self::OffsetGone => "offset_gone",
            Self::OffsetAhead => "offset_ahead",
            Self::SessionMoving => "session_moving",
            Self::OwnerUnavailable => "owner_unavailable",
            Self::SessionClosed => "session_closed",
            Self::StreamNotFound => "stream_not_found",
            Self::Conflict => "conflict",
            Self::ContentTypeMismatch => "content_type_mismatch",
            Self::StreamSeqConflict => "stream_seq_conflict",
            Self::StreamClosed => "stream_closed",
            Self::ProducerStaleEpoch => "producer_stale_epoch",
            Self::ProducerSeqInvalid => "producer_seq_invalid",
            Self::StreamFull => "stream_full",
            Self::FeedOff => "feed_off",
            Self::FeedOverflow => "feed_overflow",
        }
    }

    /// The code of an answer whose cause only its status tells (a refusal shared by several
    /// causes, such as a malformed header). Call sites that know the cause name its code.
    pub fn for_status(status: StatusCode) -> Self {
        match status {
            StatusCode::BAD_REQUEST => Self::InvalidRequest,
            StatusCode::UNAUTHORIZED => Self::Unauthorized,
            StatusCode::FORBIDDEN => Self::Forbidden,
            StatusCode::NOT_FOUND => Self::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => Self::MethodNotAllowed,
            StatusCode::CONFLICT => Self::Conflict,
            StatusCode::GONE => Self::OffsetGone,
            StatusCode::PAYLOAD_TOO_LARGE => Self::BodyTooLarge,
            StatusCode::TOO_MANY_REQUESTS => Self::RateLimited,
            StatusCode::BAD_GATEWAY => Self::CallbackFailed,
            StatusCode::SERVICE_UNAVAILABLE => Self::Unavailable,
            StatusCode::GATEWAY_TIMEOUT => Self::ReplyTimeout,
            StatusCode::INSUFFICIENT_STORAGE => Self::StreamFull,
            _ => Self::Internal,
        }
    }
}

/// The JSON error body every Oort surface answers with: `error` (for people) and `code` (for
/// programs); callers add their own fields (`session`, `status`, ...) beside them.
pub(crate) fn error_body(
    code: ErrorCode,
    message: &str,
) -> serde_json::Map<String, serde_json::Value> {
    let mut body = serde_json::Map::new();
    body.insert("error".to_owned(), message.into());
    body.insert("code".to_owned(), code.as_str().into());
    body
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// docs/errors.md: the codes named in its tables' first column (`` `code` `` cells of the
    /// tables whose header starts with `| code`).
    fn documented() -> BTreeSet<String> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/errors.md");
        let text = std::fs::read_to_string(path).expect("docs/errors.md is readable");
        let mut codes = BTreeSet::new();
        let mut in_code_table = false;
        for line in text.lines() {
            if !line.starts_with('|') {
                in_code_table = false;
                continue;
            }
            if line.starts_with("| code") {
                in_code_table = true;
                continue;
            }
            let first = line.split('|').nth(1).unwrap_or_default().trim();
            if in_code_table && let Some(code) = first.strip_prefix('`') {
                codes.insert(code.trim_end_matches('`').to_owned());
            }
        }
        codes
    }

    #[test]
    fn every_code_is_documented_and_every_documented_code_exists() {
        let enum_codes: BTreeSet<String> = ErrorCode::ALL
            .iter()
            .map(|code| code.as_str().to_owned())
            .collect();
        let doc_codes = documented();
        let undocumented: Vec<_> = enum_codes.difference(&doc_codes).collect();
        assert!(
            undocumented.is_empty(),
            "codes missing from docs/errors.md: {undocumented:?}"
        );
        let unknown: Vec<_> = doc_codes.difference(&enum_codes).collect();
        assert!(
            unknown.is_empty(),
            "docs/errors.md names codes ErrorCode does not have: {unknown:?}"
        );
    }

    #[test]
    fn the_openapi_error_code_enum_lists_every_code() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.yaml");
        let text = std::fs::read_to_string(path).expect("docs/openapi.yaml is readable");
        let listed: BTreeSet<&str> = text
            .lines()
            .skip_while(|line| *line != "    ErrorCode:")
            .skip(1)
            .take_while(|line| line.starts_with("      ") || line.is_empty())
            .filter_map(|line| line.trim().strip_prefix("- "))
            .collect();
        let codes: BTreeSet<&str> = ErrorCode::ALL.iter().map(|code| code.as_str()).collect();
        assert_eq!(listed, codes, "docs/openapi.yaml's ErrorCode enum");
    }

    #[test]
    fn codes_are_distinct_snake_case() {
        let mut seen = BTreeSet::new();
        for code in ErrorCode::ALL {
            let text = code.as_str();
            assert!(
                text.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{text}"
            );
            seen.insert(text);
        }
        assert_eq!(seen.len(), ErrorCode::ALL.len(), "a code is listed twice");
    }

    #[test]
    fn a_status_alone_maps_to_the_generic_code() {
        assert_eq!(
            ErrorCode::for_status(StatusCode::BAD_REQUEST),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            ErrorCode::for_status(StatusCode::IM_A_TEAPOT),
            ErrorCode::Internal
        );
    }
}
