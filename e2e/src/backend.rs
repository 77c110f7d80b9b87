//! A real HTTP backend for the gateway's callbacks that records every request.
//!
//! Connect behaviour is chosen by the connecting client's query string, which the gateway
//! forwards unchanged, so each test (and each client) picks its own without shared state:
//!
//! | parameter | effect |
//! |---|---|
//! | `key=K` | accept with session key `K` (`key=auto`: a fresh unique key per connection) |
//! | `first=TEXT` | first message (the answer body) |
//! | `binary=1` | answer with `Content-Type: application/octet-stream` |
//! | `status=N&body=TEXT` | refuse with status `N` |
//! | `nokey=1` | answer 200 without a session key |
//! | `delay_ms=N` | wait before answering |
//! | `protocol=P` | answer `Sec-WebSocket-Protocol: P` |
//!
//! Establish, close and receive answer 200, except for session keys starting with
//! `establish-fail` (establish answers 500) or `receive-fail` (receive answers 500).
//! With [`TestBackend::echo_to`] set, every received message is sent back to its session
//! through the gateway's `/send`, keeping its frame type.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use tokio::sync::Notify;

/// Which callback a request was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallbackKind {
    /// The connect callback.
    Connect,
    /// The establish callback.
    Establish,
    /// The close callback.
    Close,
    /// The receive callback.
    Receive,
}

/// One request the backend received.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// Which callback.
    pub kind: CallbackKind,
    /// The request method.
    pub method: Method,
    /// The request URI (path and query).
    pub uri: Uri,
    /// The request headers.
    pub headers: HeaderMap,
    /// The request body.
    pub body: Bytes,
}

impl Recorded {
    /// The value of `name`, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Every value of `name`.
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    }
}

#[derive(Default)]
struct Shared {
    recorded: Mutex<Vec<Recorded>>,
    changed: Notify,
    echo_to: Mutex<Option<String>>,
    session_header: Mutex<String>,
    http: reqwest::Client,
}

/// A running callback backend.
#[derive(Clone)]
pub struct TestBackend {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl TestBackend {
    /// Starts a backend on `127.0.0.1:0`; it stops with the test's runtime.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind the test backend");
        let addr = listener.local_addr().expect("backend address");
        let shared = Arc::new(Shared::default());
        *shared.session_header.lock().unwrap() = "X-Kuiperbelt-Session".to_owned();
        let app = Router::new()
            .route("/connect", any(connect))
            .route("/establish", any(establish))
            .route("/close", any(close))
            .route("/receive", any(receive))
            .with_state(shared.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, shared }
    }

    /// The backend's base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The URL of one callback.
    pub fn callback_url(&self, kind: CallbackKind) -> String {
        let path = match kind {
            CallbackKind::Connect => "connect",
            CallbackKind::Establish => "establish",
            CallbackKind::Close => "close",
            CallbackKind::Receive => "receive",
        };
        format!("{}/{path}", self.url())
    }

    /// Uses `name` as the session header (default `X-Kuiperbelt-Session`).
    pub fn set_session_header(&self, name: &str) {
        *self.shared.session_header.lock().unwrap() = name.to_owned();
    }

    /// Sends every received message back to its session through `gateway_url`'s `/send`.
    pub fn echo_to(&self, gateway_url: &str) {
        *self.shared.echo_to.lock().unwrap() = Some(gateway_url.to_owned());
    }

    /// Everything recorded so far.
    pub fn recorded(&self) -> Vec<Recorded> {
        self.shared.recorded.lock().unwrap().clone()
    }

    /// Recorded requests of one kind.
    pub fn of_kind(&self, kind: CallbackKind) -> Vec<Recorded> {
        self.recorded()
            .into_iter()
            .filter(|r| r.kind == kind)
            .collect()
    }

    /// Recorded requests of one kind for one session key.
    pub fn for_session(&self, kind: CallbackKind, key: &str) -> Vec<Recorded> {
        let header = self.shared.session_header.lock().unwrap().clone();
        self.of_kind(kind)
            .into_iter()
            .filter(|r| r.header(&header) == Some(key))
            .collect()
    }

    /// Waits until `count` requests of `kind` for `key` were recorded, and returns them.
    pub async fn wait_for(
        &self,
        kind: CallbackKind,
        key: &str,
        count: usize,
        timeout: Duration,
    ) -> Vec<Recorded> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.changed.notified();
            let found = self.for_session(kind, key);
            if found.len() >= count {
                return found;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "timed out after {timeout:?} waiting for {count} {kind:?} callback(s) for {key:?}; got {}",
                    found.len()
                );
            }
        }
    }

    /// Waits until `count` requests of `kind` (any session) were recorded.
    pub async fn wait_for_kind(
        &self,
        kind: CallbackKind,
        count: usize,
        timeout: Duration,
    ) -> Vec<Recorded> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.changed.notified();
            let found = self.of_kind(kind);
            if found.len() >= count {
                return found;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "timed out after {timeout:?} waiting for {count} {kind:?} callback(s); got {}",
                    found.len()
                );
            }
        }
    }
}

fn record(
    shared: &Shared,
    kind: CallbackKind,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) {
    shared.recorded.lock().unwrap().push(Recorded {
        kind,
        method,
        uri,
        headers,
        body,
    });
    shared.changed.notify_waiters();
}

fn session_of(shared: &Shared, headers: &HeaderMap) -> String {
    let header = shared.session_header.lock().unwrap().clone();
    headers
        .get(header.as_str())
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

async fn connect(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record(&shared, CallbackKind::Connect, method, uri, headers, body);
    let params: HashMap<String, String> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    if let Some(delay) = params.get("delay_ms").and_then(|v| v.parse().ok()) {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if let Some(status) = params.get("status").and_then(|v| v.parse::<u16>().ok()) {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = params.get("body").cloned().unwrap_or_default();
        return (status, [("Content-Type", "text/plain")], body).into_response();
    }
    let mut response = params
        .get("first")
        .cloned()
        .unwrap_or_default()
        .into_response();
    let response_headers = response.headers_mut();
    response_headers.remove("content-type");
    if params.contains_key("binary") {
        response_headers.insert("content-type", "application/octet-stream".parse().unwrap());
    }
    if !params.contains_key("nokey") {
        let key = match params.get("key").map(String::as_str) {
            // Tools that open many connections to one URL (Autobahn|Testsuite) need distinct
            // sessions.
            Some("auto") => format!("auto-{:016x}", rand::random::<u64>()),
            Some(key) => key.to_owned(),
            None => "default".to_owned(),
        };
        let header = shared.session_header.lock().unwrap().clone();
        response_headers.insert(
            axum::http::HeaderName::try_from(header).unwrap(),
            key.parse().unwrap(),
        );
    }
    if let Some(protocol) = params.get("protocol") {
        response_headers.insert("sec-websocket-protocol", protocol.parse().unwrap());
    }
    response
}

async fn establish(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let key = session_of(&shared, &headers);
    record(&shared, CallbackKind::Establish, method, uri, headers, body);
    if key.starts_with("establish-fail") {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}

async fn close(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    record(&shared, CallbackKind::Close, method, uri, headers, body);
    StatusCode::OK
}

async fn receive(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let key = session_of(&shared, &headers);
    let content_type = headers.get("content-type").cloned();
    record(
        &shared,
        CallbackKind::Receive,
        method,
        uri,
        headers,
        body.clone(),
    );
    if key.starts_with("receive-fail") {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let echo_to = shared.echo_to.lock().unwrap().clone();
    if let Some(gateway) = echo_to {
        let header = shared.session_header.lock().unwrap().clone();
        let mut request = shared
            .http
            .post(format!("{gateway}/send"))
            .header(header, key)
            .body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        if let Err(err) = request.send().await {
            eprintln!("test backend: echo failed: {err}");
        }
    }
    StatusCode::OK
}
