//! The backend API as a NATS service (docs/nats-interface.md): each operation on
//! `oort.<cluster>.api.<operation>` runs the same handler as its HTTP route, called in process,
//! so both surfaces take the same payloads and give the same statuses and errors.

use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use oort_router::{ApiAnswer, ApiService};
use serde::Deserialize;
use tower_service::Service;

use crate::error_code::{ErrorCode, error_body};
use crate::state::AppState;

/// Calls the API router for NATS requests.
pub(crate) struct NatsApi {
    routes: axum::Router,
    token: Option<String>,
}

impl NatsApi {
    pub(crate) fn new(state: &Arc<AppState>) -> Self {
        let token = (!state.config.api_token.is_empty()).then(|| state.config.api_token.clone());
        Self {
            routes: super::api_routes(state).with_state(state.clone()),
            token,
        }
    }
}

/// The body of the read-only operations, which name what they read.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Lookup {
    session: Option<String>,
    channel: Option<String>,
    user: Option<String>,
    limit: Option<usize>,
    after: Option<String>,
}

fn encoded(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes()).collect()
}

/// The HTTP method and path of `operation`, or an error answer.
fn route(operation: &str, body: &Bytes) -> Result<(Method, String, Bytes), (u16, Bytes)> {
    let post = |path: &str| Ok((Method::POST, path.to_owned(), body.clone()));
    let lookup = || -> Result<Lookup, (u16, Bytes)> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Lookup::default());
        }
        serde_json::from_slice(body).map_err(|err| error(400, &format!("invalid JSON: {err}")))
    };
    let get = |path: String| Ok((Method::GET, path, Bytes::new()));
    match operation {
        "send" => post("/v1/send"),
        "send_batch" => post("/v1/send/batch"),
        "close" => post("/v1/close"),
        "broadcast" => post("/v1/broadcast"),
        "publish" => post("/v1/publish"),
        "subscribe" => post("/v1/subscribe"),
        "unsubscribe" => post("/v1/unsubscribe"),
        "request" => post("/v1/request"),
        "cluster" => get("/v1/cluster".to_owned()),
        "session" => match lookup()?.session {
            Some(key) => get(format!("/v1/sessions/{}", encoded(&key))),
            None => Err(error(400, "session: required")),
        },
        "user" => match lookup()?.user {
            Some(user) => get(format!("/v1/users/{}", encoded(&user))),
            None => Err(error(400, "user: required")),
        },
        "channel" => {
            let query = lookup()?;
            let Some(channel) = query.channel else {
                return Err(error(400, "channel: required"));
            };
            let mut path = format!("/v1/channels/{}?", encoded(&channel));
            if let Some(limit) = query.limit {
                path.push_str(&format!("limit={limit}&"));
            }
            if let Some(after) = query.after {
                path.push_str(&format!("after={}", encoded(&after)));
            }
            get(path)
        }
        other => Err(error(
            404,
            &format!("no operation {other:?} (see docs/nats-interface.md)"),
        )),
    }
}

/// An answer refused before any route runs, in the routes' own error shape (`error`, `code`).
fn error(status: u16, message: &str) -> (u16, Bytes) {
    let code = ErrorCode::for_status(StatusCode::from_u16(status).unwrap_or(StatusCode::OK));
    let body = serde_json::Value::Object(error_body(code, message)).to_string();
    (status, Bytes::from(body))
}

impl ApiService for NatsApi {
    fn call(&self, operation: String, request_id: Option<String>, body: Bytes) -> ApiAnswer {
        let mut routes = self.routes.clone();
        let token = self.token.clone();
        Box::pin(async move {
            let (method, path, body) = match route(&operation, &body) {
                Ok(route) => route,
                Err(answer) => return answer,
            };
            let mut request = Request::builder()
                .method(method)
                .uri(path)
                .header(http::header::CONTENT_TYPE, "application/json");
            // NATS permissions authorized the caller; the HTTP routes still ask for the token.
            if let Some(token) = token {
                request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
            }
            if let Some(id) = request_id {
                request = request.header("x-request-id", id);
            }
            let Ok(request) = request.body(Body::from(body)) else {
                return error(400, "the operation's arguments do not make a request");
            };
            let response = match routes.call(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            let status = response.status();
            match response.into_body().collect().await {
                Ok(collected) => (status.as_u16(), collected.to_bytes()),
                Err(_) => error(
                    StatusCode::INTERNAL_SERVER_ERROR.as_u16(),
                    "the answer could not be read",
                ),
            }
        })
    }
}
