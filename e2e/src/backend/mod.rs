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
//! | `channels=a,b` | answer `X-Oort-Channels: a,b` (the session's channels) |
//! | `user=U` | answer `X-Oort-User: U` (the session's user) |
//!
//! Establish, close and receive answer 200, except for session keys starting with
//! `establish-fail` (establish answers 500) or `receive-fail` (receive answers 500).
//! With [`TestBackend::echo_to`] set, every received message is sent back to its session
//! through the gateway's `/send`, keeping its frame type. [`TestBackend::hold`] makes
//! establish, close or receive requests wait (and counts how many wait at once), and
//! [`TestBackend::start_tls`] serves the same callbacks over HTTPS.

mod handlers;
mod hold;
mod tls;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Uri};
use axum::routing::any;
use tokio::sync::Notify;

use handlers::{close, connect, establish, receive};

pub use hold::{HeldCallbacks, Hold};

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
    /// Presence reports (`callback.presence`).
    Presence,
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

struct Shared {
    recorded: Mutex<Vec<Recorded>>,
    changed: Notify,
    echo_to: Mutex<Option<String>>,
    session_header: Mutex<String>,
    holds: Mutex<Vec<HeldCallbacks>>,
    http: reqwest::Client,
}

impl Shared {
    fn new() -> Self {
        Self {
            recorded: Mutex::default(),
            changed: Notify::new(),
            echo_to: Mutex::default(),
            session_header: Mutex::new("X-Kuiperbelt-Session".to_owned()),
            holds: Mutex::default(),
            http: crate::http_client(),
        }
    }

    /// Holds the request if the test asked for requests of `kind` to be held.
    async fn hold_if_asked(&self, kind: CallbackKind) {
        let held = self
            .holds
            .lock()
            .unwrap()
            .iter()
            .find(|held| held.kind() == kind)
            .cloned();
        if let Some(held) = held {
            held.hold().await;
        }
    }
}

/// A running callback backend.
#[derive(Clone)]
pub struct TestBackend {
    addr: SocketAddr,
    scheme: &'static str,
    shared: Arc<Shared>,
}

impl TestBackend {
    /// Starts a backend on `127.0.0.1:0`; it stops with the test's runtime.
    pub async fn start() -> Self {
        let listener = Self::bind().await;
        let addr = listener.local_addr().expect("backend address");
        let shared = Arc::new(Shared::new());
        let app = Self::routes(&shared);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            scheme: "http",
            shared,
        }
    }

    /// Starts a backend serving HTTPS on `127.0.0.1:0` with `tls` (its certificate must name
    /// the IP address 127.0.0.1); it stops with the test's runtime.
    pub async fn start_tls(tls: rustls::ServerConfig) -> Self {
        let listener = tls::TlsListener::new(Self::bind().await, tls);
        let addr = axum::serve::Listener::local_addr(&listener).expect("backend address");
        let shared = Arc::new(Shared::new());
        let app = Self::routes(&shared);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            scheme: "https",
            shared,
        }
    }

    async fn bind() -> tokio::net::TcpListener {
        tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind the test backend")
    }

    fn routes(shared: &Arc<Shared>) -> Router {
        Router::new()
            .route("/connect", any(connect))
            .route("/establish", any(establish))
            .route("/close", any(close))
            .route("/receive", any(receive))
            .route("/presence", any(handlers::presence))
            .with_state(shared.clone())
    }

    /// The backend's base URL (`http://` or `https://`).
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// Holds every later establish, close or receive request as `hold` says (connects take
    /// `delay_ms` instead). One hold per kind; a second call for a kind adds nothing.
    pub fn hold(&self, kind: CallbackKind, hold: Hold) -> HeldCallbacks {
        let mut holds = self.shared.holds.lock().unwrap();
        if let Some(held) = holds.iter().find(|held| held.kind() == kind) {
            return held.clone();
        }
        let held = HeldCallbacks::new(kind, hold);
        holds.push(held.clone());
        held
    }

    /// The URL of one callback.
    pub fn callback_url(&self, kind: CallbackKind) -> String {
        let path = match kind {
            CallbackKind::Connect => "connect",
            CallbackKind::Establish => "establish",
            CallbackKind::Close => "close",
            CallbackKind::Receive => "receive",
            CallbackKind::Presence => "presence",
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
