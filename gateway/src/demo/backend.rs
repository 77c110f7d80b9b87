//! The demo's chat backend: a plain HTTP application, exactly what a real backend would be.
//! It authenticates nobody (any name is welcome), remembers who is online from the establish
//! and close callbacks, and broadcasts every message with `/v1/broadcast`. One backend serves
//! every node of `oort demo --nodes N`: it broadcasts through the node that made the callback,
//! else through the first other node that answers.

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
const ENDPOINT_HEADER: &str = "X-Kuiperbelt-Endpoint";

/// Who is online, and who has been accepted but is not connected yet.
pub(crate) struct Chat {
    names: Mutex<BTreeMap<String, String>>,
    pending: Mutex<BTreeMap<String, String>>,
    http: reqwest::Client,
    /// Each node's API base (plain http on loopback), in the order tried.
    gateways: Mutex<Vec<String>>,
}

impl Chat {
    /// The chat, talking to the gateways' APIs at `gateways` (plain http on loopback, e.g.
    /// `http://127.0.0.1:9180`).
    pub(crate) fn new(gateways: Vec<String>) -> anyhow::Result<Arc<Self>> {
        let http = crate::tls::client_builder(rustls::RootCertStore::empty())?
            .timeout(std::time::Duration::from_secs(5))
            .build()?;
        Ok(Arc::new(Self {
            names: Mutex::default(),
            pending: Mutex::default(),
            http,
            gateways: Mutex::new(gateways),
        }))
    }

    /// Replaces the gateways' API bases (once the nodes of `--nodes` know their ports).
    pub(crate) fn set_gateways(&self, gateways: Vec<String>) {
        *self
            .gateways
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = gateways;
    }

    /// The gateways in the order to try: the one whose port `endpoint` (the callback's
    /// `X-Kuiperbelt-Endpoint`, `host:port`) names first.
    fn gateways_for(&self, endpoint: Option<&str>) -> Vec<String> {
        let mut gateways = self
            .gateways
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let port = endpoint
            .and_then(|e| e.rsplit_once(':'))
            .map(|(_, port)| port);
        if let Some(port) = port
            && let Some(at) = gateways
                .iter()
                .position(|g| g.rsplit_once(':').is_some_and(|(_, p)| p == port))
        {
            gateways.rotate_left(at);
        }
        gateways
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

    /// Sends `event` to every session of the cluster with one `/v1/broadcast` (each node
    /// fans out to its own sessions, so the chat spans every node), through the node that
    /// made the callback (`endpoint`) or, when it does not answer, the next one that does.
    async fn broadcast(&self, event: serde_json::Value, endpoint: Option<&str>) {
        let body = serde_json::json!({ "data": event.to_string() }).to_string();
        for gateway in self.gateways_for(endpoint) {
            let request = self
                .http
                .post(format!("{gateway}/v1/broadcast"))
                .header("Content-Type", "application/json")
                .body(body.clone());
            match request.send().await {
                Ok(response) if response.status().is_success() => return,
                Ok(response) => {
                    warn!(%gateway, status = %response.status(), "demo broadcast refused");
                }
                Err(err) => warn!(%gateway, error = %err, "demo broadcast failed"),
            }
        }
        warn!("demo broadcast: no gateway took it");
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

fn endpoint_of(headers: &HeaderMap) -> Option<&str> {
    headers.get(ENDPOINT_HEADER).and_then(|v| v.to_str().ok())
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
    chat.broadcast(
        json!({ "type": "joined", "name": name, "online": online }),
        endpoint_of(&headers),
    )
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
    chat.broadcast(
        json!({ "type": "message", "from": name, "text": text }),
        endpoint_of(&headers),
    )
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
        chat.broadcast(
            json!({ "type": "left", "name": name, "online": online }),
            endpoint_of(&headers),
        )
        .await;
    }
    StatusCode::OK
}
