//! Logging: `tracing` with an `EnvFilter` (from `RUST_LOG`, which the binary passes in, else
//! `log.level`), as text or JSON.

use oort_common::config::LogFormat;
use tracing_subscriber::EnvFilter;

/// async-nats logs every connection attempt and event itself, an authentication failure at
/// error level once a second; the router logs each change of the connection's state once
/// instead. A filter that names `async_nats` gets the library's own lines back.
const QUIET_NATS_CLIENT: &str = "async_nats=off";

/// Installs the global subscriber. `rust_log` (the `RUST_LOG` variable), when set and not
/// empty, wins over `level`; either is a level name or a full filter directive, and an invalid
/// one is an error naming it.
pub fn init(level: &str, rust_log: Option<&str>, format: LogFormat) -> Result<(), String> {
    let directive = rust_log.filter(|directive| !directive.is_empty());
    let filter =
        EnvFilter::try_new(with_quiet_nats_client(directive.unwrap_or(level))).map_err(|err| {
            match directive {
                Some(directive) => format!("invalid RUST_LOG {directive:?}: {err}"),
                None => format!("invalid log level {level:?}: {err}"),
            }
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

fn with_quiet_nats_client(directive: &str) -> String {
    if directive.contains("async_nats") {
        directive.to_owned()
    } else {
        format!("{directive},{QUIET_NATS_CLIENT}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nats_client_is_quiet_unless_named() {
        assert_eq!(with_quiet_nats_client("info"), "info,async_nats=off");
        assert_eq!(
            with_quiet_nats_client("debug,async_nats=debug"),
            "debug,async_nats=debug"
        );
        assert!(EnvFilter::try_new(with_quiet_nats_client("warn")).is_ok());
    }
}
