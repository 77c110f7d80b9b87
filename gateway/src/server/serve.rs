//! The HTTP/1.1 accept loop: one task per connection, upgrades allowed, and a graceful stop
//! that lets requests in flight finish.

use std::convert::Infallible;
use std::io;
use std::time::Duration;

use axum::body::Body;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service;
use tracing::{Instrument, debug, debug_span, warn};

use super::listener::Accept;
use crate::peer::PeerAddr;

/// Largest request head (request line plus headers) accepted. kuiperbelt's `/send` names one
/// session per header line, so a send to a few thousand sessions is a few hundred KiB of head.
const MAX_HEAD_BYTES: usize = 512 << 10;
/// Most header lines in one request (hyper's default is 100; see `MAX_HEAD_BYTES`).
const MAX_HEADERS: usize = 16_384;
/// A client must send its request head within this time (slowloris protection).
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `app` on `listener` until `stop` fires, then lets each connection finish its request
/// in flight. Connection tasks are tracked by `connections`.
pub(crate) async fn serve<L: Accept>(
    listener: &L,
    app: axum::Router,
    stop: CancellationToken,
    connections: TaskTracker,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS);
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (io, peer) = match accepted {
            Ok(accepted) => {
                backoff = Duration::from_millis(5);
                accepted
            }
            Err(err) if is_per_connection(&err) => continue,
            Err(err) => {
                // Out of file descriptors or memory: wait rather than spin, and keep serving the
                // connections already open.
                warn!(error = %err, ?backoff, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(PeerAddr(peer));
            let mut app = app.clone();
            async move {
                Ok::<_, Infallible>(
                    app.call(request.map(Body::new))
                        .await
                        .unwrap_or_else(|never| match never {}),
                )
            }
        });
        let connection = builder
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        let stop = stop.clone();
        connections.spawn(
            async move {
                tokio::pin!(connection);
                let result = tokio::select! {
                    result = connection.as_mut() => result,
                    () = stop.cancelled() => {
                        connection.as_mut().graceful_shutdown();
                        connection.await
                    }
                };
                if let Err(err) = result {
                    debug!(error = %err, "HTTP connection ended with an error");
                }
            }
            .instrument(debug_span!("http", peer = ?peer)),
        );
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
