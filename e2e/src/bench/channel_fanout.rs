//! Publish fan-out (issue 13, item 7): one channel with N subscribers, first spread evenly over
//! every node (`spread`), then all held by the first node (`local`), each published to through
//! the first node: time until the last subscriber has the message, in the same run.
//! With the spread sessions it also measures the `/v1/subscribe` and `/v1/unsubscribe` rates
//! (batches of sessions through the target's API node), the gateways' memory per subscription
//! (RSS, summed over every node, before and after subscribing the same sessions to K more
//! channels), and on a cluster spawned here the NATS messages per publish.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::channel_api::{self, MembershipRate};
use super::nats_stats::{NatsPerPublish, read_target};
use super::receivers::Receivers;
use super::target::Target;
use super::{Percentiles, clients};

/// Sizes of a run.
#[derive(Clone, Debug)]
pub struct ChannelFanoutOptions {
    /// Subscribers of the channel.
    pub sessions: usize,
    /// Measured publishes per placement (after one unmeasured).
    pub rounds: usize,
    /// Extra channels every spread session joins for the memory figure (K).
    pub extra_channels: usize,
    /// Sessions per `/v1/subscribe` request.
    pub batch: usize,
}

/// One placement's publishes.
#[derive(Debug, Serialize)]
pub struct PlacementReport {
    /// `local` (every subscriber on the publishing node) or `spread` (over every node).
    pub placement: &'static str,
    /// The fewest subscribers that received a round's publish.
    pub received_min: usize,
    /// Publish sent to the last subscriber's receipt: the median over rounds.
    pub last_p50_ms: f64,
    /// Publish sent to each subscriber's receipt, every round together.
    pub delivery: Option<Percentiles>,
    /// The API's answer time, median over rounds.
    pub request_p50_ms: f64,
    /// Nodes where subscribers took the last publish (its answer's `nodes`).
    pub nodes: u64,
}

/// Memory per subscription.
#[derive(Debug, Serialize)]
pub struct SubscriptionMemory {
    pub subscriptions: usize,
    pub rss_before_bytes: Option<u64>,
    pub rss_after_bytes: Option<u64>,
    pub bytes_per_subscription: Option<f64>,
}

/// Results.
#[derive(Debug, Serialize)]
pub struct ChannelFanoutReport {
    pub scenario: &'static str,
    pub sessions: usize,
    pub rounds: usize,
    pub local: PlacementReport,
    pub spread: PlacementReport,
    /// Spread's last-subscriber time over local's (the target: at most 1.5).
    pub spread_vs_local: f64,
    /// NATS messages per spread publish (a cluster spawned here only).
    pub nats_per_publish: Option<NatsPerPublish>,
    pub subscribe: MembershipRate,
    /// Subscribing every session to the K extra channels at once.
    pub subscribe_extra: MembershipRate,
    pub unsubscribe_extra: MembershipRate,
    pub memory: SubscriptionMemory,
}

const LOCAL: &str = "bench-local";
const SPREAD: &str = "bench-spread";

pub async fn run(
    target: &Target,
    options: &ChannelFanoutOptions,
) -> anyhow::Result<ChannelFanoutReport> {
    let http = crate::http_client_builder()
        .timeout(super::REQUEST_TIMEOUT)
        .build()?;
    let first = target.nodes.first().cloned().unwrap_or_default();
    let connect_urls = target.connect_urls();
    let sessions = options.sessions;
    // Spread first: the memory figure needs a heap that did not just free 10k closed sessions
    // (the allocator would reuse that memory without RSS growing).
    let (clients, keys) = channel_api::open_spread(&connect_urls, sessions, "chs").await?;
    let api = &target.api_url;
    let channel = [SPREAD.to_owned()];
    let subscribe =
        channel_api::membership(&http, api, &keys, &channel, options.batch, true).await?;
    channel_api::wait_for_members(&http, &target.nodes, SPREAD, sessions, WAIT).await?;
    let extra: Vec<String> = (0..options.extra_channels)
        .map(|k| format!("bench-extra-{k}"))
        .collect();
    settle().await;
    let rss_before = target.rss_bytes();
    let subscribe_extra =
        channel_api::membership(&http, api, &keys, &extra, options.batch, true).await?;
    settle().await;
    let rss_after = target.rss_bytes();
    let unsubscribe_extra =
        channel_api::membership(&http, api, &keys, &extra, options.batch, false).await?;
    let subscriptions = sessions * extra.len();
    let memory = SubscriptionMemory {
        subscriptions,
        rss_before_bytes: rss_before,
        rss_after_bytes: rss_after,
        bytes_per_subscription: rss_before.zip(rss_after).map(|(before, after)| {
            after.saturating_sub(before) as f64 / subscriptions.max(1) as f64
        }),
    };
    let nats_before = read_target(&http, target).await?;
    let spread = rounds(&http, &first, clients, SPREAD, options.rounds, "spread").await?;
    let nats_after = read_target(&http, target).await?;
    // The clients closed with the receivers; give the nodes a moment to let them go.
    settle().await;
    let (clients, keys) = channel_api::open_spread(&connect_urls[..1], sessions, "chl").await?;
    let channel = [LOCAL.to_owned()];
    channel_api::membership(&http, &first, &keys, &channel, options.batch, true).await?;
    channel_api::wait_for_members(&http, &target.nodes, LOCAL, sessions, WAIT).await?;
    let local = rounds(&http, &first, clients, LOCAL, options.rounds, "local").await?;
    // The unmeasured round is a publish too.
    let publishes = options.rounds as u64 + 1;
    Ok(ChannelFanoutReport {
        scenario: "channel_fanout",
        sessions,
        rounds: options.rounds,
        spread_vs_local: spread.last_p50_ms / local.last_p50_ms,
        local,
        spread,
        nats_per_publish: nats_before
            .zip(nats_after)
            .map(|(before, after)| before.per_publish(&after, publishes)),
        subscribe,
        subscribe_extra,
        unsubscribe_extra,
        memory,
    })
}

/// How long the subscribers may take to show in every node's presence.
const WAIT: Duration = Duration::from_secs(60);

/// Lets the requests' own buffers be freed (and closed sessions go) before RSS is read or
/// the next clients open.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}

/// One unmeasured publish, then `count` measured ones to `channel` through `api`, each
/// waiting for every one of `clients` to receive it.
async fn rounds(
    http: &reqwest::Client,
    api: &str,
    clients: Vec<clients::Client>,
    channel: &str,
    count: usize,
    placement: &'static str,
) -> anyhow::Result<PlacementReport> {
    let sessions = clients.len() as u64;
    let receivers = Receivers::start(clients);
    // The first frame on each fresh connection costs more (allocations on both ends): a
    // connection's cost, not a publish's.
    let before = receivers.tally.frames();
    channel_api::publish(http, api, channel, "warm-up").await?;
    receivers
        .wait_for(before + sessions, Duration::from_secs(30))
        .await;
    let (mut lasts, mut requests, mut all) = (Vec::new(), Vec::new(), Vec::new());
    let mut received_min = usize::MAX;
    let mut nodes = 0;
    for round in 0..count {
        receivers.tally.reset_arrivals();
        let before = receivers.tally.frames();
        let started = Instant::now();
        let answer = channel_api::publish(http, api, channel, &format!("round {round}")).await?;
        requests.push(started.elapsed());
        nodes = answer.nodes;
        receivers
            .wait_for(before + sessions, Duration::from_secs(30))
            .await;
        let delays: Vec<Duration> = receivers
            .tally
            .arrivals()
            .into_iter()
            .map(|at| at.saturating_duration_since(started))
            .collect();
        received_min = received_min.min(delays.len());
        lasts.extend(delays.iter().max().copied());
        all.extend(delays);
    }
    Ok(PlacementReport {
        placement,
        received_min: if count == 0 { 0 } else { received_min },
        last_p50_ms: median_ms(&mut lasts),
        delivery: Percentiles::of(&mut all),
        request_p50_ms: median_ms(&mut requests),
        nodes,
    })
}

fn median_ms(samples: &mut [Duration]) -> f64 {
    Percentiles::of(samples).map_or(0.0, |p| p.p50_ms)
}
