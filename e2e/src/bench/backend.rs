//! A lean callback backend for load: accepts every connect with the key from `?key=`, answers
//! the other callbacks 200, and records nothing. The chat scenarios make it pass received
//! messages on (a broadcast, or a publish to a channel), and the channel scenarios make it put
//! some sessions in channels at connect (`X-Oort-Channels`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use axum::Router;
use axum::extract::RawQuery;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::any;

const SESSION_HEADER: &str = "X-Kuiperbelt-Session";
const CHANNELS_HEADER: &str = "X-Oort-Channels";

/// Serves the backend on `listener` until the runtime stops.
pub async fn serve(listener: tokio::net::TcpListener) {
    let app = Router::new()
        .route("/connect", any(connect))
        .route("/establish", any(|| async { StatusCode::OK }))
        .route("/close", any(|| async { StatusCode::OK }))
        .route("/receive", any(receive));
    let _ = axum::serve(listener, app).await;
}

/// Where received messages are broadcast (the chat scenario); unset, they are dropped.
static BROADCAST_TO: OnceLock<String> = OnceLock::new();

/// Sessions whose key starts with a prefix here join its channels (an `X-Oort-Channels`
/// value) at connect.
static JOIN_ON_CONNECT: RwLock<Vec<(String, HeaderValue)>> = RwLock::new(Vec::new());

/// Messages from sessions whose key starts with a route's prefix are published to its channel.
static PUBLISH_ROUTES: RwLock<Vec<Arc<PublishRoute>>> = RwLock::new(Vec::new());

/// Received messages of some sessions, published to a channel through every node in turn (as
/// a backend behind a load balancer would).
pub struct PublishRoute {
    key_prefix: String,
    channel: String,
    publish_urls: Vec<String>,
    next: AtomicUsize,
    /// Publishes that failed (an error, or an answer other than 200).
    pub failures: AtomicU64,
}

fn http() -> &'static reqwest::Client {
    static HTTP: OnceLock<reqwest::Client> = OnceLock::new();
    HTTP.get_or_init(|| {
        crate::http_client_builder()
            .timeout(super::REQUEST_TIMEOUT)
            .build()
            .expect("an HTTP client")
    })
}

/// Makes every received client message a `/v1/broadcast` through `api_url`.
pub fn broadcast_received_to(api_url: &str) {
    let _ = BROADCAST_TO.set(format!("{api_url}/v1/broadcast"));
}

/// Sessions whose key starts with `key_prefix` join `channels` (comma-separated) at connect.
pub fn join_on_connect(key_prefix: &str, channels: &str) -> anyhow::Result<()> {
    let value = HeaderValue::from_str(channels)?;
    write(&JOIN_ON_CONNECT).push((key_prefix.to_owned(), value));
    Ok(())
}

/// Messages received from sessions whose key starts with `key_prefix` become a `/v1/publish`
/// to `channel`, through each of `api_urls` in turn. The route counts failed publishes.
pub fn publish_received(key_prefix: &str, channel: &str, api_urls: &[String]) -> Arc<PublishRoute> {
    let route = Arc::new(PublishRoute {
        key_prefix: key_prefix.to_owned(),
        channel: channel.to_owned(),
        publish_urls: api_urls
            .iter()
            .map(|url| format!("{url}/v1/publish"))
            .collect(),
        next: AtomicUsize::new(0),
        failures: AtomicU64::new(0),
    });
    write(&PUBLISH_ROUTES).push(route.clone());
    route
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn receive(headers: HeaderMap, body: axum::body::Bytes) -> StatusCode {
    let key = headers
        .get(SESSION_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let route = read(&PUBLISH_ROUTES)
        .iter()
        .find(|route| key.starts_with(&route.key_prefix))
        .cloned();
    let text = String::from_utf8_lossy(&body);
    let (url, body) = match (&route, BROADCAST_TO.get()) {
        (Some(route), _) => {
            let turn = route.next.fetch_add(1, Ordering::Relaxed);
            let url = &route.publish_urls[turn % route.publish_urls.len().max(1)];
            let body = serde_json::json!({ "channels": [route.channel], "data": text });
            (url, body)
        }
        (None, Some(url)) => (url, serde_json::json!({ "data": text })),
        (None, None) => return StatusCode::OK,
    };
    let sent = http().post(url).body(body.to_string()).send().await;
    match sent {
        Ok(response) if response.status().is_success() => StatusCode::OK,
        _ => {
            if let Some(route) = route {
                route.failures.fetch_add(1, Ordering::Relaxed);
            }
            StatusCode::BAD_GATEWAY
        }
    }
}

/// Binds on loopback and serves in the background; returns the address.
pub async fn start(listen: &str) -> std::io::Result<SocketAddr> {
    let listener = bind_with_deep_backlog(listen).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(serve(listener));
    Ok(addr)
}

/// A connect storm makes the gateway open hundreds of callback connections at once; tokio's
/// default backlog (1024) would overflow and add 1 s SYN retransmits to the measured latency.
async fn bind_with_deep_backlog(listen: &str) -> std::io::Result<tokio::net::TcpListener> {
    let addr = tokio::net::lookup_host(listen)
        .await?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address"))?;
    let socket = if addr.is_ipv6() {
        tokio::net::TcpSocket::new_v6()?
    } else {
        tokio::net::TcpSocket::new_v4()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

async fn connect(RawQuery(query): RawQuery) -> impl IntoResponse {
    let key = query
        .as_deref()
        .and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "key")
                .map(|(_, v)| v.into_owned())
        })
        .unwrap_or_else(|| format!("{:016x}", rand::random::<u64>()));
    let mut headers = HeaderMap::new();
    if let Some((_, channels)) = read(&JOIN_ON_CONNECT)
        .iter()
        .find(|(prefix, _)| key.starts_with(prefix.as_str()))
    {
        headers.insert(CHANNELS_HEADER, channels.clone());
    }
    if let Ok(value) = HeaderValue::from_str(&key) {
        headers.insert(SESSION_HEADER, value);
    }
    (StatusCode::OK, headers, "")
}
