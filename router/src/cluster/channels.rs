//! Channels in a cluster: interest routing over NATS, with the directory counting.
//!
//! A node subscribes to `oort.<cluster>.chan.<channel>` only while it holds a subscriber of
//! the channel, so NATS carries a publish to the nodes that need it and to no other: one
//! message per channel of the publish, delivered once to each node with subscribers. Each such
//! node also records its interest in the directory (`DirectoryCommand::Interest`, one entry for
//! its first subscriber and one after its last is gone), which tells a publishing node how many
//! answers to wait for and a presence query whom to ask. Sessions never appear in the
//! directory's channel table: it grows with channels times nodes, not with subscriptions.
//!
//! A node keeps its subscription (and answers publishes with zero sessions) until its
//! interest's removal is committed, so a publisher expecting an answer always gets one. Empty
//! channels are found by a sweep once a second rather than on every unsubscribe.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use async_nats::HeaderMap;
use futures_util::future::join_all;
use oort_common::cluster::{
    ControlRequest, ControlResponse, PublishHeader, PublishReceipt, REQUEST_ID_HEADER, SubjectKind,
    decode_framed, encode_framed, raft_id,
};
use oort_common::{DeliveryStatus, NodeId, Payload, SessionKey, wire};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::bus::{Inbox, RejectReason};
use super::control::Control;
use super::core::Core;
use super::deliver::{Delivery, Route};
use super::registrar::Registrar;
use crate::channel::merge_page;
use crate::request::LocalSessions;
use crate::{Presence, PublishOutcome, RouterError};

/// How often channels without subscribers here are released.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Keys one node lists for a presence query at most.
pub const MAX_PRESENCE_PAGE: usize = 1000;

/// A channel this node subscribes to.
struct Held {
    /// Ends the channel's listener, and with it the NATS subscription.
    stop: CancellationToken,
    /// True once this node's interest is committed in the directory.
    committed: watch::Sender<bool>,
    /// The last sweep found no subscriber here: the interest's removal is on its way.
    leaving: bool,
}

/// This node's side of every channel.
pub(crate) struct Channels {
    core: Arc<Core>,
    control: Arc<Control>,
    registrar: Arc<Registrar>,
    delivery: Arc<Delivery>,
    sessions: Arc<dyn LocalSessions>,
    held: Mutex<HashMap<String, Held>>,
}

impl Channels {
    pub(crate) fn new(
        core: Arc<Core>,
        control: Arc<Control>,
        registrar: Arc<Registrar>,
        delivery: Arc<Delivery>,
    ) -> Arc<Self> {
        let sessions = delivery.sessions();
        Arc::new(Self {
            core,
            control,
            registrar,
            delivery,
            sessions,
            held: Mutex::new(HashMap::new()),
        })
    }

    fn held(&self) -> MutexGuard<'_, HashMap<String, Held>> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds `keys` to `channels` (or removes them) wherever they are held.
    pub(crate) async fn subscribe(
        self: &Arc<Self>,
        keys: &[SessionKey],
        channels: &[String],
        join: bool,
    ) -> Vec<DeliveryStatus> {
        let (routes, mut statuses) = self.delivery.locate(keys).await;
        let mut local = Vec::new();
        let mut remote: HashMap<NodeId, Vec<usize>> = HashMap::new();
        for (index, route) in routes.into_iter().enumerate() {
            match route {
                Route::Local => local.push(index),
                Route::Remote(node) => remote.entry(node).or_default().push(index),
                Route::Unknown => {}
            }
        }
        let calls = remote.into_iter().map(|(node, indexes)| {
            let request = ControlRequest::Subscribe {
                keys: indexes.iter().map(|&i| keys[i].clone()).collect(),
                channels: channels.to_vec(),
                join,
            };
            async move {
                let answer = self.control.call(raft_id(&node), &request).await;
                (indexes, answer)
            }
        });
        let here = async {
            let keys: Vec<SessionKey> = local.iter().map(|&i| keys[i].clone()).collect();
            self.subscribe_here(&keys, channels, join).await
        };
        let (here, answers) = tokio::join!(here, join_all(calls));
        for (index, status) in local.iter().zip(here) {
            statuses[*index] = status;
        }
        for (indexes, answer) in answers {
            let answered = match answer {
                Ok(ControlResponse::Statuses(answered)) if answered.len() == indexes.len() => {
                    answered
                }
                _ => vec![DeliveryStatus::OwnerUnreachable; indexes.len()],
            };
            for (index, status) in indexes.into_iter().zip(answered) {
                statuses[index] = status;
            }
        }
        statuses
    }

    /// Subscribes (or unsubscribes) sessions held here; a join is answered once this node's
    /// interest in every channel is committed.
    pub(crate) async fn subscribe_here(
        self: &Arc<Self>,
        keys: &[SessionKey],
        channels: &[String],
        join: bool,
    ) -> Vec<DeliveryStatus> {
        let mut statuses = self.sessions.subscribe(keys, channels, join);
        if join
            && statuses.contains(&DeliveryStatus::Ok)
            && let Err(err) = self.ensure(channels).await
        {
            warn!(error = %err, "channel interest not established");
            for status in &mut statuses {
                if *status == DeliveryStatus::Ok {
                    *status = DeliveryStatus::OwnerUnreachable;
                }
            }
        }
        statuses
    }

    /// Makes sure this node hears publishes to `channels` and the directory says so.
    pub(crate) async fn ensure(self: &Arc<Self>, channels: &[String]) -> Result<(), RouterError> {
        let mut fresh = Vec::new();
        let mut rejoined = Vec::new();
        let mut waits = Vec::new();
        {
            let mut held = self.held();
            for channel in channels {
                match held.get_mut(channel) {
                    Some(entry) => {
                        if entry.leaving {
                            // Its removal is queued: commit the interest again after it.
                            entry.leaving = false;
                            entry.committed.send_replace(false);
                            rejoined.push(channel.clone());
                        }
                        waits.push(entry.committed.subscribe());
                    }
                    None => {
                        let (committed, wait) = watch::channel(false);
                        let stop = self.core.stop.child_token();
                        held.insert(
                            channel.clone(),
                            Held {
                                stop: stop.clone(),
                                committed,
                                leaving: false,
                            },
                        );
                        waits.push(wait);
                        fresh.push((channel.clone(), stop));
                    }
                }
            }
        }
        for (channel, stop) in &fresh {
            let subject = self.core.bus.subjects().channel(channel);
            match self.core.bus.subscribe(subject, SubjectKind::Channel).await {
                Ok(inbox) => self.listen(channel.clone(), inbox, stop.clone()),
                Err(err) => {
                    if let Some(entry) = self.held().remove(channel) {
                        entry.stop.cancel();
                    }
                    return Err(RouterError::Unavailable(format!(
                        "cannot subscribe to channel {channel}: {err}"
                    )));
                }
            }
        }
        let joins: Vec<String> = fresh.into_iter().map(|(c, _)| c).chain(rejoined).collect();
        if !joins.is_empty() {
            // The subscriptions reach the server before the interest is committed: a publisher
            // that learns of the interest finds the subscription in place.
            self.core.bus.flush().await;
            self.commit_joins(joins).await?;
        }
        let timeout = self.core.config.route_timeout.0;
        for mut wait in waits {
            match tokio::time::timeout(timeout, wait.wait_for(|committed| *committed)).await {
                Ok(Ok(_)) => {}
                _ => {
                    return Err(RouterError::Unavailable(
                        "channel interest not committed in time".into(),
                    ));
                }
            }
        }
        Ok(())
    }

    async fn commit_joins(&self, joins: Vec<String>) -> Result<(), RouterError> {
        let changes = joins.iter().map(|c| (c.clone(), true)).collect();
        self.registrar.interest(changes).await?;
        let held = self.held();
        for channel in joins {
            if let Some(entry) = held.get(&channel)
                && !entry.leaving
            {
                entry.committed.send_replace(true);
            }
        }
        Ok(())
    }

    /// Serves publishes to `channel`, one at a time, in the order NATS delivers them.
    fn listen(self: &Arc<Self>, channel: String, mut inbox: Inbox, stop: CancellationToken) {
        let channels = self.clone();
        tokio::spawn(async move {
            while let Some(message) = inbox.next(&stop).await {
                let Some(receipt) = channels.deliver_here(&channel, &message.body) else {
                    continue;
                };
                if let Some(reply) = message.reply {
                    channels
                        .core
                        .bus
                        .answer(reply, &wire::encode(&receipt))
                        .await;
                }
            }
        });
    }

    fn deliver_here(&self, channel: &str, body: &bytes::Bytes) -> Option<PublishReceipt> {
        let reject = |reason: RejectReason, detail: &dyn std::fmt::Display| {
            self.core.bus.reject(SubjectKind::Channel, reason, detail);
        };
        let (header, data) = match decode_framed::<PublishHeader>(body) {
            Ok(decoded) => decoded,
            Err(err) => {
                reject(RejectReason::Malformed, &err);
                return None;
            }
        };
        let position = header.position as usize;
        if header.channels.get(position).map(String::as_str) != Some(channel) {
            reject(
                RejectReason::Invalid,
                &"a publish whose channel is not the subject's",
            );
            return None;
        }
        if header.origin == self.core.node {
            // The publishing node delivered to its own sessions already.
            return None;
        }
        let payload = match Payload::new(header.kind, data) {
            Ok(payload) => payload,
            Err(err) => {
                reject(RejectReason::Invalid, &err);
                return None;
            }
        };
        let sessions = self
            .sessions
            .publish(&header.channels, Some(position), &payload);
        debug!(request_id = %header.request_id, channel, sessions, "publish delivered");
        Some(PublishReceipt {
            node: self.core.node.clone(),
            sessions,
        })
    }

    /// Delivers a publish here and on every node holding subscribers.
    pub(crate) async fn publish(
        &self,
        channels: &[String],
        payload: &Payload,
        request_id: &str,
    ) -> PublishOutcome {
        let me = &self.core.node;
        let mut outcome = PublishOutcome {
            sessions: self.sessions.publish(channels, None, payload),
            ..PublishOutcome::default()
        };
        if outcome.sessions > 0 {
            outcome.nodes.push(me.clone());
        }
        let bus = &self.core.bus;
        let timeout = self.core.config.route_timeout.0;
        let connected = self.core.nats.is_connected();
        let sends = channels.iter().enumerate().map(|(position, channel)| {
            let expected = self.other_nodes(channel);
            let header = PublishHeader {
                origin: me.clone(),
                request_id: request_id.to_owned(),
                kind: payload.kind(),
                channels: channels.to_vec(),
                position: position as u32,
            };
            let body = encode_framed(&header, payload.data());
            let mut headers = HeaderMap::new();
            headers.insert(REQUEST_ID_HEADER, request_id);
            let subject = bus.subjects().channel(channel);
            async move {
                if !connected {
                    return (expected, Vec::new());
                }
                // Published even when no other node is expected: this node's replica may not
                // have applied a new subscriber's interest yet, and NATS drops a message nobody
                // subscribes to.
                match bus
                    .gather(subject, headers, &body, expected.len(), timeout)
                    .await
                {
                    Ok(answers) => (expected, answers),
                    Err(err) => {
                        warn!(error = %err, "publish not sent");
                        (expected, Vec::new())
                    }
                }
            }
        });
        for (expected, answers) in join_all(sends).await {
            let mut answered = HashSet::new();
            for body in answers {
                let receipt = match wire::decode::<PublishReceipt>(&body) {
                    Ok(receipt) => receipt,
                    Err(err) => {
                        bus.reject(SubjectKind::Reply, RejectReason::Malformed, &err);
                        continue;
                    }
                };
                outcome.sessions += receipt.sessions;
                if receipt.sessions > 0 && !outcome.nodes.contains(&receipt.node) {
                    outcome.nodes.push(receipt.node.clone());
                }
                answered.insert(receipt.node);
            }
            for node in expected {
                if !answered.contains(&node) && !outcome.unreachable.contains(&node) {
                    outcome.unreachable.push(node);
                }
            }
        }
        outcome.nodes.sort();
        outcome.unreachable.sort();
        outcome
    }

    /// Who is subscribed to `channel`: this node's sessions and those of every node the
    /// directory says holds subscribers.
    pub(crate) async fn presence(
        &self,
        channel: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Presence {
        let me = &self.core.node;
        let limit = limit.min(MAX_PRESENCE_PAGE);
        let (count, keys) = self.sessions.presence(channel, after, limit);
        let mut presence = Presence {
            count,
            ..Presence::default()
        };
        merge_page(&mut presence.sessions, me, keys, limit);
        let nodes = self.other_nodes(channel);
        let request = ControlRequest::Presence {
            channel: channel.to_owned(),
            after: after.map(SessionKey::from),
            limit: limit as u32,
        };
        let answers = join_all(
            nodes
                .iter()
                .map(|node| self.control.call(raft_id(node), &request)),
        )
        .await;
        for (node, answer) in nodes.into_iter().zip(answers) {
            match answer {
                Ok(ControlResponse::Presence { count, sessions }) => {
                    presence.count += count;
                    merge_page(&mut presence.sessions, &node, sessions, limit);
                }
                _ => presence.unreachable.push(node),
            }
        }
        presence
    }

    /// The other nodes holding subscribers of `channel`, as this node's replica says.
    fn other_nodes(&self, channel: &str) -> Vec<NodeId> {
        let mut nodes = self.core.directory.channel_nodes(channel);
        nodes.retain(|node| *node != self.core.node);
        nodes
    }

    /// This node's answer to another node's presence query.
    pub(crate) fn presence_here(
        &self,
        channel: &str,
        after: Option<&str>,
        limit: usize,
    ) -> ControlResponse {
        let (count, sessions) =
            self.sessions
                .presence(channel, after, limit.min(MAX_PRESENCE_PAGE));
        ControlResponse::Presence { count, sessions }
    }

    /// Releases, once a second, the channels with no subscriber left here, and retries
    /// interest that could not be committed.
    pub(crate) fn start_sweeping(self: &Arc<Self>) {
        let channels = self.clone();
        tokio::spawn(async move {
            let stop = channels.core.stop.clone();
            loop {
                tokio::select! {
                    () = tokio::time::sleep(SWEEP_EVERY) => {}
                    () = stop.cancelled() => return,
                }
                channels.sweep().await;
            }
        });
    }

    async fn sweep(&self) {
        let mut leaving = Vec::new();
        let mut uncommitted = Vec::new();
        {
            let mut held = self.held();
            for (channel, entry) in held.iter_mut() {
                if entry.leaving {
                    continue;
                }
                if !self.sessions.holds_channel(channel) {
                    entry.leaving = true;
                    leaving.push(channel.clone());
                } else if !*entry.committed.borrow() {
                    uncommitted.push(channel.clone());
                }
            }
        }
        if !uncommitted.is_empty()
            && let Err(err) = self.commit_joins(uncommitted).await
        {
            debug!(error = %err, "channel interest still not committed");
        }
        if leaving.is_empty() {
            return;
        }
        let changes = leaving.iter().map(|c| (c.clone(), false)).collect();
        let committed = self.registrar.interest(changes).await;
        let mut held = self.held();
        for channel in leaving {
            let Some(entry) = held.get_mut(&channel) else {
                continue;
            };
            if !entry.leaving {
                // A subscriber came back meanwhile; its join was queued after this removal.
                continue;
            }
            if committed.is_ok() {
                entry.stop.cancel();
                held.remove(&channel);
            } else {
                // Tried again at the next sweep.
                entry.leaving = false;
            }
        }
    }
}

/// Where the control server finds the channels (built after it).
pub(crate) type ChannelsCell = OnceLock<Arc<Channels>>;
