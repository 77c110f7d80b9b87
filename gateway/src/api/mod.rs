//! Routes: the client listener (the connect path) and the backend API (kuiperbelt's `/send`,
//! `/close`, `/ping`, `/stats`, Oort's `/v1/*`, metrics and health).
//!
//! With a separate API listener, the client listener serves only the connect path and health,
//! so clients can never reach the backend API.

mod access_log;
mod auth;
mod error;
mod health;
mod kuiperbelt;
mod v1;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, any, get, post};
use http::StatusCode;

use crate::connect;
use crate::state::AppState;
use error::ApiError;

/// The client router and, when the API has its own listener, the API router. Without one, the
/// client router serves both.
pub(crate) fn routes(state: &Arc<AppState>, separate_api: bool) -> (Router, Option<Router>) {
    let client = client_routes(state);
    let api = api_routes(state);
    if separate_api {
        let health = Router::new()
            .route("/livez", get(health::livez))
            .route("/readyz", get(health::readyz));
        (
            client
                .merge(health)
                .fallback(not_found)
                .with_state(state.clone()),
            Some(api.fallback(not_found).with_state(state.clone())),
        )
    } else {
        (
            client
                .merge(api)
                .fallback(not_found)
                .with_state(state.clone()),
            None,
        )
    }
}

fn client_routes(state: &Arc<AppState>) -> Router<Arc<AppState>> {
    let path = &state.config.path.connect;
    let mut router = Router::new().route(path, any(connect::handle));
    // A path ending in `/` matches its whole subtree, as Go's ServeMux does (Engine.IO clients
    // connect to `/socket.io/?EIO=...`).
    if path.ends_with('/') {
        router = router.route(&format!("{path}{{*rest}}"), any(connect::handle));
    }
    router
}

fn api_routes(state: &Arc<AppState>) -> Router<Arc<AppState>> {
    let paths = &state.config.path;
    let protected = Router::new()
        .route(&paths.send, any(kuiperbelt::send))
        .route(&paths.close, any(kuiperbelt::close))
        .route(&paths.stats, any(kuiperbelt::stats))
        .route("/v1/send", json_errors(post(v1::send)))
        .route("/v1/send/batch", json_errors(post(v1::send_batch)))
        .route("/v1/close", json_errors(post(v1::close)))
        .route("/v1/sessions/{key}", json_errors(get(v1::session)))
        .route("/v1/cluster", json_errors(get(v1::cluster)))
        .route("/v1/broadcast", json_errors(post(v1::broadcast)))
        .route("/v1/drain", json_errors(post(health::drain)))
        .route("/metrics", get(health::metrics))
        .route_layer(from_fn_with_state(state.clone(), auth::require_token));
    let open = Router::new()
        .route(&paths.ping, any(kuiperbelt::ping))
        .route("/livez", get(health::livez))
        .route("/readyz", get(health::readyz));
    protected
        .merge(open)
        .layer(from_fn_with_state(state.clone(), access_log::access_log))
}

/// Answers a wrong method with a JSON 405 rather than an empty one.
fn json_errors(route: MethodRouter<Arc<AppState>>) -> MethodRouter<Arc<AppState>> {
    route.fallback(|request: Request| async move {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{} is not allowed here", request.method()),
        )
    })
}

async fn not_found(request: Request) -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no route for {} {}", request.method(), request.uri().path()),
    )
    .into_response()
}
