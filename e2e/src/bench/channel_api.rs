//! The channel calls of the JSON API the channel scenarios make: membership in batches,
//! presence, publish. Every answer is checked, so a scenario never measures a failed request.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::clients;

/// Opens `count` clients spread evenly over `connect_urls` (node `n` gets keys
/// `{prefix}-n{n}-{index}`); returns them and their keys, in node order.
pub async fn open_spread(
    connect_urls: &[String],
    count: usize,
    prefix: &str,
) -> anyhow::Result<(Vec<clients::Client>, Vec<String>)> {
    let nodes = connect_urls.len().max(1);
    let mut all = Vec::with_capacity(count);
    let mut keys = Vec::with_capacity(count);
    for (node, url) in connect_urls.iter().enumerate() {
        let share = count / nodes + usize::from(node < count % nodes);
        let node_prefix = format!("{prefix}-n{node}");
        let opened = clients::open(url, share, 256, &node_prefix).await?;
        anyhow::ensure!(
            opened.failures == 0,
            "{} clients failed to connect to {url}",
            opened.failures
        );
        keys.extend((0..share).map(|index| format!("{node_prefix}-{index}")));
        all.extend(opened.clients);
    }
    Ok((all, keys))
}

/// A membership change's rate.
#[derive(Debug, Serialize)]
pub struct MembershipRate {
    /// Session-channel pairs changed.
    pub subscriptions: usize,
    /// Sessions per request.
    pub batch: usize,
    /// Channels per request.
    pub channels_per_request: usize,
    pub elapsed_ms: f64,
    pub subscriptions_per_s: f64,
}

/// `/v1/subscribe` (or, without `join`, `/v1/unsubscribe`) of `keys` to `channels` through
/// `api`, `batch` sessions per request, one request at a time; every session must be `ok`.
pub async fn membership(
    http: &reqwest::Client,
    api: &str,
    keys: &[String],
    channels: &[String],
    batch: usize,
    join: bool,
) -> anyhow::Result<MembershipRate> {
    let path = if join {
        "/v1/subscribe"
    } else {
        "/v1/unsubscribe"
    };
    let started = Instant::now();
    for chunk in keys.chunks(batch.max(1)) {
        let body = serde_json::json!({ "sessions": chunk, "channels": channels });
        let (status, answer) = post(http, &format!("{api}{path}"), &body).await?;
        anyhow::ensure!(
            status.is_success() && answer["ok"].as_u64() == Some(chunk.len() as u64),
            "{path} answered {status}: ok {} of {}",
            answer["ok"],
            chunk.len()
        );
    }
    let elapsed = started.elapsed();
    let subscriptions = keys.len() * channels.len();
    Ok(MembershipRate {
        subscriptions,
        batch,
        channels_per_request: channels.len(),
        elapsed_ms: elapsed.as_secs_f64() * 1000.0,
        subscriptions_per_s: subscriptions as f64 / elapsed.as_secs_f64(),
    })
}

/// Waits until `GET /v1/channels/{channel}` through every one of `apis` counts `count`
/// sessions: every node's replica knows every subscriber's node, so a publish through any node
/// reaches them all. Errors after `timeout`.
pub async fn wait_for_members(
    http: &reqwest::Client,
    apis: &[String],
    channel: &str,
    count: usize,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    for api in apis {
        loop {
            let seen = members(http, api, channel).await.unwrap_or_default();
            if seen == count as u64 {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{channel} has {seen} of {count} sessions through {api}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(())
}

async fn members(http: &reqwest::Client, api: &str, channel: &str) -> anyhow::Result<u64> {
    let answer = json_of(
        http.get(format!("{api}/v1/channels/{channel}?limit=1"))
            .send()
            .await?,
    )
    .await?;
    answer["sessions"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("no session count in {answer}"))
}

/// What `/v1/publish` answered.
pub struct Published {
    /// Sessions that took the message.
    pub sessions: u64,
    /// Nodes where at least one did.
    pub nodes: u64,
}

/// `/v1/publish` of `data` to `channel` through `api`.
pub async fn publish(
    http: &reqwest::Client,
    api: &str,
    channel: &str,
    data: &str,
) -> anyhow::Result<Published> {
    let body = serde_json::json!({ "channels": [channel], "data": data });
    let (status, answer) = post(http, &format!("{api}/v1/publish"), &body).await?;
    anyhow::ensure!(
        status.is_success(),
        "/v1/publish answered {status}: {answer}"
    );
    Ok(Published {
        sessions: answer["sessions"].as_u64().unwrap_or_default(),
        nodes: answer["nodes"].as_u64().unwrap_or_default(),
    })
}

/// A response's body as JSON (whatever its status).
/// POSTs `body` as JSON; the answer's status and JSON body.
async fn post(
    http: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
) -> anyhow::Result<(reqwest::StatusCode, serde_json::Value)> {
    let response = http.post(url).body(body.to_string()).send().await?;
    let status = response.status();
    Ok((status, json_of(response).await?))
}

pub async fn json_of(response: reqwest::Response) -> anyhow::Result<serde_json::Value> {
    Ok(serde_json::from_slice(&response.bytes().await?)?)
}
