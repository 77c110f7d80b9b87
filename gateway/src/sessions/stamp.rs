//! When and how a message entered a session's queue: for `oort_send_latency_seconds` and, when
//! its send is traced, the spans of its wait in the queue and of its socket write.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use oort_router::trace::{self, TRACER_NAME};
use opentelemetry::trace::{Span, SpanKind, Tracer};
use opentelemetry::{Context, global};

/// How a message reached this node's queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SendRoute {
    /// Sent through this node.
    Local,
    /// Sent through another node, which forwarded it over NATS.
    Forwarded,
}

impl SendRoute {
    pub(crate) const ALL: [Self; 2] = [Self::Local, Self::Forwarded];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Forwarded => "forwarded",
        }
    }
}

/// The queue and write spans of one delivery are made for this many of its targets at most: a
/// traced fan-out to 100k sessions must not make 200k spans (the others still count in the
/// send-latency histogram).
pub(crate) const MAX_TRACED_TARGETS: usize = 8;

/// When a message was queued, by which route, and the trace it continues.
#[derive(Clone)]
pub(crate) struct Stamp {
    pub(crate) queued_at: Instant,
    pub(crate) route: SendRoute,
    pub(crate) trace: Option<Arc<QueuedTrace>>,
}

impl Stamp {
    /// A stamp for messages queued now, continuing the current trace when it is sampled.
    pub(crate) fn now(route: SendRoute) -> Self {
        Self {
            queued_at: Instant::now(),
            route,
            trace: trace::sampled_current().map(|parent| {
                Arc::new(QueuedTrace {
                    parent,
                    queued_at: SystemTime::now(),
                })
            }),
        }
    }

    /// The stamp of the `index`th target of a delivery: past [`MAX_TRACED_TARGETS`], untraced.
    pub(crate) fn for_target(&self, index: usize) -> Self {
        Self {
            queued_at: self.queued_at,
            route: self.route,
            trace: self.trace.clone().filter(|_| index < MAX_TRACED_TARGETS),
        }
    }
}

/// The trace a queued message continues.
pub(crate) struct QueuedTrace {
    parent: Context,
    queued_at: SystemTime,
}

impl QueuedTrace {
    /// Records the message's wait in the queue (until `write_started`) and its write (until
    /// `written`), as children of the span that queued it.
    pub(crate) fn record(&self, write_started: SystemTime, written: SystemTime) {
        let tracer = global::tracer(TRACER_NAME);
        let mut queue = tracer
            .span_builder("oort.queue")
            .with_kind(SpanKind::Internal)
            .with_start_time(self.queued_at)
            .start_with_context(&tracer, &self.parent);
        queue.end_with_timestamp(write_started.max(self.queued_at));
        let mut write = tracer
            .span_builder("oort.write")
            .with_kind(SpanKind::Internal)
            .with_start_time(write_started.max(self.queued_at))
            .start_with_context(&tracer, &self.parent);
        write.end_with_timestamp(written);
    }
}
