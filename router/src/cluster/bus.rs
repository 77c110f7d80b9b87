//! The cluster's NATS traffic, as every other module sees it: messages sealed in the envelope
//! (`oort_common::envelope`: protocol version, and the cluster secret's tag when there is one)
//! on the way out, and on the way in checked before anything reads them: a size bound per kind
//! of subject, then the envelope. What fails is dropped, counted in
//! `oort_cluster_rejected_messages_total{subject,reason}` and logged at a bounded rate; the
//! handlers only ever see bodies that passed.

use std::fmt::Display;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::{Client, HeaderMap, RequestErrorKind, Subject, Subscriber};
use bytes::Bytes;
use futures_util::StreamExt;
use oort_common::cluster::{SubjectKind, Subjects};
use oort_common::envelope::{OpenError, RequestTag, Sealer};
use oort_common::wire::MAX_MESSAGE_BYTES;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// Why a message was dropped, as a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectReason {
    /// Larger than its kind of message may be.
    Oversize,
    /// Not a well-formed envelope or body.
    Malformed,
    /// Missing or wrong authentication (`cluster.secret`).
    Unauthenticated,
    /// Well formed but not acceptable (a raft RPC that would hurt the node, say).
    Invalid,
}

impl RejectReason {
    /// Every reason, in a stable order (for pre-registered metrics).
    pub const ALL: [Self; 4] = [
        Self::Oversize,
        Self::Malformed,
        Self::Unauthenticated,
        Self::Invalid,
    ];

    /// The reason as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Oversize => "oversize",
            Self::Malformed => "malformed",
            Self::Unauthenticated => "unauthenticated",
            Self::Invalid => "invalid",
        }
    }
}

/// Counters of rejected messages, one per subject kind and reason, registered up front by the
/// gateway (see `ClusterMetrics`).
#[derive(Clone)]
pub struct RejectedCounters {
    counters: Arc<Vec<(SubjectKind, RejectReason, metrics::Counter)>>,
}

impl RejectedCounters {
    /// Builds every counter with `make(subject, reason)`.
    pub fn new(make: impl Fn(&'static str, &'static str) -> metrics::Counter) -> Self {
        let counters = SubjectKind::ALL
            .iter()
            .flat_map(|kind| RejectReason::ALL.iter().map(move |reason| (*kind, *reason)))
            .map(|(kind, reason)| (kind, reason, make(kind.as_str(), reason.as_str())))
            .collect();
        Self {
            counters: Arc::new(counters),
        }
    }

    fn increment(&self, kind: SubjectKind, reason: RejectReason) {
        if let Some((_, _, counter)) = self
            .counters
            .iter()
            .find(|(k, r, _)| *k == kind && *r == reason)
        {
            counter.increment(1);
        }
    }
}

/// How often a rejection is logged, per kind of subject, at most.
const REJECTION_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Counts rejections and logs them without letting a flood of garbage flood the log.
struct Rejections {
    counters: RejectedCounters,
    last_logged: Mutex<[Option<Instant>; SubjectKind::ALL.len()]>,
    unlogged: [AtomicU64; SubjectKind::ALL.len()],
}

impl Rejections {
    fn record(&self, kind: SubjectKind, reason: RejectReason, detail: &dyn Display) {
        self.counters.increment(kind, reason);
        let slot = SubjectKind::ALL
            .iter()
            .position(|k| *k == kind)
            .unwrap_or_default();
        let due = {
            let mut last = self
                .last_logged
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let due = last[slot].is_none_or(|at| at.elapsed() >= REJECTION_LOG_INTERVAL);
            if due {
                last[slot] = Some(Instant::now());
            }
            due
        };
        if due {
            let also = self.unlogged[slot].swap(0, Ordering::Relaxed);
            warn!(
                subject = kind.as_str(),
                reason = reason.as_str(),
                %detail,
                also_dropped_since_last_log = also,
                "dropped a message from NATS"
            );
        } else {
            self.unlogged[slot].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The most bytes a message of each kind may have before its envelope is even opened.
/// Deliveries and broadcasts carry client payloads, bounded only by NATS's own `max_payload`;
/// their headers are decoded with the usual limit.
fn max_bytes(kind: SubjectKind) -> usize {
    match kind {
        SubjectKind::Hello => 64 << 10,
        SubjectKind::Raft
        | SubjectKind::Control
        | SubjectKind::Reply
        | SubjectKind::Stream
        | SubjectKind::NamedStream => MAX_MESSAGE_BYTES + 64,
        SubjectKind::Deliver
        | SubjectKind::Broadcast
        | SubjectKind::Channel
        | SubjectKind::ClientReply => usize::MAX,
    }
}

/// Why a request got no usable answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RequestError {
    /// Nobody listens on the subject: the node is gone (NATS says so at once).
    #[error("no responders")]
    NoResponders,
    /// No answer within the timeout: the request may or may not have been acted on.
    #[error("timed out")]
    TimedOut,
    /// Larger than the NATS server accepts.
    #[error("larger than the NATS server's max_payload")]
    TooLarge,
    /// The request was not sent, or the answer was dropped (see the rejection counters).
    #[error("{0}")]
    Failed(String),
}

/// A message that passed the checks.
pub(crate) struct Incoming {
    /// The body, inside the envelope.
    pub body: Bytes,
    /// NATS headers (request ids, for logs; not authenticated).
    pub headers: Option<HeaderMap>,
    /// Where to answer, for a request.
    pub reply: Option<Reply>,
}

/// Where and how to answer one request.
pub(crate) struct Reply {
    subject: Subject,
    tag: RequestTag,
}

/// The cluster's NATS connection as the router's modules use it. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Bus {
    nats: Client,
    subjects: Subjects,
    sealer: Sealer,
    rejections: Arc<Rejections>,
}

impl Bus {
    pub(crate) fn new(
        nats: Client,
        subjects: Subjects,
        sealer: Sealer,
        counters: RejectedCounters,
    ) -> Self {
        Self {
            nats,
            subjects,
            sealer,
            rejections: Arc::new(Rejections {
                counters,
                last_logged: Mutex::new([None; SubjectKind::ALL.len()]),
                unlogged: Default::default(),
            }),
        }
    }

    /// The cluster's subjects.
    pub(crate) fn subjects(&self) -> &Subjects {
        &self.subjects
    }

    /// Publishes `body` on `subject`.
    pub(crate) async fn publish(&self, subject: String, body: &[u8]) -> Result<(), String> {
        let (message, _) = self.sealer.seal(subject.as_bytes(), body);
        self.nats
            .publish(subject, message.into())
            .await
            .map_err(|err| err.to_string())
    }

    /// Publishes `body` on `subject` with NATS headers.
    pub(crate) async fn publish_with_headers(
        &self,
        subject: String,
        headers: HeaderMap,
        body: &[u8],
    ) -> Result<(), String> {
        let (message, _) = self.sealer.seal(subject.as_bytes(), body);
        self.nats
            .publish_with_headers(subject, headers, message.into())
            .await
            .map_err(|err| err.to_string())
    }

    /// Sends a request and returns the answer's body once it passed the checks.
    pub(crate) async fn request(
        &self,
        subject: String,
        body: &[u8],
        timeout: Duration,
    ) -> Result<Bytes, RequestError> {
        self.request_with_headers(subject, None, body, timeout)
            .await
    }

    /// [`Bus::request`] with NATS headers (trace contexts; like every header, outside the
    /// seal).
    pub(crate) async fn request_with_headers(
        &self,
        subject: String,
        headers: Option<HeaderMap>,
        body: &[u8],
        timeout: Duration,
    ) -> Result<Bytes, RequestError> {
        let (message, tag) = self.sealer.seal(subject.as_bytes(), body);
        let mut request = async_nats::Request::new()
            .payload(message.into())
            .timeout(Some(timeout));
        if let Some(headers) = headers {
            request = request.headers(headers);
        }
        let answer = self
            .nats
            .send_request(subject, request)
            .await
            .map_err(|err| match err.kind() {
                RequestErrorKind::NoResponders => RequestError::NoResponders,
                RequestErrorKind::TimedOut => RequestError::TimedOut,
                RequestErrorKind::MaxPayloadExceeded => RequestError::TooLarge,
                _ => RequestError::Failed(err.to_string()),
            })?;
        self.check(SubjectKind::Reply, tag.as_bytes(), answer.payload)
            .map(|(body, _)| body)
            .ok_or_else(|| RequestError::Failed("the answer was dropped".into()))
    }

    /// Publishes `body` on `subject` and gathers the answers of every subscriber (`body` is
    /// one message; each node that hears it may answer once), until `expected` answers came or
    /// `timeout` passed. With nobody expected, it only publishes.
    pub(crate) async fn gather(
        &self,
        subject: String,
        headers: HeaderMap,
        body: &[u8],
        expected: usize,
        timeout: Duration,
    ) -> Result<Vec<Bytes>, String> {
        let (message, tag) = self.sealer.seal(subject.as_bytes(), body);
        if expected == 0 {
            self.nats
                .publish_with_headers(subject, headers, message.into())
                .await
                .map_err(|err| err.to_string())?;
            return Ok(Vec::new());
        }
        let inbox = self.nats.new_inbox();
        let mut answers_in = self
            .nats
            .subscribe(inbox.clone())
            .await
            .map_err(|err| err.to_string())?;
        self.nats
            .publish_with_reply_and_headers(subject, inbox, headers, message.into())
            .await
            .map_err(|err| err.to_string())?;
        let mut answers = Vec::with_capacity(expected);
        let deadline = tokio::time::Instant::now() + timeout;
        while answers.len() < expected {
            let answer = match tokio::time::timeout_at(deadline, answers_in.next()).await {
                Ok(Some(answer)) => answer,
                Ok(None) | Err(_) => break,
            };
            // "No responders" is a status message with an empty body: nobody listens.
            if answer.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
                break;
            }
            if let Some((body, _)) = self.check(SubjectKind::Reply, tag.as_bytes(), answer.payload)
            {
                answers.push(body);
            }
        }
        let _ = answers_in.unsubscribe().await;
        Ok(answers)
    }

    /// Answers a request.
    pub(crate) async fn answer(&self, reply: Reply, body: &[u8]) {
        let (message, _) = self.sealer.seal(reply.tag.as_bytes(), body);
        if let Err(err) = self.nats.publish(reply.subject, message.into()).await {
            tracing::debug!(error = %err, "cannot answer a request");
        }
    }

    /// The NATS connection itself, for the subjects backends use directly (`.api.*`,
    /// `.events.*`): their messages are plain, without the cluster's envelope, since a backend
    /// cannot seal them; NATS permissions say who may use them (docs/nats-interface.md).
    pub(crate) fn plain(&self) -> &Client {
        &self.nats
    }

    /// Subscribes to `subject`, whose messages are of `kind`.
    pub(crate) async fn subscribe(
        &self,
        subject: String,
        kind: SubjectKind,
    ) -> Result<Inbox, async_nats::SubscribeError> {
        let subscriber = self.nats.subscribe(subject).await?;
        Ok(Inbox {
            subscriber,
            kind,
            bus: self.clone(),
        })
    }

    /// Counts and logs a message a handler could not use.
    pub(crate) fn reject(&self, kind: SubjectKind, reason: RejectReason, detail: &dyn Display) {
        self.rejections.record(kind, reason, detail);
    }

    /// Waits until everything published so far has reached the server.
    pub(crate) async fn flush(&self) {
        let _ = self.nats.flush().await;
    }

    /// Size check, then envelope: the body, or `None` when the message was dropped.
    fn check(
        &self,
        kind: SubjectKind,
        context: &[u8],
        payload: Bytes,
    ) -> Option<(Bytes, RequestTag)> {
        if payload.len() > max_bytes(kind) {
            self.reject(
                kind,
                RejectReason::Oversize,
                &format_args!("{} bytes", payload.len()),
            );
            return None;
        }
        match self.sealer.open(context, &payload) {
            Ok((range, tag)) => Some((payload.slice(range), tag)),
            Err(err) => {
                let reason = match err {
                    OpenError::Unauthenticated | OpenError::BadTag | OpenError::UnexpectedTag => {
                        RejectReason::Unauthenticated
                    }
                    OpenError::Truncated | OpenError::UnknownVersion(_) => RejectReason::Malformed,
                };
                self.reject(kind, reason, &err);
                None
            }
        }
    }
}

/// The messages of one subscription that passed the checks.
pub(crate) struct Inbox {
    subscriber: Subscriber,
    kind: SubjectKind,
    bus: Bus,
}

impl Inbox {
    /// The next message that passed the checks, or `None` once the subscription ends or
    /// `stop` fires.
    pub(crate) async fn next(&mut self, stop: &CancellationToken) -> Option<Incoming> {
        loop {
            let message = tokio::select! {
                message = self.subscriber.next() => message?,
                () = stop.cancelled() => return None,
            };
            let Some((body, tag)) =
                self.bus
                    .check(self.kind, message.subject.as_bytes(), message.payload)
            else {
                continue;
            };
            return Some(Incoming {
                body,
                headers: message.headers,
                reply: message.reply.map(|subject| Reply { subject, tag }),
            });
        }
    }

    /// Serves every message with `handler`, each in its own task but at most `limit` at once:
    /// beyond that the subscription waits (and NATS buffers), rather than spawning without
    /// bound.
    pub(crate) fn serve_concurrently<F, Fut>(
        mut self,
        stop: CancellationToken,
        limit: usize,
        handler: F,
    ) where
        F: Fn(Incoming) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let permits = Arc::new(Semaphore::new(limit));
        tokio::spawn(async move {
            while let Some(message) = self.next(&stop).await {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                let work = handler(message);
                tokio::spawn(async move {
                    work.await;
                    drop(permit);
                });
            }
        });
    }
}
