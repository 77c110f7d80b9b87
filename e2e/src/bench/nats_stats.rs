//! What a cluster's NATS traffic costs, from nats-server's monitoring endpoint: messages
//! delivered on channel subjects (`oort.<cluster>.chan.<channel>`, counted per subscription by
//! `/connz?subs=detail`, so nothing else the cluster sends is counted), and the server's total
//! messages in and out (`/varz`: replies and the cluster's heartbeats included).

use serde::Serialize;

use super::channel_api::json_of;

/// The counters at one moment.
#[derive(Clone, Copy, Debug, Default)]
pub struct NatsCounters {
    /// Messages delivered to the subscriptions on channel subjects.
    pub channel_deliveries: u64,
    /// Messages the server received, all subjects.
    pub in_msgs: u64,
    /// Messages the server sent, all subjects.
    pub out_msgs: u64,
}

/// NATS messages per publish, between two readings.
#[derive(Debug, Serialize)]
pub struct NatsPerPublish {
    /// Deliveries on channel subjects: one per node subscribed to the channel (the publishing
    /// node's own copy included, which it ignores).
    pub channel_deliveries: f64,
    /// Every message into nats-server (the publish, the receipts, heartbeats meanwhile).
    pub in_msgs: f64,
    /// Every message out of nats-server.
    pub out_msgs: f64,
}

impl NatsCounters {
    /// Reads the counters from `monitor` (`http://host:port`).
    pub async fn read(http: &reqwest::Client, monitor: &str) -> anyhow::Result<Self> {
        let varz = json_of(http.get(format!("{monitor}/varz")).send().await?).await?;
        let connz = json_of(
            http.get(format!("{monitor}/connz?subs=detail&limit=1024"))
                .send()
                .await?,
        )
        .await?;
        let channel_deliveries = connz["connections"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|connection| {
                connection["subscriptions_list_detail"]
                    .as_array()
                    .into_iter()
                    .flatten()
            })
            .filter(|sub| {
                sub["subject"]
                    .as_str()
                    .is_some_and(|subject| subject.contains(".chan."))
            })
            .filter_map(|sub| sub["msgs"].as_u64())
            .sum();
        Ok(Self {
            channel_deliveries,
            in_msgs: varz["in_msgs"].as_u64().unwrap_or_default(),
            out_msgs: varz["out_msgs"].as_u64().unwrap_or_default(),
        })
    }

    /// What `publishes` publishes cost between `self` and `later`.
    pub fn per_publish(&self, later: &Self, publishes: u64) -> NatsPerPublish {
        let per =
            |before: u64, after: u64| after.saturating_sub(before) as f64 / publishes.max(1) as f64;
        NatsPerPublish {
            channel_deliveries: per(self.channel_deliveries, later.channel_deliveries),
            in_msgs: per(self.in_msgs, later.in_msgs),
            out_msgs: per(self.out_msgs, later.out_msgs),
        }
    }
}

/// Reads the target's NATS counters, if it has a monitored nats-server (a cluster spawned here).
pub async fn read_target(
    http: &reqwest::Client,
    target: &super::target::Target,
) -> anyhow::Result<Option<NatsCounters>> {
    match target.nats_monitor_url() {
        Some(monitor) => Ok(Some(NatsCounters::read(http, &monitor).await?)),
        None => Ok(None),
    }
}
