//! One address opening connections in a loop: each a complete WebSocket handshake, closed as
//! soon as it is answered, `options.connections` loops in parallel, for `options.hold`.

use std::net::Ipv4Addr;
use std::time::Duration;

use futures_util::future::join_all;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::AttackOptions;
use super::endpoint::Endpoint;
use super::outcomes::Outcomes;

/// How long one attempt may take before it counts as `timeout`.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs the loops from `source`; labels every attempt (`status_101`, `status_429`, ...) and
/// counts them all under `attempts`.
pub(super) async fn run(
    endpoint: &Endpoint,
    source: Ipv4Addr,
    options: &AttackOptions,
) -> Outcomes {
    let deadline = Instant::now() + options.hold;
    let loops = (0..options.connections.max(1)).map(|index| {
        let endpoint = endpoint.clone();
        tokio::spawn(async move {
            let mut labels = Vec::new();
            let mut attempt = 0usize;
            while Instant::now() < deadline {
                let key = format!("flood-{index}-{attempt}");
                let label =
                    tokio::time::timeout(ATTEMPT_TIMEOUT, attempt_once(&endpoint, source, &key))
                        .await
                        .unwrap_or_else(|_| "timeout".to_owned());
                labels.push(label);
                attempt += 1;
            }
            labels
        })
    });
    let mut outcomes = Outcomes::default();
    for labels in join_all(loops).await.into_iter().flatten() {
        outcomes.add("attempts", labels.len());
        for label in labels {
            outcomes.add(label, 1);
        }
    }
    outcomes
}

async fn attempt_once(endpoint: &Endpoint, source: Ipv4Addr, key: &str) -> String {
    let mut stream = match endpoint.connect_from(source).await {
        Ok(stream) => stream,
        Err(_) => return "connect_failed".to_owned(),
    };
    if stream
        .write_all(endpoint.handshake(key).as_bytes())
        .await
        .is_err()
    {
        return "write_failed".to_owned();
    }
    let mut answer = [0u8; 16];
    let mut filled = 0;
    while filled < 12 {
        match stream.read(&mut answer[filled..]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => filled += n,
        }
    }
    let text = String::from_utf8_lossy(&answer[..filled]);
    match text.split(' ').nth(1) {
        Some(status) if text.starts_with("HTTP/") => {
            format!("status_{}", status.chars().take(3).collect::<String>())
        }
        _ if filled == 0 => "closed".to_owned(),
        _ => "garbage".to_owned(),
    }
}
