//! Sessions that connect and never read, while the backend pushes to them as fast as the
//! gateway answers: what their queues and socket buffers may cost.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpSocket;
use tokio::time::Instant;

use super::AttackOptions;
use super::endpoint::Endpoint;
use super::outcomes::Outcomes;

/// The attackers' receive buffer: small, so the gateway's writes stall early.
const RECEIVE_BUFFER: u32 = 4096;
/// How long the end-of-attack check waits for a session's socket to be closed by the gateway.
const CLOSED_WITHIN: Duration = Duration::from_secs(10);

/// Opens `options.connections` sessions that never read, pushes `options.message_bytes` to all
/// of them with one `/send` after another until `options.hold` ends, then checks which the
/// gateway closed. Labels: `sends` (requests made), `send_failed`, `closed_by_gateway`,
/// `open`, `refused`.
pub(super) async fn run(
    endpoint: &Endpoint,
    api_url: &str,
    sources: &[Ipv4Addr],
    options: &AttackOptions,
) -> Outcomes {
    let mut outcomes = Outcomes::default();
    let mut streams = Vec::new();
    let mut keys = Vec::new();
    for index in 0..options.connections {
        let key = format!("deaf-{index}");
        match deaf_session(endpoint, sources[index % sources.len()], &key).await {
            Some(stream) => {
                streams.push(stream);
                keys.push(key);
            }
            None => outcomes.add("refused", 1),
        }
    }
    let http = crate::http_client_builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client");
    let body = "n".repeat(options.message_bytes.max(1));
    let deadline = Instant::now() + options.hold;
    while Instant::now() < deadline && !keys.is_empty() {
        let mut request = http.post(format!("{api_url}/send")).body(body.clone());
        for key in &keys {
            request = request.header("X-Kuiperbelt-Session", key);
        }
        outcomes.add("sends", 1);
        if !matches!(request.send().await, Ok(response) if response.status().is_success()) {
            outcomes.add("send_failed", 1);
        }
    }
    // Whatever the gateway managed to write is read now; a socket it closed then ends.
    let checks = streams.into_iter().map(|mut stream| async move {
        let mut sink = Vec::new();
        tokio::time::timeout(CLOSED_WITHIN, stream.read_to_end(&mut sink))
            .await
            .is_ok()
    });
    for closed in futures_util::future::join_all(checks).await {
        outcomes.add(if closed { "closed_by_gateway" } else { "open" }, 1);
    }
    outcomes
}

/// A session upgraded by hand on a socket with a small receive buffer, never read after the
/// handshake's answer.
async fn deaf_session(
    endpoint: &Endpoint,
    source: Ipv4Addr,
    key: &str,
) -> Option<tokio::net::TcpStream> {
    let socket = TcpSocket::new_v4().ok()?;
    socket.set_recv_buffer_size(RECEIVE_BUFFER).ok()?;
    socket.set_reuseaddr(true).ok()?;
    socket.bind(SocketAddr::from((source, 0))).ok()?;
    let mut stream = tokio::time::timeout(Duration::from_secs(10), socket.connect(endpoint.server))
        .await
        .ok()?
        .ok()?;
    tokio::io::AsyncWriteExt::write_all(&mut stream, endpoint.handshake(key).as_bytes())
        .await
        .ok()?;
    // Read the answer's head byte by byte, so no frame after it is consumed.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        if stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    head.starts_with(b"HTTP/1.1 101").then_some(stream)
}
