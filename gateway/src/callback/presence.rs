//! Reports channel joins and leaves to the backend (`callback.presence`), coalesced over
//! `callback.presence_interval`: one JSON POST (or, with `callback.nats_events` and no URL, one
//! NATS publish on `oort.<cluster>.events.presence`) per interval with changes.

use std::sync::{Arc, Weak};

use serde::Serialize;
use tracing::warn;

use crate::metrics::CallbackKind;
use crate::sessions::PresenceChange;
use crate::state::AppState;

/// One report.
#[derive(Serialize)]
struct PresenceReport<'a> {
    node: &'a str,
    changes: Vec<PresenceChange>,
    /// Changes left out because too many were waiting.
    dropped: u64,
}

/// Sends a report every interval while the gateway lives.
pub(crate) async fn report_presence(state: Weak<AppState>) {
    let Some(interval) = state
        .upgrade()
        .map(|s| s.config.callback.presence_interval.0)
    else {
        return;
    };
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(state) = state.upgrade() else { return };
        let Some((changes, dropped)) = state.registry.take_presence() else {
            return;
        };
        if changes.is_empty() && dropped == 0 {
            continue;
        }
        send(&state, changes, dropped).await;
    }
}

async fn send(state: &Arc<AppState>, changes: Vec<PresenceChange>, dropped: u64) {
    for change in &changes {
        state.feed.presence(change).await;
    }
    let callback = &state.config.callback;
    if callback.presence.is_empty() && !callback.nats_events {
        return;
    }
    let report = PresenceReport {
        node: state.router.node_id().as_str(),
        changes,
        dropped,
    };
    let Ok(body) = serde_json::to_vec(&report) else {
        return;
    };
    let callbacks = &state.callbacks;
    let outcome = if state.config.callback.presence.is_empty() {
        match state.router.events() {
            Some(events) => events
                .publish("presence", body.into())
                .await
                .map_err(|err| err.to_string()),
            None => Ok(()),
        }
    } else {
        callbacks
            .post_json(
                CallbackKind::Presence,
                &state.config.callback.presence,
                body,
                &state.metrics,
            )
            .await
            .map_err(|err| err.to_string())
    };
    if let Err(err) = outcome {
        warn!(error = %err, "a presence report was not delivered");
    }
}
