//! This node's sessions: the table from key to connection, each session's outbound queue, and
//! why a session ended.

mod channels;
mod presence;
mod queue;
mod registry;
mod replies;
mod stamp;
mod stream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use axum::extract::ws::Message;
use oort_common::{Epoch, SessionKey};

pub(crate) use channels::ChannelTable;
pub(crate) use presence::PresenceChange;
pub(crate) use queue::{Next, OutboundQueue, QueueLimits};
pub(crate) use registry::{Committed, EndedDurable, SessionRegistry, frame_for};
pub(crate) use replies::PendingReplies;
pub(crate) use stamp::{SendRoute, Stamp};

/// Why a session ended. Decides the close frame and whether the backend's close callback runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CloseCause {
    /// The client sent a close frame.
    ClientClosed,
    /// The connection dropped or failed to read.
    ConnectionLost,
    /// No activity for `idle_timeout`.
    IdleTimeout,
    /// No pong within `pong_timeout` of a ping.
    PongTimeout,
    /// The client could not keep up (close 1013).
    SlowConsumer,
    /// A client message exceeded `websocket.max_message_size` (close 1009).
    MessageTooBig,
    /// A client sent messages faster than `websocket.max_message_rate` (close 1008).
    MessageRate,
    /// The client broke the WebSocket protocol (close 1002 or 1007).
    ProtocolError,
    /// The backend's `/close` (no close callback, as in kuiperbelt).
    ClosedByBackend,
    /// A newer connection registered the same key; the session lives on there, so the backend
    /// is not told it closed.
    Replaced,
    /// The node is shutting down (close 1001).
    Shutdown,
    /// The establish callback refused the session before it was announced.
    EstablishFailed,
    /// An `oort.v1` session was resumed by another connection (close 4001); it goes on there.
    TakenOver,
    /// The node is draining and told its `oort.v1` client to resume elsewhere (close 1012);
    /// the session lingers for that.
    Moving,
    /// An `oort.v1` session lingered without a connection for `session.linger`.
    LingerExpired,
    /// An `oort.v1` client resumed, but the session could not be continued exactly (close
    /// 4000): it ends, and the client starts over through the connect callback.
    Reset,
    /// A newer session of the same user took its place (`limits.max_sessions_per_user`,
    /// close 4002).
    UserLimit,
}

impl CloseCause {
    /// Whether the backend's close callback is sent for a session that ended this way.
    pub(crate) fn notifies_backend(self) -> bool {
        !matches!(
            self,
            Self::ClosedByBackend
                | Self::Replaced
                | Self::EstablishFailed
                | Self::TakenOver
                | Self::Moving
        )
    }

    /// Whether an `oort.v1` session ends with its connection when it ends this way. The causes
    /// that do not are the ones a client resumes from: a dropped or stalled connection, a
    /// resume elsewhere, a drain.
    pub(crate) fn ends_durable_session(self) -> bool {
        !matches!(
            self,
            Self::ConnectionLost
                | Self::IdleTimeout
                | Self::PongTimeout
                | Self::SlowConsumer
                | Self::TakenOver
                | Self::Moving
        )
    }

    /// Label for logs and metrics.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::ClientClosed => "client_closed",
            Self::ConnectionLost => "connection_lost",
            Self::IdleTimeout => "idle_timeout",
            Self::PongTimeout => "pong_timeout",
            Self::SlowConsumer => "slow_consumer",
            Self::MessageTooBig => "message_too_big",
            Self::MessageRate => "message_rate",
            Self::ProtocolError => "protocol_error",
            Self::ClosedByBackend => "closed_by_backend",
            Self::Replaced => "replaced",
            Self::Shutdown => "shutdown",
            Self::EstablishFailed => "establish_failed",
            Self::TakenOver => "taken_over",
            Self::Moving => "moving",
            Self::LingerExpired => "linger_expired",
            Self::Reset => "reset",
            Self::UserLimit => "user_limit",
        }
    }
}

/// The close code of a session whose user opened one session too many (and the oldest goes).
pub(crate) const CLOSE_USER_LIMIT: u16 = 4002;

/// A request to end a connection: the close frame to send (none when the peer is gone or
/// already closed) and the cause.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CloseCommand {
    /// The close code, or `None` to drop the connection without a close frame.
    pub code: Option<u16>,
    /// The close reason sent with the code.
    pub reason: String,
    /// Why.
    pub cause: CloseCause,
}

impl CloseCommand {
    pub(crate) fn new(code: u16, reason: impl Into<String>, cause: CloseCause) -> Self {
        Self {
            code: Some(code),
            reason: reason.into(),
            cause,
        }
    }

    /// End without a close frame.
    pub(crate) fn silent(cause: CloseCause) -> Self {
        Self {
            code: None,
            reason: String::new(),
            cause,
        }
    }

    pub(crate) fn slow_consumer() -> Self {
        Self::new(1013, "client too slow to keep up", CloseCause::SlowConsumer)
    }

    pub(crate) fn shutdown() -> Self {
        Self::new(1001, "server shutting down", CloseCause::Shutdown)
    }

    pub(crate) fn replaced() -> Self {
        Self::new(
            1000,
            "session replaced by a newer connection",
            CloseCause::Replaced,
        )
    }

    /// The client ended its session over HTTP (`DELETE` on its stream).
    pub(crate) fn client_ended() -> Self {
        Self::new(
            1000,
            "the client ended the session",
            CloseCause::ClientClosed,
        )
    }

    /// Another connection resumed this `oort.v1` session.
    pub(crate) fn taken_over() -> Self {
        Self::new(
            crate::durable::protocol::CLOSE_TAKEN_OVER,
            "session resumed by another connection",
            CloseCause::TakenOver,
        )
    }

    /// A draining node tells an `oort.v1` client to resume on another node: 1012 (service
    /// restart) with a reason the client can act on.
    pub(crate) fn moving() -> Self {
        Self::new(1012, "moving; resume", CloseCause::Moving)
    }

    /// A newer session of the same user took this one's place.
    pub(crate) fn user_limit() -> Self {
        Self::new(
            CLOSE_USER_LIMIT,
            "replaced by a newer session of the same user",
            CloseCause::UserLimit,
        )
    }

    /// The cluster declared this node dead and purged its sessions: 1012 (service restart)
    /// tells the client to reconnect, which lands it on a live node.
    pub(crate) fn node_down() -> Self {
        Self::new(
            1012,
            "node left the cluster; reconnect",
            CloseCause::Shutdown,
        )
    }
}

/// Marks the reader busy with a receive callback until dropped (also when the callback is
/// abandoned because the connection ended).
pub(crate) struct ReaderBusy<'a>(&'a Session);

impl Drop for ReaderBusy<'_> {
    fn drop(&mut self) {
        let session = self.0;
        let total = session.reader_busy_ms(session.clock_ms());
        session.reader_busy.store(total << 1, Ordering::Release);
    }
}

/// The payload size of a data frame, as counted against queue bounds.
pub(crate) fn message_size(message: &Message) -> usize {
    match message {
        Message::Text(text) => text.len(),
        Message::Binary(data) => data.len(),
        _ => 0,
    }
}

/// One connected session, shared by the table, its connection task and deliveries.
pub(crate) struct Session {
    /// The backend-chosen key.
    pub key: SessionKey,
    /// Distinguishes this registration from other connections that used the same key.
    pub epoch: Epoch,
    /// Frames waiting for the client.
    pub queue: OutboundQueue,
    /// The client's address (none on a unix socket).
    pub peer: Option<SocketAddr>,
    /// When the session was registered.
    pub connected_at: SystemTime,
    /// Milliseconds since `clock_origin` of the last activity that counts for `idle_timeout`.
    last_activity_ms: AtomicU64,
    clock_origin: Instant,
    /// A server ping is unanswered (no frame at all has come from the client since).
    awaiting_pong: AtomicBool,
    /// The lasting part of an `oort.v1` session; unset for plain connections. Set once, before
    /// the connection is registered.
    durable: std::sync::OnceLock<Arc<crate::durable::Durable>>,
    /// Where the router committed this registration (a raft log index; 0 single node, or
    /// while pending), which orders it against registrations of the key on other nodes.
    committed_at: AtomicU64,
    /// The reader's time in receive callbacks, in one word so the writer never reads half an
    /// update: the lowest bit says whether a callback is running; the rest is the milliseconds
    /// of finished callbacks when none is, and that total minus the running one's start (on
    /// the `clock_ms` clock) when one is, so that adding the clock gives the total so far.
    /// Only the reader writes it.
    reader_busy: AtomicI64,
}

impl Session {
    pub(crate) fn new(key: SessionKey, epoch: Epoch, peer: Option<SocketAddr>) -> Arc<Self> {
        Arc::new(Self {
            key,
            epoch,
            durable: std::sync::OnceLock::new(),
            queue: OutboundQueue::new(),
            peer,
            connected_at: SystemTime::now(),
            last_activity_ms: AtomicU64::new(0),
            clock_origin: Instant::now(),
            awaiting_pong: AtomicBool::new(false),
            committed_at: AtomicU64::new(0),
            reader_busy: AtomicI64::new(0),
        })
    }

    /// The `oort.v1` session this connection serves, if it is one.
    pub(crate) fn durable(&self) -> Option<&Arc<crate::durable::Durable>> {
        self.durable.get()
    }

    /// Makes this connection one of `durable`'s (once; later calls change nothing).
    pub(crate) fn set_durable(&self, durable: Arc<crate::durable::Durable>) {
        let _ = self.durable.set(durable);
    }

    /// Records activity now (server writes, client messages, client pings).
    pub(crate) fn touch(&self) {
        let elapsed = u64::try_from(self.clock_origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_activity_ms.store(elapsed, Ordering::Relaxed);
    }

    /// The router committed the registration at `index`.
    pub(crate) fn set_committed_at(&self, index: u64) {
        self.committed_at.store(index, Ordering::Release);
    }

    /// Milliseconds since `clock_origin` (2^62 of them is 146 million years).
    fn clock_ms(&self) -> i64 {
        i64::try_from(self.clock_origin.elapsed().as_millis()).unwrap_or(i64::MAX >> 2)
    }

    /// The reader is about to wait for a receive callback: frames behind this one, a pong
    /// among them, stay unread until it ends.
    pub(crate) fn reader_busy(&self) -> ReaderBusy<'_> {
        let now = self.clock_ms();
        let total = self.reader_busy_ms(now);
        self.reader_busy
            .store(((total - now) << 1) | 1, Ordering::Release);
        ReaderBusy(self)
    }

    /// How long the reader has spent in receive callbacks so far, the current one included.
    pub(crate) fn reader_busy_time(&self) -> std::time::Duration {
        let total = self.reader_busy_ms(self.clock_ms());
        std::time::Duration::from_millis(u64::try_from(total).unwrap_or(0))
    }

    /// The reader's total time in receive callbacks at `now`, in milliseconds.
    fn reader_busy_ms(&self, now: i64) -> i64 {
        let state = self.reader_busy.load(Ordering::Acquire);
        let value = state >> 1;
        if state & 1 == 1 { now + value } else { value }
    }

    /// Where the router committed the registration.
    pub(crate) fn committed_at(&self) -> u64 {
        self.committed_at.load(Ordering::Acquire)
    }

    /// The writer sent a ping.
    pub(crate) fn ping_sent(&self) {
        self.awaiting_pong.store(true, Ordering::Relaxed);
    }

    /// A frame arrived from the client, which proves it alive. Returns whether a ping was
    /// waiting for an answer (so a pong that answers it is not counted as activity).
    pub(crate) fn heard_from_client(&self) -> bool {
        self.awaiting_pong.swap(false, Ordering::Relaxed)
    }

    /// True while a ping is unanswered.
    pub(crate) fn awaiting_pong(&self) -> bool {
        self.awaiting_pong.load(Ordering::Relaxed)
    }

    /// When the last activity happened.
    pub(crate) fn last_activity(&self) -> Instant {
        self.clock_origin
            + std::time::Duration::from_millis(self.last_activity_ms.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn reader_busy_time_counts_only_time_inside_callbacks() {
        let session = Session::new(SessionKey::from("busy"), Epoch(1), None);
        assert_eq!(session.reader_busy_time(), Duration::ZERO);
        let spell = Duration::from_millis(30);
        {
            let _busy = session.reader_busy();
            std::thread::sleep(spell);
            assert!(session.reader_busy_time() >= spell, "counted while running");
        }
        let after_one = session.reader_busy_time();
        assert!(after_one >= spell, "{after_one:?}");
        // Idle time is not counted.
        std::thread::sleep(spell);
        assert_eq!(session.reader_busy_time(), after_one);
        {
            let _busy = session.reader_busy();
            std::thread::sleep(spell);
        }
        assert!(session.reader_busy_time() >= after_one + spell);
    }
}
