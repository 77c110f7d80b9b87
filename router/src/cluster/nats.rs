//! The connection to NATS: options built from the `cluster` settings and the credentials the
//! binary read at start, a short reconnect delay capped at a second, and connection events
//! turned into readiness, metrics and one log line per change of state (`events.rs`).
//!
//! Every request a node makes gets its answer under `oort.<cluster>.inbox`, not NATS's
//! `_INBOX`, so the permission `oort.<cluster>.>` is all a node needs and other NATS users
//! cannot read the answers either.

mod events;
mod tls;

use std::sync::Arc;
use std::time::Duration;

use async_nats::{Client, ConnectOptions};
use oort_common::NodeId;
use oort_common::cluster::Subjects;
use oort_common::config::{ClusterConfig, NatsAccess, NatsAuth, REDACTED};

use super::ClusterMetrics;
use super::core::NatsState;
use crate::RouterError;

/// The wait before the second attempt after a connection is lost; it doubles from there.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(100);
/// The longest wait between attempts: a node is back within about a second of NATS returning,
/// however long NATS was gone.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(1);

/// Connects to the NATS servers of `config` with `access`. Returns at once: the client connects
/// (and reconnects) in the background, and `connected` follows its state.
pub(super) async fn connect(
    config: &ClusterConfig,
    access: &NatsAccess,
    node: &NodeId,
    connected: Arc<NatsState>,
    metrics: ClusterMetrics,
) -> Result<Client, RouterError> {
    tls::install_default_provider();
    let servers = config
        .nats
        .iter()
        .map(|url| url.parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| {
            RouterError::Unavailable(format!("invalid NATS URL in {:?}: {err}", config.nats))
        })?;
    let options =
        connect_options(config, access, node)?.event_callback(events::callback(connected, metrics));
    async_nats::connect_with_options(servers, options)
        .await
        .map_err(|err| {
            RouterError::Unavailable(format!(
                "cannot connect to NATS {}: {err}",
                config.nats.join(",")
            ))
        })
}

/// Everything but the event callback, so a bad credential or certificate is refused before
/// the first attempt.
fn connect_options(
    config: &ClusterConfig,
    access: &NatsAccess,
    node: &NodeId,
) -> Result<ConnectOptions, RouterError> {
    let options = ConnectOptions::new()
        .name(format!("oort-{node}"))
        .custom_inbox_prefix(Subjects::new(&config.name).inbox_prefix())
        .retry_on_initial_connect()
        .max_reconnects(None)
        .reconnect_delay_callback(reconnect_delay)
        .connection_timeout(Duration::from_secs(2))
        .request_timeout(Some(config.route_timeout.0));
    let options = with_auth(options, config, &access.auth)?;
    tls::apply(options, &config.nats_tls, &access.tls)
}

fn with_auth(
    options: ConnectOptions,
    config: &ClusterConfig,
    auth: &NatsAuth,
) -> Result<ConnectOptions, RouterError> {
    let settings = &config.nats_auth;
    Ok(match auth {
        NatsAuth::None => options,
        NatsAuth::Token(token) => options.token(token.expose().to_owned()),
        NatsAuth::UserPassword { user, password } => {
            options.user_and_password(user.clone(), password.expose().to_owned())
        }
        NatsAuth::NKeySeed(seed) => {
            // async-nats only parses the seed when it signs the server's nonce, where a bad one
            // would look like refused credentials on every attempt.
            nkeys::KeyPair::from_seed(seed.expose()).map_err(|err| {
                let (key, value) = match settings.nkey_seed_file.as_str() {
                    "" => ("cluster.nats_auth.nkey_seed", REDACTED),
                    path => ("cluster.nats_auth.nkey_seed_file", path),
                };
                RouterError::config(key, value, format!("not a valid NKey user seed: {err}"))
            })?;
            options.nkey(seed.expose().to_owned())
        }
        NatsAuth::Credentials(text) => options.credentials(text.expose()).map_err(|err| {
            RouterError::config(
                "cluster.nats_auth.credentials_file",
                &settings.credentials_file,
                format!("not a NATS credentials file: {err}"),
            )
        })?,
    })
}

/// The wait before connection attempt `attempt`, counted from 1 since the last success: none
/// for the first, then 100 ms doubling up to one second.
fn reconnect_delay(attempt: usize) -> Duration {
    if attempt <= 1 {
        return Duration::ZERO;
    }
    let doublings = u32::try_from(attempt - 2).unwrap_or(u32::MAX).min(16);
    FIRST_RETRY_DELAY
        .saturating_mul(2u32.saturating_pow(doublings))
        .min(MAX_RETRY_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oort_common::config::Secret;

    #[test]
    fn reconnects_start_at_once_and_wait_at_most_a_second() {
        let delays: Vec<u128> = (0..=8).map(|n| reconnect_delay(n).as_millis()).collect();
        assert_eq!(delays, [0, 0, 100, 200, 400, 800, 1000, 1000, 1000]);
        assert_eq!(reconnect_delay(usize::MAX), MAX_RETRY_DELAY);
    }

    #[test]
    fn a_bad_seed_or_credentials_file_is_refused_before_connecting() {
        let config = ClusterConfig {
            nats: vec!["nats://127.0.0.1:4222".into()],
            ..ClusterConfig::default()
        };
        let node = NodeId::from("n1");
        let bad_seed = NatsAccess {
            // The right shape, a wrong checksum.
            auth: NatsAuth::NKeySeed(Secret::new(
                "SUAIO3FHUX5PNV2LQIIP7TZ3N4L7TX3W53MQGEIVYFIGA635OZCKEYHFLA",
            )),
            ..NatsAccess::default()
        };
        let error = connect_options(&config, &bad_seed, &node)
            .err()
            .map(|err| err.to_string())
            .unwrap_or_default();
        assert!(error.contains("cluster.nats_auth.nkey_seed"), "{error}");
        assert!(!error.contains("SUAIO"), "{error}");
        let bad_creds = NatsAccess {
            auth: NatsAuth::Credentials(Secret::new("not a creds file")),
            ..NatsAccess::default()
        };
        let error = connect_options(&config, &bad_creds, &node)
            .err()
            .map(|err| err.to_string())
            .unwrap_or_default();
        assert!(
            error.contains("cluster.nats_auth.credentials_file"),
            "{error}"
        );
    }
}
