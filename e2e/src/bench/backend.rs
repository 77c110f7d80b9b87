//! A lean callback backend for load: accepts every connect with the key from `?key=`, answers
//! the other callbacks 200, and records nothing.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::RawQuery;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::any;

const SESSION_HEADER: &str = "X-Kuiperbelt-Session";

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
static BROADCAST_TO: std::sync::OnceLock<(String, reqwest::Client)> = std::sync::OnceLock::new();

/// Makes every received client message a `/v1/broadcast` through `api_url`.
pub fn broadcast_received_to(api_url: &str) {
    let http = crate::http_client_builder()
        .timeout(super::REQUEST_TIMEOUT)
        .build()
        .expect("an HTTP client");
    let _ = BROADCAST_TO.set((format!("{api_url}/v1/broadcast"), http));
}

async fn receive(body: axum::body::Bytes) -> StatusCode {
    let Some((url, http)) = BROADCAST_TO.get() else {
        return StatusCode::OK;
    };
    let text = String::from_utf8_lossy(&body);
    let request = http
        .post(url)
        .body(serde_json::json!({ "data": text }).to_string());
    match request.send().await {
        Ok(response) if response.status().is_success() => StatusCode::OK,
        _ => StatusCode::BAD_GATEWAY,
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
    (StatusCode::OK, [(SESSION_HEADER, key)], "")
}
