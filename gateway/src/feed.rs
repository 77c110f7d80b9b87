//! The event feed (`callback.event_feed`) that the RPC `WatchEvents` streams: connects, client
//! messages, closes and presence changes, as protobuf `oort.v1.Event`s. Clustered, each node
//! publishes its events on NATS (`oort.<cluster>.events.feed`) and each consumer subscribes
//! there, so a consumer on any node sees every node's events; single, they go from this
//! process's sessions to its consumers directly.
//!
//! Every consumer has a bounded queue: one that falls [`QUEUE`] events behind is dropped with
//! a status saying so, rather than holding memory without bound or slowing the sessions.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use buffa::Message as _;
use bytes::Bytes;
use futures_util::StreamExt;
use oort_common::rpc::__buffa::oneof::event::Kind;
use oort_common::rpc::{Connected, Event, Message, PresenceChanged};
use oort_common::{FrameKind, SessionKey};
use oort_router::EventChannel;
use tokio::sync::mpsc;

use crate::sessions::PresenceChange;

/// Events a consumer may fall behind before it is dropped.
pub(crate) const QUEUE: usize = 4096;
/// The NATS event kind of the feed.
const FEED: &str = "feed";

/// Where events go, and this node's own consumers when it is not clustered.
pub(crate) struct EventFeed {
    enabled: bool,
    /// This node's id, as every event names it.
    node: String,
    /// NATS, when clustered; otherwise events go to `local`.
    nats: Option<EventChannel>,
    local: Mutex<LocalConsumers>,
}

#[derive(Default)]
struct LocalConsumers {
    /// Consumers that receive every event.
    solo: Vec<Consumer>,
    /// Consumers sharing by group: each event goes to the next one of the group in turn.
    groups: HashMap<String, (usize, Vec<Consumer>)>,
}

/// One consumer's end of the feed: events, and whether it fell behind and was dropped.
pub(crate) struct Watch {
    pub(crate) events: mpsc::Receiver<Bytes>,
    pub(crate) overflowed: Arc<AtomicBool>,
}

#[derive(Clone)]
struct Consumer {
    queue: mpsc::Sender<Bytes>,
    overflowed: Arc<AtomicBool>,
}

impl Consumer {
    fn new() -> (Self, Watch) {
        let (queue, events) = mpsc::channel(QUEUE);
        let overflowed = Arc::new(AtomicBool::new(false));
        let consumer = Self {
            queue,
            overflowed: overflowed.clone(),
        };
        (consumer, Watch { events, overflowed })
    }

    /// Queues `event`; false when the consumer is gone or was just dropped for falling behind.
    fn offer(&self, event: Bytes) -> bool {
        match self.queue.try_send(event) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.overflowed.store(true, Ordering::Release);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// Why a consumer cannot watch.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WatchError {
    #[error("the event feed is off on this node (set callback.event_feed: true on every node)")]
    Off,
    #[error("group: {0}")]
    BadGroup(&'static str),
    #[error("the event feed is unavailable: {0}")]
    Unavailable(String),
}

impl EventFeed {
    /// The feed of the node `node`, over `nats` when clustered.
    pub(crate) fn new(enabled: bool, node: String, nats: Option<EventChannel>) -> Self {
        Self {
            enabled,
            node,
            nats,
            local: Mutex::default(),
        }
    }

    /// Whether events are published at all (`callback.event_feed`).
    pub(crate) fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// A session opened (`resumed`: an `oort.v1` session came back on a new connection).
    pub(crate) async fn connected(&self, key: &SessionKey, resumed: bool) {
        if self.enabled {
            let connected = Connected {
                resumed,
                ..Default::default()
            };
            self.publish(key, Kind::Connected(Box::new(connected)))
                .await;
        }
    }

    /// A client message.
    pub(crate) async fn message(&self, key: &SessionKey, kind: FrameKind, data: &Bytes) {
        if self.enabled {
            let payload = crate::api::rpc_payload(kind, data);
            let message = Message {
                payload: payload.into(),
                ..Default::default()
            };
            self.publish(key, Kind::Message(Box::new(message))).await;
        }
    }

    /// A session ended.
    pub(crate) async fn closed(&self, key: &SessionKey) {
        if self.enabled {
            self.publish(key, Kind::Closed(Box::default())).await;
        }
    }

    /// A channel join or leave.
    pub(crate) async fn presence(&self, change: &PresenceChange) {
        if self.enabled {
            let presence = PresenceChanged {
                channel: change.channel.clone(),
                joined: change.joined,
                ..Default::default()
            };
            self.publish(&change.session, Kind::Presence(Box::new(presence)))
                .await;
        }
    }

    async fn publish(&self, key: &SessionKey, kind: Kind) {
        let event = Event {
            session: key.as_str().to_owned(),
            node: self.node.clone(),
            unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            kind: Some(kind),
            ..Default::default()
        };
        let body = Bytes::from(event.encode_to_vec());
        match &self.nats {
            Some(events) => {
                if let Err(err) = events.publish(FEED, body).await {
                    tracing::debug!(error = %err, "an event was not published to the feed");
                }
            }
            None => self.fan_out(&body),
        }
    }

    /// Hands `event` to every solo consumer and to one consumer of each group; consumers that
    /// are gone or fell behind are forgotten.
    fn fan_out(&self, event: &Bytes) {
        let mut local = self.local.lock().unwrap_or_else(PoisonError::into_inner);
        local.solo.retain(|consumer| consumer.offer(event.clone()));
        local.groups.retain(|_, (next, members)| {
            while !members.is_empty() {
                let index = *next % members.len();
                if members[index].offer(event.clone()) {
                    *next = index + 1;
                    return true;
                }
                members.swap_remove(index);
            }
            false
        });
    }

    /// Starts a consumer: alone (`group` empty) it receives every event; in a group, each
    /// event goes to one member.
    pub(crate) async fn watch(&self, group: &str) -> Result<Watch, WatchError> {
        if !self.enabled {
            return Err(WatchError::Off);
        }
        check_group(group)?;
        let (consumer, watch) = Consumer::new();
        let Some(events) = &self.nats else {
            let mut local = self.local.lock().unwrap_or_else(PoisonError::into_inner);
            if group.is_empty() {
                local.solo.push(consumer);
            } else {
                local
                    .groups
                    .entry(group.to_owned())
                    .or_default()
                    .1
                    .push(consumer);
            }
            return Ok(watch);
        };
        let queue_group = (!group.is_empty()).then(|| events.queue_group(group));
        let mut incoming = events
            .watch(FEED, queue_group)
            .await
            .map_err(|err| WatchError::Unavailable(err.to_string()))?;
        // Drains the subscription at once, so NATS never holds events for a slow consumer:
        // the consumer's own bounded queue decides when it is too slow.
        tokio::spawn(async move {
            while let Some(event) = incoming.next().await {
                if !consumer.offer(event) {
                    return;
                }
            }
        });
        Ok(watch)
    }
}

/// A group name: 1-64 of `[A-Za-z0-9_-]` (it becomes part of a NATS queue group name).
fn check_group(group: &str) -> Result<(), WatchError> {
    if group.len() > 64 {
        return Err(WatchError::BadGroup("at most 64 bytes"));
    }
    if !group
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(WatchError::BadGroup(
            "only letters, digits, '_' and '-' are allowed",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_consumer_that_falls_behind_is_marked_and_forgotten() {
        let feed = EventFeed::new(true, "n".into(), None);
        let (consumer, mut watch) = Consumer::new();
        feed.local.lock().unwrap().solo.push(consumer);
        for _ in 0..QUEUE {
            feed.fan_out(&Bytes::from_static(b"e"));
        }
        assert!(!watch.overflowed.load(Ordering::Acquire));
        feed.fan_out(&Bytes::from_static(b"one too many"));
        assert!(watch.overflowed.load(Ordering::Acquire));
        assert!(feed.local.lock().unwrap().solo.is_empty());
        assert!(
            watch.events.try_recv().is_ok(),
            "what was queued stays readable"
        );
    }

    #[test]
    fn a_group_shares_events_in_turn_and_solo_consumers_get_all() {
        let feed = EventFeed::new(true, "n".into(), None);
        let (a, mut watch_a) = Consumer::new();
        let (b, mut watch_b) = Consumer::new();
        let (solo, mut watch_solo) = Consumer::new();
        {
            let mut local = feed.local.lock().unwrap();
            local.groups.entry("g".into()).or_default().1.extend([a, b]);
            local.solo.push(solo);
        }
        for _ in 0..4 {
            feed.fan_out(&Bytes::from_static(b"e"));
        }
        let count = |watch: &mut Watch| std::iter::from_fn(|| watch.events.try_recv().ok()).count();
        assert_eq!(count(&mut watch_a), 2);
        assert_eq!(count(&mut watch_b), 2);
        assert_eq!(count(&mut watch_solo), 4);
    }

    #[test]
    fn group_names_are_checked() {
        assert!(check_group("").is_ok());
        assert!(check_group("workers-1").is_ok());
        assert!(check_group("a.b").is_err());
        assert!(check_group(&"x".repeat(65)).is_err());
    }
}
