//! Scenarios 2 and 4: send throughput and latency. S sessions are held; C concurrent backend
//! connections post sends for a fixed time, through kuiperbelt's `/send` with one session per
//! request, or `/v1/send/batch` with many one-session messages per request. Each payload is
//! stamped with its send time, so clients measure backend-send to client-receive latency.
//! The cross-node form holds the sessions on one node and sends through each node in turn.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::receivers::{Receivers, stamp};
use super::target::Target;
use super::{Percentiles, clients};

/// Scenario parameters.
#[derive(Clone)]
pub struct SendOptions {
    /// Connected sessions the sends go to.
    pub sessions: usize,
    /// Concurrent backend requests.
    pub concurrency: usize,
    /// How long to send.
    pub duration: Duration,
    /// Payload bytes per message (at least 20, for the timestamp).
    pub payload_size: usize,
    /// Messages per `/v1/send/batch` request; `None` uses `/send` with one session.
    pub batch: Option<usize>,
    /// Sessions offer the `oort.v1` subprotocol (sequence numbers, acks every 32 messages).
    pub durable: bool,
}

/// One phase's results.
#[derive(Debug, Serialize)]
pub struct SendReport {
    pub scenario: &'static str,
    /// The node the sends went through (`local` or `cross` in the cross-node form).
    pub via: String,
    pub sessions: usize,
    pub concurrency: usize,
    pub batch: Option<usize>,
    /// The sessions were `oort.v1` sessions.
    pub durable: bool,
    pub payload_bytes: usize,
    pub duration_s: f64,
    pub requests: u64,
    pub request_errors: u64,
    pub frames_accepted: u64,
    pub frames_received: u64,
    pub requests_per_s: f64,
    pub frames_per_s: f64,
    /// Backend send to client receive.
    pub latency: Option<Percentiles>,
    /// CPU time of every gateway process (all nodes of a cluster) per frame.
    pub gateway_cpu_us_per_frame: Option<f64>,
    /// Mean deliveries per NATS request from the sending node to the owner (cross-node).
    pub deliveries_per_nats_request: Option<f64>,
}

/// Sends through the target's API to sessions on the target.
pub async fn run(target: &Target, options: &SendOptions) -> anyhow::Result<SendReport> {
    let receivers = open_receivers(&target.connect_url, options).await?;
    phase(target, &target.api_url, "local", &receivers, options).await
}

/// Holds the sessions on the first node; sends through it (local), then through the second
/// (cross-node), in the same run.
pub async fn run_cross(target: &Target, options: &SendOptions) -> anyhow::Result<Vec<SendReport>> {
    anyhow::ensure!(
        target.nodes.len() >= 2,
        "the cross-node scenario needs --cluster 2 or more"
    );
    let first = &target.nodes[0];
    let connect_url = format!("{}/connect", first.replacen("http://", "ws://", 1));
    let receivers = open_receivers(&connect_url, options).await?;
    let local = phase(target, first, "local", &receivers, options).await?;
    let cross = phase(target, &target.nodes[1], "cross", &receivers, options).await?;
    Ok(vec![local, cross])
}

/// Connects `options.sessions` sessions (`send-<n>`) and starts reading them.
pub(super) async fn open_receivers(
    connect_url: &str,
    options: &SendOptions,
) -> anyhow::Result<Receivers> {
    let opened =
        clients::open_with(connect_url, options.sessions, 256, "send", options.durable).await?;
    anyhow::ensure!(
        opened.failures == 0,
        "{} of {} sessions failed to connect",
        opened.failures,
        options.sessions
    );
    Ok(if options.durable {
        Receivers::start_durable(opened.clients)
    } else {
        Receivers::start(opened.clients)
    })
}

async fn phase(
    target: &Target,
    api: &str,
    via: &str,
    receivers: &Receivers,
    options: &SendOptions,
) -> anyhow::Result<SendReport> {
    let http = crate::http_client_builder()
        .timeout(super::REQUEST_TIMEOUT)
        .pool_max_idle_per_host(options.concurrency)
        .build()?;
    let requests = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let accepted = Arc::new(AtomicU64::new(0));
    let received_before = receivers.tally.frames();
    let _ = receivers.tally.take_latencies();
    let cpu_before = target.cpu_seconds();
    let forwarded_before = forwarding_counters(&http, api).await;
    let started = Instant::now();
    let deadline = started + options.duration;
    let mut workers = Vec::new();
    for worker in 0..options.concurrency {
        let http = http.clone();
        let (requests, errors, accepted) = (requests.clone(), errors.clone(), accepted.clone());
        let api = api.to_owned();
        let options = options.clone();
        workers.push(tokio::spawn(async move {
            let mut next = worker;
            while Instant::now() < deadline {
                let (request, frames) = match options.batch {
                    Some(size) => (
                        http.post(format!("{api}/v1/send/batch"))
                            .body(batch_body(worker, size, &options)),
                        size as u64,
                    ),
                    None => {
                        next = (next + stride(options.sessions)) % options.sessions;
                        let request = http
                            .post(format!("{api}/send"))
                            .header("X-Kuiperbelt-Session", format!("send-{next}"))
                            .body(stamp(options.payload_size));
                        (request, 1)
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
    let cpu_after = target.cpu_seconds();
    let forwarded_after = forwarding_counters(&http, api).await;
    let frames_accepted = accepted.load(Ordering::Relaxed);
    receivers
        .wait_for(received_before + frames_accepted, Duration::from_secs(10))
        .await;
    let frames_received = receivers.tally.frames() - received_before;
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
        via: via.to_owned(),
        sessions: options.sessions,
        concurrency: options.concurrency,
        batch: options.batch,
        durable: options.durable,
        payload_bytes: options.payload_size,
        duration_s: elapsed.as_secs_f64(),
        requests: request_count,
        request_errors: errors.load(Ordering::Relaxed),
        frames_accepted,
        frames_received,
        requests_per_s: request_count as f64 / elapsed.as_secs_f64(),
        frames_per_s: frames_accepted as f64 / elapsed.as_secs_f64(),
        latency: Percentiles::of(&mut receivers.tally.take_latencies()),
        gateway_cpu_us_per_frame: gateway_cpu,
        deliveries_per_nats_request: match (forwarded_before, forwarded_after) {
            (Some((d0, r0)), Some((d1, r1))) if r1 > r0 => Some((d1 - d0) / (r1 - r0)),
            _ => None,
        },
    })
}

/// The node's forwarded deliveries and the NATS requests that carried them, from `/metrics`.
async fn forwarding_counters(http: &reqwest::Client, api: &str) -> Option<(f64, f64)> {
    let text = http
        .get(format!("{api}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let counter = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse::<f64>().ok())
    };
    Some((
        counter("oort_cluster_deliveries_forwarded_total ")?,
        counter("oort_cluster_delivery_requests_total ")?,
    ))
}

/// Spreads consecutive requests of one worker over the sessions.
fn stride(sessions: usize) -> usize {
    if sessions > 7 { 7 } else { 1 }
}

/// A batch of one-session messages spread over the sessions, stamped now.
fn batch_body(worker: usize, size: usize, options: &SendOptions) -> String {
    let data = stamp(options.payload_size);
    let messages: Vec<serde_json::Value> = (0..size)
        .map(|i| serde_json::json!({ "sessions": [format!("send-{}", (worker * size + i) % options.sessions)], "data": data }))
        .collect();
    serde_json::json!({ "messages": messages }).to_string()
}
