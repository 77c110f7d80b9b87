//! OpenTelemetry traces: the OTLP exporter and the tracer provider, from `tracing.*` and the
//! standard `OTEL_*` variables (docs/operations.md, "Traces"). Nothing is installed while tracing
//! is off, and then every hook in the router and the gateway stays a relaxed atomic load.

use std::sync::OnceLock;

use oort_common::NodeId;
use oort_common::config::TracingConfig;
use opentelemetry::{KeyValue, global};
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::runtime::Tokio;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};

/// The settings after the `OTEL_*` variables filled what the config left empty.
#[derive(Debug, PartialEq)]
pub(crate) struct TraceSettings {
    /// `grpc` or `http/protobuf`.
    pub protocol: &'static str,
    /// The URL spans are sent to, when the config names one (else the exporter reads
    /// `OTEL_EXPORTER_OTLP_*ENDPOINT` itself, or uses its default).
    pub endpoint: Option<String>,
    /// The share of new traces kept, when the config says (else `OTEL_TRACES_SAMPLER`).
    pub sample_ratio: Option<f64>,
}

/// Whether traces are on, and how they are exported; `None` when off.
pub(crate) fn settings(
    config: &TracingConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<TraceSettings> {
    let env_is = |name: &str, value: &str| {
        env(name).is_some_and(|set| set.trim().eq_ignore_ascii_case(value))
    };
    if env_is("OTEL_SDK_DISABLED", "true") {
        return None;
    }
    let by_env = env("OTEL_TRACES_EXPORTER")
        .is_some_and(|exporters| exporters.split(',').any(|e| e.trim() == "otlp"));
    if !config.enabled && !by_env {
        return None;
    }
    let configured = config.protocol.trim();
    let protocol = if configured.is_empty() {
        env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .filter(|p| p.trim() == "grpc")
            .map_or("http/protobuf", |_| "grpc")
    } else if configured == "grpc" {
        "grpc"
    } else {
        "http/protobuf"
    };
    let base = config.endpoint.trim().trim_end_matches('/');
    let endpoint = (!base.is_empty()).then(|| match protocol {
        "grpc" => base.to_owned(),
        // The config names the collector; OTLP/HTTP takes spans at /v1/traces below it.
        _ => format!("{base}/v1/traces"),
    });
    Some(TraceSettings {
        protocol,
        endpoint,
        sample_ratio: config.sample_ratio(),
    })
}

/// The installed provider: flushes what is left at shutdown.
pub(crate) struct Traces {
    provider: SdkTracerProvider,
}

static INSTALLED: OnceLock<()> = OnceLock::new();

/// Installs the provider and the W3C propagator globally, and turns the hooks on. Runs inside
/// the tokio runtime (the batch processor is a task of it). A second call in one process (tests
/// that start several gateways) leaves the first provider in place.
pub(crate) fn install(settings: &TraceSettings, node: &NodeId) -> Result<Option<Traces>, String> {
    if INSTALLED.get().is_some() {
        return Ok(None);
    }
    // An https collector needs a crypto provider; the process may already have one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let exporter = match settings.protocol {
        "grpc" => {
            let builder = SpanExporter::builder().with_tonic();
            match &settings.endpoint {
                Some(endpoint) => builder.with_endpoint(endpoint).build(),
                None => builder.build(),
            }
        }
        _ => {
            let builder = SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary);
            match &settings.endpoint {
                Some(endpoint) => builder.with_endpoint(endpoint).build(),
                None => builder.build(),
            }
        }
    }
    .map_err(|err| format!("cannot build the OTLP trace exporter: {err}"))?;
    let mut resource = Resource::builder()
        .with_attribute(KeyValue::new("service.instance.id", node.to_string()))
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("oort");
    }
    let mut provider = SdkTracerProvider::builder()
        .with_span_processor(BatchSpanProcessor::builder(exporter, Tokio).build())
        .with_resource(resource.build());
    if let Some(ratio) = settings.sample_ratio {
        provider = provider.with_sampler(Sampler::ParentBased(Box::new(
            Sampler::TraceIdRatioBased(ratio),
        )));
    }
    let provider = provider.build();
    let _ = INSTALLED.set(());
    global::set_text_map_propagator(TraceContextPropagator::new());
    global::set_tracer_provider(provider.clone());
    oort_router::trace::enable();
    Ok(Some(Traces { provider }))
}

impl Traces {
    /// Exports the spans still buffered (bounded by the exporter's timeout).
    pub(crate) async fn shutdown(self) {
        // The processor answers from its own task: wait off the runtime's worker threads.
        let provider = self.provider;
        let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn resolve(config: TracingConfig, vars: &[(&str, &str)]) -> Option<TraceSettings> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        settings(&config, &|name| vars.get(name).cloned())
    }

    #[test]
    fn off_unless_the_config_or_otel_traces_exporter_says() {
        assert_eq!(resolve(TracingConfig::default(), &[]), None);
        assert_eq!(
            resolve(
                TracingConfig::default(),
                &[("OTEL_TRACES_EXPORTER", "none")]
            ),
            None
        );
        let on = resolve(
            TracingConfig::default(),
            &[("OTEL_TRACES_EXPORTER", "otlp")],
        );
        assert_eq!(
            on,
            Some(TraceSettings {
                protocol: "http/protobuf",
                endpoint: None,
                sample_ratio: None
            })
        );
        let enabled = TracingConfig {
            enabled: true,
            ..Default::default()
        };
        assert_eq!(resolve(enabled, &[("OTEL_SDK_DISABLED", "true")]), None);
    }

    #[test]
    fn the_config_wins_over_otel_variables_and_http_gets_the_traces_path() {
        let config = TracingConfig {
            enabled: true,
            endpoint: "http://collector:4318/".into(),
            sample_ratio: "0.5".into(),
            ..Default::default()
        };
        let resolved = resolve(config, &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")]);
        assert_eq!(
            resolved,
            Some(TraceSettings {
                protocol: "http/protobuf",
                endpoint: Some("http://collector:4318/v1/traces".into()),
                sample_ratio: Some(0.5)
            })
        );
        let grpc = TracingConfig {
            enabled: true,
            endpoint: "http://collector:4317".into(),
            protocol: "grpc".into(),
            ..Default::default()
        };
        let resolved = resolve(grpc, &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")]);
        assert_eq!(
            resolved.map(|s| (s.protocol, s.endpoint)),
            Some(("grpc", Some("http://collector:4317".into())))
        );
        let by_env = resolve(
            TracingConfig {
                enabled: true,
                ..Default::default()
            },
            &[("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")],
        );
        assert_eq!(by_env.map(|s| s.protocol), Some("grpc"));
    }
}
