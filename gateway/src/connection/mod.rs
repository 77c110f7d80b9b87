//! One client connection, from the upgrade to the close callback.
//!
//! Two tasks per connection: this one reads (client messages go to the receive callback one at
//! a time, in order, which also gives backpressure), and a writer drains the session's queue.
//! They are separate so a slow receive callback never delays frames to the client, and a
//! client that stops reading never stops its messages from being read.

mod reader;
mod registration;
mod writer;

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket};
use futures_util::StreamExt;
use futures_util::stream::{SplitSink, SplitStream};
use tracing::{debug, info, warn};

pub(crate) use registration::Registration;

use crate::durable::Durable;
use crate::metrics::Transport;
use crate::sessions::{CloseCause, CloseCommand, EndedDurable};
use crate::state::AppState;

/// Serves an upgraded connection (already split into its two halves) until it ends, then
/// unregisters it and tells the backend.
///
/// This future lives as long as the connection, and its size is that of its largest await plus
/// every binding alive across one (a moved-from binding keeps its space). So the socket is split
/// by the caller, and futures that run once (establish, the close phase, the close callback)
/// are boxed: 1.9 KiB per idle connection became 0.5 KiB.
pub(crate) async fn run(
    sink: SplitSink<WebSocket, Message>,
    mut stream: SplitStream<WebSocket>,
    registration: Registration,
    state: Arc<AppState>,
) {
    let session = registration.session().clone();
    state.metrics.connections_total.increment(1);
    let _open = state.metrics.transport_open(Transport::WebSocket);
    let resumed = registration.is_resume();
    if let Err(err) = Box::pin(
        state
            .callbacks
            .establish(&session.key, resumed, &state.metrics),
    )
    .await
    {
        warn!(error = %err, "establish callback refused the session");
        state.stats.connect_error();
        session.queue.close(
            CloseCommand::new(1011, "session not established", CloseCause::EstablishFailed),
            true,
        );
    } else {
        Box::pin(state.feed.connected(&session.key, resumed)).await;
    }
    let close_timeout = state.config.websocket.close_timeout.0;
    session.touch();
    let mut writer = tokio::spawn(writer::write_loop(sink, session.clone(), state.clone()));
    let cause = tokio::select! {
        read_end = reader::read_loop(&mut stream, &session, &state) => {
            // The client side ended first. The writer sends the close frame this calls for
            // (none after a client's own close, whose echo tungstenite already sent). After a
            // protocol error the client can still read, so what is queued goes out first.
            let discard_pending = read_end.code.is_none();
            session.queue.close(read_end.clone(), discard_pending);
            if Box::pin(tokio::time::timeout(close_timeout, &mut writer)).await.is_err() {
                writer.abort();
            }
            session.queue.requested_close().map_or(read_end.cause, |close| close.cause)
        }
        writer_end = &mut writer => {
            // The server side ended first. After a close frame, give the client a moment to
            // answer so the close handshake completes cleanly.
            match writer_end {
                Ok(end) => {
                    if end.sent_close {
                        let drain = async { while stream.next().await.is_some() {} };
                        let _ = Box::pin(tokio::time::timeout(close_timeout, drain)).await;
                    }
                    end.cause
                }
                Err(_) => CloseCause::ConnectionLost,
            }
        }
    };
    Box::pin(registration.finish(cause)).await;
}

/// What to do after a session ended: count it, tell the backend when it should know.
pub(crate) async fn after_close(
    state: &AppState,
    session_key: &oort_common::SessionKey,
    cause: CloseCause,
) {
    state.metrics.count_close(cause);
    if cause == CloseCause::ConnectionLost || cause == CloseCause::ClientClosed {
        debug!(cause = cause.as_str(), "session ended");
    } else {
        info!(cause = cause.as_str(), "session ended");
    }
    if !cause.notifies_backend() {
        return;
    }
    state.feed.closed(session_key).await;
    let _closing = state.stats.closing_started();
    if let Err(err) = state.callbacks.close(session_key, &state.metrics).await {
        warn!(error = %err, "close callback failed");
    }
}

/// Ends an `oort.v1` session whose connection is gone: withdraws it from the table and the
/// directory, and tells the backend when `cause` calls for it.
pub(crate) async fn end_durable(state: &AppState, durable: &Arc<Durable>, cause: CloseCause) {
    if state.registry.remove_durable(durable) {
        state.router.unregister(&durable.key, durable.registered());
    }
    after_close(state, &durable.key, cause).await;
}

/// Ends the session after `session.linger` unless a client resumed it meanwhile.
pub(crate) fn linger(state: Arc<AppState>, durable: Arc<Durable>, generation: u64) {
    let linger = state.config.session.linger.0;
    tokio::spawn(async move {
        tokio::time::sleep(linger).await;
        if durable.expire(generation) {
            end_durable(&state, &durable, CloseCause::LingerExpired).await;
        }
    });
}

/// Ends the sessions that went without any transport for `session.linger`: those read over
/// HTTP between their requests, and those the backend closed whose reader never came back to
/// see the end. One sweep for all of them costs less than a timer per request.
pub(crate) async fn sweep_idle(state: std::sync::Weak<AppState>) {
    let Some(linger) = state.upgrade().map(|state| state.config.session.linger.0) else {
        return;
    };
    let every = (linger / 4).clamp(
        std::time::Duration::from_millis(50),
        std::time::Duration::from_secs(1),
    );
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(state) = state.upgrade() else { return };
        for durable in state.registry.idle() {
            if let Some(cause) = durable.expire_idle(linger) {
                end_durable(&state, &durable, cause).await;
            }
        }
    }
}

/// Sees out the `oort.v1` sessions that ended without a connection (a `/close` while they
/// lingered, the cluster purging this node): withdraws them and tells the backend.
pub(crate) async fn see_out_ended(
    state: std::sync::Weak<AppState>,
    mut ended: tokio::sync::mpsc::UnboundedReceiver<EndedDurable>,
) {
    while let Some(ended) = ended.recv().await {
        let Some(state) = state.upgrade() else { return };
        if ended.unregister {
            state
                .router
                .unregister(&ended.durable.key, ended.durable.registered());
        }
        after_close(&state, &ended.durable.key, ended.cause).await;
    }
}
