//! Named Durable Streams under load (`/v1/stream/<name>`, docs/streams.md), three measures in
//! one run, in this order (each one's memory figure needs a heap that has not just freed the
//! previous one's memory, so nothing is deleted until the end):
//!
//! - `retained`: M messages of a fixed size appended to one stream through its owner (in
//!   batches: a JSON array appends each element); the owner's RSS delta per message, beside
//!   `oort_stream_bytes` from its `/metrics`.
//! - `sse`: N SSE readers of one stream, spread over the nodes, each caught up (its first
//!   control event says `upToDate`); the nodes' RSS delta per reader, then a few appends
//!   through the owner: the time until each reader has the data event, the last one apart.
//! - `append`: appends of one small JSON message per `POST`, from C keep-alive HTTP/1.1
//!   clients for a fixed time, to one stream and spread over S streams, through the owner and
//!   then (clustered) through another node, which routes each append to the owner over NATS:
//!   appends/s, latency, and the gateways' CPU time per append (summed over every node).
//!
//! Every stream is created by a `PUT` through the first node, which therefore owns it (a node
//! claims, in the raft directory, the streams created through it).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{StreamExt, TryStreamExt};
use serde::Serialize;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::target::Target;
use super::{Percentiles, procfs};

/// The gateway's default `streams.path`.
const STREAMS_PATH: &str = "/v1/stream";

/// Messages per `POST` while filling the `retained` stream: 1,000 × 64 bytes is a 65 KB body,
/// well under `streams.max_append_bytes` (512 KiB).
const RETAINED_BATCH: usize = 1_000;

/// How long a reader may take to connect and catch up, and all readers to get one append.
const READER_TIMEOUT: Duration = Duration::from_secs(30);

/// Sizes of a run.
#[derive(Clone, Debug)]
pub struct StreamsOptions {
    /// Keep-alive HTTP/1.1 clients appending at once.
    pub concurrency: usize,
    /// How long each append phase lasts.
    pub duration: Duration,
    /// Streams the spread append phases use.
    pub streams: usize,
    /// Bytes of each appended JSON message.
    pub message_size: usize,
    /// SSE readers (capped at what one process's open files allow).
    pub readers: usize,
    /// Appends the SSE readers wait for, one after the other.
    pub rounds: usize,
    /// Messages the `retained` stream keeps.
    pub retained: usize,
    /// `Authorization: Bearer` for every request, when the gateway has an `api_token`.
    pub api_token: Option<String>,
}

/// `append` results: one phase.
#[derive(Debug, Serialize)]
pub struct AppendReport {
    pub scenario: &'static str,
    pub measure: &'static str,
    /// `owner` (appends sent to the node that owns the streams) or `other` (to another node,
    /// which forwards each append to the owner over NATS).
    pub via: &'static str,
    pub streams: usize,
    pub concurrency: usize,
    pub message_bytes: usize,
    pub duration_s: f64,
    /// Appends answered 204.
    pub appends: u64,
    pub errors: u64,
    pub appends_per_s: f64,
    /// `POST` sent to its answer.
    pub latency: Option<Percentiles>,
    /// CPU time of every gateway node per append.
    pub gateway_cpu_us_per_append: Option<f64>,
    /// This phase's rate over the same streams' rate through the owner (`other` only).
    pub rate_vs_owner: Option<f64>,
    /// This phase's CPU per append over the owner phase's (`other` only).
    pub cpu_vs_owner: Option<f64>,
}

/// One node's share of the SSE readers and its memory.
#[derive(Debug, Serialize)]
pub struct NodeReaders {
    pub node: String,
    /// Readers connected to this node (the first node owns the stream).
    pub readers: usize,
    pub rss_before_bytes: Option<u64>,
    pub rss_after_bytes: Option<u64>,
    /// RSS delta over this node's own readers. The owner's delta also holds the reads that
    /// the other nodes' readers keep waiting on it, so its figure is not per local reader only.
    pub rss_per_reader_bytes: Option<f64>,
}

/// One append to the SSE readers.
#[derive(Debug, Serialize)]
pub struct SseRound {
    /// Readers that had the data event within the timeout.
    pub received: usize,
    /// The append's `POST` answered (through the owner).
    pub append_ms: f64,
    /// `POST` sent to each reader's data event.
    pub delivery: Option<Percentiles>,
    /// The last reader on the owner node, and on the other nodes.
    pub last_on_owner_ms: Option<f64>,
    pub last_on_other_nodes_ms: Option<f64>,
}

/// `sse` results.
#[derive(Debug, Serialize)]
pub struct SseReport {
    pub scenario: &'static str,
    pub measure: &'static str,
    /// Readers asked for; more than one process can hold were not opened.
    pub readers_asked: usize,
    pub readers: usize,
    /// Connecting every reader until the last one was caught up.
    pub connect_s: f64,
    pub connect_per_s: f64,
    pub nodes: Vec<NodeReaders>,
    /// The RSS delta of every node over every reader.
    pub rss_per_reader_bytes: Option<f64>,
    pub rounds: Vec<SseRound>,
    /// Readers whose response ended before the last round (`streams.sse_max_duration`).
    pub ended_early: u64,
}

/// `retained` results.
#[derive(Debug, Serialize)]
pub struct RetainedReport {
    pub scenario: &'static str,
    pub measure: &'static str,
    pub messages: usize,
    pub message_bytes: usize,
    pub append_s: f64,
    pub rss_before_bytes: Option<u64>,
    pub rss_after_bytes: Option<u64>,
    /// The owner's RSS delta per message.
    pub rss_per_message_bytes: Option<f64>,
    /// `oort_stream_bytes` (payloads plus the store's fixed per-message charge) delta per
    /// message, from the owner's `/metrics`.
    pub stream_bytes_per_message: Option<f64>,
}

/// Every measure; the reports in the order they ran.
pub async fn run(target: &Target, options: &StreamsOptions) -> anyhow::Result<Vec<Value>> {
    let bench = Bench::new(target, options)?;
    let mut reports = Vec::new();
    reports.push(serde_json::to_value(bench.retained().await?)?);
    reports.push(serde_json::to_value(bench.sse().await?)?);
    let one = bench.create_many("one", 1).await?;
    let many = bench.create_many("many", options.streams.max(1)).await?;
    for streams in [&one, &many] {
        let owner = bench.append(streams, 0, "owner").await?;
        let other = match target.nodes.len() {
            1 => None,
            _ => Some(bench.append(streams, 1, "other").await?),
        };
        let other = other.map(|mut other| {
            other.rate_vs_owner = Some(other.appends_per_s / owner.appends_per_s);
            other.cpu_vs_owner = other
                .gateway_cpu_us_per_append
                .zip(owner.gateway_cpu_us_per_append)
                .map(|(other, owner)| other / owner);
            other
        });
        reports.push(serde_json::to_value(owner)?);
        match other {
            Some(other) => reports.push(serde_json::to_value(other)?),
            None => {
                eprintln!(
                    "streams: one node, so no appends through another node (use --cluster 3)"
                );
                reports.push(serde_json::json!({
                    "scenario": "streams",
                    "measure": "append",
                    "via": "other",
                    "streams": streams.len(),
                    "skipped": "the target is one node: no other node to append through \
                                (run with --cluster 3)",
                }));
            }
        }
    }
    Ok(reports)
}

struct Bench<'a> {
    target: &'a Target,
    options: &'a StreamsOptions,
    http: reqwest::Client,
    /// Prefix of this run's stream names, so runs against one gateway never share a stream.
    prefix: String,
}

impl<'a> Bench<'a> {
    fn new(target: &'a Target, options: &'a StreamsOptions) -> anyhow::Result<Self> {
        anyhow::ensure!(!target.nodes.is_empty(), "no node to send to");
        let http = crate::http_client_builder()
            .timeout(super::REQUEST_TIMEOUT)
            .pool_max_idle_per_host(options.concurrency.max(1))
            .http1_only()
            .build()?;
        Ok(Self {
            target,
            options,
            http,
            prefix: format!("bench-{:08x}", rand::random::<u32>()),
        })
    }

    fn url(&self, node: usize, name: &str) -> String {
        format!("{}{STREAMS_PATH}/{name}", self.target.nodes[node])
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.options.api_token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Creates `name` (a JSON stream) through the first node, which then owns it.
    async fn create(&self, name: &str, first: Option<String>) -> anyhow::Result<()> {
        let request = self
            .http
            .put(self.url(0, name))
            .header(http::header::CONTENT_TYPE, "application/json");
        let request = match first {
            Some(body) => request.body(body),
            None => request,
        };
        let response = self.authorized(request).send().await?;
        anyhow::ensure!(
            response.status() == 201,
            "PUT {name} answered {}: {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
        Ok(())
    }

    async fn create_many(&self, label: &str, count: usize) -> anyhow::Result<Vec<String>> {
        let names: Vec<String> = (0..count)
            .map(|i| format!("{}-{label}-{i}", self.prefix))
            .collect();
        let created: Vec<anyhow::Result<()>> = futures_util::stream::iter(&names)
            .map(|name| self.create(name, None))
            .buffer_unordered(self.options.concurrency.max(1))
            .collect()
            .await;
        created.into_iter().collect::<anyhow::Result<()>>()?;
        Ok(names)
    }

    /// One `POST` of `body` to `name` through `node`: true when answered 204.
    async fn post(&self, node: usize, name: &str, body: String) -> anyhow::Result<bool> {
        let request = self
            .http
            .post(self.url(node, name))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body);
        let response = self.authorized(request).send().await?;
        let ok = response.status() == 204 && response.headers().contains_key("stream-next-offset");
        // Read to the end, so the connection goes back to the pool.
        response.bytes().await?;
        Ok(ok)
    }

    /// The owner's (the first node's) resident memory.
    fn owner_rss(&self) -> Option<u64> {
        self.target
            .pids
            .first()
            .and_then(|pid| procfs::rss_bytes(*pid).ok())
    }

    /// `oort_stream_bytes` on the first node's `/metrics`.
    async fn stream_bytes_metric(&self) -> Option<f64> {
        let request = self.http.get(format!("{}/metrics", self.target.nodes[0]));
        let text = self
            .authorized(request)
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find(|line| {
                line.strip_prefix("oort_stream_bytes")
                    .is_some_and(|rest| rest.starts_with([' ', '{']))
            })
            .and_then(|line| line.split_whitespace().last())
            .and_then(|value| value.parse().ok())
    }

    async fn retained(&self) -> anyhow::Result<RetainedReport> {
        let name = format!("{}-retained", self.prefix);
        self.create(&name, None).await?;
        let size = self.options.message_size;
        let count = self.options.retained;
        let rss_before = self.owner_rss();
        let metric_before = self.stream_bytes_metric().await;
        let started = Instant::now();
        let mut sent = 0;
        while sent < count {
            let batch = RETAINED_BATCH.min(count - sent);
            let body = format!(
                "[{}]",
                (sent..sent + batch)
                    .map(|n| message(n as u64, size))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            anyhow::ensure!(
                self.post(0, &name, body).await?,
                "an append to {name} failed"
            );
            sent += batch;
        }
        let append_s = started.elapsed().as_secs_f64();
        let rss_after = self.owner_rss();
        let metric_after = self.stream_bytes_metric().await;
        let per = |delta: f64| (count > 0).then(|| delta / count as f64);
        Ok(RetainedReport {
            scenario: "streams",
            measure: "retained",
            messages: count,
            message_bytes: size,
            append_s,
            rss_before_bytes: rss_before,
            rss_after_bytes: rss_after,
            rss_per_message_bytes: rss_before
                .zip(rss_after)
                .and_then(|(before, after)| per(after.saturating_sub(before) as f64)),
            stream_bytes_per_message: metric_before
                .zip(metric_after)
                .and_then(|(before, after)| per(after - before)),
        })
    }

    async fn sse(&self) -> anyhow::Result<SseReport> {
        let nodes = self.target.nodes.len();
        // The bench holds one socket per reader: at most what one process's open files allow
        // (the gateways hold a share each, fewer).
        let cap = super::idle_workers::clients_per_process();
        let readers = self.options.readers.min(cap);
        if readers < self.options.readers {
            eprintln!(
                "streams: {} SSE readers asked, {readers} opened (this process's open-file limit)",
                self.options.readers
            );
        }
        let name = format!("{}-fan", self.prefix);
        // One message to catch up on, so every reader reads through the catch-up path first.
        self.create(&name, Some(message(0, self.options.message_size)))
            .await?;
        let rss = |pid: Option<&u32>| pid.and_then(|pid| procfs::rss_bytes(*pid).ok());
        let rss_before: Vec<Option<u64>> =
            (0..nodes).map(|i| rss(self.target.pids.get(i))).collect();
        let (arrivals, mut arrived) = mpsc::unbounded_channel();
        let ended = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        // The first reader that cannot connect or catch up ends the run (within its timeout),
        // rather than every remaining reader waiting out its own.
        let readers_tasks: Vec<JoinHandle<()>> = futures_util::stream::iter(0..readers)
            .map(|index| {
                let node = index % nodes;
                let addr = self.target.nodes[node].trim_start_matches("http://");
                let path = format!("{STREAMS_PATH}/{name}?offset=-1&live=sse");
                let reader = Reader {
                    index,
                    arrivals: arrivals.clone(),
                    ended: ended.clone(),
                };
                open_sse(
                    addr.to_owned(),
                    path,
                    self.options.api_token.clone(),
                    reader,
                )
            })
            .buffer_unordered(256)
            .try_collect()
            .await
            .context(
                "SSE readers did not all catch up. On a shared client listener a named-stream \
                 request counts as a backend API connection, so a node serves at most \
                 limits.shared_api_connections readers at once (4,096 in the spawned gateways): \
                 fewer --readers, or more nodes",
            )?;
        let connect_s = started.elapsed().as_secs_f64();
        let rss_after: Vec<Option<u64>> =
            (0..nodes).map(|i| rss(self.target.pids.get(i))).collect();
        let mut rounds = Vec::new();
        for round in 0..self.options.rounds {
            let started = Instant::now();
            let body = message(round as u64 + 1, self.options.message_size);
            anyhow::ensure!(
                self.post(0, &name, body).await?,
                "the append to the SSE readers failed"
            );
            let append_ms = started.elapsed().as_secs_f64() * 1000.0;
            let mut by_node: Vec<Vec<Duration>> = vec![Vec::new(); nodes];
            let mut seen = vec![false; readers];
            let deadline = tokio::time::Instant::now() + READER_TIMEOUT;
            let mut received = 0;
            while received < readers {
                let Ok(Some((index, at))) = tokio::time::timeout_at(deadline, arrived.recv()).await
                else {
                    break;
                };
                if !std::mem::replace(&mut seen[index], true) {
                    received += 1;
                    by_node[index % nodes].push(at.saturating_duration_since(started));
                }
            }
            let last = |delays: &[Duration]| {
                delays
                    .iter()
                    .max()
                    .map(|delay| delay.as_secs_f64() * 1000.0)
            };
            let others: Vec<Duration> = by_node[1..].concat();
            rounds.push(SseRound {
                received,
                append_ms,
                last_on_owner_ms: last(&by_node[0]),
                last_on_other_nodes_ms: last(&others),
                delivery: Percentiles::of(&mut by_node.concat()),
            });
        }
        for task in readers_tasks {
            task.abort();
        }
        let node_reports: Vec<NodeReaders> = (0..nodes)
            .map(|node| {
                let count = (node..readers).step_by(nodes).count();
                let (before, after) = (rss_before[node], rss_after[node]);
                NodeReaders {
                    node: self.target.nodes[node].clone(),
                    readers: count,
                    rss_before_bytes: before,
                    rss_after_bytes: after,
                    rss_per_reader_bytes: before.zip(after).and_then(|(before, after)| {
                        (count > 0).then(|| after.saturating_sub(before) as f64 / count as f64)
                    }),
                }
            })
            .collect();
        let total = |values: &[Option<u64>]| values.iter().copied().sum::<Option<u64>>();
        Ok(SseReport {
            scenario: "streams",
            measure: "sse",
            readers_asked: self.options.readers,
            readers,
            connect_s,
            connect_per_s: readers as f64 / connect_s,
            rss_per_reader_bytes: total(&rss_before).zip(total(&rss_after)).and_then(
                |(before, after)| {
                    (readers > 0).then(|| after.saturating_sub(before) as f64 / readers as f64)
                },
            ),
            nodes: node_reports,
            rounds,
            ended_early: ended.load(Ordering::Relaxed),
        })
    }

    /// Appends to `streams` through node `node` from `concurrency` clients for the duration.
    async fn append(
        &self,
        streams: &[String],
        node: usize,
        via: &'static str,
    ) -> anyhow::Result<AppendReport> {
        let size = self.options.message_size;
        // Unmeasured: one append per client opens its connection, and through another node
        // the first append also looks the owner up in the directory.
        let warm: Vec<anyhow::Result<bool>> =
            futures_util::stream::iter(0..self.options.concurrency)
                .map(|i| self.post(node, &streams[i % streams.len()], message(0, size)))
                .buffer_unordered(self.options.concurrency.max(1))
                .collect()
                .await;
        anyhow::ensure!(
            warm.into_iter().all(|ok| ok.is_ok_and(|ok| ok)),
            "warm-up appends through {} failed",
            self.target.nodes[node]
        );
        let appends = AtomicU64::new(0);
        let errors = AtomicU64::new(0);
        let cpu_before = self.target.cpu_seconds();
        let started = Instant::now();
        let deadline = started + self.options.duration;
        let workers = (0..self.options.concurrency).map(|worker| {
            let (appends, errors) = (&appends, &errors);
            async move {
                let mut latencies = Vec::new();
                let mut n = worker;
                while Instant::now() < deadline {
                    // Client `worker` takes every C-th stream in turn, so all are used.
                    let name = &streams[n % streams.len()];
                    let sent = Instant::now();
                    match self.post(node, name, message(n as u64, size)).await {
                        Ok(true) => {
                            latencies.push(sent.elapsed());
                            appends.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    n += self.options.concurrency;
                }
                latencies
            }
        });
        let mut latencies: Vec<Duration> = futures_util::future::join_all(workers)
            .await
            .into_iter()
            .flatten()
            .collect();
        let elapsed = started.elapsed().as_secs_f64();
        let cpu_after = self.target.cpu_seconds();
        let appends = appends.load(Ordering::Relaxed);
        Ok(AppendReport {
            scenario: "streams",
            measure: "append",
            via,
            streams: streams.len(),
            concurrency: self.options.concurrency,
            message_bytes: size,
            duration_s: elapsed,
            appends,
            errors: errors.load(Ordering::Relaxed),
            appends_per_s: appends as f64 / elapsed,
            latency: Percentiles::of(&mut latencies),
            gateway_cpu_us_per_append: cpu_before.zip(cpu_after).and_then(|(before, after)| {
                (appends > 0).then(|| (after - before) * 1e6 / appends as f64)
            }),
            rate_vs_owner: None,
            cpu_vs_owner: None,
        })
    }
}

/// A compact JSON object of exactly `size` bytes (or the smallest one holding `n`), as the
/// gateway stores it (it keeps each JSON message re-serialized, compactly).
fn message(n: u64, size: usize) -> String {
    let bare = format!("{{\"i\":{n},\"p\":\"\"}}");
    let pad = size.saturating_sub(bare.len());
    format!("{{\"i\":{n},\"p\":\"{}\"}}", "x".repeat(pad))
}

/// What a reader reports to the run.
struct Reader {
    index: usize,
    arrivals: mpsc::UnboundedSender<(usize, Instant)>,
    ended: Arc<AtomicU64>,
}

/// Opens an SSE read of `path` on a plain TCP connection to `addr` and waits until it is
/// caught up (a control event saying `upToDate`); then, in the background, reports each data
/// event's arrival.
async fn open_sse(
    addr: String,
    path: String,
    token: Option<String>,
    reader: Reader,
) -> anyhow::Result<JoinHandle<()>> {
    let mut socket = tokio::time::timeout(READER_TIMEOUT, tokio::net::TcpStream::connect(&addr))
        .await
        .context("an SSE reader's connect timed out")??;
    let auth = token
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}\r\n");
    socket.write_all(request.as_bytes()).await?;
    let mut buffer = vec![0; 4096];
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + READER_TIMEOUT;
    while !contains(&seen, b"\"upToDate\":true") {
        let read = tokio::time::timeout_at(deadline, socket.read(&mut buffer))
            .await
            .context("an SSE reader did not catch up in time")??;
        anyhow::ensure!(
            read > 0,
            "the SSE response ended before catching up: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buffer[..read]);
    }
    Ok(tokio::spawn(async move {
        // Each append is written as one chunk (data and control events together), so a
        // search per read finds its data event.
        let mut buffer = vec![0; 4096];
        while let Ok(read) = socket.read(&mut buffer).await {
            if read == 0 {
                break;
            }
            if contains(&buffer[..read], b"event: data") {
                let _ = reader.arrivals.send((reader.index, Instant::now()));
            }
        }
        reader.ended.fetch_add(1, Ordering::Relaxed);
    }))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_have_the_asked_size() {
        assert_eq!(message(7, 64).len(), 64);
        assert_eq!(message(123_456, 64).len(), 64);
        let value: Value = serde_json::from_str(&message(5, 64)).unwrap_or_default();
        assert_eq!(value.to_string(), message(5, 64), "already compact");
        assert_eq!(message(1, 0), "{\"i\":1,\"p\":\"\"}");
    }
}
