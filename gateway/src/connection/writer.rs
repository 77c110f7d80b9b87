//! The write side: drains the session's queue in batches, pings, and enforces the idle and
//! slow-consumer timeouts.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use bytes::Bytes;
use futures_util::SinkExt;
use futures_util::stream::SplitSink;
use tokio::time::{Instant, sleep_until};
use tracing::debug;

use crate::metrics::ErrorKind;
use crate::sessions::{CloseCause, CloseCommand, Next, Session};
use crate::state::AppState;

/// Frames written before one flush.
const MAX_BATCH: usize = 64;

type Sink = SplitSink<WebSocket, Message>;

/// How the write side ended.
pub(super) struct WriterEnd {
    /// Why.
    pub cause: CloseCause,
    /// A close frame went out, so the client's answer is worth waiting for.
    pub sent_close: bool,
}

impl WriterEnd {
    fn silent(cause: CloseCause) -> Self {
        Self {
            cause,
            sent_close: false,
        }
    }
}

/// Writes until the connection should end, and says how it ended.
pub(super) async fn write_loop(
    mut sink: Sink,
    session: Arc<Session>,
    state: Arc<AppState>,
) -> WriterEnd {
    let config = &state.config;
    let idle_timeout = config.idle_timeout.non_zero();
    let write_timeout = config.queue.slow_consumer_timeout.0;
    let mut pinger = Pinger::new(
        config.websocket.ping_interval.non_zero(),
        config.websocket.pong_timeout.0,
    );
    // An `oort.v1` connection that outlives its resume token gets a fresh one at half its life.
    let token_every = session.durable().map(|_| state.tokens.ttl() / 2);
    let mut token_due = token_every.map(|every| Instant::now() + every);
    let mut batch = Vec::new();
    let mut stamps = Vec::new();
    // One timer serves pings, pong deadlines, the idle timeout and resume tokens, and it stays
    // registered for the connection's life: an idle connection holds a single timer entry
    // (which matters at 100k connections), and a frame costs no timer work at all. Before,
    // each loop built a new sleep, so every frame written removed one timer entry and added
    // another. Every deadline only moves later outside the timer's own branch (activity pushes
    // the idle deadline back), so the timer is re-armed only after it fires; firing early just
    // finds nothing due yet and re-arms.
    let timer = sleep_until(Instant::now());
    tokio::pin!(timer);
    let mut armed = false;
    loop {
        if !armed && let Some(deadline) = next_deadline(&pinger, &session, idle_timeout, token_due)
        {
            timer.as_mut().reset(deadline);
            armed = true;
        }
        let next = tokio::select! {
            // Queue first: while frames are waiting, the timer is not even polled.
            biased;
            next = session.queue.next(&mut batch, &mut stamps, MAX_BATCH) => next,
            () = &mut timer, if armed => {
                armed = false;
                if let (Some(due), Some(every)) = (token_due, token_every)
                    && Instant::now() >= due
                {
                    token_due = Some(due + every);
                    let token = vec![fresh_token(&session, &state)];
                    if let Err(err) = write_bounded(&mut sink, token, write_timeout).await {
                        return Box::pin(write_failed(err, &mut sink, &session, &state)).await;
                    }
                }
                if idle_expired(&session, idle_timeout) {
                    Box::pin(send_close(&mut sink, 1000, "idle timeout", &state)).await;
                    return WriterEnd { cause: CloseCause::IdleTimeout, sent_close: true };
                }
                match pinger.tick(&session) {
                    PingAction::Send => {
                        let ping = vec![Message::Ping(Bytes::new())];
                        if let Err(err) = write_bounded(&mut sink, ping, write_timeout).await {
                            return Box::pin(write_failed(err, &mut sink, &session, &state)).await;
                        }
                    }
                    PingAction::PeerDead => {
                        debug!("no pong in time; dropping the connection");
                        return WriterEnd::silent(CloseCause::PongTimeout);
                    }
                    PingAction::Wait => {}
                }
                continue;
            }
        };
        match next {
            Next::Messages { waiting } => {
                let count = batch.len() as u64;
                state.metrics.queue_depth.record(waiting as f64);
                let write_started = std::time::Instant::now();
                match write_bounded(&mut sink, std::mem::take(&mut batch), write_timeout).await {
                    Ok(()) => {
                        state.metrics.messages_sent.increment(count);
                        state.metrics.observe_written(&stamps, write_started);
                        stamps.clear();
                        session.touch();
                    }
                    Err(err) => {
                        return Box::pin(write_failed(err, &mut sink, &session, &state)).await;
                    }
                }
            }
            Next::Close(close) => {
                if let Some(code) = close.code {
                    Box::pin(send_close(&mut sink, code, &close.reason, &state)).await;
                }
                return WriterEnd {
                    cause: close.cause,
                    sent_close: close.code.is_some(),
                };
            }
        }
    }
}

/// Ends the connection after a failed write. A stalled one means a slow consumer: once its
/// queue is dropped (sends now answer `closed`), it gets close 1013 if the socket drains within
/// the close timeout; tungstenite writes out what it still holds of earlier frames first.
async fn write_failed(
    err: WriteError,
    sink: &mut Sink,
    session: &Session,
    state: &AppState,
) -> WriterEnd {
    match err {
        WriteError::TimedOut => {
            debug!(
                timeout = ?state.config.queue.slow_consumer_timeout.0,
                "a write stalled; the client is too slow"
            );
            let close = CloseCommand::slow_consumer();
            session.queue.close(close.clone(), true);
            let code = close.code.unwrap_or(1013);
            WriterEnd {
                cause: CloseCause::SlowConsumer,
                sent_close: send_close(sink, code, &close.reason, state).await,
            }
        }
        WriteError::Closed => WriterEnd::silent(CloseCause::ConnectionLost),
        WriteError::Failed => {
            state.stats.message_error();
            state.metrics.count_error(ErrorKind::WriteFailed);
            WriterEnd::silent(CloseCause::ConnectionLost)
        }
    }
}

enum WriteError {
    /// The write did not finish within the slow-consumer timeout.
    TimedOut,
    /// The connection is already closing or closed.
    Closed,
    /// The socket failed.
    Failed,
}

/// Writes the frames and flushes once, all within `limit`.
async fn write_bounded(
    sink: &mut Sink,
    frames: Vec<Message>,
    limit: Duration,
) -> Result<(), WriteError> {
    let write = async {
        for frame in frames {
            sink.feed(frame).await?;
        }
        sink.flush().await
    };
    match tokio::time::timeout(limit, write).await {
        Err(_) => Err(WriteError::TimedOut),
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(classify(err)),
    }
}

fn classify(err: axum::Error) -> WriteError {
    match err
        .into_inner()
        .downcast::<tungstenite::Error>()
        .map(|e| *e)
    {
        Ok(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed)
        | Ok(tungstenite::Error::Protocol(tungstenite::error::ProtocolError::SendAfterClosing)) => {
            WriteError::Closed
        }
        _ => WriteError::Failed,
    }
}

/// Sends a close frame, bounded by the close timeout; the peer may already be gone. Returns
/// whether the frame went out.
async fn send_close(sink: &mut Sink, code: u16, reason: &str, state: &AppState) -> bool {
    // RFC 6455 limits the reason to 123 bytes; cut at a character boundary.
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let frame = CloseFrame {
        code,
        reason: reason[..end].into(),
    };
    matches!(
        tokio::time::timeout(
            state.config.websocket.close_timeout.0,
            sink.send(Message::Close(Some(frame))),
        )
        .await,
        Ok(Ok(()))
    )
}

/// When the pinger is due, the session may have reached its idle timeout, or a fresh resume
/// token is due, whichever comes first; `None` if none of them is on.
fn next_deadline(
    pinger: &Pinger,
    session: &Session,
    idle_timeout: Option<Duration>,
    token_due: Option<Instant>,
) -> Option<Instant> {
    let idle_deadline = idle_timeout.map(|timeout| idle_deadline(session, timeout));
    [pinger.deadline(), idle_deadline, token_due]
        .into_iter()
        .flatten()
        .min()
}

/// The `token` frame: a fresh resume token for the session this connection serves.
fn fresh_token(session: &Session, state: &AppState) -> Message {
    let id = session
        .durable()
        .map_or(session.epoch.0, |durable| durable.id);
    crate::durable::protocol::token(&state.tokens.issue(&session.key, id))
}

fn idle_deadline(session: &Session, idle_timeout: Duration) -> Instant {
    Instant::from_std(session.last_activity()) + idle_timeout
}

/// Whether nothing was heard from or written to the client for `idle_timeout`.
fn idle_expired(session: &Session, idle_timeout: Option<Duration>) -> bool {
    idle_timeout.is_some_and(|timeout| Instant::now() >= idle_deadline(session, timeout))
}

enum PingAction {
    Send,
    PeerDead,
    Wait,
}

/// Server pings: one every `interval`; a ping unanswered after `pong_timeout` means the peer is
/// gone (a half-open TCP connection that would otherwise live forever).
///
/// Time the reader spends waiting for receive callbacks does not count towards `pong_timeout`:
/// the reader takes one frame at a time, so a pong that arrives behind a message sits unread
/// until that message's callback has ended, however promptly the client answered.
struct Pinger {
    interval: Option<Duration>,
    pong_timeout: Duration,
    next_ping: Instant,
    /// When the oldest unanswered ping must have been answered. Kept apart from `next_ping`
    /// so a pong_timeout longer than the interval does not stretch the interval.
    pong_deadline: Option<Instant>,
    /// The reader's busy time already added to `pong_deadline`.
    credited_busy: Duration,
}

impl Pinger {
    fn new(interval: Option<Duration>, pong_timeout: Duration) -> Self {
        let next_ping = Instant::now() + interval.unwrap_or_default();
        Self {
            interval,
            pong_timeout,
            next_ping,
            pong_deadline: None,
            credited_busy: Duration::ZERO,
        }
    }

    /// When [`Self::tick`] has something to do, if pings are on.
    fn deadline(&self) -> Option<Instant> {
        self.interval?;
        Some(
            self.pong_deadline
                .map_or(self.next_ping, |pong| pong.min(self.next_ping)),
        )
    }

    fn tick(&mut self, session: &Session) -> PingAction {
        let now = Instant::now();
        if let Some(deadline) = self.pong_deadline
            && now >= deadline
        {
            if !session.awaiting_pong() {
                self.pong_deadline = None;
            } else {
                let busy = session.reader_busy_time();
                let uncredited = busy.saturating_sub(self.credited_busy);
                if uncredited.is_zero() {
                    return PingAction::PeerDead;
                }
                self.credited_busy = busy;
                self.pong_deadline = Some(deadline + uncredited);
            }
        }
        if now < self.next_ping {
            return PingAction::Wait;
        }
        // A ping sent while an older one is unanswered does not move that one's deadline.
        if !session.awaiting_pong() || self.pong_deadline.is_none() {
            self.pong_deadline = Some(now + self.pong_timeout);
            self.credited_busy = session.reader_busy_time();
        }
        self.next_ping = now + self.interval.unwrap_or_default();
        session.ping_sent();
        PingAction::Send
    }
}
