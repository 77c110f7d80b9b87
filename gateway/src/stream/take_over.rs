//! Taking an HTTP-read session over from a node that is shutting down: the node a client's
//! request reached registers the session (a raft write, once per session and shutdown, not
//! per request), takes its tail from the old node as a WebSocket resume does, and serves it
//! from then on. Messages sent meanwhile are held and numbered after the tail, so a rolling
//! restart loses nothing for HTTP clients either.

use std::sync::Arc;

use axum::response::Response;
use http::StatusCode;
use oort_common::NodeId;
use tracing::info;

use super::{error_coded, unavailable};
use crate::durable::token::Claims;
use crate::durable::{Durable, tail_from_wire};
use crate::error_code::ErrorCode;
use crate::sessions::{CloseCause, Committed, Session};
use crate::state::AppState;

/// Moves the session `claims` names from `previous` to this node.
pub(super) async fn take_over(
    state: &Arc<AppState>,
    claims: &Claims,
    previous: &NodeId,
) -> Result<(), Response> {
    let key = &claims.key;
    let epoch = state.registry.next_epoch();
    let durable = Durable::receiving_detached(key.clone(), epoch, claims.id);
    let placeholder = Session::new(key.clone(), epoch, None);
    placeholder.set_durable(durable.clone());
    state.registry.begin(placeholder.clone());
    let index = match state.router.register_moved(key, epoch).await {
        Ok(index) => index,
        Err(err) => {
            state.registry.abandon(&placeholder);
            state.router.unregister(key, epoch);
            return Err(unavailable(&err.to_string()));
        }
    };
    if let Committed::Superseded = state.registry.commit_detached(&placeholder, index) {
        durable.end(None);
        return Err(error_coded(
            StatusCode::CONFLICT,
            ErrorCode::SessionTaken,
            "a newer connection took this session key",
        ));
    }
    drop(placeholder);
    let tail = match state.router.take_over(previous, key, claims.id, 0).await {
        Ok(Some(tail)) => tail_from_wire(tail),
        Ok(None) => None,
        Err(err) => {
            info!(error = %err, %previous, "the previous owner did not hand the session over");
            None
        }
    };
    let taken = tail.and_then(|(tail, channels)| {
        durable
            .take_tail(tail, state.registry.buffer_limits())
            .is_ok()
            .then_some(channels)
    });
    if let Some(channels) = taken {
        state.metrics.count_resume("moved");
        crate::connect::join_channels(state, key, &channels).await;
        return Ok(());
    }
    state.metrics.count_resume("reset");
    durable.end(None);
    crate::connection::end_durable(state, &durable, CloseCause::Reset).await;
    Err(error_coded(
        StatusCode::NOT_FOUND,
        ErrorCode::SessionNotFound,
        "the session is over (its node left without handing it over)",
    ))
}
