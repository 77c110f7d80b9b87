//! Logging: `tracing` with an `EnvFilter` (from `RUST_LOG`, else `log.level`), as text or JSON.

use oort_common::config::LogFormat;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `level` is a level name or a full filter directive; an
/// invalid one is an error naming it.
pub fn init(level: &str, format: LogFormat) -> Result<(), String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directive) if !directive.is_empty() => EnvFilter::try_new(&directive),
        _ => EnvFilter::try_new(level),
    }
    .map_err(|err| format!("invalid log level {level:?}: {err}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
    installed.map_err(|err| format!("cannot install the logger: {err}"))
}
