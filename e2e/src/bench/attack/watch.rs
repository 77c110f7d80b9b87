//! What an attack is measured by: the gateway's RSS sampled while it lasts, a well-behaved
//! probe client that keeps connecting and receiving, and sessions opened before it that must
//! all still receive a marker afterwards.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::Serialize;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use super::endpoint::{Endpoint, session_source};
use crate::bench::{Percentiles, procfs};

/// The marker every surviving session receives after the attack.
const MARKER: &str = "still-here";
/// How long the sessions may take to receive the marker.
const MARKER_TIMEOUT: Duration = Duration::from_secs(15);

/// Samples a process's RSS every 50 ms and keeps the highest.
pub(super) struct RssSampler {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Option<u64>>,
}

impl RssSampler {
    pub(super) fn start(pid: Option<u32>) -> Self {
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let pid = pid?;
            let mut peak = procfs::rss_bytes(pid).ok()?;
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            loop {
                tokio::select! {
                    _ = &mut stopped => return Some(peak),
                    _ = tick.tick() => {
                        if let Ok(rss) = procfs::rss_bytes(pid) {
                            peak = peak.max(rss);
                        }
                    }
                }
            }
        });
        Self { stop, task }
    }

    /// The highest RSS seen.
    pub(super) async fn finish(self) -> Option<u64> {
        let _ = self.stop.send(());
        self.task.await.ok().flatten()
    }
}

/// The well-behaved client's experience.
#[derive(Debug, Default, Serialize)]
pub struct ProbeReport {
    /// Connect-and-receive rounds tried.
    pub attempts: usize,
    /// Rounds that failed (refused, timed out, or the message never came).
    pub failures: usize,
    /// The first failure, if any.
    pub first_failure: Option<String>,
    /// TCP connect to 101 (through the connect callback).
    pub connect: Option<Percentiles>,
    /// `/send` to the probe's session until the frame arrived.
    pub round_trip: Option<Percentiles>,
}

/// Connects a client from 127.0.0.1 every interval, sends it a message through `/send`, and
/// times both, until finished.
pub(super) struct Probe {
    stop: oneshot::Sender<()>,
    task: JoinHandle<ProbeReport>,
}

impl Probe {
    pub(super) fn start(endpoint: &Endpoint, api_url: &str, interval: Duration) -> Self {
        let (stop, mut stopped) = oneshot::channel();
        let (endpoint, send_url) = (endpoint.clone(), format!("{api_url}/send"));
        let task = tokio::spawn(async move {
            let http = crate::http_client_builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("an HTTP client");
            let (mut report, mut connects, mut round_trips) =
                (ProbeReport::default(), Vec::new(), Vec::new());
            let mut tick = tokio::time::interval(interval);
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tick.tick() => {}
                }
                report.attempts += 1;
                let key = format!("probe-{}", report.attempts);
                match probe_once(&endpoint, &http, &send_url, &key).await {
                    Ok((connect, round_trip)) => {
                        connects.push(connect);
                        round_trips.push(round_trip);
                    }
                    Err(err) => {
                        report.failures += 1;
                        report.first_failure.get_or_insert(err);
                    }
                }
            }
            report.connect = Percentiles::of(&mut connects);
            report.round_trip = Percentiles::of(&mut round_trips);
            report
        });
        Self { stop, task }
    }

    pub(super) async fn finish(self) -> ProbeReport {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

async fn probe_once(
    endpoint: &Endpoint,
    http: &reqwest::Client,
    send_url: &str,
    key: &str,
) -> Result<(Duration, Duration), String> {
    let started = Instant::now();
    let url = format!("{}?key={key}", endpoint.url);
    let (mut client, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(url),
    )
    .await
    .map_err(|_| "connect timed out".to_owned())?
    .map_err(|err| format!("connect: {err}"))?;
    let connected = started.elapsed();
    let sent = send_when_registered(http, send_url, key).await?;
    let received = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(message)) = client.next().await {
            if message == Message::text("probe") {
                return true;
            }
        }
        false
    })
    .await;
    match received {
        Ok(true) => Ok((connected, sent.elapsed())),
        Ok(false) => Err("the connection ended before the message".to_owned()),
        Err(_) => Err("the message did not arrive within 10 s".to_owned()),
    }
}

/// Sends "probe" to `key` and returns when the send was accepted. kuiperbelt registers a
/// session only after its establish callback, so a `/send` right after the 101 may find it
/// unknown (docs/kuiperbelt-compat.md, 18): that send is repeated, and the round trip is timed
/// from the one that found the session.
async fn send_when_registered(
    http: &reqwest::Client,
    send_url: &str,
    key: &str,
) -> Result<Instant, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let sent = Instant::now();
        let response = http
            .post(send_url)
            .header("X-Kuiperbelt-Session", key)
            .body("probe")
            .send()
            .await
            .map_err(|err| format!("/send: {err}"))?;
        if !response.status().is_success() {
            return Err(format!("/send answered {}", response.status()));
        }
        let answer = response.text().await.unwrap_or_default();
        if !answer.contains("session is not found") {
            return Ok(sent);
        }
        if Instant::now() >= deadline {
            return Err("the session was never registered".to_owned());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Sessions opened before the attack, each read in the background.
pub(super) struct Sessions {
    keys: Vec<String>,
    marked: Arc<AtomicUsize>,
    changed: Arc<Notify>,
    readers: Vec<JoinHandle<()>>,
}

impl Sessions {
    /// Opens `count` sessions `keep-N`, from 127.0.0.2 and up.
    pub(super) async fn open(endpoint: &Endpoint, count: usize) -> anyhow::Result<Self> {
        let marked = Arc::new(AtomicUsize::new(0));
        let changed = Arc::new(Notify::new());
        let mut keys = Vec::with_capacity(count);
        let mut readers = Vec::with_capacity(count);
        for index in 0..count {
            let key = format!("keep-{index}");
            let stream = endpoint.connect_from(session_source(index)).await?;
            let url = format!("{}?key={key}", endpoint.url);
            let (mut client, _) = tokio_tungstenite::client_async(url, stream).await?;
            let (marked, changed) = (marked.clone(), changed.clone());
            readers.push(tokio::spawn(async move {
                while let Some(Ok(message)) = client.next().await {
                    if message == Message::text(MARKER) {
                        marked.fetch_add(1, Ordering::SeqCst);
                        changed.notify_waiters();
                    }
                }
            }));
            keys.push(key);
        }
        Ok(Self {
            keys,
            marked,
            changed,
            readers,
        })
    }

    /// Sends the marker to every session through one `/send` and counts those that did not
    /// receive it within [`MARKER_TIMEOUT`].
    pub(super) async fn count_lost(self, api_url: &str) -> usize {
        if self.keys.is_empty() {
            return 0;
        }
        let http = crate::http_client_builder()
            .timeout(MARKER_TIMEOUT)
            .build()
            .expect("an HTTP client");
        let mut request = http.post(format!("{api_url}/send")).body(MARKER);
        for key in &self.keys {
            request = request.header("X-Kuiperbelt-Session", key);
        }
        let _ = request.send().await;
        let deadline = tokio::time::Instant::now() + MARKER_TIMEOUT;
        loop {
            let notified = self.changed.notified();
            if self.marked.load(Ordering::SeqCst) >= self.keys.len() {
                break;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break;
            }
        }
        for reader in &self.readers {
            reader.abort();
        }
        self.keys.len() - self.marked.load(Ordering::SeqCst).min(self.keys.len())
    }
}
