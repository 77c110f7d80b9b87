//! A session's bounded outbound queue: the only place `/send` and the connection's writer meet.
//!
//! Pushing never waits. A full queue (by messages or bytes) answers `QueueFull` at once, so a
//! slow client costs its sender nothing and never delays other sessions. The writer drains the
//! queue in batches and flushes once per batch.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::ws::Message;
use oort_common::DeliveryStatus;
use tokio::sync::Notify;

use super::CloseCommand;
use super::stamp::Stamp;

/// Bounds shared by every session of a node.
#[derive(Clone, Copy, Debug)]
pub(crate) struct QueueLimits {
    /// Messages waiting at most.
    pub max_messages: usize,
    /// Bytes waiting at most (one larger message is still accepted into an empty queue).
    pub max_bytes: usize,
    /// A queue that stays full this long closes its session with 1013.
    pub slow_consumer_timeout: Duration,
}

/// What the writer gets next.
#[derive(Debug)]
pub(crate) enum Next {
    /// Frames to write, oldest first; `waiting` were in the queue when they were taken.
    Messages { waiting: usize },
    /// Close the connection (after the frames already taken).
    Close(CloseCommand),
}

/// A message and, for those a backend sent, its [`Stamp`] (replays and welcome frames have
/// none: they are not sends, and their latency means nothing).
struct Queued {
    message: Message,
    stamp: Option<Stamp>,
}

#[derive(Default)]
struct State {
    messages: VecDeque<Queued>,
    bytes: usize,
    /// Set once; no message is accepted after it.
    close: Option<CloseCommand>,
    /// Whether the writer has already been handed `close`.
    close_taken: bool,
    /// When the queue first refused a message in the current full spell.
    full_since: Option<Instant>,
}

/// The outbound queue of one session.
pub(crate) struct OutboundQueue {
    state: Mutex<State>,
    wake_writer: Notify,
}

impl OutboundQueue {
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::new(State::default()),
            wake_writer: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue inconsistent (every update is
        // a single push or pop), so a poisoned lock is still safe to use.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues one message of `size` bytes.
    pub(crate) fn push(
        &self,
        message: Message,
        size: usize,
        limits: &QueueLimits,
        stamp: Stamp,
    ) -> DeliveryStatus {
        let mut state = self.lock();
        if state.close.is_some() {
            return DeliveryStatus::Closed;
        }
        let full = state.messages.len() >= limits.max_messages
            || (!state.messages.is_empty() && state.bytes + size > limits.max_bytes);
        if full {
            let since = *state.full_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= limits.slow_consumer_timeout {
                Self::set_close(&mut state, CloseCommand::slow_consumer(), true);
                drop(state);
                self.wake_writer.notify_one();
            }
            return DeliveryStatus::QueueFull;
        }
        state.full_since = None;
        state.messages.push_back(Queued {
            message,
            stamp: Some(stamp),
        });
        state.bytes += size;
        drop(state);
        self.wake_writer.notify_one();
        DeliveryStatus::Ok
    }

    /// Queues the connect callback's first message regardless of the bounds, before the
    /// session is registered, so it is always the first frame.
    pub(crate) fn push_first(&self, message: Message, size: usize) {
        let mut state = self.lock();
        state.messages.push_back(Queued {
            message,
            stamp: None,
        });
        state.bytes += size;
    }

    /// Queues a final message regardless of the bounds, then the close. Used by `/close`, whose
    /// last word must not be refused by a full queue.
    pub(crate) fn push_last(
        &self,
        last_word: Option<(Message, usize, Stamp)>,
        close: CloseCommand,
    ) -> DeliveryStatus {
        let mut state = self.lock();
        if state.close.is_some() {
            return DeliveryStatus::Closed;
        }
        if let Some((message, size, stamp)) = last_word {
            state.messages.push_back(Queued {
                message,
                stamp: Some(stamp),
            });
            state.bytes += size;
        }
        Self::set_close(&mut state, close, false);
        drop(state);
        self.wake_writer.notify_one();
        DeliveryStatus::Ok
    }

    /// Asks the writer to close. Queued messages are sent first unless `discard_pending`.
    /// Returns false if a close was already requested (the first one wins).
    pub(crate) fn close(&self, close: CloseCommand, discard_pending: bool) -> bool {
        let mut state = self.lock();
        if state.close.is_some() {
            return false;
        }
        Self::set_close(&mut state, close, discard_pending);
        drop(state);
        self.wake_writer.notify_one();
        true
    }

    fn set_close(state: &mut State, close: CloseCommand, discard_pending: bool) {
        if discard_pending {
            state.messages.clear();
            state.bytes = 0;
        }
        state.close = Some(close);
    }

    /// True once a close has been requested.
    pub(crate) fn is_closing(&self) -> bool {
        self.lock().close.is_some()
    }

    /// The close that was requested, if any.
    pub(crate) fn requested_close(&self) -> Option<CloseCommand> {
        self.lock().close.clone()
    }

    /// Waits for work, then moves up to `max_batch` messages into `batch`, and the stamps of
    /// those that have one into `stamps`.
    pub(crate) async fn next(
        &self,
        batch: &mut Vec<Message>,
        stamps: &mut Vec<Stamp>,
        max_batch: usize,
    ) -> Next {
        loop {
            {
                let mut state = self.lock();
                if !state.messages.is_empty() {
                    let waiting = state.messages.len();
                    let take = waiting.min(max_batch);
                    let mut taken_bytes = 0;
                    for queued in state.messages.drain(..take) {
                        taken_bytes += super::message_size(&queued.message);
                        batch.push(queued.message);
                        stamps.extend(queued.stamp);
                    }
                    state.bytes = state.bytes.saturating_sub(taken_bytes);
                    return Next::Messages { waiting };
                }
                if !state.close_taken
                    && let Some(close) = state.close.clone()
                {
                    state.close_taken = true;
                    return Next::Close(close);
                }
            }
            self.wake_writer.notified().await;
        }
    }

    /// Messages and bytes waiting (for `/v1/sessions`).
    pub(crate) fn depth(&self) -> (usize, usize) {
        let state = self.lock();
        (state.messages.len(), state.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sessions::CloseCause;

    const LIMITS: QueueLimits = QueueLimits {
        max_messages: 2,
        max_bytes: 10,
        slow_consumer_timeout: Duration::from_secs(60),
    };

    fn stamp() -> Stamp {
        Stamp::now(super::super::SendRoute::Local)
    }

    fn text(s: &str) -> Message {
        Message::Text(s.into())
    }

    #[tokio::test]
    async fn refuses_past_the_message_bound_without_waiting() {
        let queue = OutboundQueue::new();
        assert_eq!(
            queue.push(text("a"), 1, &LIMITS, stamp()),
            DeliveryStatus::Ok
        );
        assert_eq!(
            queue.push(text("b"), 1, &LIMITS, stamp()),
            DeliveryStatus::Ok
        );
        assert_eq!(
            queue.push(text("c"), 1, &LIMITS, stamp()),
            DeliveryStatus::QueueFull
        );
        let mut batch = Vec::new();
        assert!(matches!(
            queue.next(&mut batch, &mut Vec::new(), 10).await,
            Next::Messages { .. }
        ));
        assert_eq!(batch, [text("a"), text("b")]);
        assert_eq!(queue.depth(), (0, 0));
        assert_eq!(
            queue.push(text("c"), 1, &LIMITS, stamp()),
            DeliveryStatus::Ok
        );
    }

    #[tokio::test]
    async fn refuses_past_the_byte_bound_but_takes_one_large_message() {
        let queue = OutboundQueue::new();
        assert_eq!(
            queue.push(text("0123456789abc"), 13, &LIMITS, stamp()),
            DeliveryStatus::Ok
        );
        assert_eq!(
            queue.push(text("x"), 1, &LIMITS, stamp()),
            DeliveryStatus::QueueFull
        );
    }

    #[tokio::test]
    async fn last_word_bypasses_bounds_and_is_followed_by_close() {
        let queue = OutboundQueue::new();
        queue.push(text("a"), 1, &LIMITS, stamp());
        queue.push(text("b"), 1, &LIMITS, stamp());
        let close = CloseCommand::new(1000, "bye", CloseCause::ClosedByBackend);
        assert_eq!(
            queue.push_last(Some((text("last"), 4, stamp())), close.clone()),
            DeliveryStatus::Ok
        );
        assert_eq!(
            queue.push(text("late"), 1, &LIMITS, stamp()),
            DeliveryStatus::Closed
        );
        let mut batch = Vec::new();
        assert!(matches!(
            queue.next(&mut batch, &mut Vec::new(), 10).await,
            Next::Messages { .. }
        ));
        assert_eq!(batch.len(), 3);
        assert!(
            matches!(queue.next(&mut batch, &mut Vec::new(), 10).await, Next::Close(c) if c == close)
        );
    }

    #[tokio::test]
    async fn a_queue_full_for_too_long_closes_with_1013() {
        let limits = QueueLimits {
            slow_consumer_timeout: Duration::ZERO,
            ..LIMITS
        };
        let queue = OutboundQueue::new();
        queue.push(text("a"), 1, &limits, stamp());
        queue.push(text("b"), 1, &limits, stamp());
        assert_eq!(
            queue.push(text("c"), 1, &limits, stamp()),
            DeliveryStatus::QueueFull
        );
        assert_eq!(queue.requested_close().and_then(|c| c.code), Some(1013));
        let mut batch = Vec::new();
        assert!(matches!(
            queue.next(&mut batch, &mut Vec::new(), 10).await,
            Next::Close(_)
        ));
        assert!(
            batch.is_empty(),
            "pending messages of a slow consumer are dropped"
        );
    }

    #[tokio::test]
    async fn the_writer_gets_the_stamps_of_sends_and_the_depth_it_found() {
        let queue = OutboundQueue::new();
        queue.push_first(text("welcome"), 7);
        let forwarded = Stamp::now(super::super::SendRoute::Forwarded);
        queue.push(text("a"), 1, &LIMITS, forwarded);
        let mut batch = Vec::new();
        let mut stamps = Vec::new();
        let next = queue.next(&mut batch, &mut stamps, 1).await;
        assert!(matches!(next, Next::Messages { waiting: 2 }), "{next:?}");
        assert!(stamps.is_empty(), "a welcome frame is not a send");
        let next = queue.next(&mut batch, &mut stamps, 10).await;
        assert!(matches!(next, Next::Messages { waiting: 1 }), "{next:?}");
        assert_eq!(batch, [text("welcome"), text("a")]);
        assert_eq!(
            stamps.iter().map(|s| s.route).collect::<Vec<_>>(),
            [super::super::SendRoute::Forwarded]
        );
        assert!(
            stamps[0].trace.is_none(),
            "tracing is off: no trace is carried"
        );
    }

    #[tokio::test]
    async fn the_writer_wakes_for_a_later_push() {
        let queue = std::sync::Arc::new(OutboundQueue::new());
        let waiter = {
            let queue = queue.clone();
            tokio::spawn(async move {
                let mut batch = Vec::new();
                queue.next(&mut batch, &mut Vec::new(), 10).await;
                batch
            })
        };
        tokio::task::yield_now().await;
        queue.push(text("later"), 5, &LIMITS, stamp());
        let batch = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(batch, [text("later")]);
    }
}
