//! The backend API's own listener (`api_listen`): no admission, the backend API's head limits
//! (`limits.api_max_head`, `limits.api_head_timeout`), connections kept alive, HTTP/1.1 or
//! h2c.

use std::net::SocketAddr;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, debug_span};

use super::Connection;
use super::serve::{ApiHttp, HeadLimits, serve_api_http};
use crate::state::AppState;

/// What every connection of the API listener is served with.
pub(crate) struct ApiListener {
    app: axum::Router,
    http: ApiHttp,
}

impl ApiListener {
    pub(crate) fn new(app: axum::Router, state: &AppState) -> Self {
        let limits = &state.config.limits;
        Self {
            app,
            http: HeadLimits::api(limits.api_max_head, limits.api_head_timeout.0).api_builder(),
        }
    }

    /// Spawns the task serving one accepted connection on `connections`.
    pub(crate) fn accept(
        &self,
        io: Box<dyn Connection>,
        peer: Option<SocketAddr>,
        stop: &CancellationToken,
        connections: &TaskTracker,
    ) {
        let (http, app, stop) = (self.http.clone(), self.app.clone(), stop.clone());
        connections.spawn(
            async move {
                let result = serve_api_http(&http, io, app, peer, None, &stop).await;
                if let Err(err) = result {
                    debug!(error = %err, "HTTP connection ended with an error");
                }
            }
            .instrument(debug_span!("http", peer = ?peer)),
        );
    }
}
