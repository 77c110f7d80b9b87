//! The demo's chat backend: a plain HTTP application, exactly what a real backend would be.
//! It authenticates nobody (any name is welcome), remembers who is online from the establish
//! and close callbacks, and broadcasts every message with `/v1/broadcast`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use serde_json::json;
use tracing::warn;

const SESSION_HEADER: &str = "X-Kuiperbelt-Session";

/// Who is online, and who has been accepted but is not connected yet.
pub(crate) struct Chat {
    names: Mutex<BTreeMap<String, String>>,
    pending: Mutex<BTreeMap<String, String>>,
    http: reqwest::Client,
    broadcast_url: String,
}

impl Chat {
    /// The chat, talking to the gateway's API at `gateway_api` (plain http on loopback).
    pub(crate) fn new(gateway_api: &str) -> anyhow::Result<Arc<Self>> {
        let http = crate::tls::client_builder(rustls::RootCertStore::empty())?.build()?;
        Ok(Arc::new(Self {
            names: Mutex::default(),
            pending: Mutex::default(),
            http,
            broadcast_url: format!("{gateway_api}/v1/broadcast"),
        }))
    }

    fn names(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.names
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sends `event` to everyone online, in groups of sessions per request.
    /// Sends `event` to every session of the cluster with one `/v1/broadcast` (each node
    /// fans out to its own sessions, so the chat spans every node).
    async fn broadcast(&self, event: serde_json::Value) {
        let body = serde_json::json!({ "data": event.to_string() }).to_string();
        let request = self
            .http
            .post(&self.broadcast_url)
            .header("Content-Type", "application/json")
            .body(body);
        match request.send().await {
            Ok(response) if response.status().is_success() => {}
            Ok(response) => warn!(status = %response.status(), "demo broadcast refused"),
            Err(err) => warn!(error = %err, "demo broadcast failed"),
        }
    }
}

pub(crate) fn routes(chat: Arc<Chat>) -> Router {
    Router::new()
        .route("/connect", any(connect))
        .route("/establish", post(establish))
        .route("/receive", post(receive))
        .route("/close", post(close))
        .with_state(chat)
}

fn session_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Accepts anyone, naming them from `?name=` (trimmed, at most 24 characters).
async fn connect(State(chat): State<Arc<Chat>>, RawQuery(query): RawQuery) -> Response {
    let name = query
        .as_deref()
        .and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "name")
                .map(|(_, v)| v.into_owned())
        })
        .map(|name| name.trim().chars().take(24).collect::<String>())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "anonymous".to_owned());
    let key = format!("{:016x}", rand::random::<u64>());
    let online = chat.names().len() + 1;
    chat.pending().insert(key.clone(), name.clone());
    let welcome = json!({ "type": "welcome", "you": name, "online": online });
    (
        StatusCode::OK,
        [
            (SESSION_HEADER, key.as_str()),
            ("Content-Type", "application/json"),
        ],
        welcome.to_string(),
    )
        .into_response()
}

async fn establish(State(chat): State<Arc<Chat>>, headers: HeaderMap) -> StatusCode {
    let Some(key) = session_of(&headers) else {
        return StatusCode::BAD_REQUEST;
    };
    // A resumed session (`X-Oort-Resumed`, no connect callback) is someone already online.
    if chat.names().contains_key(&key) {
        return StatusCode::OK;
    }
    // The session is announced only once its WebSocket is open.
    let Some(name) = chat.pending().remove(&key) else {
        return StatusCode::NOT_FOUND;
    };
    chat.names().insert(key, name.clone());
    let online = chat.names().len();
    chat.broadcast(json!({ "type": "joined", "name": name, "online": online }))
        .await;
    StatusCode::OK
}

async fn receive(State(chat): State<Arc<Chat>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let Some(key) = session_of(&headers) else {
        return StatusCode::BAD_REQUEST;
    };
    let Some(name) = chat.names().get(&key).cloned() else {
        return StatusCode::NOT_FOUND;
    };
    let text: String = String::from_utf8_lossy(&body).chars().take(2000).collect();
    chat.broadcast(json!({ "type": "message", "from": name, "text": text }))
        .await;
    StatusCode::OK
}

async fn close(State(chat): State<Arc<Chat>>, headers: HeaderMap) -> StatusCode {
    let Some(key) = session_of(&headers) else {
        return StatusCode::BAD_REQUEST;
    };
    let name = chat.names().remove(&key);
    if let Some(name) = name {
        let online = chat.names().len();
        chat.broadcast(json!({ "type": "left", "name": name, "online": online }))
            .await;
    }
    StatusCode::OK
}
