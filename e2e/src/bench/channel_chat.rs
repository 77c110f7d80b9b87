//! The chat benchmark through a channel (issue 13, item 6): N clients spread over the target's
//! nodes all join one room through the connect callback (`X-Oort-Channels`), wait for the
//! signal, and each send M messages; the backend publishes every received message to the room
//! through `/v1/publish` (each node in turn), and every client must receive all N x M. On a
//! cluster it also counts what a publish costs in NATS messages.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;

use super::nats_stats::{NatsPerPublish, read_target};
use super::target::Target;
use super::{backend, channel_api, chat};

/// The room, and the key prefix of its members.
const ROOM: &str = "bench-room";
const PREFIX: &str = "room";

/// Results.
#[derive(Debug, Serialize)]
pub struct ChannelChatReport {
    pub scenario: &'static str,
    pub clients: usize,
    /// Nodes the clients are spread over.
    pub nodes: usize,
    pub messages_per_client: usize,
    pub frames_expected: u64,
    pub frames_received: u64,
    pub all_received: bool,
    pub elapsed_s: f64,
    pub frames_per_s: f64,
    /// Publishes the backend made (one per client message).
    pub publishes: u64,
    pub publish_failures: u64,
    /// Client messages the gateways dropped because their receive callback failed (counted in
    /// the logs of gateways spawned here).
    pub receive_callback_failures: usize,
    /// NATS messages per publish (a cluster spawned here only).
    pub nats_per_publish: Option<NatsPerPublish>,
}

pub async fn run(
    target: &Target,
    client_count: usize,
    messages: usize,
    timeout: Duration,
) -> anyhow::Result<ChannelChatReport> {
    let prefix = format!("{PREFIX}-");
    backend::join_on_connect(&prefix, ROOM)?;
    let route = backend::publish_received(&prefix, ROOM, &target.nodes);
    let http = crate::http_client_builder()
        .timeout(super::REQUEST_TIMEOUT)
        .build()?;
    let connect_urls = target.connect_urls();
    let (clients, _) = channel_api::open_spread(&connect_urls, client_count, PREFIX).await?;
    // The signal waits until every node knows every member: a message published before would
    // miss those whose node it did not know yet.
    channel_api::wait_for_members(
        &http,
        &target.nodes,
        ROOM,
        client_count,
        Duration::from_secs(30),
    )
    .await?;
    let nats_before = read_target(&http, target).await?;
    let expected = (client_count * messages * client_count) as u64;
    let exchange = chat::exchange(clients, messages, timeout).await?;
    let publishes = (client_count * messages) as u64;
    let nats_after = read_target(&http, target).await?;
    let nats_per_publish = nats_before
        .zip(nats_after)
        .map(|(before, after)| before.per_publish(&after, publishes));
    let failed: Vec<String> = target
        .logs()
        .into_iter()
        .filter(|line| line.contains("receive callback failed"))
        .collect();
    if let Some(first) = failed.first() {
        eprintln!(
            "{} receive callbacks failed, the first: {first}",
            failed.len()
        );
    }
    Ok(ChannelChatReport {
        scenario: "channel_chat",
        clients: client_count,
        nodes: connect_urls.len(),
        messages_per_client: messages,
        frames_expected: expected,
        frames_received: exchange.received,
        all_received: exchange.received >= expected,
        elapsed_s: exchange.elapsed.as_secs_f64(),
        frames_per_s: exchange.received as f64 / exchange.elapsed.as_secs_f64(),
        publishes,
        publish_failures: route.failures.load(Ordering::Relaxed),
        receive_callback_failures: failed.len(),
        nats_per_publish,
    })
}
