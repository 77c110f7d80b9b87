//! SSE responses served without hyper's connection: the request head is parsed here
//! (httparse, as hyper does), the same axum routes answer it, and the response is written
//! straight to the socket, chunked, one event at a time.
//!
//! Why: an SSE client holds its response for a minute at a time, idle most of it, and a hyper
//! HTTP/1 connection keeps an 8 KiB read buffer and an 8 KiB write buffer for its whole life.
//! That made an idle SSE client cost four times an idle WebSocket (whose connection leaves
//! hyper at the upgrade). Here an idle SSE client costs its session and its stream's state.
//! One request per connection (`Connection: close`): SSE responses are long, and the client's
//! other requests use their own connections.

use std::net::SocketAddr;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower_service::Service;

use crate::admission::PeerTicket;
use crate::peer::PeerAddr;

/// Headers a request head may carry here (browsers send about 15).
const MAX_HEADERS: usize = 64;

/// True when `first` (the start of a request) asks for an SSE read: `GET` with `live=sse`.
pub(crate) fn is_sse_request(first: &[u8]) -> bool {
    let line = first.split(|b| *b == b'\n').next().unwrap_or_default();
    line.starts_with(b"GET ")
        && line
            .split(|b| *b == b' ')
            .nth(1)
            .and_then(|target| std::str::from_utf8(target).ok())
            .and_then(|target| target.split_once('?'))
            .is_some_and(|(_, query)| query.split('&').any(|pair| pair == "live=sse"))
}

/// What a request on this path may cost, and until when its head may take to arrive.
pub(crate) struct HeadBounds {
    pub max_head: usize,
    pub deadline: Instant,
}

/// Serves the one SSE request on `io`, whose first bytes (`first`) were already read.
pub(crate) async fn serve<I>(
    mut app: axum::Router,
    mut io: I,
    first: Bytes,
    bounds: HeadBounds,
    peer: Option<SocketAddr>,
    ticket: PeerTicket,
    stop: &CancellationToken,
) -> std::io::Result<()>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let request = match read_request(&mut io, first, &bounds).await? {
        Ok(mut request) => {
            request.extensions_mut().insert(PeerAddr(peer));
            request.extensions_mut().insert(ticket);
            request
        }
        Err(status) => {
            let response = Response::builder()
                .status(status)
                .body(Body::empty())
                .unwrap_or_default();
            return write_response(&mut io, response, stop).await;
        }
    };
    let response = app
        .call(request)
        .await
        .unwrap_or_else(|never| match never {});
    write_response(&mut io, response, stop).await
}

/// Reads and parses the request head; a status when it is too large, malformed or has a body.
async fn read_request<I: AsyncRead + Unpin>(
    io: &mut I,
    first: Bytes,
    bounds: &HeadBounds,
) -> std::io::Result<Result<Request<Body>, StatusCode>> {
    let mut head = BytesMut::from(&first[..]);
    let end = loop {
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        if head.len() >= bounds.max_head {
            return Ok(Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));
        }
        head.reserve(1024);
        let read = tokio::time::timeout_at(bounds.deadline, io.read_buf(&mut head))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "head timeout"))??;
        if read == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    };
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(_)) = parsed.parse(&head[..end]) else {
        return Ok(Err(StatusCode::BAD_REQUEST));
    };
    let mut request = Request::builder()
        .method(parsed.method.unwrap_or("GET"))
        .uri(parsed.path.unwrap_or("/"));
    for header in parsed.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(header.name.as_bytes()),
            HeaderValue::from_bytes(header.value),
        ) else {
            return Ok(Err(StatusCode::BAD_REQUEST));
        };
        if (name == CONTENT_LENGTH && value != "0") || name == TRANSFER_ENCODING {
            // A GET with a body: not something an SSE client sends.
            return Ok(Err(StatusCode::BAD_REQUEST));
        }
        request = request.header(name, value);
    }
    Ok(request
        .body(Body::empty())
        .map_err(|_| StatusCode::BAD_REQUEST))
}

/// Writes `response`: its head, then its body, chunked unless its length is known, each frame
/// as soon as it is ready; stops early when the gateway stops.
async fn write_response<I: AsyncWrite + Unpin>(
    io: &mut I,
    response: Response<Body>,
    stop: &CancellationToken,
) -> std::io::Result<()> {
    let (parts, mut body) = response.into_parts();
    let length = axum::body::HttpBody::size_hint(&body).exact();
    let mut head = Vec::with_capacity(512);
    head.extend_from_slice(
        format!(
            "HTTP/1.1 {} {}\r\n",
            parts.status.as_u16(),
            parts.status.canonical_reason().unwrap_or("")
        )
        .as_bytes(),
    );
    for (name, value) in &parts.headers {
        if name == CONNECTION || name == CONTENT_LENGTH || name == TRANSFER_ENCODING {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    match length {
        Some(length) => head.extend_from_slice(format!("content-length: {length}\r\n").as_bytes()),
        None => head.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    head.extend_from_slice(b"connection: close\r\n\r\n");
    io.write_all(&head).await?;
    io.flush().await?;
    drop(head);
    loop {
        let frame = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            frame = body.frame() => frame,
        };
        let Some(Ok(frame)) = frame else { break };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        if length.is_some() {
            io.write_all(&data).await?;
        } else {
            // One write per event: size line, data and CRLF together.
            let mut chunk = Vec::with_capacity(data.len() + 20);
            chunk.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
            chunk.extend_from_slice(&data);
            chunk.extend_from_slice(b"\r\n");
            io.write_all(&chunk).await?;
        }
        io.flush().await?;
    }
    if length.is_none() {
        io.write_all(b"0\r\n\r\n").await?;
    }
    io.flush().await?;
    io.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_get_with_live_sse_takes_this_path() {
        assert!(is_sse_request(
            b"GET /stream/k?offset=-1&live=sse HTTP/1.1\r\n"
        ));
        assert!(is_sse_request(
            b"GET /stream/k?live=sse&offset=now HTTP/1.1\r\n"
        ));
        assert!(!is_sse_request(
            b"GET /stream/k?offset=-1&live=long-poll HTTP/1.1\r\n"
        ));
        assert!(!is_sse_request(b"POST /stream/k?live=sse HTTP/1.1\r\n"));
        assert!(!is_sse_request(b"GET /stream/k?live=sses HTTP/1.1\r\n"));
    }
}
