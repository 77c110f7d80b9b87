//! Sends through any node. The receiving node groups the targets by owner (its replica of the
//! directory, then the leader for keys the replica does not know), delivers its own sessions
//! directly, and hands each other owner all of its targets at once, through that owner's link
//! (`owner_link.rs`: one request in flight per owner, concurrent deliveries batched).
//! An owner that no longer holds a key (the session moved) gets a second chance: the key is
//! looked up again and, if it moved, sent once more to its new owner.

use std::collections::HashMap;
use std::sync::Arc;

use async_nats::HeaderMap;
use bytes::Bytes;
use oort_common::cluster::{
    BroadcastHeader, ControlRequest, ControlResponse, DeliverHeader, Owner, REQUEST_ID_HEADER,
    SubjectKind, decode_framed, decode_records, encode_framed,
};
use oort_common::{DeliveryStatus, NodeId, Payload, SessionKey, wire};
use opentelemetry::trace::{SpanKind, Status, TraceContextExt};
use opentelemetry::{Context, KeyValue};
use tokio::sync::oneshot;
use tracing::{debug, debug_span, info, warn};

use super::bus::RejectReason;
use super::control::Control;
use super::core::Core;
use super::owner_link::{LinkAnswer, OwnerLinks};
use crate::request::{DeliveryRequest, LocalSessions};
use crate::trace;

/// Keys per request to one owner, so a huge fan-out stays below NATS's maximum payload.
const KEYS_PER_REQUEST: usize = 4096;

/// Where each target goes.
pub(super) enum Route {
    Local,
    Remote(NodeId),
    Unknown,
}

/// A delivery routed: statuses so far (local targets delivered, unknown ones final), and the
/// indexes of the targets each other owner must take.
struct Plan {
    statuses: Vec<DeliveryStatus>,
    remote: HashMap<NodeId, Vec<usize>>,
}

/// Target indexes handed to an owner's link, where its answer will come, and the span that
/// waits for it when the send is traced.
type Sent = Vec<(Vec<usize>, oneshot::Receiver<LinkAnswer>, Option<Context>)>;

/// Routes sends to the owners of their sessions, and serves deliveries from other nodes.
pub(crate) struct Delivery {
    core: Arc<Core>,
    control: Arc<Control>,
    sessions: Arc<dyn LocalSessions>,
    owner_links: OwnerLinks,
    /// Log each delivery made for another node (with its request id).
    log_deliveries: bool,
}

impl Delivery {
    /// This node's sessions.
    pub(crate) fn sessions(&self) -> Arc<dyn LocalSessions> {
        self.sessions.clone()
    }

    pub(crate) fn new(
        core: Arc<Core>,
        control: Arc<Control>,
        sessions: Arc<dyn LocalSessions>,
        log_deliveries: bool,
    ) -> Self {
        let owner_links = OwnerLinks::new(
            core.bus.clone(),
            core.config.route_timeout.0,
            (
                core.metrics.deliveries_forwarded.clone(),
                core.metrics.delivery_requests.clone(),
            ),
            core.metrics.round_trip.clone(),
            core.stop.clone(),
        );
        Self {
            core,
            control,
            sessions,
            owner_links,
            log_deliveries,
        }
    }

    /// Delivers `request` wherever its targets are held; statuses line up with the targets.
    pub(super) async fn deliver(&self, request: &DeliveryRequest) -> Vec<DeliveryStatus> {
        self.deliver_all(std::slice::from_ref(request))
            .await
            .pop()
            .unwrap_or_default()
    }

    /// Delivers several requests (`/v1/send/batch`); one status list per request. Every request
    /// is routed first, then all their remote parts are handed to the owners' links in request
    /// order before any answer is awaited: the messages share NATS requests, one round trip
    /// serves the whole batch, and messages to one session keep their order.
    pub(super) async fn deliver_all(
        &self,
        requests: &[DeliveryRequest],
    ) -> Vec<Vec<DeliveryStatus>> {
        let mut plans = Vec::with_capacity(requests.len());
        for request in requests {
            plans.push(self.plan(request).await);
        }
        let sent: Vec<Sent> = requests
            .iter()
            .zip(&plans)
            .map(|(request, plan)| self.send_remote(request, &plan.remote))
            .collect();
        let mut answers = Vec::with_capacity(requests.len());
        for ((request, mut plan), sent) in requests.iter().zip(plans).zip(sent) {
            let moved = collect(sent, &mut plan.statuses, &request.request_id).await;
            if !moved.is_empty() {
                self.redeliver_moved(request, moved, &mut plan.statuses)
                    .await;
            }
            answers.push(plan.statuses);
        }
        answers
    }

    /// Routes `request`: delivers what is held here, settles what is unknown, and groups the
    /// rest by owner.
    async fn plan(&self, request: &DeliveryRequest) -> Plan {
        let targets = &request.targets;
        // Fast path: everything is here.
        if targets.iter().all(|key| self.sessions.holds(key.as_str())) {
            return Plan {
                statuses: self
                    .sessions
                    .deliver(targets, &request.payload, &request.mode),
                remote: HashMap::new(),
            };
        }
        let mut routes: Vec<Route> = targets.iter().map(|key| self.route(key)).collect();
        let mut statuses = vec![DeliveryStatus::NotFound; targets.len()];
        self.resolve_unknown(targets, &mut routes, &mut statuses)
            .await;
        if request.strict && routes.iter().any(|route| matches!(route, Route::Unknown)) {
            // All or nothing, across nodes: something is unknown, so nothing is sent.
            let statuses = routes
                .iter()
                .zip(&statuses)
                .map(|(route, status)| match route {
                    Route::Unknown => *status,
                    _ => DeliveryStatus::Skipped,
                })
                .collect();
            return Plan {
                statuses,
                remote: HashMap::new(),
            };
        }
        let mut local = Vec::new();
        let mut remote: HashMap<NodeId, Vec<usize>> = HashMap::new();
        for (index, route) in routes.iter().enumerate() {
            match route {
                Route::Local => local.push(index),
                Route::Remote(node) => remote.entry(node.clone()).or_default().push(index),
                Route::Unknown => {}
            }
        }
        if !local.is_empty() {
            let keys: Vec<SessionKey> = local.iter().map(|&i| targets[i].clone()).collect();
            for (index, status) in local.iter().zip(self.sessions.deliver(
                &keys,
                &request.payload,
                &request.mode,
            )) {
                statuses[*index] = status;
            }
        }
        Plan { statuses, remote }
    }

    /// Where each key is held: here, on another node, or nowhere (then its status says
    /// whether that is certain, `not_found`, or could not be confirmed, `owner_unreachable`).
    pub(super) async fn locate(&self, keys: &[SessionKey]) -> (Vec<Route>, Vec<DeliveryStatus>) {
        let mut routes: Vec<Route> = keys.iter().map(|key| self.route(key)).collect();
        let mut statuses = vec![DeliveryStatus::NotFound; keys.len()];
        self.resolve_unknown(keys, &mut routes, &mut statuses).await;
        (routes, statuses)
    }

    fn route(&self, key: &SessionKey) -> Route {
        if self.sessions.holds(key.as_str()) {
            return Route::Local;
        }
        match self.core.directory.owner(key.as_str()) {
            // The replica says here but the table does not: the session just ended.
            Some(owner) if owner.node == self.core.node => Route::Unknown,
            Some(owner) => Route::Remote(owner.node),
            None => Route::Unknown,
        }
    }

    /// Keys the replica does not know are confirmed at the leader before they are called
    /// unknown: a replica that merely lags must not answer `not_found`.
    async fn resolve_unknown(
        &self,
        targets: &[SessionKey],
        routes: &mut [Route],
        statuses: &mut [DeliveryStatus],
    ) {
        let unknown: Vec<usize> = (0..targets.len())
            .filter(|&i| matches!(routes[i], Route::Unknown))
            .collect();
        if unknown.is_empty() {
            return;
        }
        let keys = unknown.iter().map(|&i| targets[i].clone()).collect();
        match self
            .control
            .call_leader(ControlRequest::Lookup { keys })
            .await
        {
            Ok(ControlResponse::Owners(owners)) => {
                let here = &self.core.node;
                for (index, owner) in unknown.iter().zip(owners) {
                    routes[*index] = match owner {
                        Some(owner)
                            if owner.node == *here
                                && self.sessions.holds(targets[*index].as_str()) =>
                        {
                            Route::Local
                        }
                        Some(owner) if owner.node != *here => Route::Remote(owner.node),
                        _ => Route::Unknown,
                    };
                }
            }
            other => {
                // Without the leader, "unknown" cannot be confirmed; say so rather than lie.
                warn!(answer = ?other.as_ref().map(|_| ()), "cannot confirm unknown sessions with the leader");
                for index in unknown {
                    statuses[index] = DeliveryStatus::OwnerUnreachable;
                }
            }
        }
    }

    /// Hands each owner its targets (in chunks for huge fan-outs) without waiting: the links
    /// take them in call order.
    fn send_remote(&self, request: &DeliveryRequest, remote: &HashMap<NodeId, Vec<usize>>) -> Sent {
        let mut sent = Vec::new();
        if !self.core.nats.is_connected() {
            // Without NATS nothing can be sent: every remote target is `owner_unreachable`
            // (the answer channels close at once), not `owner_timeout` after a wait.
            for indexes in remote.values() {
                sent.push((indexes.clone(), oneshot::channel().1, None));
            }
            return sent;
        }
        let traced = trace::sampled_current();
        for (node, indexes) in remote {
            for chunk in indexes.chunks(KEYS_PER_REQUEST) {
                let header = DeliverHeader {
                    request_id: request.request_id.clone(),
                    targets: chunk.iter().map(|&i| request.targets[i].clone()).collect(),
                    kind: request.payload.kind(),
                    mode: request.mode.clone(),
                };
                let record = encode_framed(&header, request.payload.data());
                let forward = traced.as_ref().map(|parent| {
                    trace::child(
                        parent,
                        "oort.forward",
                        SpanKind::Client,
                        vec![
                            KeyValue::new("oort.owner", node.to_string()),
                            KeyValue::new("oort.targets", chunk.len() as i64),
                        ],
                    )
                });
                let traceparent = forward.as_ref().and_then(trace::traceparent);
                let answer = self
                    .owner_links
                    .send(node, record, chunk.len(), traceparent);
                sent.push((chunk.to_vec(), answer, forward));
            }
        }
        sent
    }

    /// Sends the keys an old owner no longer held to their current owner, once.
    async fn redeliver_moved(
        &self,
        request: &DeliveryRequest,
        moved: Vec<usize>,
        statuses: &mut [DeliveryStatus],
    ) {
        let keys: Vec<SessionKey> = moved.iter().map(|&i| request.targets[i].clone()).collect();
        let Ok(ControlResponse::Owners(owners)) = self
            .control
            .call_leader(ControlRequest::Lookup { keys })
            .await
        else {
            return;
        };
        let mut remote: HashMap<NodeId, Vec<usize>> = HashMap::new();
        let mut local = Vec::new();
        for (index, owner) in moved.iter().zip(owners) {
            match owner {
                Some(Owner { node, .. }) if node == self.core.node => local.push(*index),
                Some(Owner { node, .. }) => remote.entry(node).or_default().push(*index),
                None => {}
            }
        }
        if !local.is_empty() {
            let keys: Vec<SessionKey> = local.iter().map(|&i| request.targets[i].clone()).collect();
            for (index, status) in local.iter().zip(self.sessions.deliver(
                &keys,
                &request.payload,
                &request.mode,
            )) {
                statuses[*index] = status;
            }
        }
        // A second `not_found` is final.
        let sent = self.send_remote(request, &remote);
        let _ = collect(sent, statuses, &request.request_id).await;
    }
}

/// Ends the span of one forwarded delivery with what the owner answered.
fn end_forward(forward: &Context, answer: &Result<LinkAnswer, oneshot::error::RecvError>) {
    let span = forward.span();
    match answer {
        Ok(Ok(_)) => {}
        Ok(Err(status)) => span.set_status(Status::error(status.as_str())),
        Err(_) => span.set_status(Status::error("not sent")),
    }
    span.end();
}

/// Waits for the owners' answers and puts them in place; an owner that did not answer makes
/// its targets `owner_unreachable`. Returns the indexes an owner answered `not_found` for:
/// those sessions may have moved.
async fn collect(sent: Sent, statuses: &mut [DeliveryStatus], request_id: &str) -> Vec<usize> {
    let mut moved = Vec::new();
    for (chunk, answer, forward) in sent {
        let answer = answer.await;
        if let Some(forward) = forward {
            end_forward(&forward, &answer);
        }
        let answer = match answer {
            Ok(Ok(statuses)) => statuses,
            Ok(Err(status)) => {
                debug!(
                    request_id,
                    status = status.as_str(),
                    "owner gave no statuses"
                );
                vec![status; chunk.len()]
            }
            Err(_) => vec![DeliveryStatus::OwnerUnreachable; chunk.len()],
        };
        for (position, index) in chunk.iter().enumerate() {
            let status = answer
                .get(position)
                .copied()
                .unwrap_or(DeliveryStatus::OwnerUnreachable);
            statuses[*index] = status;
            if status == DeliveryStatus::NotFound {
                moved.push(*index);
            }
        }
    }
    moved
}

impl Delivery {
    /// Answers deliveries addressed to this node, in arrival order (a backend's consecutive
    /// sends to one session keep their order), and broadcasts.
    pub(crate) async fn serve(self: &Arc<Self>) -> Result<(), async_nats::SubscribeError> {
        let core = &self.core;
        let subjects = core.bus.subjects();
        let mut requests = core
            .bus
            .subscribe(subjects.deliver(core.raft_id), SubjectKind::Deliver)
            .await?;
        let mut broadcasts = core
            .bus
            .subscribe(subjects.broadcast(), SubjectKind::Broadcast)
            .await?;
        let server = self.clone();
        tokio::spawn(async move {
            let stop = server.core.stop.clone();
            while let Some(message) = requests.next(&stop).await {
                let Some(answers) =
                    server.deliver_batch_here(&message.body, message.headers.as_ref())
                else {
                    continue;
                };
                if let Some(reply_to) = message.reply {
                    server
                        .core
                        .bus
                        .answer(reply_to, &wire::encode(&answers))
                        .await;
                }
            }
        });
        let server = self.clone();
        tokio::spawn(async move {
            let stop = server.core.stop.clone();
            while let Some(message) = broadcasts.next(&stop).await {
                server.broadcast_here(&message.body, message.headers.as_ref());
            }
        });
        Ok(())
    }

    fn broadcast_here(&self, body: &Bytes, headers: Option<&HeaderMap>) {
        let reject = |err: &dyn std::fmt::Display| {
            self.core
                .bus
                .reject(SubjectKind::Broadcast, RejectReason::Malformed, err)
        };
        match decode_framed::<BroadcastHeader>(body) {
            Ok((header, data)) => match Payload::new(header.kind, data) {
                Ok(payload) => {
                    let reached = match broadcast_parent(headers) {
                        Some(parent) => {
                            let cx = trace::child(
                                &parent,
                                "oort.broadcast",
                                SpanKind::Consumer,
                                vec![KeyValue::new("oort.origin", header.origin.to_string())],
                            );
                            let attached = cx.clone().attach();
                            let reached = self.sessions.broadcast(&payload);
                            drop(attached);
                            cx.span()
                                .set_attribute(KeyValue::new("oort.sessions", reached as i64));
                            cx.span().end();
                            reached
                        }
                        None => self.sessions.broadcast(&payload),
                    };
                    debug!(origin = %header.origin, reached, request_id = %request_id_of(headers), "broadcast");
                }
                Err(err) => reject(&err),
            },
            Err(err) => reject(&err),
        }
    }
}

impl Delivery {
    /// Delivers each delivery of a batch another node sent; one status list per delivery (an
    /// undecodable one gets an empty list, which its sender reads as `owner_timeout`). A batch
    /// that is not one (no node sends an empty one) gets no answer at all.
    fn deliver_batch_here(
        &self,
        bytes: &Bytes,
        headers: Option<&HeaderMap>,
    ) -> Option<Vec<Vec<DeliveryStatus>>> {
        let records = match decode_records(bytes) {
            Ok(records) if !records.is_empty() => records,
            Ok(_) => {
                let reason = "an empty batch of deliveries";
                self.core
                    .bus
                    .reject(SubjectKind::Deliver, RejectReason::Malformed, &reason);
                return None;
            }
            Err(err) => {
                self.core
                    .bus
                    .reject(SubjectKind::Deliver, RejectReason::Malformed, &err);
                return None;
            }
        };
        let parents = if trace::enabled() {
            trace::batch_parents(headers)
        } else {
            HashMap::new()
        };
        let answers = records
            .iter()
            .enumerate()
            .map(|(index, record)| {
                let Ok((header, data)) = decode_framed::<DeliverHeader>(record).inspect_err(|err| {
                    self.core
                        .bus
                        .reject(SubjectKind::Deliver, RejectReason::Malformed, err)
                }) else {
                    return Vec::new();
                };
                let span = debug_span!("deliver", request_id = %header.request_id);
                let statuses = match parents.get(&index) {
                    // The owner's part of a traced send: its queue and write spans (made by
                    // the gateway) are children of this one.
                    Some(parent) => {
                        let cx = trace::child(
                            parent,
                            "oort.deliver",
                            SpanKind::Server,
                            vec![
                                KeyValue::new("oort.request_id", header.request_id.clone()),
                                KeyValue::new("oort.targets", header.targets.len() as i64),
                            ],
                        );
                        let attached = cx.clone().attach();
                        let statuses = span.in_scope(|| self.deliver_here(&header, data));
                        drop(attached);
                        cx.span().end();
                        statuses
                    }
                    None => span.in_scope(|| self.deliver_here(&header, data)),
                };
                if self.log_deliveries {
                    let ok = statuses
                        .iter()
                        .filter(|s| **s == DeliveryStatus::Ok)
                        .count();
                    info!(request_id = %header.request_id, sessions = statuses.len(), ok, "delivered for another node");
                }
                statuses
            })
            .collect();
        Some(answers)
    }

    fn deliver_here(&self, header: &DeliverHeader, data: Bytes) -> Vec<DeliveryStatus> {
        match Payload::new(header.kind, data) {
            Ok(payload) => self
                .sessions
                .deliver_forwarded(&header.targets, &payload, &header.mode),
            Err(err) => {
                self.core
                    .bus
                    .reject(SubjectKind::Deliver, RejectReason::Invalid, &err);
                vec![DeliveryStatus::NotFound; header.targets.len()]
            }
        }
    }

    /// Publishes one broadcast; every node, this one included, delivers it to its sessions.
    pub(super) async fn broadcast(
        &self,
        payload: &Payload,
        request_id: &str,
    ) -> Result<(), crate::RouterError> {
        let header = BroadcastHeader {
            kind: payload.kind(),
            origin: self.core.node.clone(),
        };
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID_HEADER, request_id);
        if let Some(cx) = trace::sampled_current() {
            trace::inject_nats(&cx, &mut headers);
        }
        let bus = &self.core.bus;
        bus.publish_with_headers(
            bus.subjects().broadcast(),
            headers,
            &encode_framed(&header, payload.data()),
        )
        .await
        .map_err(|err| crate::RouterError::Unavailable(format!("broadcast not published: {err}")))
    }
}

/// The trace a broadcast continues, when tracing is on and its sender traced it.
fn broadcast_parent(headers: Option<&HeaderMap>) -> Option<Context> {
    if !trace::enabled() {
        return None;
    }
    let parent = trace::extract_nats(headers?);
    parent.span().span_context().is_valid().then_some(parent)
}

fn request_id_of(headers: Option<&HeaderMap>) -> String {
    headers
        .and_then(|h| h.get(REQUEST_ID_HEADER))
        .map(|v| v.as_str().to_owned())
        .unwrap_or_default()
}
