//! Resumes under load: N `oort.v1` clients that each drop their connection (no close frame)
//! after a random time and resume at once on the same node, again and again for a bounded
//! time, while a sender sends to them through `/v1/send/batch`. Reports resumes a second, the
//! time from a drop to the welcome of its resume, and whether every message answered `ok` or
//! `buffered` arrived exactly once, in order (the workload of `super::rolling`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::rolling::{Clients, Delivery, Workload};
use super::target::Target;

/// The size of a resume run.
#[derive(Clone, Debug)]
pub struct ResumeOptions {
    /// `oort.v1` clients, spread over the target's nodes.
    pub clients: usize,
    /// Messages a second through `/v1/send/batch`.
    pub rate: usize,
    /// How long clients keep dropping and resuming.
    pub duration: Duration,
    /// Each connection is dropped after a random time between these two.
    pub drop_after_min: Duration,
    pub drop_after_max: Duration,
}

/// One resume run.
#[derive(Debug, Serialize)]
pub struct ResumeReport {
    /// The scenario's name.
    pub scenario: &'static str,
    pub nodes: usize,
    pub clients: usize,
    /// Messages a second asked for.
    pub rate: usize,
    /// How long clients dropped and resumed.
    pub duration_s: f64,
    /// Resumes (each with its welcome) a second over that time.
    pub resumes_per_second: f64,
    /// What reached the clients.
    #[serde(flatten)]
    pub delivery: Delivery,
}

/// Runs the resume scenario against `target` (each client stays on one of its nodes).
pub async fn run(target: &Target, options: &ResumeOptions) -> anyhow::Result<ResumeReport> {
    let nodes = target
        .nodes
        .iter()
        .map(|url| {
            url.trim_start_matches("http://")
                .parse::<SocketAddr>()
                .map_err(|err| anyhow::anyhow!("node {url}: {err}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let behaviour = Clients::Drop {
        min: options.drop_after_min,
        max: options.drop_after_max.max(options.drop_after_min),
    };
    let mut workload = Workload::start(options.clients, nodes.clone(), behaviour).await?;
    workload.send(options.rate)?;
    let started = Instant::now();
    tokio::time::sleep(options.duration).await;
    workload.stop_dropping();
    let dropping_for = started.elapsed();
    let delivery = workload.finish().await;
    Ok(ResumeReport {
        scenario: "resume",
        nodes: nodes.len(),
        clients: options.clients,
        rate: options.rate,
        duration_s: dropping_for.as_secs_f64(),
        resumes_per_second: delivery.resumes as f64 / dropping_for.as_secs_f64(),
        delivery,
    })
}
