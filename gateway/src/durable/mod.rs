//! Sessions that outlive their connection: the `oort.v1` subprotocol.
//!
//! A [`Durable`] is the part of an `oort.v1` session that survives its connections: the
//! sequence numbers, the replay buffer and where the session stands ([`Phase`]). A connection
//! ([`Session`]) attaches to it, is fed from it, and detaches when it ends; the durable session
//! then lingers for `session.linger`, keeping what is sent meanwhile (`buffered`), until a
//! client resumes it here or on another node, or the linger ends it.
//!
//! Every send to the session passes through [`Durable::push`] under one lock, which is what
//! keeps sequence numbers gap-free and in the order sends were answered, across attaches.

mod buffer;
pub(crate) mod protocol;
mod read;
pub(crate) mod token;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::ws::Message;
use oort_common::cluster::{HandoverTail, KeptMessage};
use oort_common::{DeliveryStatus, Epoch, FrameKind, Payload, SessionKey};

pub(crate) use buffer::{BufferLimits, Gap, Kept, ReplayBuffer};
pub(crate) use read::{Read, StreamChunk, StreamFrom, StreamRefusal};

use crate::sessions::{CloseCause, CloseCommand, QueueLimits, Session, Stamp};

/// Where a durable session stands.
enum Phase {
    /// A connection is writing it.
    Attached(Arc<Session>),
    /// No connection; lingering. The generation tells one spell apart from the next, so an old
    /// linger timer never ends a session that was resumed and dropped again since.
    Away { generation: u64, since: Instant },
    /// An HTTP reader (a long-poll or an SSE stream) waits for the next message; a send wakes
    /// it, and so does a newer reader (the older one is answered at once).
    Waiting {
        wake: tokio::sync::oneshot::Sender<()>,
    },
    /// The backend closed a session read over HTTP: its reader is still to see the last
    /// messages and the end of the stream (`Stream-Closed`). Sends answer `not_found`.
    Closed { since: Instant },
    /// Being taken over from another node: messages sent meanwhile are held, unnumbered, until
    /// the other node's tail arrives, and numbered after it.
    Receiving {
        held: Vec<(Payload, Option<String>)>,
    },
    /// Another node registered the session (a resume there): sends answer `not_found`, so
    /// their senders look the key up again, and the buffer waits for that node to take it.
    Departed,
    /// Over here: it ended, or another node took it. Sends answer `not_found`.
    Ended,
}

/// What became of the durable session when a connection detached.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Detached {
    /// The cause ends the session.
    Ended,
    /// It lingers; the linger timer of this generation may end it.
    Away(u64),
    /// The connection was no longer the attached one (taken over by a resume).
    NotAttached,
}

/// The tail another node takes over: what the client has not seen, and where numbering
/// continues.
#[derive(Debug)]
pub(crate) struct Tail {
    pub kept: Vec<Kept>,
    pub next_seq: u64,
    pub dropped_through: u64,
}

/// The lasting part of one `oort.v1` session on this node.
pub(crate) struct Durable {
    pub key: SessionKey,
    /// The epoch the session was created under; resume tokens name it.
    pub id: u64,
    /// The epoch of the directory entry that points here, for the eventual unregister.
    registered: AtomicU64,
    /// Where that entry was committed (a raft log index; 0 single node).
    committed_at: AtomicU64,
    state: Mutex<State>,
}

struct State {
    buffer: ReplayBuffer,
    phase: Phase,
    generation: u64,
    /// Read over HTTP at least once: a backend close then waits for the reader to see the end.
    read_over_http: bool,
}

impl State {
    /// No transport: the session lingers from now on.
    fn go_away(&mut self) -> u64 {
        self.generation += 1;
        self.phase = Phase::Away {
            generation: self.generation,
            since: Instant::now(),
        };
        self.generation
    }
}

impl Durable {
    /// A new session whose first connection is `connection`: the welcome is its first frame,
    /// then the connect callback's first message (sequence number 1) when there is one.
    pub(crate) fn start(
        connection: &Arc<Session>,
        welcome: Message,
        first_message: Option<&Payload>,
        limits: &BufferLimits,
    ) -> Arc<Self> {
        let mut buffer = ReplayBuffer::new();
        connection.queue.push_first(welcome, 0);
        if let Some(payload) = first_message {
            let frame = protocol::message(buffer.next_seq(), payload);
            connection.queue.push_first(frame.clone(), payload.len());
            buffer.keep(frame, payload.len(), limits);
        }
        Self::with(
            connection,
            connection.epoch.0,
            buffer,
            Phase::Attached(connection.clone()),
        )
    }

    /// A session being taken over from another node by `connection`.
    pub(crate) fn receiving(connection: &Arc<Session>, id: u64) -> Arc<Self> {
        Self::with(
            connection,
            id,
            ReplayBuffer::new(),
            Phase::Receiving { held: Vec::new() },
        )
    }

    /// A session read over HTTP being taken over from another node (shutting down): sends
    /// meanwhile are held until its tail arrives ([`Self::take_tail`]).
    pub(crate) fn receiving_detached(key: SessionKey, epoch: Epoch, id: u64) -> Arc<Self> {
        let phase = Phase::Receiving { held: Vec::new() };
        Self::new(key, epoch, id, ReplayBuffer::new(), phase, true)
    }

    /// A new session without a connection, to be read over HTTP (a Comet connect): the connect
    /// callback's first message, when there is one, is message 1.
    pub(crate) fn start_detached(
        key: SessionKey,
        epoch: Epoch,
        first_message: Option<&Payload>,
        limits: &BufferLimits,
    ) -> Arc<Self> {
        let mut buffer = ReplayBuffer::new();
        if let Some(payload) = first_message {
            let frame = protocol::message(buffer.next_seq(), payload);
            buffer.keep(frame, payload.len(), limits);
        }
        let phase = Phase::Away {
            generation: 0,
            since: Instant::now(),
        };
        Self::new(key, epoch, epoch.0, buffer, phase, true)
    }

    fn with(connection: &Arc<Session>, id: u64, buffer: ReplayBuffer, phase: Phase) -> Arc<Self> {
        Self::new(
            connection.key.clone(),
            connection.epoch,
            id,
            buffer,
            phase,
            false,
        )
    }

    fn new(
        key: SessionKey,
        epoch: Epoch,
        id: u64,
        buffer: ReplayBuffer,
        phase: Phase,
        read_over_http: bool,
    ) -> Arc<Self> {
        Arc::new(Self {
            key,
            id,
            registered: AtomicU64::new(epoch.0),
            committed_at: AtomicU64::new(0),
            state: Mutex::new(State {
                buffer,
                phase,
                generation: 0,
                read_over_http,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update leaves the state whole, so a poisoned lock is still safe to use.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The epoch under which the directory knows the session is here.
    pub(crate) fn registered(&self) -> Epoch {
        Epoch(self.registered.load(Ordering::Acquire))
    }

    /// Where the directory entry pointing here was committed.
    pub(crate) fn committed_at(&self) -> u64 {
        self.committed_at.load(Ordering::Acquire)
    }

    /// The directory entry pointing here is `epoch`, committed at `index`.
    pub(crate) fn set_registered(&self, epoch: Epoch, index: u64) {
        self.registered.store(epoch.0, Ordering::Release);
        self.committed_at.store(index, Ordering::Release);
    }

    /// Numbers `payload`, keeps it for replay and queues it for the connection if there is
    /// one. `buffered` when there is none.
    pub(crate) fn push(
        &self,
        payload: &Payload,
        queue_limits: &QueueLimits,
        limits: &BufferLimits,
        stamp: Stamp,
    ) -> DeliveryStatus {
        self.push_as(payload, None, queue_limits, limits, stamp)
    }

    /// Queues a backend request (`/v1/request`) like a message, framed as a request the
    /// client can answer. A session read over HTTP cannot answer: `unsupported`.
    pub(crate) fn push_request(
        &self,
        payload: &Payload,
        id: &str,
        queue_limits: &QueueLimits,
        limits: &BufferLimits,
        stamp: Stamp,
    ) -> DeliveryStatus {
        if self.lock().read_over_http {
            return DeliveryStatus::Unsupported;
        }
        self.push_as(payload, Some(id), queue_limits, limits, stamp)
    }

    fn push_as(
        &self,
        payload: &Payload,
        request: Option<&str>,
        queue_limits: &QueueLimits,
        limits: &BufferLimits,
        stamp: Stamp,
    ) -> DeliveryStatus {
        let mut state = self.lock();
        let seq = state.buffer.next_seq();
        let size = payload.len();
        match &mut state.phase {
            Phase::Ended | Phase::Departed | Phase::Closed { .. } => DeliveryStatus::NotFound,
            Phase::Waiting { .. } => {
                let frame = frame_of(seq, payload, request);
                state.buffer.keep(frame, size, limits);
                // The reader takes it from the buffer; the session lingers until it is back.
                if let Phase::Waiting { wake } = std::mem::replace(&mut state.phase, Phase::Ended) {
                    let _ = wake.send(());
                }
                state.go_away();
                DeliveryStatus::Ok
            }
            Phase::Receiving { held } => {
                if held.len() >= limits.max_messages {
                    DeliveryStatus::QueueFull
                } else {
                    held.push((payload.clone(), request.map(str::to_owned)));
                    DeliveryStatus::Buffered
                }
            }
            Phase::Attached(connection) => {
                let frame = frame_of(seq, payload, request);
                let status = connection
                    .queue
                    .push(frame.clone(), size, queue_limits, stamp);
                match status {
                    DeliveryStatus::Ok => {
                        state.buffer.keep(frame, size, limits);
                        DeliveryStatus::Ok
                    }
                    // The connection is ending; the session lingers on after it.
                    DeliveryStatus::Closed => {
                        state.buffer.keep(frame, size, limits);
                        DeliveryStatus::Buffered
                    }
                    other => other,
                }
            }
            Phase::Away { .. } => {
                let frame = frame_of(seq, payload, request);
                state.buffer.keep(frame, size, limits);
                DeliveryStatus::Buffered
            }
        }
    }

    /// The backend's `/close`: the last word (numbered) and the close go to the connection;
    /// without one, the session ends here and now. Returns the status and whether the session
    /// ended without a connection (the caller then withdraws it).
    pub(crate) fn close(
        &self,
        last_word: Option<&Payload>,
        close: CloseCommand,
        limits: &BufferLimits,
        stamp: Stamp,
    ) -> (DeliveryStatus, bool) {
        let mut state = self.lock();
        let seq = state.buffer.next_seq();
        match &state.phase {
            Phase::Ended | Phase::Departed | Phase::Closed { .. } => {
                (DeliveryStatus::NotFound, false)
            }
            Phase::Away { .. } | Phase::Waiting { .. } if state.read_over_http => {
                // Its HTTP reader gets the last word, then the end of the stream; the session
                // ends once the reader has seen it (or after the linger).
                if let Some(payload) = last_word {
                    let frame = protocol::message(seq, payload);
                    state.buffer.keep(frame, payload.len(), limits);
                }
                // Dropping a waiting reader's wake answers it at once, with the end.
                state.phase = Phase::Closed {
                    since: Instant::now(),
                };
                (DeliveryStatus::Ok, false)
            }
            Phase::Attached(connection) => {
                let connection = connection.clone();
                let last_word = last_word.map(|payload| {
                    let frame = protocol::message(seq, payload);
                    state.buffer.keep(frame.clone(), payload.len(), limits);
                    (frame, payload.len(), stamp)
                });
                (connection.queue.push_last(last_word, close), false)
            }
            Phase::Away { .. } | Phase::Waiting { .. } | Phase::Receiving { .. } => {
                state.phase = Phase::Ended;
                (DeliveryStatus::Ok, true)
            }
        }
    }

    /// The client acknowledged every message up to `seq`.
    pub(crate) fn ack(&self, seq: u64) -> Result<(), Gap> {
        self.lock().buffer.ack(seq)
    }

    /// A resumed connection takes the session over: the welcome, then every kept message after
    /// `seen`, then live sends. The connection it replaces (if still attached) closes with
    /// 4001. A gap means the client must be reset.
    pub(crate) fn attach(
        &self,
        connection: &Arc<Session>,
        seen: u64,
        welcome: impl FnOnce(u64) -> Message,
        limits: &BufferLimits,
    ) -> Result<(), Gap> {
        let mut state = self.lock();
        if !matches!(
            state.phase,
            Phase::Attached(_) | Phase::Away { .. } | Phase::Waiting { .. }
        ) {
            return Err(Gap::Dropped { through: u64::MAX });
        }
        let replay = state.buffer.replay_after(seen, limits)?;
        connection.queue.push_first(welcome(seen), 0);
        for kept in replay {
            connection.queue.push_first(kept.frame, kept.size);
        }
        if let Phase::Attached(older) = &state.phase {
            older.queue.close(CloseCommand::taken_over(), false);
        }
        // A waiting HTTP reader is answered at once (its wake is dropped here).
        state.phase = Phase::Attached(connection.clone());
        Ok(())
    }

    /// The tail from the previous owner arrived: numbering continues from it, messages held
    /// meanwhile follow it, and `connection` is fed from `seen` on.
    pub(crate) fn receive_tail(
        &self,
        connection: &Arc<Session>,
        tail: Tail,
        seen: u64,
        welcome: impl FnOnce(u64) -> Message,
        limits: &BufferLimits,
    ) -> Result<(), Gap> {
        self.take_tail(tail, limits)?;
        self.attach(connection, seen, welcome, limits)
    }

    /// The tail from the previous owner arrived: numbering continues from it, messages held
    /// meanwhile follow it, and the session lingers here until a transport attaches.
    pub(crate) fn take_tail(&self, tail: Tail, limits: &BufferLimits) -> Result<(), Gap> {
        let mut state = self.lock();
        let Phase::Receiving { held } = &mut state.phase else {
            return Err(Gap::Dropped { through: u64::MAX });
        };
        let held = std::mem::take(held);
        // The tail is contiguous and ends just before `next_seq`; what came before it was
        // acknowledged, or dropped (`dropped_through` says which).
        let first = tail.kept.first().map_or(tail.next_seq, |kept| kept.seq);
        let mut buffer = ReplayBuffer::starting_at(first, tail.dropped_through);
        for kept in tail.kept {
            buffer.keep(kept.frame, kept.size, limits);
        }
        // What came before the tail was acknowledged there (or counted as dropped).
        let _ = buffer.ack(first.saturating_sub(1));
        for (payload, request) in held {
            let frame = frame_of(buffer.next_seq(), &payload, request.as_deref());
            buffer.keep(frame, payload.len(), limits);
        }
        state.buffer = buffer;
        state.go_away();
        Ok(())
    }

    /// The connection ended. Unless it was taken over or its cause ends the session, the
    /// session lingers.
    pub(crate) fn detach(&self, connection: &Arc<Session>, cause: CloseCause) -> Detached {
        let mut state = self.lock();
        match &state.phase {
            Phase::Attached(attached) if Arc::ptr_eq(attached, connection) => {}
            _ => return Detached::NotAttached,
        }
        if cause.ends_durable_session() {
            state.phase = Phase::Ended;
            return Detached::Ended;
        }
        Detached::Away(state.go_away())
    }

    /// The linger of `generation` is over: ends the session if it is still away since then.
    pub(crate) fn expire(&self, generation: u64) -> bool {
        let mut state = self.lock();
        if matches!(state.phase, Phase::Away { generation: g, .. } if g == generation) {
            state.phase = Phase::Ended;
            return true;
        }
        false
    }

    /// Another node registered the session: from now on sends answer `not_found` (their
    /// senders look the key up again and find the new owner), and a connection still attached
    /// closes with 4001. The buffer stays for [`Self::hand_over`]. Returns whether the session
    /// was going here.
    pub(crate) fn depart(&self) -> bool {
        let mut state = self.lock();
        let phase = std::mem::replace(&mut state.phase, Phase::Departed);
        match phase {
            Phase::Attached(connection) => {
                connection.queue.close(CloseCommand::taken_over(), false);
                true
            }
            Phase::Away { .. } | Phase::Waiting { .. } => true,
            Phase::Departed => true,
            Phase::Ended | Phase::Receiving { .. } | Phase::Closed { .. } => {
                state.phase = Phase::Ended;
                false
            }
        }
    }

    /// The node that took the session over asks for everything kept after `seen`; the
    /// session is over here once it has it.
    pub(crate) fn hand_over(&self, seen: u64) -> Option<Tail> {
        self.depart();
        let mut state = self.lock();
        if !matches!(state.phase, Phase::Departed) {
            return None;
        }
        state.phase = Phase::Ended;
        Some(tail_of(&state.buffer, seen))
    }

    /// Ends the session here at once (replaced by a new session with the same key, or taken by
    /// another node that will not ask for its tail). Returns whether it was still going.
    pub(crate) fn end(&self, close: Option<CloseCommand>) -> bool {
        let mut state = self.lock();
        let phase = std::mem::replace(&mut state.phase, Phase::Ended);
        if let (Phase::Attached(connection), Some(close)) = (&phase, close) {
            connection.queue.close(close, false);
        }
        !matches!(phase, Phase::Ended)
    }

    /// True while the session goes on here.
    pub(crate) fn is_going(&self) -> bool {
        !matches!(
            self.lock().phase,
            Phase::Ended | Phase::Departed | Phase::Closed { .. }
        )
    }

    /// True while no WebSocket is attached (an HTTP reader may be waiting).
    pub(crate) fn is_away(&self) -> bool {
        matches!(
            self.lock().phase,
            Phase::Away { .. } | Phase::Waiting { .. }
        )
    }

    /// True while no transport is attached, or closed by the backend with its end unread.
    pub(crate) fn is_idle(&self) -> bool {
        matches!(self.lock().phase, Phase::Away { .. } | Phase::Closed { .. })
    }

    /// Ends the session if it has been without any transport for `linger`, or closed by the
    /// backend that long ago with its reader gone; the cause to end it with.
    pub(crate) fn expire_idle(&self, linger: Duration) -> Option<crate::sessions::CloseCause> {
        let mut state = self.lock();
        let cause = match state.phase {
            Phase::Away { since, .. } if since.elapsed() >= linger => {
                crate::sessions::CloseCause::LingerExpired
            }
            Phase::Closed { since } if since.elapsed() >= linger => {
                crate::sessions::CloseCause::ClosedByBackend
            }
            _ => return None,
        };
        state.phase = Phase::Ended;
        Some(cause)
    }

    /// Messages and bytes kept for replay, and the last sequence number given out.
    pub(crate) fn depth(&self) -> (usize, usize, u64) {
        let state = self.lock();
        let (messages, bytes) = state.buffer.depth();
        (messages, bytes, state.buffer.last_seq())
    }
}

fn tail_of(buffer: &ReplayBuffer, seen: u64) -> Tail {
    Tail {
        kept: buffer.kept_after(seen).cloned().collect(),
        next_seq: buffer.next_seq(),
        dropped_through: buffer.dropped_through(),
    }
}

/// The frame of message `seq`: a plain message, or a request the client can answer.
fn frame_of(seq: u64, payload: &Payload, request: Option<&str>) -> Message {
    match request {
        Some(id) => protocol::request(seq, id, payload),
        None => protocol::message(seq, payload),
    }
}

/// Bytes of frames one hand-over carries at most, well below the 1 MiB NATS allows by default
/// per message: older messages past it are left out, and counted as dropped.
const MAX_HANDOVER_BYTES: usize = 768 * 1024;

/// The tail as it travels to the node that takes the session over, with the session's
/// channels.
pub(crate) fn tail_to_wire(tail: Tail, channels: Vec<String>) -> HandoverTail {
    let mut total = 0;
    let mut dropped_through = tail.dropped_through;
    let keep_from = tail
        .kept
        .iter()
        .rposition(|kept| {
            total += kept.size + 16;
            total > MAX_HANDOVER_BYTES
        })
        .map_or(0, |over| over + 1);
    if keep_from > 0 {
        dropped_through = dropped_through.max(tail.kept[keep_from - 1].seq);
    }
    let messages = tail.kept[keep_from..]
        .iter()
        .filter_map(|kept| match &kept.frame {
            Message::Text(text) => Some(KeptMessage {
                seq: kept.seq,
                kind: FrameKind::Text,
                frame: text.as_bytes().to_vec(),
            }),
            Message::Binary(data) => Some(KeptMessage {
                seq: kept.seq,
                kind: FrameKind::Binary,
                frame: data.to_vec(),
            }),
            _ => None,
        })
        .collect();
    HandoverTail {
        next_seq: tail.next_seq,
        dropped_through,
        messages,
        channels,
    }
}

/// The tail as the node taking the session over keeps it, and the session's channels (those
/// with valid names); `None` if a frame is not what this node would have written (the other
/// node is not to be trusted blindly).
pub(crate) fn tail_from_wire(tail: HandoverTail) -> Option<(Tail, Vec<String>)> {
    let channels: Vec<String> = tail
        .channels
        .into_iter()
        .filter(|name| oort_common::channel::check_channel_name(name).is_ok())
        .collect();
    let mut expected = tail.messages.first().map_or(tail.next_seq, |m| m.seq);
    let mut kept = Vec::with_capacity(tail.messages.len());
    for message in tail.messages {
        if message.seq != expected {
            return None;
        }
        expected += 1;
        let (frame, size) = match message.kind {
            FrameKind::Text => {
                let text = String::from_utf8(message.frame).ok()?;
                let size = text.len();
                (Message::Text(text.into()), size)
            }
            FrameKind::Binary => {
                let size = message.frame.len().checked_sub(8)?;
                (Message::Binary(message.frame.into()), size)
            }
        };
        kept.push(Kept {
            seq: message.seq,
            frame,
            size,
            at: std::time::Instant::now(),
        });
    }
    (expected == tail.next_seq).then_some((
        Tail {
            kept,
            next_seq: tail.next_seq,
            dropped_through: tail.dropped_through,
        },
        channels,
    ))
}
