//! The control endpoint the demo page's restart buttons call.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tracing::{info, warn};

use super::nodes::Supervisor;

/// `GET /nodes`.
pub(super) async fn list_nodes(State(supervisor): State<Arc<Supervisor>>) -> Response {
    let mut nodes = Vec::new();
    for node in &supervisor.nodes {
        let (state, pid) = match node.process.try_lock() {
            Ok(process) => match process.as_ref() {
                Some(running) if running.has_exited() => ("exited", None),
                Some(running) => (node.state(), Some(running.pid)),
                None => (node.state(), None),
            },
            // Locked: being started, stopped or restarted.
            Err(_) => (node.state(), None),
        };
        nodes.push(json!({ "id": node.id, "url": node.url(), "state": state, "pid": pid }));
    }
    axum::Json(json!({ "nodes": nodes })).into_response()
}

/// `POST /nodes/{id}/restart`: answers `202` at once and restarts the node in the background.
pub(super) async fn restart_node(
    State(supervisor): State<Arc<Supervisor>>,
    Path(id): Path<String>,
) -> Response {
    let Some(node) = supervisor.node(&id).cloned() else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({ "error": "no such node" })),
        )
            .into_response();
    };
    let Ok(mut process) = node.process.clone().try_lock_owned() else {
        return (
            StatusCode::CONFLICT,
            axum::Json(json!({ "error": "the node is already restarting" })),
        )
            .into_response();
    };
    node.set_state("stopping");
    tokio::spawn(async move {
        info!(node = %node.id, "restarting demo node");
        if let Some(running) = process.take() {
            running.stop(&node.id).await;
        }
        match node.spawn().await {
            Ok(running) => {
                info!(node = %node.id, url = %node.url(), "demo node restarted");
                *process = Some(running);
            }
            Err(err) => warn!(node = %node.id, error = %err, "cannot restart the demo node"),
        }
    });
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({ "restarting": id })),
    )
        .into_response()
}

/// Lets the nodes' pages (other origins: other ports) call the control endpoint.
pub(super) async fn cors(
    State(supervisor): State<Arc<Supervisor>>,
    request: Request,
    next: Next,
) -> Response {
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|origin| origin.to_str().ok())
        .filter(|origin| {
            let port = origin
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok());
            port.is_some_and(|port| supervisor.nodes.iter().any(|node| node.port() == port))
        })
        .and_then(|origin| HeaderValue::from_str(origin).ok());
    let mut response = if request.method() == Method::OPTIONS {
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(origin) = origin {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, OPTIONS"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("Content-Type"),
        );
    }
    response
}
