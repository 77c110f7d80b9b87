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
    /// CPU time of every gateway process from the request until the last client had the
    /// frame, per session reached (what one delivery costs the gateway, parsing included).
    pub gateway_cpu_us_per_delivery: Option<f64>,
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
    let (receivers, keys) = open_sessions(&connect_url, sessions).await?;
    let forms = [Form::send(&keys), Form::broadcast()];
    rounds_of(target, &receivers, &vias, &forms, rounds).await
}

/// Fan-out through kuiperbelt's API only: one `/send` with an `X-Kuiperbelt-Session` header
/// per session, on one node; what `oort-bench compare` measures on every gateway.
pub async fn run_kuiperbelt(
    target: &Target,
    sessions: usize,
    rounds: usize,
) -> anyhow::Result<Vec<FanoutReport>> {
    let (receivers, keys) = open_sessions(&target.connect_url, sessions).await?;
    let vias = [("local", target.api_url.clone())];
    rounds_of(
        target,
        &receivers,
        &vias,
        &[Form::send_headers(&keys)],
        rounds,
    )
    .await
}

/// Connects `sessions` clients (`fan-<n>`), starts reading them, and returns their keys.
async fn open_sessions(
    connect_url: &str,
    sessions: usize,
) -> anyhow::Result<(Receivers, Vec<String>)> {
    let opened = clients::open(connect_url, sessions, 256, "fan").await?;
    anyhow::ensure!(
        opened.failures == 0,
        "{} sessions failed to connect",
        opened.failures
    );
    let keys = (0..sessions).map(|i| format!("fan-{i}")).collect();
    Ok((Receivers::start(opened.clients), keys))
}

/// One way of reaching every session with one request.
struct Form {
    name: &'static str,
    path: &'static str,
    body: String,
    /// `X-Kuiperbelt-Session` headers, one per session.
    session_headers: Vec<String>,
}

impl Form {
    fn send(keys: &[String]) -> Self {
        Self {
            name: "send",
            path: "/v1/send",
            body: serde_json::json!({ "sessions": keys, "data": "fan-out" }).to_string(),
            session_headers: Vec::new(),
        }
    }

    fn broadcast() -> Self {
        Self {
            name: "broadcast",
            path: "/v1/broadcast",
            body: serde_json::json!({ "data": "broadcast" }).to_string(),
            session_headers: Vec::new(),
        }
    }

    fn send_headers(keys: &[String]) -> Self {
        Self {
            name: "send-headers",
            path: "/send",
            body: "fan-out".to_owned(),
            session_headers: keys.to_vec(),
        }
    }

    fn request(&self, http: &reqwest::Client, api: &str) -> reqwest::RequestBuilder {
        let mut request = http.post(format!("{api}{}", self.path));
        for key in &self.session_headers {
            request = request.header("X-Kuiperbelt-Session", key);
        }
        request.body(self.body.clone())
    }
}

/// One unmeasured request, then `rounds` rounds of every form through every via.
async fn rounds_of(
    target: &Target,
    receivers: &Receivers,
    vias: &[(&'static str, String)],
    forms: &[Form],
    rounds: usize,
) -> anyhow::Result<Vec<FanoutReport>> {
    let sessions = receivers.len();
    let http = crate::http_client_builder()
        .timeout(super::REQUEST_TIMEOUT)
        .build()?;
    // One unmeasured round first: the very first frame on each fresh connection costs more
    // (allocations on both ends), which is a connection's cost, not a fan-out's.
    let (Some(first_form), Some((_, first_api))) = (forms.first(), vias.first()) else {
        return Ok(Vec::new());
    };
    let before = receivers.tally.frames();
    let response = first_form.request(&http, first_api).send().await?;
    anyhow::ensure!(response.status().is_success(), "warm-up send failed");
    receivers
        .wait_for(before + sessions as u64, Duration::from_secs(30))
        .await;
    let mut reports = Vec::new();
    let rounds = (0..rounds).flat_map(|_| vias.iter());
    for (via, api) in rounds {
        for form in forms {
            receivers.tally.reset_arrivals();
            let before = receivers.tally.frames();
            let cpu_before = target.cpu_seconds();
            let started = Instant::now();
            let response = form.request(&http, api).send().await?;
            let request_ms = started.elapsed().as_secs_f64() * 1000.0;
            anyhow::ensure!(
                response.status().is_success(),
                "{} answered {}",
                form.path,
                response.status()
            );
            receivers
                .wait_for(before + sessions as u64, Duration::from_secs(30))
                .await;
            let cpu = cpu_before.zip(target.cpu_seconds());
            let mut delays: Vec<Duration> = receivers
                .tally
                .arrivals()
                .into_iter()
                .map(|at| at.saturating_duration_since(started))
                .collect();
            reports.push(FanoutReport {
                scenario: "fanout",
                form: form.name,
                via,
                sessions,
                received: delays.len(),
                delivery: Percentiles::of(&mut delays),
                request_ms,
                gateway_cpu_us_per_delivery: cpu
                    .map(|(before, after)| (after - before) * 1e6 / delays.len().max(1) as f64),
            });
        }
    }
    Ok(reports)
}
