//! The public listener: every connection goes through admission (per address at accept, then
//! room in `limits.handshake_memory`), its first request line is read, and hyper serves it with
//! the client head limits, or, when the backend API shares this listener and the first request
//! is not for the connect path, with the API's.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, debug_span};

use super::Connection;
use super::request_line::{is_connect_request, is_stream_request, read_first_line};
use super::rewind::Rewind;
use super::serve::{ApiHttp, HeadLimits, serve_api_http, serve_http};
use crate::admission::{Accepted, AddressKey, PeerTicket, RefusalReason};
use crate::state::AppState;

/// What every connection of the client listener is served with.
pub(crate) struct ClientListener {
    app: axum::Router,
    state: Arc<AppState>,
    /// The backend API is served here too (no `api_listen`).
    shares_api: bool,
    client_http: HeadLimits,
    api_http: ApiHttp,
}

impl ClientListener {
    pub(crate) fn new(app: axum::Router, state: Arc<AppState>, shares_api: bool) -> Self {
        let limits = &state.config.limits;
        let client_http = HeadLimits {
            max_head: limits.client_max_head,
            timeout: limits.client_head_timeout.0,
            max_headers: None,
        };
        let api_http =
            HeadLimits::api(limits.api_max_head, limits.api_head_timeout.0).api_builder();
        Self {
            app,
            state,
            shares_api,
            client_http,
            api_http,
        }
    }

    /// Admits (or refuses) one accepted connection and spawns its task on `connections`.
    pub(crate) fn accept(
        self: &Arc<Self>,
        io: Box<dyn Connection>,
        peer: Option<SocketAddr>,
        stop: &CancellationToken,
        connections: &TaskTracker,
    ) {
        let span = debug_span!("http", peer = ?peer);
        match self.state.admission.accept(peer) {
            Ok(accepted) => {
                let this = self.clone();
                let stop = stop.clone();
                connections.spawn(
                    async move { this.serve(io, peer, accepted, stop).await }.instrument(span),
                );
            }
            Err(refusal) => {
                let this = self.clone();
                connections.spawn(
                    async move { this.state.admission.answer(io, refusal).await }.instrument(span),
                );
            }
        }
    }

    /// This task lives as long as the connection's HTTP part, and its future keeps room for
    /// its largest await: hyper's connection is boxed, so a connection that waits for room or
    /// for its first byte costs only a small task.
    async fn serve(
        self: Arc<Self>,
        mut io: Box<dyn Connection>,
        peer: Option<SocketAddr>,
        accepted: Accepted,
        stop: CancellationToken,
    ) {
        let admission = &self.state.admission;
        let head_timeout = self.state.config.limits.client_head_timeout.0;
        let reserving = admission.reserve_handshake(Instant::now() + head_timeout, peer);
        let silent = match unless_stopped(&stop, reserving).await {
            Some(Ok(reservation)) => reservation,
            Some(Err(refusal)) => return Box::pin(admission.answer(io, refusal)).await,
            None => return,
        };
        // The head timeout runs from here; time spent waiting for room is added to it, since
        // that wait is not the client's doing.
        let mut deadline = Instant::now() + head_timeout;
        let first_byte = async {
            let waiting = &mut *io;
            std::future::poll_fn(move |cx| waiting.poll_first_byte(cx)).await
        };
        if !self.in_time(first_byte, deadline, peer, &stop).await {
            return;
        }
        let waiting_since = Instant::now();
        let head = match unless_stopped(
            &stop,
            admission.reserve_head(waiting_since + head_timeout, peer),
        )
        .await
        {
            Some(Ok(reservation)) => reservation,
            Some(Err(refusal)) => return Box::pin(admission.answer(io, refusal)).await,
            None => return,
        };
        deadline += waiting_since.elapsed();
        let limit = self.state.config.limits.client_max_head;
        let mut first = None;
        let reading = async {
            first = read_first_line(&mut io, limit).await?;
            Ok(())
        };
        if !self.in_time(Box::pin(reading), deadline, peer, &stop).await {
            return;
        }
        let Some(first) = first else { return };
        let connect_path = &self.state.config.path.connect;
        let is_stream = is_stream_request(&first, &self.state.config.session.stream_path);
        let is_api = self.shares_api && !is_stream && !is_connect_request(&first, connect_path);
        if is_stream {
            // Clients of the HTTP transports: a long-poll or SSE response lasts long, so it
            // must not hold the handshake's room; the per-address slot stays.
            drop((silent, head));
            let ticket = match admission.admit_client(accepted) {
                Ok(ticket) => ticket,
                Err(refusal) => {
                    return Box::pin(admission.answer(Rewind::new(first, io), refusal)).await;
                }
            };
            if super::sse_direct::is_sse_request(&first) {
                let bounds = super::sse_direct::HeadBounds {
                    max_head: self.state.config.limits.client_max_head,
                    deadline,
                };
                Box::pin(self.serve_sse(io, first, bounds, peer, ticket, &stop)).await;
            } else {
                let io = Rewind::new(first, io);
                Box::pin(self.serve_streams(io, peer, ticket, &stop)).await;
            }
            return;
        }
        let io = Rewind::new(first, io);
        if is_api {
            // The backend's connections: the large head limit, under their own count.
            drop((silent, head));
            let ticket = admission.admit_backend(accepted);
            Box::pin(self.serve_api(io, peer, ticket, &stop)).await;
            return;
        }
        match admission.admit_client(accepted) {
            Ok(ticket) => Box::pin(self.serve_client(io, peer, ticket, deadline, &stop)).await,
            Err(refusal) => Box::pin(admission.answer(io, refusal)).await,
        }
        drop((silent, head));
    }

    /// Runs `step` (a read of the head's start) until `deadline`; false when the connection
    /// should just be closed: the peer left, failed, or was too slow (which is counted).
    async fn in_time(
        &self,
        step: impl Future<Output = std::io::Result<()>>,
        deadline: Instant,
        peer: Option<SocketAddr>,
        stop: &CancellationToken,
    ) -> bool {
        match unless_stopped(stop, tokio::time::timeout_at(deadline, step)).await {
            Some(Ok(Ok(()))) => true,
            Some(Err(_elapsed)) => {
                self.count(RefusalReason::HeadTimeout, peer);
                false
            }
            Some(Ok(Err(_))) | None => false,
        }
    }

    /// A connect (or anything on a listener without the backend API): one request, with the
    /// client head limit and what is left of the head timeout, which counts from accept.
    async fn serve_client<I>(
        &self,
        io: I,
        peer: Option<SocketAddr>,
        ticket: PeerTicket,
        deadline: Instant,
        stop: &CancellationToken,
    ) where
        I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let mut http = self.client_http.builder();
        http.header_read_timeout(deadline.saturating_duration_since(Instant::now()));
        // A connect is one request: upgraded, or refused and done. Closing after it gives the
        // handshake's reservation back at once.
        let result = serve_http(&http, true, io, self.app.clone(), peer, Some(ticket), stop).await;
        self.ended(result, peer, true);
    }

    /// Counts a client connection that ended on a head too large, or too slow when
    /// `timeouts_refuse` (a keep-alive connection that stays idle between requests merely ends).
    fn ended(
        &self,
        result: Result<(), hyper::Error>,
        peer: Option<SocketAddr>,
        timeouts_refuse: bool,
    ) {
        match result {
            Err(err) if err.is_parse_too_large() => self.count(RefusalReason::HeadTooLarge, peer),
            Err(err) if err.is_timeout() && timeouts_refuse => {
                self.count(RefusalReason::HeadTimeout, peer);
            }
            Err(err) => debug!(error = %err, "HTTP connection ended with an error"),
            Ok(()) => {}
        }
    }

    /// A client of the HTTP transports: requests on one connection one after another (polls,
    /// messages), each head under the client head limits.
    async fn serve_streams<I>(
        &self,
        io: I,
        peer: Option<SocketAddr>,
        ticket: PeerTicket,
        stop: &CancellationToken,
    ) where
        I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let http = self.client_http.builder();
        let io = self.write_deadline(io);
        let result = serve_http(&http, false, io, self.app.clone(), peer, Some(ticket), stop).await;
        self.ended(result, peer, false);
    }

    /// `io` whose writes give up on a client that stops reading, after the slow-consumer
    /// timeout WebSockets get.
    fn write_deadline<I>(&self, io: I) -> super::write_deadline::WriteDeadline<I> {
        let limit = self.state.config.queue.slow_consumer_timeout.0;
        super::write_deadline::WriteDeadline::new(io, limit)
    }

    /// An SSE read, served without hyper's connection buffers (`sse_direct`).
    async fn serve_sse(
        &self,
        io: Box<dyn Connection>,
        first: bytes::Bytes,
        bounds: super::sse_direct::HeadBounds,
        peer: Option<SocketAddr>,
        ticket: PeerTicket,
        stop: &CancellationToken,
    ) {
        let io = self.write_deadline(io);
        let app = self.app.clone();
        if let Err(err) = super::sse_direct::serve(app, io, first, bounds, peer, ticket, stop).await
        {
            debug!(error = %err, "SSE connection ended with an error");
        }
    }

    /// A backend API connection on the shared listener, once it has a turn under
    /// `limits.shared_api_connections`.
    async fn serve_api<I>(
        &self,
        io: I,
        peer: Option<SocketAddr>,
        ticket: PeerTicket,
        stop: &CancellationToken,
    ) where
        I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let admission = &self.state.admission;
        let deadline = Instant::now() + self.state.config.limits.api_head_timeout.0;
        let turn = tokio::select! {
            biased;
            () = stop.cancelled() => return,
            turn = admission.shared_api_turn(deadline, peer) => turn,
        };
        let _turn = match turn {
            Ok(turn) => turn,
            Err(refusal) => return admission.answer(io, refusal).await,
        };
        let app = self.app.clone();
        let result = serve_api_http(&self.api_http, io, app, peer, Some(ticket), stop).await;
        if let Err(err) = result {
            debug!(error = %err, "HTTP connection ended with an error");
        }
    }

    fn count(&self, reason: RefusalReason, peer: Option<SocketAddr>) {
        let address = peer.map(|peer| AddressKey::of(peer.ip()));
        self.state.admission.count(reason, address.as_ref());
    }
}

/// `work`'s result, or `None` once the gateway stops.
async fn unless_stopped<T>(stop: &CancellationToken, work: impl Future<Output = T>) -> Option<T> {
    tokio::select! {
        biased;
        () = stop.cancelled() => None,
        done = work => Some(done),
    }
}
