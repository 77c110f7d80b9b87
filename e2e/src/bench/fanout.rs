//! Scenario 3: fan-out. N sessions are held; one `/v1/send` naming all of them, then one
//! `/v1/broadcast`: how long until every client has the frame (p50/p99/max over clients,
//! measured from the moment the request was sent). With a cluster the sessions are held by the
//! first node and each round goes through it (`local`) and then through the second (`cross`):
//! scenario 4's fan-out half.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::receivers::Receivers;
use super::target::Target;
use super::{Percentiles, clients};

/// One fan-out round's results.
#[derive(Debug, Serialize)]
pub struct FanoutReport {
    pub scenario: &'static str,
    /// `send` (one /v1/send naming every session) or `broadcast`.
    pub form: &'static str,
    /// The node the request went through: `local` (the sessions' node) or `cross`.
    pub via: &'static str,
    pub sessions: usize,
    pub received: usize,
    /// Request sent to each client's receipt.
    pub delivery: Option<Percentiles>,
    /// The API's answer time.
    pub request_ms: f64,
}

pub async fn run(
    target: &Target,
    sessions: usize,
    rounds: usize,
) -> anyhow::Result<Vec<FanoutReport>> {
    let (connect_url, vias) = match target.nodes.as_slice() {
        [first, second, ..] => (
            format!("{}/connect", first.replacen("http://", "ws://", 1)),
            vec![("local", first.clone()), ("cross", second.clone())],
        ),
        _ => (
            target.connect_url.clone(),
            vec![("local", target.api_url.clone())],
        ),
    };
    let opened = clients::open(&connect_url, sessions, 256, "fan").await?;
    anyhow::ensure!(
        opened.failures == 0,
        "{} sessions failed to connect",
        opened.failures
    );
    let receivers = Receivers::start(opened.clients);
    let http = crate::http_client_builder()
        .timeout(super::REQUEST_TIMEOUT)
        .build()?;
    let keys: Vec<String> = (0..sessions).map(|i| format!("fan-{i}")).collect();
    let send_body = serde_json::json!({ "sessions": keys, "data": "fan-out" }).to_string();
    let broadcast_body = serde_json::json!({ "data": "broadcast" }).to_string();
    // One unmeasured round first: the very first frame on each fresh connection costs more
    // (allocations on both ends), which is a connection's cost, not a fan-out's.
    let before = receivers.tally.frames();
    let response = http
        .post(format!("{}/v1/send", vias[0].1))
        .body(send_body.clone())
        .send()
        .await?;
    anyhow::ensure!(response.status().is_success(), "warm-up send failed");
    receivers
        .wait_for(before + sessions as u64, Duration::from_secs(30))
        .await;
    let mut reports = Vec::new();
    let rounds = (0..rounds).flat_map(|_| vias.iter());
    for (via, api) in rounds {
        for (form, path, body) in [
            ("send", "/v1/send", &send_body),
            ("broadcast", "/v1/broadcast", &broadcast_body),
        ] {
            receivers.tally.reset_arrivals();
            let before = receivers.tally.frames();
            let started = Instant::now();
            let response = http
                .post(format!("{api}{path}"))
                .body(body.clone())
                .send()
                .await?;
            let request_ms = started.elapsed().as_secs_f64() * 1000.0;
            anyhow::ensure!(
                response.status().is_success(),
                "{path} answered {}",
                response.status()
            );
            receivers
                .wait_for(before + sessions as u64, Duration::from_secs(30))
                .await;
            let mut delays: Vec<Duration> = receivers
                .tally
                .arrivals()
                .into_iter()
                .map(|at| at.saturating_duration_since(started))
                .collect();
            reports.push(FanoutReport {
                scenario: "fanout",
                form,
                via,
                sessions,
                received: delays.len(),
                delivery: Percentiles::of(&mut delays),
                request_ms,
            });
        }
    }
    Ok(reports)
}
