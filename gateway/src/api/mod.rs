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
mod nats_service;
mod rpc;
mod synthetic;
mod v1;

pub(crate) use auth::check_token;
pub(crate) use rpc::rpc_payload;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::handler::Handler;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, any, any_service, get, on, post};
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
        // The same health routes as on the API listener, with the same request ids and log.
        let health = Router::new()
            .route("/livez", json_errors(get(health::livez)))
            .route("/readyz", json_errors(get(health::readyz)))
            .layer(from_fn_with_state(state.clone(), access_log::access_log));
        (
            client
                .merge(health)
                .fallback(not_found)
                .with_state(state.clone()),
            Some(
                with_named_streams(api, state)
                    .fallback(not_found)
                    .with_state(state.clone()),
            ),
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

/// The API listener serves named streams too (the client listener always does).
fn with_named_streams(api: Router<Arc<AppState>>, state: &Arc<AppState>) -> Router<Arc<AppState>> {
    match crate::named_streams::routes(state) {
        Some(streams) => api.merge(streams),
        None => api,
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
    if let Some(streams) = crate::stream::routes(state) {
        router = router.merge(streams);
    }
    if let Some(streams) = crate::named_streams::routes(state) {
        router = router.merge(streams);
    }
    router.merge(crate::stream::client_script_routes())
}

pub(crate) fn api_routes(state: &Arc<AppState>) -> Router<Arc<AppState>> {
    let paths = &state.config.path;
    let protected = Router::new()
        .route(
            &paths.send,
            post(kuiperbelt::send).fallback(kuiperbelt::post_required),
        )
        .route(
            &paths.close,
            post(kuiperbelt::close).fallback(kuiperbelt::post_required),
        )
        .route(&paths.stats, listed_methods(kuiperbelt::stats))
        .route("/v1/send", json_errors(post(v1::send)))
        .route("/v1/send/batch", json_errors(post(v1::send_batch)))
        .route("/v1/close", json_errors(post(v1::close)))
        .route("/v1/sessions/{key}", json_errors(get(v1::session)))
        .route("/v1/cluster", json_errors(get(v1::cluster)))
        .route(
            "/v1/cluster/synthetic-sessions",
            json_errors(post(synthetic::register)),
        )
        .route("/v1/broadcast", json_errors(post(v1::broadcast)))
        .route("/v1/publish", json_errors(post(v1::publish)))
        .route("/v1/subscribe", json_errors(post(v1::subscribe)))
        .route("/v1/unsubscribe", json_errors(post(v1::unsubscribe)))
        .route("/v1/channels/{name}", json_errors(get(v1::presence)))
        .route("/v1/users/{id}", json_errors(get(v1::user)))
        .route("/v1/request", json_errors(post(v1::request)))
        .route(
            "/v1/stream-tokens",
            json_errors(post(crate::named_streams::issue_read_token)),
        )
        .route("/v1/drain", json_errors(post(health::drain)))
        .route("/metrics", json_errors(get(health::metrics)))
        .route_layer(from_fn_with_state(state.clone(), auth::require_token));
    // The RPCs check the token themselves, to refuse in their own protocol's form.
    let open = Router::new()
        .route(
            rpc::SERVICE_PATH,
            any_service(rpc::service(state))
                .layer(from_fn_with_state(state.clone(), rpc::grpc_web_text)),
        )
        .route(&paths.ping, listed_methods(kuiperbelt::ping))
        .route("/livez", json_errors(get(health::livez)))
        .route("/readyz", json_errors(get(health::readyz)));
    protected
        .merge(open)
        .layer(from_fn_with_state(state.clone(), access_log::access_log))
}

/// Serves the backend API over NATS too, when clustered (docs/nats-interface.md).
pub(crate) async fn serve_over_nats(state: &Arc<AppState>) -> Result<(), oort_router::RouterError> {
    state
        .router
        .serve_api(Arc::new(nats_service::NatsApi::new(state)))
        .await
}

/// The methods an OpenAPI 3.0 document can list, except TRACE.
const LISTED_METHODS: MethodFilter = MethodFilter::GET
    .or(MethodFilter::HEAD)
    .or(MethodFilter::POST)
    .or(MethodFilter::PUT)
    .or(MethodFilter::DELETE)
    .or(MethodFilter::PATCH)
    .or(MethodFilter::OPTIONS);

/// kuiperbelt answered `/ping` and `/stats` whatever the method. Oort answers every method the
/// contract can list and refuses the others (TRACE, whose meaning is to echo the request;
/// QUERY, CONNECT, extension methods) with a 405 and `Allow`, as RFC 9110 asks.
fn listed_methods<H, T>(handler: H) -> MethodRouter<Arc<AppState>>
where
    H: Handler<T, Arc<AppState>>,
    T: 'static,
{
    on(LISTED_METHODS, handler).fallback(kuiperbelt::method_not_listed)
}

/// Answers a wrong method with a JSON 405 rather than an empty one (axum adds `Allow`).
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
