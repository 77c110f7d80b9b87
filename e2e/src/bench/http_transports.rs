//! The HTTP transports under load (sessions read as Durable Streams, docs/protocol.md):
//!
//! - `sse`: N sessions each held by an idle SSE response: the gateway's memory per client
//!   (to set beside `idle`'s per WebSocket), then fan-out rounds (one `/v1/send` naming every
//!   session, one `/v1/broadcast`): the time until every client had the data event.
//! - `longpoll`: N sessions each polling: memory per held poll, then sends to every session
//!   as fast as they are answered: poll round trips and messages per second.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::Serialize;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

use super::target::Target;
use super::{Percentiles, procfs};

/// A session made by a Comet connect.
struct Session {
    key: String,
    stream: String,
    token: String,
}

/// `http://host:port` of the target's client listener.
fn client_base(target: &Target) -> String {
    target
        .connect_url
        .replacen("ws://", "http://", 1)
        .trim_end_matches("/connect")
        .to_owned()
}

/// Comet connects for `count` sessions named `{prefix}-{i}`, `concurrency` at once.
async fn connect_all(
    http: &reqwest::Client,
    base: &str,
    prefix: &str,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<Session>> {
    let sessions: Vec<anyhow::Result<Session>> = futures_util::stream::iter(0..count)
        .map(|i| async move {
            let key = format!("{prefix}-{i}");
            let response = http.post(format!("{base}/stream?key={key}")).send().await?;
            anyhow::ensure!(
                response.status() == 201,
                "Comet connect answered {}",
                response.status()
            );
            let answer: Value = serde_json::from_slice(&response.bytes().await?)?;
            let field = |name: &str| answer[name].as_str().unwrap_or_default().to_owned();
            Ok(Session {
                key,
                stream: field("stream"),
                token: field("token"),
            })
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    sessions.into_iter().collect()
}

/// When each client last received a data event, and how many events arrived in all.
struct Arrivals {
    events: AtomicU64,
    last: Vec<std::sync::Mutex<Option<Instant>>>,
}

impl Arrivals {
    fn new(clients: usize) -> Arc<Self> {
        Arc::new(Self {
            events: AtomicU64::new(0),
            last: (0..clients).map(|_| std::sync::Mutex::new(None)).collect(),
        })
    }

    fn record(&self, client: usize, events: u64) {
        self.events.fetch_add(events, Ordering::Relaxed);
        if let Some(slot) = self.last.get(client) {
            *slot
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
        }
    }

    fn reset(&self) {
        for slot in &self.last {
            *slot
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        }
    }

    fn delays_since(&self, started: Instant) -> Vec<Duration> {
        self.last
            .iter()
            .filter_map(|slot| {
                *slot
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
            })
            .map(|at| at.saturating_duration_since(started))
            .collect()
    }

    async fn wait_for(&self, events: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.events.load(Ordering::Relaxed) < events {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        true
    }
}

/// Opens an SSE response on a plain TCP connection, waits for its first control event, then
/// counts its data events in the background.
async fn open_sse(
    addr: &str,
    session: &Session,
    index: usize,
    arrivals: Arc<Arrivals>,
) -> anyhow::Result<JoinHandle<()>> {
    let mut socket = tokio::net::TcpStream::connect(addr).await?;
    let request = format!(
        "GET {}?offset=now&live=sse HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\r\n",
        session.stream, session.token
    );
    socket.write_all(request.as_bytes()).await?;
    let mut buffer = vec![0; 4096];
    let mut seen = Vec::new();
    while !contains(&seen, b"event: control") {
        let read =
            tokio::time::timeout(Duration::from_secs(30), socket.read(&mut buffer)).await??;
        anyhow::ensure!(read > 0, "the SSE response ended before its first event");
        seen.extend_from_slice(&buffer[..read]);
    }
    Ok(tokio::spawn(async move {
        let mut buffer = vec![0; 4096];
        while let Ok(read) = socket.read(&mut buffer).await {
            if read == 0 {
                break;
            }
            let events = count(&buffer[..read], b"event: data");
            if events > 0 {
                arrivals.record(index, events);
            }
        }
    }))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

fn count(haystack: &[u8], needle: &[u8]) -> u64 {
    haystack
        .windows(needle.len())
        .filter(|window| *window == needle)
        .count() as u64
}

fn rss(target: &Target) -> Option<u64> {
    target.pid.and_then(|pid| procfs::rss_bytes(pid).ok())
}

fn per_client(before: Option<u64>, after: Option<u64>, clients: usize) -> Option<f64> {
    let (before, after) = (before?, after?);
    (clients > 0).then(|| after.saturating_sub(before) as f64 / clients as f64)
}

/// One fan-out round over SSE.
#[derive(Debug, Serialize)]
pub struct SseFanout {
    /// `send` (one /v1/send naming every session) or `broadcast`.
    pub form: &'static str,
    pub received: usize,
    /// Request sent to each client's data event.
    pub delivery: Option<Percentiles>,
    pub request_ms: f64,
}

/// `sse` results.
#[derive(Debug, Serialize)]
pub struct SseReport {
    pub scenario: &'static str,
    pub clients: usize,
    /// The gateway's resident memory per idle SSE client (session, response and connection).
    pub rss_per_client_bytes: Option<f64>,
    pub fanout: Vec<SseFanout>,
}

pub async fn run_sse(target: &Target, clients: usize, rounds: usize) -> anyhow::Result<SseReport> {
    let http = crate::http_client_builder()
        .timeout(super::REQUEST_TIMEOUT)
        .build()?;
    let base = client_base(target);
    let addr = base.trim_start_matches("http://").to_owned();
    let rss_before = rss(target);
    let sessions = connect_all(&http, &base, "sse", clients, 256).await?;
    let arrivals = Arrivals::new(clients);
    let readers: Vec<anyhow::Result<JoinHandle<()>>> =
        futures_util::stream::iter(sessions.iter().enumerate())
            .map(|(index, session)| open_sse(&addr, session, index, arrivals.clone()))
            .buffer_unordered(256)
            .collect()
            .await;
    let readers: Vec<JoinHandle<()>> = readers.into_iter().collect::<anyhow::Result<_>>()?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = rss(target);
    let keys: Vec<&str> = sessions.iter().map(|s| s.key.as_str()).collect();
    let send_body = serde_json::json!({ "sessions": keys, "data": "fan-out" }).to_string();
    let broadcast_body = serde_json::json!({ "data": "broadcast" }).to_string();
    let mut fanout = Vec::new();
    for round in 0..=rounds {
        for (form, path, body) in [
            ("send", "/v1/send", &send_body),
            ("broadcast", "/v1/broadcast", &broadcast_body),
        ] {
            arrivals.reset();
            let before = arrivals.events.load(Ordering::Relaxed);
            let started = Instant::now();
            let response = http
                .post(format!("{}{path}", target.api_url))
                .body(body.clone())
                .send()
                .await?;
            let request_ms = started.elapsed().as_secs_f64() * 1000.0;
            anyhow::ensure!(response.status().is_success(), "{path} failed");
            arrivals
                .wait_for(before + clients as u64, Duration::from_secs(60))
                .await;
            let mut delays = arrivals.delays_since(started);
            // Round 0 warms up (the first event on each fresh response), unmeasured.
            if round > 0 {
                fanout.push(SseFanout {
                    form,
                    received: delays.len(),
                    delivery: Percentiles::of(&mut delays),
                    request_ms,
                });
            }
        }
    }
    for reader in readers {
        reader.abort();
    }
    Ok(SseReport {
        scenario: "sse",
        clients,
        rss_per_client_bytes: per_client(rss_before, rss_after, clients),
        fanout,
    })
}

/// `longpoll` results.
#[derive(Debug, Serialize)]
pub struct LongPollReport {
    pub scenario: &'static str,
    pub clients: usize,
    /// The gateway's resident memory per session with a held long-poll.
    pub rss_per_held_poll_bytes: Option<f64>,
    pub duration_s: f64,
    /// Polls answered with messages, per second.
    pub round_trips_per_s: f64,
    /// Messages the clients received, per second.
    pub messages_per_s: f64,
    /// Messages received twice or out of order (must be 0).
    pub out_of_order: u64,
    pub poll_errors: u64,
}

pub async fn run_longpoll(
    target: &Target,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<LongPollReport> {
    let http = crate::http_client_builder()
        .timeout(super::REQUEST_TIMEOUT)
        .pool_max_idle_per_host(clients)
        .build()?;
    let base = client_base(target);
    let sessions = connect_all(&http, &base, "poll", clients, 256).await?;
    let round_trips = Arc::new(AtomicU64::new(0));
    let messages = Arc::new(AtomicU64::new(0));
    let out_of_order = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let rss_before = rss(target);
    let pollers: Vec<JoinHandle<()>> = sessions
        .iter()
        .map(|session| {
            let (http, url, token) = (
                http.clone(),
                format!("{base}{}", session.stream),
                session.token.clone(),
            );
            let counters = (
                round_trips.clone(),
                messages.clone(),
                out_of_order.clone(),
                errors.clone(),
            );
            tokio::spawn(poll_loop(http, url, token, counters))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_held = rss(target);
    let keys: Vec<&str> = sessions.iter().map(|s| s.key.as_str()).collect();
    let started = Instant::now();
    let before = (
        round_trips.load(Ordering::Relaxed),
        messages.load(Ordering::Relaxed),
    );
    let mut n = 0u64;
    while started.elapsed() < duration {
        n += 1;
        let body = serde_json::json!({ "sessions": keys, "data": format!("m{n}") }).to_string();
        let response = http
            .post(format!("{}/v1/send", target.api_url))
            .body(body)
            .send()
            .await?;
        anyhow::ensure!(response.status().is_success(), "/v1/send failed");
        // Paced by the clients: the next send once most of them are polling again.
        let target_trips = before.0 + (n * clients as u64) * 9 / 10;
        let deadline = Instant::now() + Duration::from_secs(10);
        while round_trips.load(Ordering::Relaxed) < target_trips && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let after = (
        round_trips.load(Ordering::Relaxed),
        messages.load(Ordering::Relaxed),
    );
    for poller in pollers {
        poller.abort();
    }
    Ok(LongPollReport {
        scenario: "longpoll",
        clients,
        rss_per_held_poll_bytes: per_client(rss_before, rss_held, clients),
        duration_s: elapsed,
        round_trips_per_s: (after.0 - before.0) as f64 / elapsed,
        messages_per_s: (after.1 - before.1) as f64 / elapsed,
        out_of_order: out_of_order.load(Ordering::Relaxed),
        poll_errors: errors.load(Ordering::Relaxed),
    })
}

type Counters = (
    Arc<AtomicU64>,
    Arc<AtomicU64>,
    Arc<AtomicU64>,
    Arc<AtomicU64>,
);

/// One client: polls from its offset, again and again, checking the sequence numbers.
async fn poll_loop(http: reqwest::Client, url: String, token: String, counters: Counters) {
    let (round_trips, messages, out_of_order, errors) = counters;
    let mut offset = "now".to_owned();
    let mut last_seq = None;
    loop {
        let response = http
            .get(format!("{url}?offset={offset}&live=long-poll"))
            .bearer_auth(&token)
            .send()
            .await;
        let Ok(response) = response else {
            errors.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let status = response.status().as_u16();
        if let Some(next) = response
            .headers()
            .get("stream-next-offset")
            .and_then(|v| v.to_str().ok())
        {
            offset = next.to_owned();
        }
        if status == 204 {
            continue;
        }
        let body = response.bytes().await.unwrap_or_default();
        let Ok(Value::Array(batch)) = serde_json::from_slice::<Value>(&body) else {
            errors.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        round_trips.fetch_add(1, Ordering::Relaxed);
        for message in batch {
            let seq = message["seq"].as_u64().unwrap_or_default();
            if last_seq.is_some_and(|last| seq != last + 1) {
                out_of_order.fetch_add(1, Ordering::Relaxed);
            }
            last_seq = Some(seq);
            messages.fetch_add(1, Ordering::Relaxed);
        }
    }
}
