//! Scenario 6: the chat benchmark of the seeds (Cowboy + RabbitMQ, 2013). N clients connect,
//! wait for the signal, and each sends M messages; every message goes through the receive
//! callback to the backend, which broadcasts it; every client must receive all N x M messages.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio_tungstenite::tungstenite::Message;

use super::receivers::Receivers;
use super::target::Target;
use super::{backend, clients};

/// Results.
#[derive(Debug, Serialize)]
pub struct ChatReport {
    pub scenario: &'static str,
    pub clients: usize,
    pub messages_per_client: usize,
    pub frames_expected: u64,
    pub frames_received: u64,
    pub all_received: bool,
    pub elapsed_s: f64,
    pub frames_per_s: f64,
}

pub async fn run(
    target: &Target,
    client_count: usize,
    messages: usize,
    timeout: Duration,
) -> anyhow::Result<ChatReport> {
    backend::broadcast_received_to(&target.api_url);
    let opened = clients::open(&target.connect_url, client_count, 256, "chat").await?;
    anyhow::ensure!(
        opened.failures == 0,
        "{} clients failed to connect",
        opened.failures
    );
    let expected = (client_count * messages * client_count) as u64;
    let exchange = exchange(opened.clients, messages, timeout).await?;
    Ok(ChatReport {
        scenario: "chat",
        clients: client_count,
        messages_per_client: messages,
        frames_expected: expected,
        frames_received: exchange.received,
        all_received: exchange.received >= expected,
        elapsed_s: exchange.elapsed.as_secs_f64(),
        frames_per_s: exchange.received as f64 / exchange.elapsed.as_secs_f64(),
    })
}

/// What one exchange saw.
pub struct Exchange {
    /// Frames received, all clients together.
    pub received: u64,
    /// From the signal until the last frame arrived.
    pub elapsed: Duration,
}

/// Every client sends `messages` at the signal (now), while all read; waits until each has
/// received every client's every message (or `timeout`).
pub async fn exchange(
    clients: Vec<clients::Client>,
    messages: usize,
    timeout: Duration,
) -> anyhow::Result<Exchange> {
    let client_count = clients.len();
    let (sinks, streams): (Vec<_>, Vec<_>) = clients.into_iter().map(StreamExt::split).unzip();
    let receivers = Receivers::start_streams(streams);
    let expected = (client_count * messages * client_count) as u64;
    // The signal: everyone is connected; now everyone talks at once.
    let started = Instant::now();
    let senders: Vec<_> = sinks
        .into_iter()
        .enumerate()
        .map(|(index, mut sink)| {
            tokio::spawn(async move {
                for message in 0..messages {
                    if sink
                        .send(Message::text(format!("client {index} message {message}")))
                        .await
                        .is_err()
                    {
                        return sink;
                    }
                }
                sink
            })
        })
        .collect();
    let mut sinks = Vec::new();
    for sender in senders {
        sinks.push(sender.await?);
    }
    receivers.wait_for(expected, timeout).await;
    // Until the last frame that came: when some never do, the rate is still the delivery's,
    // not the timeout's.
    let elapsed = receivers
        .tally
        .arrivals()
        .into_iter()
        .max()
        .map_or_else(|| started.elapsed(), |last| last - started);
    let received = receivers.tally.frames();
    drop(sinks);
    Ok(Exchange { received, elapsed })
}
