//! Traces that cross nodes (OpenTelemetry).
//!
//! The router uses the OpenTelemetry API alone: its spans go to whatever provider the gateway
//! installed, and the W3C `traceparent` travels in NATS headers through the global propagator.
//! Tracing is off unless the gateway turns it on ([`enable`]); off, every hook here costs one
//! relaxed atomic load, and no span, context or header is made.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use async_nats::HeaderMap;
use opentelemetry::context::FutureExt;
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::{SpanKind, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue, global};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// The instrumentation scope of every Oort span.
pub const TRACER_NAME: &str = "oort";

/// The W3C header, in HTTP and NATS alike.
pub const TRACEPARENT: &str = "traceparent";

/// True once the gateway installed a provider: spans are worth making.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Turns the hooks on, once a provider and the W3C propagator are installed.
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// The current context, when tracing is on and it holds a sampled span: only then is there a
/// trace to continue.
pub fn sampled_current() -> Option<Context> {
    if !enabled() {
        return None;
    }
    let cx = Context::current();
    cx.span().span_context().is_sampled().then_some(cx)
}

/// Starts a span named `name` as a child of `parent` and returns the context holding it.
pub fn child(
    parent: &Context,
    name: &'static str,
    kind: SpanKind,
    attributes: Vec<KeyValue>,
) -> Context {
    let tracer = global::tracer(TRACER_NAME);
    let span = tracer
        .span_builder(name)
        .with_kind(kind)
        .with_attributes(attributes)
        .start_with_context(&tracer, parent);
    parent.with_span(span)
}

/// Starts the server span of a request from outside (a backend's API call, a client's
/// connect), continuing the caller's `traceparent` when it sent one. `None` when tracing is off
/// or the sampler dropped the trace: then nothing is recorded for the request.
pub fn server_span(
    name: &'static str,
    traceparent: Option<&str>,
    attributes: impl FnOnce() -> Vec<KeyValue>,
) -> Option<Context> {
    if !enabled() {
        return None;
    }
    let parent = traceparent.map_or_else(Context::new, remote_parent);
    let cx = child(&parent, name, SpanKind::Server, attributes());
    if cx.span().span_context().is_sampled() {
        Some(cx)
    } else {
        cx.span().end();
        None
    }
}

/// Runs `work` in a child span of the current trace, when there is one, and ends the span after.
pub async fn in_span<T>(
    name: &'static str,
    kind: SpanKind,
    attributes: impl FnOnce() -> Vec<KeyValue>,
    work: impl Future<Output = T>,
) -> T {
    match sampled_current() {
        None => work.await,
        Some(parent) => {
            let cx = child(&parent, name, kind, attributes());
            let output = work.with_context(cx.clone()).await;
            cx.span().end();
            output
        }
    }
}

/// The `traceparent` value naming the span of `cx` (`None` when it has none).
pub fn traceparent(cx: &Context) -> Option<String> {
    let mut fields = HashMap::new();
    global::get_text_map_propagator(|propagator| propagator.inject_context(cx, &mut fields));
    fields.remove(TRACEPARENT)
}

/// The remote parent a `traceparent` value names; an invalid value gives a context without one,
/// so a forged or garbled header starts nothing worse than a new trace.
pub fn remote_parent(traceparent: &str) -> Context {
    let fields = HashMap::from([(TRACEPARENT.to_owned(), traceparent.to_owned())]);
    global::get_text_map_propagator(|propagator| propagator.extract(&fields))
}

/// Writes the context into NATS headers.
pub(crate) fn inject_nats(cx: &Context, headers: &mut HeaderMap) {
    global::get_text_map_propagator(|propagator| {
        propagator.inject_context(cx, &mut NatsHeaders(headers));
    });
}

/// Reads a context from NATS headers.
pub(crate) fn extract_nats(headers: &HeaderMap) -> Context {
    global::get_text_map_propagator(|propagator| propagator.extract(&NatsHeadersRead(headers)))
}

struct NatsHeaders<'a>(&'a mut HeaderMap);

impl Injector for NatsHeaders<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value.as_str());
    }
}

struct NatsHeadersRead<'a>(&'a HeaderMap);

impl Extractor for NatsHeadersRead<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|value| value.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        Vec::new()
    }
}

/// The NATS header naming the trace of each traced delivery in a batch: `<index> <traceparent>`
/// entries separated by commas (a batch carries deliveries of several sends, each of its own
/// trace; the standard `traceparent` header names the first).
pub(crate) const BATCH_TRACES: &str = "Oort-Traces";

/// Headers for a batch whose deliveries at these indexes are traced.
pub(crate) fn batch_headers<'a>(
    traced: impl Iterator<Item = (usize, &'a str)>,
) -> Option<HeaderMap> {
    let mut entries = String::new();
    let mut first = None;
    for (index, traceparent) in traced {
        if !entries.is_empty() {
            entries.push(',');
        }
        entries.push_str(&format!("{index} {traceparent}"));
        first.get_or_insert(traceparent);
    }
    let first = first?;
    let mut headers = HeaderMap::new();
    headers.insert(TRACEPARENT, first);
    headers.insert(BATCH_TRACES, entries.as_str());
    Some(headers)
}

/// The trace parent of each traced delivery of a batch, by index. Entries that do not parse
/// are skipped: these headers are outside the seal, and a bad one costs a trace, nothing more.
pub(crate) fn batch_parents(headers: Option<&HeaderMap>) -> HashMap<usize, Context> {
    let Some(entries) = headers.and_then(|headers| headers.get(BATCH_TRACES)) else {
        return HashMap::new();
    };
    entries
        .as_str()
        .split(',')
        .filter_map(|entry| {
            let (index, traceparent) = entry.trim().split_once(' ')?;
            let parent = remote_parent(traceparent);
            parent
                .span()
                .span_context()
                .is_valid()
                .then(|| Some((index.parse().ok()?, parent)))
                .flatten()
        })
        .collect()
}
