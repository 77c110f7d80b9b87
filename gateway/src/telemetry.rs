//! Logging: `tracing` with an `EnvFilter` (from `RUST_LOG`, which the binary passes in, else
//! `log.level`), as text or JSON.

use oort_common::config::LogFormat;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `rust_log` (the `RUST_LOG` variable), when set and not
/// empty, wins over `level`; either is a level name or a full filter directive, and an invalid
/// one is an error naming it.
pub fn init(level: &str, rust_log: Option<&str>, format: LogFormat) -> Result<(), String> {
    let directive = rust_log.filter(|directive| !directive.is_empty());
    let filter = EnvFilter::try_new(directive.unwrap_or(level)).map_err(|err| match directive {
        Some(directive) => format!("invalid RUST_LOG {directive:?}: {err}"),
        None => format!("invalid log level {level:?}: {err}"),
    })?;
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
