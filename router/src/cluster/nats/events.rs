//! What the NATS connection's events do: readiness follows connected and disconnected, the
//! connect and disconnect counters count, and the log gets one line per change of state.
//!
//! async-nats reports every failed attempt, once a second while NATS refuses this node's
//! credentials; a line for each would bury everything else, so a state is logged when it is
//! entered and not again until another state came in between.

use std::sync::{Arc, Mutex};

use async_nats::{ClientError, Event, ServerError};
use tracing::{error, info, warn};

use crate::cluster::ClusterMetrics;
use crate::cluster::core::NatsState;

/// Where the connection stands, as far as the log is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
enum LinkState {
    Starting,
    Connected,
    Disconnected,
    /// The server refused the credentials (or a signature with them).
    AuthenticationFailed,
    /// Another failure to connect, by its kind (`IO error`, `timed out`, `TLS error`, ...).
    ConnectFailed(String),
    /// The server reported an error on the open connection, such as a permissions violation.
    ServerError(String),
}

/// The event callback for `ConnectOptions::event_callback`.
pub(super) fn callback(
    connected: Arc<NatsState>,
    metrics: ClusterMetrics,
) -> impl Fn(Event) -> std::future::Ready<()> + Send + Sync + 'static {
    let watcher = Watcher {
        connected,
        metrics,
        state: Mutex::new(LinkState::Starting),
    };
    move |event| {
        watcher.handle(event);
        std::future::ready(())
    }
}

struct Watcher {
    connected: Arc<NatsState>,
    metrics: ClusterMetrics,
    state: Mutex<LinkState>,
}

impl Watcher {
    fn handle(&self, event: Event) {
        match event {
            Event::Connected => {
                self.connected.set_connected(true);
                self.metrics.nats_connects.increment(1);
                self.enter(LinkState::Connected);
            }
            Event::Disconnected => {
                self.connected.set_connected(false);
                self.metrics.nats_disconnects.increment(1);
                self.enter(LinkState::Disconnected);
            }
            Event::ClientError(ClientError::Other(kind)) => self.enter(classify(kind)),
            Event::ServerError(ServerError::AuthorizationViolation) => {
                self.enter(LinkState::AuthenticationFailed)
            }
            Event::ServerError(other) => self.enter(LinkState::ServerError(other.to_string())),
            Event::SlowConsumer(sid) => warn!(sid, "NATS slow consumer: messages were dropped"),
            other => info!(event = %other, "NATS event"),
        }
    }

    /// Moves to `next`, logging it unless it is where the connection already was.
    fn enter(&self, next: LinkState) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if *state == next {
            return;
        }
        log_entering(&next);
        *state = next;
    }
}

/// async-nats names a failed attempt by its kind's description.
fn classify(kind: String) -> LinkState {
    match kind.as_str() {
        "authorization violation" | "failed signing nonce" => LinkState::AuthenticationFailed,
        _ => LinkState::ConnectFailed(kind),
    }
}

fn log_entering(state: &LinkState) {
    match state {
        LinkState::Starting => {}
        LinkState::Connected => info!("NATS connected"),
        LinkState::Disconnected => warn!("NATS disconnected; reconnecting"),
        LinkState::AuthenticationFailed => error!(
            "NATS authentication failed: the server refused this node's credentials \
             (cluster.nats_auth); the node stays not ready and keeps retrying"
        ),
        LinkState::ConnectFailed(kind) => {
            warn!(error = %kind, "cannot connect to NATS; retrying")
        }
        LinkState::ServerError(message) => warn!(
            error = %message,
            "NATS server error (a permissions violation means the NATS user may not use \
             this cluster's subjects, oort.<cluster>.>)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_credentials_are_one_state_however_often_they_are_refused() {
        assert_eq!(
            classify("authorization violation".into()),
            LinkState::AuthenticationFailed
        );
        assert_eq!(
            classify("failed signing nonce".into()),
            LinkState::AuthenticationFailed
        );
        assert_eq!(
            classify("IO error".into()),
            LinkState::ConnectFailed("IO error".into())
        );
    }
}
