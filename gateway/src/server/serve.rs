//! The accept loop and one HTTP connection: one task per connection, upgrades allowed, head
//! limits and timeouts, and a graceful stop that lets requests in flight finish. Clients speak
//! HTTP/1.1; the backend API also HTTP/2 over cleartext with prior knowledge (h2c), which gRPC
//! needs and which lets one backend connection carry many calls at once.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use http::StatusCode;
use http::header::{CONNECTION, HeaderValue};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tower_service::Service;
use tracing::warn;

use super::listener::Accept;
use super::unread_body::TrackedBody;
use crate::admission::PeerTicket;
use crate::peer::PeerAddr;

/// Most header lines in a backend API request: kuiperbelt's `/send` names one session per
/// header line (hyper's default is 100, which is what client requests keep).
const API_MAX_HEADERS: usize = 16_384;
/// hyper's smallest read buffer.
const SMALLEST_BUFFER: usize = 8192;

/// How a connection's requests are read.
pub(crate) struct HeadLimits {
    /// Largest request head.
    pub max_head: usize,
    /// Time allowed for each request head (and between requests on a kept-alive connection).
    pub timeout: Duration,
    /// Most header lines (`None`: hyper's 100, which hyper keeps on the stack).
    pub max_headers: Option<usize>,
}

impl HeadLimits {
    /// The backend API's: kuiperbelt's `/send` with thousands of session headers fits.
    pub(crate) fn api(max_head: usize, timeout: Duration) -> Self {
        Self {
            max_head,
            timeout,
            max_headers: Some(API_MAX_HEADERS),
        }
    }

    pub(crate) fn builder(&self) -> http1::Builder {
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.timeout)
            .max_buf_size(self.max_head.max(SMALLEST_BUFFER))
            .max_header_size(self.max_head);
        if let Some(max_headers) = self.max_headers {
            builder.max_headers(max_headers);
        }
        builder
    }
}

/// The backend API's connections: HTTP/1.1 with [`HeadLimits::api`], or h2c when the client
/// opens with HTTP/2's preface, with the same bound on a request's headers.
pub(crate) type ApiHttp = auto::Builder<TokioExecutor>;

/// Calls in flight on one h2c connection.
const API_MAX_STREAMS: u32 = 256;

impl HeadLimits {
    pub(crate) fn api_builder(&self) -> ApiHttp {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.timeout)
            .max_buf_size(self.max_head.max(SMALLEST_BUFFER));
        if let Some(max_headers) = self.max_headers {
            builder.http1().max_headers(max_headers);
        }
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(API_MAX_STREAMS)
            .max_header_list_size(u32::try_from(self.max_head).unwrap_or(u32::MAX));
        builder
    }
}

/// Accepts connections until `stop` fires and hands each to `on_accept`. Accept errors that
/// concern the listener (out of file descriptors) are waited out, never fatal.
pub(crate) async fn accept_loop<L: Accept>(
    listener: &L,
    stop: &CancellationToken,
    mut on_accept: impl FnMut(L::Io, Option<SocketAddr>),
) {
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((io, peer)) => {
                backoff = Duration::from_millis(5);
                on_accept(io, peer);
            }
            Err(err) if is_per_connection(&err) => {}
            Err(err) => {
                // Out of file descriptors or memory: wait rather than spin, and keep serving the
                // connections already open.
                warn!(error = %err, ?backoff, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Serves HTTP on one connection until it ends, is upgraded (the upgraded connection then
/// lives on in its own task), or `stop` fires and the request in flight has been answered.
/// Every request carries the peer's address and, on the client listener, its admission. With
/// `one_request`, every answer but a 101 says `Connection: close` (hyper's own `keep_alive`
/// switch would say it on the 101 too, which breaks the upgrade).
pub(crate) async fn serve_http<I>(
    builder: &http1::Builder,
    one_request: bool,
    io: I,
    app: axum::Router,
    peer: Option<SocketAddr>,
    ticket: Option<PeerTicket>,
    stop: &CancellationToken,
) -> Result<(), hyper::Error>
where
    I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        tag(&mut request, peer, ticket.as_ref());
        let mut app = app.clone();
        async move {
            let mut response = app
                .call(request.map(Body::new))
                .await
                .unwrap_or_else(|never| match never {});
            if one_request && response.status() != StatusCode::SWITCHING_PROTOCOLS {
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            Ok::<_, Infallible>(response)
        }
    });
    let connection = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => result,
        () = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    }
}

/// [`serve_http`] for the backend API: HTTP/1.1 or h2c, kept alive.
pub(crate) async fn serve_api_http<I>(
    builder: &ApiHttp,
    io: I,
    app: axum::Router,
    peer: Option<SocketAddr>,
    ticket: Option<PeerTicket>,
    stop: &CancellationToken,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        tag(&mut request, peer, ticket.as_ref());
        let mut app = app.clone();
        async move {
            // HTTP/2 resets a stream on its own; only HTTP/1.1 must close after an unread body.
            let (parts, body) = request.into_parts();
            let (body, finished) = if parts.version < http::Version::HTTP_2 {
                let (body, finished) = TrackedBody::new(body);
                (Body::new(body), Some(finished))
            } else {
                (Body::new(body), None)
            };
            let mut response = app
                .call(hyper::Request::from_parts(parts, body))
                .await
                .unwrap_or_else(|never| match never {});
            if finished.is_some_and(|finished| !finished.load(Ordering::Acquire)) {
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            Ok::<_, Infallible>(response)
        }
    });
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => result,
        () = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    }
}

/// Gives a request its peer's address and, on the client listener, its admission.
fn tag(
    request: &mut hyper::Request<Incoming>,
    peer: Option<SocketAddr>,
    ticket: Option<&PeerTicket>,
) {
    request.extensions_mut().insert(PeerAddr(peer));
    if let Some(ticket) = ticket {
        request.extensions_mut().insert(ticket.clone());
    }
}

/// Errors that concern only the connection being accepted.
fn is_per_connection(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}
