//! gRPC-Web's text form (`application/grpc-web-text`, what browsers use where binary bodies
//! are awkward), which connectrpc does not speak: the request's base64 body becomes the binary
//! form on the way in, and each chunk of the answer is base64-encoded on the way out (padded
//! on its own, as the gRPC-Web protocol allows). Everything else passes untouched.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, StatusCode};
use http_body_util::BodyExt;
use std::sync::Arc;

use crate::api::error::read_body;
use crate::state::AppState;

const TEXT: &str = "application/grpc-web-text";
const BINARY: HeaderValue = HeaderValue::from_static("application/grpc-web+proto");
const TEXT_ANSWER: HeaderValue = HeaderValue::from_static("application/grpc-web-text+proto");

pub(crate) async fn grpc_web_text(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let is_text = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value == TEXT || value == "application/grpc-web-text+proto");
    if !is_text {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    // Base64 takes 4 bytes for every 3.
    let limit = state.config.limits.max_send_body.saturating_mul(4) / 3 + 4;
    let encoded = match read_body(body, limit).await {
        Ok(encoded) => encoded,
        Err(_) => return refusal(8, "the request body exceeds limits.max_send_body"),
    };
    let Some(decoded) = decode_chunks(&encoded) else {
        return refusal(3, "the gRPC-Web text body is not base64");
    };
    parts.headers.insert(CONTENT_TYPE, BINARY);
    let mut response = next
        .run(Request::from_parts(parts, Body::from(decoded)))
        .await;
    response.headers_mut().insert(CONTENT_TYPE, TEXT_ANSWER);
    response.map(|body| {
        Body::new(
            body.map_frame(|frame| {
                frame.map_data(|chunk: Bytes| Bytes::from(STANDARD.encode(chunk)))
            }),
        )
    })
}

/// Decodes base64 that may be several padded pieces one after the other (a client may send
/// each message encoded on its own); `None` when it is not base64.
pub(crate) fn decode_chunks(encoded: &[u8]) -> Option<Vec<u8>> {
    let text: Vec<u8> = encoded
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if !text.len().is_multiple_of(4) {
        return None;
    }
    let mut decoded = Vec::with_capacity(text.len() / 4 * 3);
    let mut start = 0;
    for (index, quad) in text.chunks(4).enumerate() {
        // A piece ends with the quantum that carries padding.
        if quad.contains(&b'=') {
            let end = (index + 1) * 4;
            decoded.extend(STANDARD.decode(&text[start..end]).ok()?);
            start = end;
        }
    }
    decoded.extend(STANDARD.decode(&text[start..]).ok()?);
    Some(decoded)
}

/// A gRPC-Web answer with no message: the status in the head, as gRPC's "trailers-only".
fn refusal(code: u8, message: &'static str) -> Response {
    let mut response = (StatusCode::OK, [(CONTENT_TYPE, TEXT_ANSWER)]).into_response();
    let headers = response.headers_mut();
    headers.insert("grpc-status", HeaderValue::from(u16::from(code)));
    headers.insert("grpc-message", HeaderValue::from_static(message));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_padded_on_their_own_decode_as_one() {
        let joined = format!("{}{}", STANDARD.encode(b"ab"), STANDARD.encode(b"cde"));
        assert_eq!(decode_chunks(joined.as_bytes()).unwrap(), b"abcde");
        assert_eq!(
            decode_chunks(STANDARD.encode(b"abc").as_bytes()).unwrap(),
            b"abc"
        );
        assert_eq!(decode_chunks(b"").unwrap(), b"");
        assert!(decode_chunks(b"abc").is_none());
        assert!(decode_chunks(b"a!c=").is_none());
    }
}
