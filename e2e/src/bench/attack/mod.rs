//! Hostile clients against a running gateway (Oort, or kuiperbelt for comparison): one attack
//! at a time, while the gateway's memory is sampled from `/proc`, a well-behaved client keeps
//! connecting and receiving (its latency is the service a real user would get), and sessions
//! opened before the attack are checked afterwards with a marker message (none may be lost).
//!
//! Attackers come from many loopback addresses (127.77.x.y), as a botnet would, except the
//! connect loop, which is one address. Sessions come from 127.0.0.2 and up, the probe from
//! 127.0.0.1, so per-address limits that refuse attackers do not refuse them.

mod endpoint;
mod flood;
mod frames;
mod heads;
mod no_read;
mod outcomes;
mod watch;

use std::time::Duration;

use serde::Serialize;

pub use endpoint::Endpoint;
pub use outcomes::Outcomes;
pub use watch::ProbeReport;

use super::target::Target;

/// The attacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AttackKind {
    /// Slowloris: the request line, then one header line per second, never the end.
    SlowHeads,
    /// `--head-bytes` of headers each, never the end of the head.
    LargeHeads,
    /// Connections that send nothing.
    HalfOpen,
    /// One address opening connections (handshake, then close) as fast as it can.
    ConnectLoop,
    /// Sessions sending messages cut into `--fragments` continuation frames each.
    Fragments,
    /// Sessions sending messages of `--message-bytes` (just over the size limit by default).
    OversizedMessages,
    /// Sessions that never read while the backend pushes `--message-bytes` to them.
    NoRead,
}

impl AttackKind {
    fn name(self) -> &'static str {
        match self {
            Self::SlowHeads => "slow-heads",
            Self::LargeHeads => "large-heads",
            Self::HalfOpen => "half-open",
            Self::ConnectLoop => "connect-loop",
            Self::Fragments => "fragments",
            Self::OversizedMessages => "oversized-messages",
            Self::NoRead => "no-read",
        }
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct AttackOptions {
    pub kind: AttackKind,
    /// Attacking connections (or sessions, or parallel loops for `connect-loop`).
    pub connections: usize,
    /// Distinct attacker addresses.
    pub sources: usize,
    /// How long the attack lasts.
    pub hold: Duration,
    /// Header bytes per connection (`large-heads`).
    pub head_bytes: usize,
    /// Message size (`fragments`, `oversized-messages`, `no-read`).
    pub message_bytes: usize,
    /// Frames per message (`fragments`, `oversized-messages`).
    pub fragments: usize,
    /// Well-behaved sessions opened before the attack, which must all survive it.
    pub sessions: usize,
    /// Time between two connects of the well-behaved probe client.
    pub probe_interval: Duration,
}

/// What happened.
#[derive(Debug, Serialize)]
pub struct AttackReport {
    pub scenario: &'static str,
    pub attack: &'static str,
    pub connections: usize,
    pub sources: usize,
    pub hold_s: f64,
    /// Gateway RSS after the sessions opened, before the attack.
    pub rss_baseline_bytes: Option<u64>,
    /// Highest RSS sampled during the attack (every 50 ms).
    pub rss_peak_bytes: Option<u64>,
    /// RSS once the attack ended and the sessions were checked.
    pub rss_end_bytes: Option<u64>,
    /// (peak - baseline) / connections.
    pub rss_peak_per_connection_bytes: Option<f64>,
    /// How the attacking connections ended, by label (`status_431`, `closed`, `held_open`...).
    pub outcomes: Outcomes,
    /// The well-behaved client's experience during the attack.
    pub probe: ProbeReport,
    pub sessions: usize,
    /// Sessions that did not receive the marker sent after the attack.
    pub sessions_lost: usize,
}

/// Runs the attack on a runtime of its own, on its own thread, so that its thousands of tasks
/// do not delay the probe, the sessions and the callback backend, which measure the gateway.
async fn apart(
    endpoint: Endpoint,
    api_url: String,
    sources: Vec<std::net::Ipv4Addr>,
    options: AttackOptions,
) -> anyhow::Result<Outcomes> {
    let (done, outcome) = tokio::sync::oneshot::channel();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::spawn(move || {
        let outcomes = runtime.block_on(attack(&endpoint, &api_url, &sources, &options));
        let _ = done.send(outcomes);
    });
    Ok(outcome.await?)
}

async fn attack(
    endpoint: &Endpoint,
    api_url: &str,
    sources: &[std::net::Ipv4Addr],
    options: &AttackOptions,
) -> Outcomes {
    match options.kind {
        AttackKind::SlowHeads => {
            let head = heads::Head::Slow(Duration::from_secs(1));
            heads::run(endpoint, sources, options, head).await
        }
        AttackKind::LargeHeads => {
            let head = heads::Head::Large(options.head_bytes);
            heads::run(endpoint, sources, options, head).await
        }
        AttackKind::HalfOpen => heads::run(endpoint, sources, options, heads::Head::Silent).await,
        AttackKind::ConnectLoop => flood::run(endpoint, sources[0], options).await,
        AttackKind::Fragments | AttackKind::OversizedMessages => {
            frames::run(endpoint, sources, options).await
        }
        AttackKind::NoRead => no_read::run(endpoint, api_url, sources, options).await,
    }
}

/// Runs one attack against `target`.
pub async fn run(target: &Target, options: &AttackOptions) -> anyhow::Result<AttackReport> {
    let endpoint = Endpoint::of(&target.connect_url).await?;
    let sessions = watch::Sessions::open(&endpoint, options.sessions).await?;
    let baseline = target.rss_bytes();
    let sampler = watch::RssSampler::start(target.pid);
    let probe = watch::Probe::start(&endpoint, &target.api_url, options.probe_interval);
    let sources = endpoint::attacker_sources(options.sources);
    let outcomes = apart(
        endpoint,
        target.api_url.clone(),
        sources.clone(),
        options.clone(),
    )
    .await?;
    let probe = probe.finish().await;
    let peak = sampler.finish().await;
    let sessions_lost = sessions.count_lost(&target.api_url).await;
    let end = target.rss_bytes();
    let per_connection = match (baseline, peak) {
        (Some(before), Some(peak)) => {
            Some(peak.saturating_sub(before) as f64 / options.connections.max(1) as f64)
        }
        _ => None,
    };
    Ok(AttackReport {
        scenario: "attack",
        attack: options.kind.name(),
        connections: options.connections,
        sources: sources.len(),
        hold_s: options.hold.as_secs_f64(),
        rss_baseline_bytes: baseline,
        rss_peak_bytes: peak,
        rss_end_bytes: end,
        rss_peak_per_connection_bytes: per_connection,
        outcomes,
        probe,
        sessions: options.sessions,
        sessions_lost,
    })
}
