//! Scenario 2: send throughput. Holds S sessions, and C concurrent backend connections post
//! sends for a fixed time: kuiperbelt's `/send` with one session per request, or
//! `/v1/send/batch` with many one-session messages per request. Reports accepted sends per
//! second, the client-side delivery rate, and the gateway's CPU time per frame.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::Serialize;

use super::target::Target;
use super::{clients, procfs};

/// Scenario parameters.
pub struct SendOptions {
    /// Connected sessions the sends go to.
    pub sessions: usize,
    /// Concurrent backend requests.
    pub concurrency: usize,
    /// How long to send.
    pub duration: Duration,
    /// Payload bytes per message.
    pub payload_size: usize,
    /// Messages per `/v1/send/batch` request; `None` uses `/send` with one session.
    pub batch: Option<usize>,
}

/// Results.
#[derive(Debug, Serialize)]
pub struct SendReport {
    pub scenario: &'static str,
    pub sessions: usize,
    pub concurrency: usize,
    pub batch: Option<usize>,
    pub payload_bytes: usize,
    pub duration_s: f64,
    pub requests: u64,
    pub request_errors: u64,
    pub frames_accepted: u64,
    pub frames_received: u64,
    pub requests_per_s: f64,
    pub frames_per_s: f64,
    pub gateway_cpu_us_per_frame: Option<f64>,
}

pub async fn run(target: &Target, options: &SendOptions) -> anyhow::Result<SendReport> {
    let opened = clients::open(&target.connect_url, options.sessions, 256, "send").await?;
    anyhow::ensure!(
        opened.failures == 0,
        "{} of {} sessions failed to connect",
        opened.failures,
        options.sessions
    );
    let received = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = opened
        .clients
        .into_iter()
        .map(|mut client| {
            let received = received.clone();
            tokio::spawn(async move {
                while let Some(Ok(message)) = client.next().await {
                    if message.is_text() || message.is_binary() {
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(options.concurrency)
        .build()?;
    let payload = "x".repeat(options.payload_size);
    let requests = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let accepted = Arc::new(AtomicU64::new(0));
    let cpu_before = target.pid.and_then(|pid| procfs::cpu_seconds(pid).ok());
    let started = Instant::now();
    let deadline = started + options.duration;
    let mut workers = Vec::new();
    for worker in 0..options.concurrency {
        let (http, payload) = (http.clone(), payload.clone());
        let (requests, errors, accepted) = (requests.clone(), errors.clone(), accepted.clone());
        let api = target.api_url.clone();
        let (sessions, batch) = (options.sessions, options.batch);
        workers.push(tokio::spawn(async move {
            let mut next = worker;
            let batch_body = batch.map(|size| batch_body(worker, size, sessions, &payload));
            while Instant::now() < deadline {
                let (request, frames) = match &batch_body {
                    Some(body) => (
                        http.post(format!("{api}/v1/send/batch")).body(body.clone()),
                        batch.unwrap_or(1) as u64,
                    ),
                    None => {
                        next = (next + stride(sessions)) % sessions;
                        (
                            http.post(format!("{api}/send"))
                                .header("X-Kuiperbelt-Session", format!("send-{next}"))
                                .body(payload.clone()),
                            1,
                        )
                    }
                };
                requests.fetch_add(1, Ordering::Relaxed);
                match request.send().await {
                    Ok(response) if response.status().is_success() => {
                        let _ = response.bytes().await;
                        accepted.fetch_add(frames, Ordering::Relaxed);
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for worker in workers {
        worker.await?;
    }
    let elapsed = started.elapsed();
    let cpu_after = target.pid.and_then(|pid| procfs::cpu_seconds(pid).ok());
    let frames_accepted = accepted.load(Ordering::Relaxed);
    // Let the last frames arrive, bounded.
    let settle = Instant::now() + Duration::from_secs(10);
    while received.load(Ordering::Relaxed) < frames_accepted && Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for reader in readers {
        reader.abort();
    }
    let frames_received = received.load(Ordering::Relaxed);
    let gateway_cpu = match (cpu_before, cpu_after) {
        (Some(before), Some(after)) if frames_accepted > 0 => {
            Some((after - before) * 1e6 / frames_accepted as f64)
        }
        _ => None,
    };
    let request_count = requests.load(Ordering::Relaxed);
    Ok(SendReport {
        scenario: if options.batch.is_some() {
            "send_batch"
        } else {
            "send"
        },
        sessions: options.sessions,
        concurrency: options.concurrency,
        batch: options.batch,
        payload_bytes: options.payload_size,
        duration_s: elapsed.as_secs_f64(),
        requests: request_count,
        request_errors: errors.load(Ordering::Relaxed),
        frames_accepted,
        frames_received,
        requests_per_s: request_count as f64 / elapsed.as_secs_f64(),
        frames_per_s: frames_accepted as f64 / elapsed.as_secs_f64(),
        gateway_cpu_us_per_frame: gateway_cpu,
    })
}

/// Spreads consecutive requests of one worker over the sessions.
fn stride(sessions: usize) -> usize {
    if sessions > 7 { 7 } else { 1 }
}

/// A batch of `size` one-session messages, spread over the sessions.
fn batch_body(worker: usize, size: usize, sessions: usize, payload: &str) -> String {
    let messages: Vec<serde_json::Value> = (0..size)
        .map(|i| serde_json::json!({ "sessions": [format!("send-{}", (worker * size + i) % sessions)], "data": payload }))
        .collect();
    serde_json::json!({ "messages": messages }).to_string()
}
