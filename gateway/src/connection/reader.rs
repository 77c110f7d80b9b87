//! The read side: client frames go to the receive callback one at a time, in order.

use axum::extract::ws::{Message, WebSocket};
use std::num::NonZeroU32;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::SplitStream;
use governor::{DefaultDirectRateLimiter, Quota};
use oort_common::FrameKind;
use oort_common::config::WebSocketConfig;
use tracing::{debug, warn};

use crate::durable::protocol::{self, ClientFrame};
use crate::metrics::ErrorKind;
use crate::sessions::{CloseCause, CloseCommand, Session};
use crate::state::AppState;

/// Reads until the client side ends, and says how the connection should close.
pub(super) async fn read_loop(
    stream: &mut SplitStream<WebSocket>,
    session: &Session,
    state: &AppState,
) -> CloseCommand {
    let has_receive = state.callbacks.has_receive();
    let rate = message_rate(&state.config.websocket);
    loop {
        let Some(frame) = stream.next().await else {
            return CloseCommand::silent(CloseCause::ConnectionLost);
        };
        let message = match frame {
            Ok(message) => message,
            Err(err) => return classify(err, state),
        };
        if !matches!(message, Message::Close(_))
            && rate.as_ref().is_some_and(|rate| rate.check().is_err())
        {
            debug!("client went over websocket.max_message_rate");
            return CloseCommand::new(1008, "message rate limit exceeded", CloseCause::MessageRate);
        }
        let answered_ping = session.heard_from_client();
        let (kind, data) = match message {
            Message::Text(text) => (FrameKind::Text, Bytes::from(text)),
            Message::Binary(data) => (FrameKind::Binary, data),
            Message::Ping(_) => {
                session.touch();
                continue;
            }
            Message::Pong(_) => {
                // Only unsolicited pongs count as activity: answers to our own pings would
                // otherwise keep every live client from ever reaching idle_timeout.
                if !answered_ping {
                    session.touch();
                }
                continue;
            }
            Message::Close(frame) => {
                debug!(code = ?frame.as_ref().map(|f| f.code), "client sent a close frame");
                Box::pin(flush_close_echo(stream, state)).await;
                return CloseCommand::silent(CloseCause::ClientClosed);
            }
        };
        session.touch();
        let (kind, data) = match session.durable() {
            None => (kind, data),
            Some(durable) => match protocol::parse(kind, data) {
                Ok(ClientFrame::Message(kind, data)) => (kind, data),
                Ok(ClientFrame::Reply { request, payload }) => {
                    state.metrics.client_replies.increment(1);
                    // Boxed, as the callbacks below: an idle connection's task stays small.
                    Box::pin(state.router.forward_reply(&request, &session.key, payload)).await;
                    continue;
                }
                Ok(ClientFrame::Ack(seq)) => {
                    if durable.ack(seq).is_err() {
                        debug!(seq, "client acknowledged a message never sent");
                        state.metrics.count_error(ErrorKind::ClientProtocol);
                        return CloseCommand::new(
                            1002,
                            "ack beyond the last message",
                            CloseCause::ProtocolError,
                        );
                    }
                    continue;
                }
                Err(reason) => {
                    debug!(reason, "client broke the oort.v1 protocol");
                    state.metrics.count_error(ErrorKind::ClientProtocol);
                    return CloseCommand::new(1002, reason, CloseCause::ProtocolError);
                }
            },
        };
        state.metrics.messages_received.increment(1);
        if state.feed.is_enabled() {
            // Boxed, as the callback below: an idle connection's task stays small.
            Box::pin(state.feed.message(&session.key, kind, &data)).await;
        }
        if !has_receive {
            continue;
        }
        // Frames behind this one (a pong among them) wait until the callback ends; the pinger
        // does not count that time against the client.
        let _busy = session.reader_busy();
        // Boxed: an idle connection's task should not carry an HTTP request's state.
        if let Err(err) = Box::pin(state.callbacks.receive(
            &session.key,
            kind,
            data,
            &state.metrics,
        ))
        .await
        {
            warn!(error = %err, "receive callback failed; the message is dropped");
        }
    }
}

/// `websocket.max_message_rate` with its burst, or `None` when there is no limit. The limiter
/// is one word of state and lives as long as the connection.
fn message_rate(config: &WebSocketConfig) -> Option<DefaultDirectRateLimiter> {
    let per_second = NonZeroU32::new(config.max_message_rate)?;
    let burst = NonZeroU32::new(config.message_burst).unwrap_or(per_second);
    Some(DefaultDirectRateLimiter::direct(
        Quota::per_second(per_second).allow_burst(burst),
    ))
}

/// tungstenite queued the echo of the client's close frame; reading on writes it out and then
/// reports the end of the stream.
async fn flush_close_echo(stream: &mut SplitStream<WebSocket>, state: &AppState) {
    let _ = tokio::time::timeout(state.config.websocket.close_timeout.0, async {
        while stream.next().await.is_some() {}
    })
    .await;
}

/// Turns a read error into the close it calls for (RFC 6455, section 7.4.1).
fn classify(err: axum::Error, state: &AppState) -> CloseCommand {
    let err = match err.into_inner().downcast::<tungstenite::Error>() {
        Ok(err) => *err,
        Err(other) => {
            debug!(error = %other, "read failed");
            return CloseCommand::silent(CloseCause::ConnectionLost);
        }
    };
    match err {
        tungstenite::Error::Capacity(capacity) => {
            debug!(error = %capacity, "client message too big");
            state.metrics.count_error(ErrorKind::MessageTooBig);
            CloseCommand::new(1009, "message too big", CloseCause::MessageTooBig)
        }
        tungstenite::Error::Utf8(_) => {
            state.metrics.count_error(ErrorKind::ClientProtocol);
            CloseCommand::new(
                1007,
                "invalid UTF-8 in a text message",
                CloseCause::ProtocolError,
            )
        }
        tungstenite::Error::Protocol(
            tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
        ) => CloseCommand::silent(CloseCause::ConnectionLost),
        tungstenite::Error::Protocol(protocol) => {
            debug!(error = %protocol, "client broke the WebSocket protocol");
            state.metrics.count_error(ErrorKind::ClientProtocol);
            CloseCommand::new(1002, "protocol error", CloseCause::ProtocolError)
        }
        other => {
            debug!(error = %other, "connection lost");
            CloseCommand::silent(CloseCause::ConnectionLost)
        }
    }
}
