//! `tracing.*`: OpenTelemetry traces (docs/operations.md, "Traces"). Off by default; the standard
//! `OTEL_*` variables fill whatever these keys leave empty.

use serde::{Deserialize, Serialize};

use super::{ConfigError, lenient};

/// The OTLP protocols a trace exporter may speak.
pub const TRACE_PROTOCOLS: [&str; 2] = ["grpc", "http/protobuf"];

/// `tracing.*`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TracingConfig {
    /// Export traces over OTLP. `OTEL_TRACES_EXPORTER=otlp` turns them on too, and
    /// `OTEL_SDK_DISABLED=true` keeps them off whatever this says.
    #[serde(deserialize_with = "lenient::bool")]
    pub enabled: bool,
    /// The collector's base URL (`http://collector:4318` for `http/protobuf`, where spans go to
    /// `/v1/traces`; `http://collector:4317` for `grpc`). Empty: `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), else the protocol's local default.
    #[serde(deserialize_with = "lenient::string")]
    pub endpoint: String,
    /// `grpc` or `http/protobuf`. Empty: `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, then
    /// `OTEL_EXPORTER_OTLP_PROTOCOL`, else `http/protobuf`.
    #[serde(deserialize_with = "lenient::string")]
    pub protocol: String,
    /// The share of traces started here that are kept, 0 to 1, unless the caller's
    /// `traceparent` already decided (parent-based). Empty: `OTEL_TRACES_SAMPLER` and
    /// `OTEL_TRACES_SAMPLER_ARG`, else every trace.
    #[serde(deserialize_with = "lenient::string")]
    pub sample_ratio: String,
}

impl TracingConfig {
    /// The sample ratio, when set.
    pub fn sample_ratio(&self) -> Option<f64> {
        self.sample_ratio.trim().parse().ok()
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let protocol = self.protocol.trim();
        if !protocol.is_empty() && !TRACE_PROTOCOLS.contains(&protocol) {
            return Err(ConfigError::invalid(
                "tracing.protocol",
                protocol,
                "must be grpc or http/protobuf",
            ));
        }
        let ratio = self.sample_ratio.trim();
        if !ratio.is_empty() && !ratio.parse::<f64>().is_ok_and(|r| (0.0..=1.0).contains(&r)) {
            return Err(ConfigError::invalid(
                "tracing.sample_ratio",
                ratio,
                "must be a number from 0 to 1",
            ));
        }
        let endpoint = self.endpoint.trim();
        let is_url = endpoint.starts_with("http://") || endpoint.starts_with("https://");
        if !endpoint.is_empty() && !is_url {
            return Err(ConfigError::invalid(
                "tracing.endpoint",
                endpoint,
                "must be an http:// or https:// URL",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_protocols_ratios_and_endpoints_are_named() {
        let bad = [
            TracingConfig {
                protocol: "thrift".into(),
                ..Default::default()
            },
            TracingConfig {
                sample_ratio: "1.5".into(),
                ..Default::default()
            },
            TracingConfig {
                sample_ratio: "half".into(),
                ..Default::default()
            },
            TracingConfig {
                endpoint: "collector:4317".into(),
                ..Default::default()
            },
        ];
        for config in bad {
            assert!(config.validate().is_err(), "{config:?}");
        }
        let good = TracingConfig {
            enabled: true,
            endpoint: "http://127.0.0.1:4317".into(),
            protocol: "grpc".into(),
            sample_ratio: "0.25".into(),
        };
        assert!(good.validate().is_ok());
        assert_eq!(good.sample_ratio(), Some(0.25));
        assert_eq!(TracingConfig::default().sample_ratio(), None);
    }
}
