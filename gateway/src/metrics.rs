//! Prometheus metrics. Every series is registered up front with a fixed set of label values, so
//! the hot paths only touch pre-resolved handles and cardinality cannot grow with traffic.
//!
//! Each gateway owns its recorder (nothing is installed globally), so several gateways can run
//! in one test process.

use std::sync::Arc;

use metrics::{Counter, Gauge, Histogram, Key, Label, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusRecorder};
use oort_common::DeliveryStatus;
use oort_router::{ClusterMetrics, ClusterStatus, OwnerHistograms, RejectedCounters};

use crate::admission::RefusalReason;
use crate::sessions::{CloseCause, SendRoute, Stamp};

/// The backend callbacks, as metric labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CallbackKind {
    Connect,
    Establish,
    Close,
    Receive,
    Presence,
}

impl CallbackKind {
    pub(crate) const ALL: [Self; 5] = [
        Self::Connect,
        Self::Establish,
        Self::Close,
        Self::Receive,
        Self::Presence,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Establish => "establish",
            Self::Close => "close",
            Self::Receive => "receive",
            Self::Presence => "presence",
        }
    }
}

/// Kinds of error counted in `oort_errors_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// A backend API request was malformed.
    BadRequest,
    /// A backend API request lacked the token.
    Unauthorized,
    /// A request body exceeded its limit.
    BodyTooLarge,
    /// Writing to a client failed.
    WriteFailed,
    /// A client broke the WebSocket protocol.
    ClientProtocol,
    /// A client message exceeded the size limit.
    MessageTooBig,
    /// A callback failed (timeout, transport or non-200).
    CallbackFailed,
    /// A connect was refused before reaching the backend (limits, origin, handshake).
    ConnectRejected,
}

impl ErrorKind {
    const ALL: [Self; 8] = [
        Self::BadRequest,
        Self::Unauthorized,
        Self::BodyTooLarge,
        Self::WriteFailed,
        Self::ClientProtocol,
        Self::MessageTooBig,
        Self::CallbackFailed,
        Self::ConnectRejected,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::Unauthorized => "unauthorized",
            Self::BodyTooLarge => "body_too_large",
            Self::WriteFailed => "write_failed",
            Self::ClientProtocol => "client_protocol",
            Self::MessageTooBig => "message_too_big",
            Self::CallbackFailed => "callback_failed",
            Self::ConnectRejected => "connect_rejected",
        }
    }
}

const CLOSE_CAUSES: [CloseCause; 17] = [
    CloseCause::ClientClosed,
    CloseCause::ConnectionLost,
    CloseCause::IdleTimeout,
    CloseCause::PongTimeout,
    CloseCause::SlowConsumer,
    CloseCause::MessageTooBig,
    CloseCause::MessageRate,
    CloseCause::ProtocolError,
    CloseCause::ClosedByBackend,
    CloseCause::Replaced,
    CloseCause::Shutdown,
    CloseCause::EstablishFailed,
    CloseCause::TakenOver,
    CloseCause::Moving,
    CloseCause::LingerExpired,
    CloseCause::Reset,
    CloseCause::UserLimit,
];

/// How requests to clients (`/v1/request`) end: answered, timed out, or not delivered.
pub(crate) const REQUEST_OUTCOMES: [&str; 3] = ["answered", "timeout", "undelivered"];

/// The client transports, as metric labels (`oort_transport_connections`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transport {
    WebSocket,
    Sse,
    LongPoll,
}

impl Transport {
    const ALL: [Self; 3] = [Self::WebSocket, Self::Sse, Self::LongPoll];

    fn as_str(self) -> &'static str {
        match self {
            Self::WebSocket => "websocket",
            Self::Sse => "sse",
            Self::LongPoll => "long_poll",
        }
    }
}

/// Counts one open connection of a transport for as long as it lives.
pub(crate) struct TransportOpen(Gauge);

impl Drop for TransportOpen {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// Buckets of `oort_send_latency_seconds` and `oort_cluster_round_trip_seconds`: a send on an
/// idle node takes tens of microseconds, so the usual buckets (from 1 ms) would hide it.
const FINE_SECONDS: [f64; 16] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 10.0,
];

/// Buckets of `oort_queue_depth_messages`, up to the default `queue.max_messages`'s order.
const DEPTH_BUCKETS: [f64; 12] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
];

/// How `oort.v1` resumes end: continued on the same node, moved from another node, or reset.
const RESUME_OUTCOMES: [&str; 3] = ["here", "moved", "reset"];

/// Pre-registered handles for every series.
pub(crate) struct Metrics {
    recorder: Arc<PrometheusRecorder>,
    /// Open WebSocket connections.
    pub connections: Gauge,
    /// Connections accepted since start.
    pub connections_total: Counter,
    /// Sessions in the table (set when rendering).
    pub sessions: Gauge,
    /// Client messages received.
    pub messages_received: Counter,
    /// Frames written to clients.
    pub messages_sent: Counter,
    /// Callbacks sent and not yet answered.
    pub callbacks_in_flight: Gauge,
    /// Callbacks waiting for a turn under `callback.max_concurrency`.
    pub callbacks_waiting: Gauge,
    /// Connections and requests refused by a protection limit, by limit.
    pub refusals: [Counter; RefusalReason::ALL.len()],
    /// Bytes reserved from `limits.handshake_memory`.
    pub handshake_memory: Gauge,
    /// Client connections not yet upgraded (or closed) that hold a reservation.
    pub handshakes: Gauge,
    deliveries: [Counter; DeliveryStatus::ALL.len()],
    /// Replies to backend requests read from this node's clients.
    pub client_replies: Counter,
    /// Replies that reached this node with no request waiting for them (late, unknown id, or
    /// from another session than the one asked); set when rendering.
    pub unmatched_replies: Counter,
    /// Requests to clients through this node, by outcome.
    requests: [Counter; REQUEST_OUTCOMES.len()],
    /// Publishes to channels through this node.
    publishes: Counter,
    /// Sessions (cluster-wide) that took those publishes.
    publish_receivers: Counter,
    /// Messages refused because a session's queue was full.
    queue_overflows: Counter,
    closes: [Counter; CLOSE_CAUSES.len()],
    resumes: [Counter; RESUME_OUTCOMES.len()],
    /// `oort.v1` sessions lingering without a connection (set when rendering).
    pub lingering_sessions: Gauge,
    /// Named Durable Streams this node owns, and the bytes of messages they keep (set when
    /// rendering).
    pub streams: Gauge,
    pub stream_bytes: Gauge,
    errors: [Counter; ErrorKind::ALL.len()],
    callback_seconds: [Histogram; CallbackKind::ALL.len()],
    callback_errors: [Counter; CallbackKind::ALL.len()],
    /// From a message's queueing on the node that holds its session to the end of its socket
    /// write, by route.
    send_latency: [Histogram; SendRoute::ALL.len()],
    /// Messages in a session's queue each time its writer takes a batch.
    pub queue_depth: Histogram,
    transport_connections: [Gauge; Transport::ALL.len()],
    cluster: ClusterMetrics,
    raft: RaftGauges,
}

/// Cluster figures read from the router's status when `/metrics` is scraped.
struct RaftGauges {
    term: Gauge,
    is_leader: Gauge,
    applied_index: Gauge,
    apply_lag: Gauge,
    members: Gauge,
    voters: Gauge,
    directory_sessions: Gauge,
    snapshot_index: Gauge,
    snapshot_bytes: Gauge,
    ready: Gauge,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Suffix("_seconds".into()),
                &[
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    30.0,
                ],
            )
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("oort_send_latency_seconds".into()),
                    &FINE_SECONDS,
                )
            })
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("oort_cluster_round_trip_seconds".into()),
                    &FINE_SECONDS,
                )
            })
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("oort_queue_depth_messages".into()),
                    &DEPTH_BUCKETS,
                )
            })
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = Arc::new(builder.build_recorder());
        let r = Registrar {
            recorder: &recorder,
        };
        r.describe("oort_connections", "Open client WebSocket connections.");
        r.describe(
            "oort_connections_total",
            "Client WebSocket connections accepted.",
        );
        r.describe("oort_sessions", "Sessions registered on this node.");
        r.describe(
            "oort_messages_received_total",
            "Messages received from clients.",
        );
        r.describe("oort_messages_sent_total", "Frames written to clients.");
        r.describe(
            "oort_deliveries_total",
            "Per-session delivery outcomes of backend sends.",
        );
        r.describe("oort_session_closes_total", "Sessions ended, by cause.");
        r.describe(
            "oort_client_replies_total",
            "Replies to backend requests read from this node's clients.",
        );
        r.describe(
            "oort_client_replies_unmatched_total",
            "Replies dropped because no request waited for them (late, unknown, wrong session).",
        );
        r.describe(
            "oort_requests_total",
            "Requests to clients (POST /v1/request) through this node, by outcome.",
        );
        r.describe(
            "oort_publishes_total",
            "Channel publishes through this node (POST /v1/publish).",
        );
        r.describe(
            "oort_publish_receivers_total",
            "Sessions, cluster-wide, that took the publishes made through this node.",
        );
        r.describe(
            "oort_queue_overflows_total",
            "Messages refused because a session's outbound queue was full.",
        );
        r.describe("oort_errors_total", "Errors, by kind.");
        r.describe(
            "oort_callback_duration_seconds",
            "Backend callback latency.",
        );
        r.describe(
            "oort_callback_errors_total",
            "Backend callbacks that failed (timeout, transport, non-200, no turn), by callback.",
        );
        r.describe(
            "oort_callbacks_in_flight",
            "Backend callbacks sent and not yet answered (at most callback.max_concurrency).",
        );
        r.describe(
            "oort_callbacks_waiting",
            "Backend callbacks waiting for a turn under callback.max_concurrency.",
        );
        r.describe(
            "oort_refused_total",
            "Client connections and requests refused by a protection limit, by limit.",
        );
        r.describe(
            "oort_handshake_memory_bytes",
            "Memory reserved for handshakes in progress (at most limits.handshake_memory).",
        );
        r.describe(
            "oort_handshakes",
            "Client connections accepted and not yet upgraded or closed.",
        );
        r.describe(
            "oort_cluster_deliveries_forwarded_total",
            "Deliveries forwarded to the nodes owning their sessions.",
        );
        r.describe(
            "oort_cluster_delivery_requests_total",
            "NATS requests carrying forwarded deliveries (several share one under load).",
        );
        r.describe(
            "oort_cluster_rejected_messages_total",
            "Messages from NATS dropped before use (oversize, malformed, unauthenticated, invalid).",
        );
        r.describe(
            "oort_resumes_total",
            "oort.v1 resumes by outcome: here (same node), moved (from another node), reset.",
        );
        r.describe("oort_streams", "Named Durable Streams this node owns.");
        r.describe(
            "oort_stream_bytes",
            "Bytes of messages the named Durable Streams of this node keep (payloads and per-message overhead).",
        );
        r.describe(
            "oort_send_latency_seconds",
            "From a message's queueing on the node holding its session to the end of its socket write, by route (local, or forwarded over NATS).",
        );
        r.describe(
            "oort_queue_depth_messages",
            "Messages in a session's outbound queue each time its writer takes a batch.",
        );
        r.describe(
            "oort_transport_connections",
            "Open client connections by transport: websocket, sse, long_poll.",
        );
        r.describe(
            "oort_cluster_round_trip_seconds",
            "Round trips of the NATS requests carrying deliveries, by owner node.",
        );
        r.describe(
            "oort_nats_connected",
            "1 while this node is connected to NATS (clustered nodes only).",
        );
        r.describe(
            "oort_lingering_sessions",
            "oort.v1 sessions waiting for their client to resume (session.linger).",
        );
        Self {
            connections: r.gauge("oort_connections", &[]),
            connections_total: r.counter("oort_connections_total", &[]),
            sessions: r.gauge("oort_sessions", &[]),
            messages_received: r.counter("oort_messages_received_total", &[]),
            messages_sent: r.counter("oort_messages_sent_total", &[]),
            callbacks_in_flight: r.gauge("oort_callbacks_in_flight", &[]),
            callbacks_waiting: r.gauge("oort_callbacks_waiting", &[]),
            refusals: RefusalReason::ALL
                .map(|reason| r.counter("oort_refused_total", &[("reason", reason.as_str())])),
            handshake_memory: r.gauge("oort_handshake_memory_bytes", &[]),
            handshakes: r.gauge("oort_handshakes", &[]),
            deliveries: DeliveryStatus::ALL
                .map(|s| r.counter("oort_deliveries_total", &[("status", s.as_str())])),
            queue_overflows: r.counter("oort_queue_overflows_total", &[]),
            client_replies: r.counter("oort_client_replies_total", &[]),
            unmatched_replies: r.counter("oort_client_replies_unmatched_total", &[]),
            requests: REQUEST_OUTCOMES
                .map(|outcome| r.counter("oort_requests_total", &[("outcome", outcome)])),
            publishes: r.counter("oort_publishes_total", &[]),
            publish_receivers: r.counter("oort_publish_receivers_total", &[]),
            closes: CLOSE_CAUSES
                .map(|c| r.counter("oort_session_closes_total", &[("cause", c.as_str())])),
            resumes: RESUME_OUTCOMES
                .map(|outcome| r.counter("oort_resumes_total", &[("outcome", outcome)])),
            lingering_sessions: r.gauge("oort_lingering_sessions", &[]),
            streams: r.gauge("oort_streams", &[]),
            stream_bytes: r.gauge("oort_stream_bytes", &[]),
            errors: ErrorKind::ALL.map(|k| r.counter("oort_errors_total", &[("kind", k.as_str())])),
            callback_seconds: CallbackKind::ALL.map(|k| {
                r.histogram(
                    "oort_callback_duration_seconds",
                    &[("callback", k.as_str())],
                )
            }),
            callback_errors: CallbackKind::ALL
                .map(|k| r.counter("oort_callback_errors_total", &[("callback", k.as_str())])),
            send_latency: SendRoute::ALL.map(|route| {
                r.histogram("oort_send_latency_seconds", &[("route", route.as_str())])
            }),
            queue_depth: r.histogram("oort_queue_depth_messages", &[]),
            transport_connections: Transport::ALL.map(|transport| {
                r.gauge(
                    "oort_transport_connections",
                    &[("transport", transport.as_str())],
                )
            }),
            cluster: ClusterMetrics {
                commit_seconds: r.histogram("oort_raft_commit_seconds", &[]),
                leader_changes: r.counter("oort_raft_leader_changes_total", &[]),
                nats_disconnects: r.counter("oort_nats_disconnects_total", &[]),
                nats_connects: r.counter("oort_nats_connects_total", &[]),
                deliveries_forwarded: r.counter("oort_cluster_deliveries_forwarded_total", &[]),
                delivery_requests: r.counter("oort_cluster_delivery_requests_total", &[]),
                rejected: RejectedCounters::new(|subject, reason| {
                    r.counter(
                        "oort_cluster_rejected_messages_total",
                        &[("subject", subject), ("reason", reason)],
                    )
                }),
                round_trip: {
                    let recorder = recorder.clone();
                    OwnerHistograms::new(move |owner| {
                        let key = Key::from_parts(
                            "oort_cluster_round_trip_seconds",
                            vec![Label::new("owner", owner.to_owned())],
                        );
                        recorder.register_histogram(&key, &Registrar::METADATA)
                    })
                },
            },
            raft: RaftGauges {
                term: r.gauge("oort_raft_term", &[]),
                is_leader: r.gauge("oort_raft_is_leader", &[]),
                applied_index: r.gauge("oort_raft_applied_index", &[]),
                apply_lag: r.gauge("oort_raft_apply_lag", &[]),
                members: r.gauge("oort_cluster_members", &[]),
                voters: r.gauge("oort_cluster_voters", &[]),
                directory_sessions: r.gauge("oort_directory_sessions", &[]),
                snapshot_index: r.gauge("oort_raft_snapshot_index", &[]),
                snapshot_bytes: r.gauge("oort_raft_snapshot_bytes", &[]),
                ready: r.gauge("oort_cluster_ready", &[]),
            },
            recorder,
        }
    }

    /// Handles for the cluster router's own counters and histograms.
    pub(crate) fn cluster(&self) -> ClusterMetrics {
        self.cluster.clone()
    }

    /// Counts a connection of `transport` until the returned guard drops.
    pub(crate) fn transport_open(&self, transport: Transport) -> TransportOpen {
        let index = Transport::ALL
            .iter()
            .position(|t| *t == transport)
            .unwrap_or(0);
        let gauge = self.transport_connections[index].clone();
        gauge.increment(1.0);
        TransportOpen(gauge)
    }

    /// Records the send latency of the messages just written (a write that started at
    /// `write_started`), and the spans of those whose send is traced.
    pub(crate) fn observe_written(&self, stamps: &[Stamp], write_started: std::time::Instant) {
        if stamps.is_empty() {
            return;
        }
        let written = std::time::Instant::now();
        let mut traced_times = None;
        for stamp in stamps {
            let index = SendRoute::ALL
                .iter()
                .position(|r| *r == stamp.route)
                .unwrap_or(0);
            self.send_latency[index].record(written.duration_since(stamp.queued_at).as_secs_f64());
            if let Some(trace) = &stamp.trace {
                let (started, ended) = *traced_times.get_or_insert_with(|| {
                    let now = std::time::SystemTime::now();
                    (now - written.duration_since(write_started), now)
                });
                trace.record(started, ended);
            }
        }
    }

    /// Sets the cluster gauges from the router's status, before rendering.
    pub(crate) fn set_cluster(&self, status: &ClusterStatus) {
        let nats_connected = Registrar {
            recorder: &self.recorder,
        }
        .gauge("oort_nats_connected", &[]);
        nats_connected.set(if status.nats.state == "connected" {
            1.0
        } else {
            0.0
        });
        let raft = &self.raft;
        raft.term.set(status.term as f64);
        raft.is_leader
            .set(if status.role == "leader" { 1.0 } else { 0.0 });
        raft.applied_index
            .set(status.applied_index.unwrap_or(0) as f64);
        let lag = status
            .last_log_index
            .unwrap_or(0)
            .saturating_sub(status.applied_index.unwrap_or(0));
        raft.apply_lag.set(lag as f64);
        let members = status
            .members
            .iter()
            .filter(|m| m.role == "voter" || m.role == "learner")
            .count();
        raft.members.set(members as f64);
        raft.voters
            .set(status.members.iter().filter(|m| m.role == "voter").count() as f64);
        raft.directory_sessions.set(status.sessions as f64);
        raft.snapshot_index
            .set(status.snapshot_index.unwrap_or(0) as f64);
        raft.snapshot_bytes.set(status.snapshot_bytes as f64);
        raft.ready.set(if status.ready { 1.0 } else { 0.0 });
    }

    /// Counts one request to a client by its outcome (one of [`REQUEST_OUTCOMES`]).
    pub(crate) fn count_request(&self, outcome: &str) {
        if let Some(index) = REQUEST_OUTCOMES.iter().position(|o| *o == outcome) {
            self.requests[index].increment(1);
        }
    }

    /// Counts one publish and the sessions that took it.
    pub(crate) fn count_publish(&self, sessions: u64) {
        self.publishes.increment(1);
        self.publish_receivers.increment(sessions);
    }

    /// Counts delivery outcomes.
    pub(crate) fn count_deliveries(&self, statuses: &[DeliveryStatus]) {
        for status in statuses {
            let index = DeliveryStatus::ALL
                .iter()
                .position(|s| s == status)
                .unwrap_or(0);
            self.deliveries[index].increment(1);
            if *status == DeliveryStatus::QueueFull {
                self.queue_overflows.increment(1);
            }
        }
    }

    /// Counts a session's end.
    pub(crate) fn count_close(&self, cause: CloseCause) {
        if let Some(index) = CLOSE_CAUSES.iter().position(|c| *c == cause) {
            self.closes[index].increment(1);
        }
    }

    /// Counts a resume by outcome (`here`, `moved`, `reset`).
    pub(crate) fn count_resume(&self, outcome: &str) {
        if let Some(index) = RESUME_OUTCOMES.iter().position(|o| *o == outcome) {
            self.resumes[index].increment(1);
        }
    }

    /// Counts an error.
    pub(crate) fn count_error(&self, kind: ErrorKind) {
        if let Some(index) = ErrorKind::ALL.iter().position(|k| *k == kind) {
            self.errors[index].increment(1);
        }
    }

    /// Counts one failed callback, overall and per callback.
    pub(crate) fn count_callback_error(&self, kind: CallbackKind) {
        self.count_error(ErrorKind::CallbackFailed);
        if let Some(index) = CallbackKind::ALL.iter().position(|k| *k == kind) {
            self.callback_errors[index].increment(1);
        }
    }

    /// Records one callback's duration.
    pub(crate) fn observe_callback(&self, kind: CallbackKind, seconds: f64) {
        if let Some(index) = CallbackKind::ALL.iter().position(|k| *k == kind) {
            self.callback_seconds[index].record(seconds);
        }
    }

    /// The exposition text.
    /// One gauge of this node's subscribers per channel the operator named in
    /// `channels.metrics` (never per channel seen: label sets stay bounded).
    pub(crate) fn channel_gauges(&self, names: &[String]) -> Vec<(String, Gauge)> {
        let r = Registrar {
            recorder: &self.recorder,
        };
        r.describe(
            "oort_channel_sessions",
            "Sessions on this node subscribed to a channel named in channels.metrics.",
        );
        names
            .iter()
            .map(|name| {
                let key = Key::from_parts(
                    "oort_channel_sessions",
                    vec![Label::new("channel", name.clone())],
                );
                (
                    name.clone(),
                    self.recorder.register_gauge(&key, &Registrar::METADATA),
                )
            })
            .collect()
    }

    pub(crate) fn render(&self) -> String {
        self.recorder.handle().render()
    }
}

struct Registrar<'a> {
    recorder: &'a PrometheusRecorder,
}

impl Registrar<'_> {
    const METADATA: Metadata<'static> =
        Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

    fn key(name: &'static str, labels: &[(&'static str, &'static str)]) -> Key {
        Key::from_parts(
            name,
            labels
                .iter()
                .map(|(k, v)| Label::new(*k, *v))
                .collect::<Vec<_>>(),
        )
    }

    fn describe(&self, name: &'static str, help: &'static str) {
        let unit = name.ends_with("_seconds").then_some(Unit::Seconds);
        self.recorder
            .describe_counter(name.into(), unit, SharedString::const_str(help));
    }

    fn counter(&self, name: &'static str, labels: &[(&'static str, &'static str)]) -> Counter {
        self.recorder
            .register_counter(&Self::key(name, labels), &Self::METADATA)
    }

    fn gauge(&self, name: &'static str, labels: &[(&'static str, &'static str)]) -> Gauge {
        self.recorder
            .register_gauge(&Self::key(name, labels), &Self::METADATA)
    }

    fn histogram(&self, name: &'static str, labels: &[(&'static str, &'static str)]) -> Histogram {
        self.recorder
            .register_histogram(&Self::key(name, labels), &Self::METADATA)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_series_with_help() {
        let metrics = Metrics::new();
        metrics.count_deliveries(&[
            DeliveryStatus::Ok,
            DeliveryStatus::QueueFull,
            DeliveryStatus::QueueFull,
        ]);
        metrics.observe_callback(CallbackKind::Connect, 0.003);
        metrics.count_close(CloseCause::SlowConsumer);
        let text = metrics.render();
        assert!(
            text.contains("oort_deliveries_total{status=\"queue_full\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("oort_deliveries_total{status=\"ok\"} 1"),
            "{text}"
        );
        assert!(text.contains("oort_queue_overflows_total 2"), "{text}");
        assert!(
            text.contains("oort_session_closes_total{cause=\"slow_consumer\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "oort_callback_duration_seconds_bucket{callback=\"connect\",le=\"0.005\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("# HELP oort_connections Open client WebSocket connections."),
            "{text}"
        );
    }
}
