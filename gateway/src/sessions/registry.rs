//! The table of this node's sessions, keyed by session key.
//!
//! A session is *pending* from the connect callback's answer until its registration commits,
//! and *live* after. Only live sessions are delivery targets: a send never reaches a session
//! whose registration may still fail (it answers `not_found`, truthfully, since the client has
//! not been told it is connected). A newer connection with the same key replaces the live one
//! only once its own registration committed, so a failed registration leaves the older
//! connection as it was.
//!
//! In a cluster, the same key may also be registered on another node. The later registration
//! in the directory's log wins, here as in the directory: a live session committed before the
//! other node's registration is closed, and a pending one is refused when it commits before
//! it. Each slot is changed under its map entry's lock, so a commit and the news of another
//! node's registration cannot pass each other.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, Utf8Bytes};
use dashmap::DashMap;
use oort_common::cluster::HandoverTail;
use oort_common::{DeliveryMode, DeliveryStatus, Epoch, FrameKind, Payload, SessionKey};
use oort_router::{EpochSource, LocalSessions};

use tokio::sync::mpsc;

use super::channels::ChannelTable;
use super::{CloseCause, CloseCommand, QueueLimits, SendRoute, Session, Stamp};
use crate::durable::{BufferLimits, Durable, Gap, Tail};

/// How long the buffer of a session that another node registered waits for that node to ask
/// for it.
const DEPARTED_KEPT_FOR: Duration = Duration::from_secs(30);

/// One key's sessions.
#[derive(Default)]
struct Slot {
    live: Option<Arc<Session>>,
    pending: Option<Box<Pending>>,
    /// The key's `oort.v1` session, attached to `live` or lingering without a connection.
    durable: Option<Arc<Durable>>,
}

/// Sessions of one key whose registration is in flight.
struct Pending {
    sessions: Vec<Arc<Session>>,
    /// The highest log index at which another node registered the key meanwhile.
    superseded_at: u64,
}

impl Slot {
    fn is_empty(&self) -> bool {
        self.live.is_none() && self.pending.is_none() && self.durable.is_none()
    }
}

/// An `oort.v1` session another node registered: its buffer and channels wait for that node.
struct Departed {
    durable: Arc<Durable>,
    channels: Vec<String>,
    since: Instant,
}

/// An `oort.v1` session that ended without a connection to see it out (a `/close` while it
/// lingered, the cluster purging this node): someone must withdraw it and tell the backend.
pub(crate) struct EndedDurable {
    pub durable: Arc<Durable>,
    pub cause: CloseCause,
    /// Whether the directory entry must be withdrawn (not when the cluster already purged it).
    pub unregister: bool,
}

/// What became of a registration that committed.
#[derive(Debug)]
pub(crate) enum Committed {
    /// The session is live; the older connection it replaced (if any) is closing.
    Live,
    /// A newer registration of the key (on another node, or a newer connection here) won; the
    /// session is not live and must be closed.
    Superseded,
}

/// This node's sessions.
pub(crate) struct SessionRegistry {
    slots: DashMap<SessionKey, Slot>,
    live: AtomicUsize,
    limits: QueueLimits,
    buffer_limits: BufferLimits,
    epochs: Arc<EpochSource>,
    /// `oort.v1` sessions another node registered, waiting for it to take their buffers.
    departed: DashMap<SessionKey, Departed>,
    /// The node is shutting down: HTTP readers are sent elsewhere.
    draining: std::sync::atomic::AtomicBool,
    ended: mpsc::UnboundedSender<EndedDurable>,
    ended_rx: Mutex<Option<mpsc::UnboundedReceiver<EndedDurable>>>,
    /// Channel memberships of the keys held here.
    channels: ChannelTable,
    /// Requests to clients (`/v1/request`) made through this node, waiting for replies.
    pub(crate) replies: super::PendingReplies,
    /// The gateway, for the named streams this node owns, served to other nodes' clients
    /// (set once at start; weak, as the gateway holds this registry).
    app: std::sync::OnceLock<std::sync::Weak<crate::state::AppState>>,
}

impl SessionRegistry {
    /// Serves the named streams of `app` to other nodes (once, at start).
    pub(crate) fn serve_named_streams(&self, app: std::sync::Weak<crate::state::AppState>) {
        let _ = self.app.set(app);
    }

    pub(crate) fn new(
        limits: QueueLimits,
        buffer_limits: BufferLimits,
        epochs: Arc<EpochSource>,
        channels: ChannelTable,
    ) -> Self {
        let (ended, ended_rx) = mpsc::unbounded_channel();
        Self {
            slots: DashMap::new(),
            live: AtomicUsize::new(0),
            limits,
            buffer_limits,
            epochs,
            departed: DashMap::new(),
            draining: std::sync::atomic::AtomicBool::new(false),
            ended,
            ended_rx: Mutex::new(Some(ended_rx)),
            channels,
            replies: super::PendingReplies::default(),
            app: std::sync::OnceLock::new(),
        }
    }

    /// Removes the key's slot if nothing is left in it; its channel memberships go with it.
    fn drop_if_empty(&self, key: &str) {
        if self
            .slots
            .remove_if(key, |_, slot| slot.is_empty())
            .is_some()
            && !self.slots.contains_key(key)
        {
            self.channels.forget(key);
        }
    }

    /// Joins and leaves waiting to be reported to the backend: the changes and how many were
    /// dropped (`None` when nobody wants them).
    pub(crate) fn take_presence(&self) -> Option<(Vec<super::PresenceChange>, u64)> {
        self.channels
            .presence_log()
            .map(super::presence::PresenceLog::take)
    }

    /// The channels `key` is in here.
    pub(crate) fn channels_of(&self, key: &str) -> Vec<String> {
        self.channels.of(key)
    }

    /// Sessions in `channel` here.
    pub(crate) fn channel_count(&self, channel: &str) -> usize {
        self.channels.count(channel)
    }

    /// The bounds of every `oort.v1` session's replay buffer.
    pub(crate) fn buffer_limits(&self) -> &BufferLimits {
        &self.buffer_limits
    }

    /// Where durable sessions that ended without a connection are reported (taken once).
    pub(crate) fn take_ended(&self) -> Option<mpsc::UnboundedReceiver<EndedDurable>> {
        self.ended_rx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    /// A fresh epoch for a new registration, above every earlier one.
    pub(crate) fn next_epoch(&self) -> Epoch {
        self.epochs.next()
    }

    /// Adds a session whose registration is about to start.
    pub(crate) fn begin(&self, session: Arc<Session>) {
        let mut slot = self.slots.entry(session.key.clone()).or_default();
        let pending = slot.pending.get_or_insert_with(|| {
            Box::new(Pending {
                sessions: Vec::new(),
                superseded_at: 0,
            })
        });
        pending.sessions.push(session);
    }

    /// The session's registration committed at `index`: it becomes live, replacing an older
    /// connection with the same key (closed after the messages already queued for it), unless
    /// a newer registration of the key won meanwhile.
    pub(crate) fn commit(&self, session: &Arc<Session>, index: u64) -> Committed {
        let mut slot = self.slots.entry(session.key.clone()).or_default();
        let superseded_at = take_pending(&mut slot, session);
        session.set_committed_at(index);
        let newer_here = slot
            .live
            .as_ref()
            .is_some_and(|live| live.epoch > session.epoch);
        if superseded_at > index || newer_here {
            return Committed::Superseded;
        }
        if let Some(older) = slot.live.replace(session.clone()) {
            older.queue.close(CloseCommand::replaced(), false);
        } else {
            self.live.fetch_add(1, Ordering::Relaxed);
        }
        let durable = session.durable().cloned();
        if let Some(durable) = &durable {
            durable.set_registered(session.epoch, index);
        }
        // A new session with this key replaces the old one, durable or not: no close callback,
        // as for any replaced connection.
        let older = std::mem::replace(&mut slot.durable, durable.clone());
        if let Some(older) = older
            && durable.is_none_or(|durable| !Arc::ptr_eq(&durable, &older))
        {
            older.end(Some(CloseCommand::replaced()));
        }
        Committed::Live
    }

    /// The registration of a session read over HTTP committed at `index`: its durable part
    /// (held by `placeholder`, which only stood for it while pending) takes the key over,
    /// unless a newer registration of the key won meanwhile.
    pub(crate) fn commit_detached(&self, placeholder: &Arc<Session>, index: u64) -> Committed {
        let mut slot = self.slots.entry(placeholder.key.clone()).or_default();
        let superseded_at = take_pending(&mut slot, placeholder);
        let Some(durable) = placeholder.durable().cloned() else {
            return Committed::Superseded;
        };
        let newer_here = slot
            .live
            .as_ref()
            .is_some_and(|live| live.epoch > placeholder.epoch)
            || slot
                .durable
                .as_ref()
                .is_some_and(|held| held.registered() > placeholder.epoch);
        if superseded_at > index || newer_here {
            return Committed::Superseded;
        }
        if let Some(older) = slot.live.take() {
            self.live.fetch_sub(1, Ordering::Relaxed);
            older.queue.close(CloseCommand::replaced(), false);
        }
        durable.set_registered(placeholder.epoch, index);
        if let Some(older) = slot.durable.replace(durable) {
            older.end(Some(CloseCommand::replaced()));
        }
        Committed::Live
    }

    /// A client resumes `durable`, which this node holds, on `session`: no new registration is
    /// needed, since the directory already points here. The welcome and the replay are queued
    /// before this returns; a gap means continuity is lost.
    pub(crate) fn resume_here(
        &self,
        session: &Arc<Session>,
        durable: &Arc<Durable>,
        seen: u64,
        welcome: impl FnOnce(u64) -> axum::extract::ws::Message,
    ) -> Result<(), Gap> {
        let mut slot = self.slots.entry(session.key.clone()).or_default();
        if slot
            .durable
            .as_ref()
            .is_none_or(|held| !Arc::ptr_eq(held, durable))
        {
            return Err(Gap::Dropped { through: u64::MAX });
        }
        durable.attach(session, seen, welcome, &self.buffer_limits)?;
        session.set_committed_at(durable.committed_at());
        if slot.live.replace(session.clone()).is_none() {
            self.live.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// The `oort.v1` session with this key held here (attached or lingering), if any.
    pub(crate) fn durable(&self, key: &str) -> Option<Arc<Durable>> {
        self.slots.get(key).and_then(|slot| slot.durable.clone())
    }

    /// Withdraws `durable` from the table if it is still the key's durable session.
    pub(crate) fn remove_durable(&self, durable: &Arc<Durable>) -> bool {
        let Some(mut slot) = self.slots.get_mut(&durable.key) else {
            return false;
        };
        if slot
            .durable
            .as_ref()
            .is_none_or(|held| !Arc::ptr_eq(held, durable))
        {
            return false;
        }
        slot.durable = None;
        let empty = slot.is_empty();
        drop(slot);
        if empty {
            self.drop_if_empty(durable.key.as_str());
        }
        true
    }

    /// Another node that took the session `key` (created under `id`) over asks for what its
    /// client has not seen after `seen`.
    pub(crate) fn hand_over(
        &self,
        key: &SessionKey,
        id: u64,
        seen: u64,
    ) -> Option<(Tail, Vec<String>)> {
        self.departed
            .retain(|_, departed| departed.since.elapsed() < DEPARTED_KEPT_FOR);
        // Its registration may not have reached this node's replica yet.
        if let Some(durable) = self.durable(key.as_str())
            && durable.id == id
        {
            self.depart(&durable);
        }
        let (_, departed) = self
            .departed
            .remove_if(key, |_, departed| departed.durable.id == id)?;
        Some((departed.durable.hand_over(seen)?, departed.channels))
    }

    /// The session moves to another node: it leaves the table, and its buffer waits for that
    /// node in `departed`.
    fn depart(&self, durable: &Arc<Durable>) {
        // Its channels go with it (the slot, and with it the memberships, may go now).
        let channels = self.channels.of(durable.key.as_str());
        if self.remove_durable(durable) && durable.depart() {
            self.departed.insert(
                durable.key.clone(),
                Departed {
                    durable: durable.clone(),
                    channels,
                    since: Instant::now(),
                },
            );
        }
    }

    /// The node starts shutting down: HTTP readers waiting here are answered at once, and
    /// reads from now on answer that the session must move.
    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
        let durables: Vec<Arc<Durable>> = self
            .slots
            .iter()
            .filter_map(|slot| slot.durable.clone())
            .collect();
        for durable in durables {
            durable.release_reader();
        }
    }

    pub(super) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Sessions without any transport (or closed with their end unread).
    pub(crate) fn idle(&self) -> Vec<Arc<Durable>> {
        self.slots
            .iter()
            .filter_map(|slot| slot.durable.clone())
            .filter(|durable| durable.is_idle())
            .collect()
    }

    /// Sessions lingering without a connection.
    pub(crate) fn lingering(&self) -> Vec<Arc<Durable>> {
        self.slots
            .iter()
            .filter_map(|slot| slot.durable.clone())
            .filter(|durable| durable.is_away())
            .collect()
    }

    /// The session's registration failed: it goes, and nothing else changes.
    pub(crate) fn abandon(&self, session: &Arc<Session>) {
        if let Some(durable) = session.durable() {
            // Ends the durable part, which also lets go of this connection.
            durable.end(None);
        }
        if let Some(mut slot) = self.slots.get_mut(&session.key) {
            take_pending(&mut slot, session);
            let empty = slot.is_empty();
            drop(slot);
            if empty {
                self.drop_if_empty(session.key.as_str());
            }
        }
    }

    /// Removes `key` only if its live session is still the one registered under `epoch`, so
    /// that the end of an older connection never removes a newer one that reused the key.
    pub(crate) fn remove(&self, key: &SessionKey, epoch: Epoch) -> bool {
        let Some(mut slot) = self.slots.get_mut(key) else {
            return false;
        };
        if slot.live.as_ref().is_none_or(|live| live.epoch != epoch) {
            return false;
        }
        slot.live = None;
        self.live.fetch_sub(1, Ordering::Relaxed);
        let empty = slot.is_empty();
        drop(slot);
        if empty {
            self.drop_if_empty(key.as_str());
        }
        true
    }

    /// The live session with this key, if any.
    pub(crate) fn get(&self, key: &str) -> Option<Arc<Session>> {
        self.slots.get(key).and_then(|slot| slot.live.clone())
    }

    /// Number of live sessions.
    pub(crate) fn len(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Asks every live session to close, after the messages already queued; returns how many.
    /// `oort.v1` clients are told to move (1012) and their sessions linger, so that they can
    /// resume on another node.
    pub(crate) fn close_all(&self, close: &CloseCommand) -> usize {
        self.slots
            .iter()
            .filter_map(|slot| slot.live.clone())
            .filter(|session| {
                let close = match session.durable() {
                    Some(_) if close.cause == CloseCause::Shutdown => CloseCommand::moving(),
                    _ => close.clone(),
                };
                session.queue.close(close, false)
            })
            .count()
    }

    pub(super) fn report_ended(&self, durable: Arc<Durable>, cause: CloseCause, unregister: bool) {
        let _ = self.ended.send(EndedDurable {
            durable,
            cause,
            unregister,
        });
    }
}

impl SessionRegistry {
    fn deliver_durable(
        &self,
        durable: &Arc<Durable>,
        payload: &Payload,
        mode: &DeliveryMode,
        stamp: Stamp,
    ) -> DeliveryStatus {
        match mode {
            DeliveryMode::Send => durable.push(payload, &self.limits, &self.buffer_limits, stamp),
            DeliveryMode::Request { id } => {
                durable.push_request(payload, id, &self.limits, &self.buffer_limits, stamp)
            }
            DeliveryMode::Close {
                code,
                reason,
                send_payload,
            } => {
                let close = CloseCommand::new(*code, reason.clone(), CloseCause::ClosedByBackend);
                let last_word = send_payload.then_some(payload);
                let (status, ended) = durable.close(last_word, close, &self.buffer_limits, stamp);
                if ended && self.remove_durable(durable) {
                    self.report_ended(durable.clone(), CloseCause::ClosedByBackend, true);
                }
                status
            }
        }
    }
}

/// Takes `session` out of the slot's pending list; returns the index at which the key was
/// registered elsewhere meanwhile (0: it was not).
fn take_pending(slot: &mut Slot, session: &Arc<Session>) -> u64 {
    let Some(pending) = slot.pending.as_mut() else {
        return 0;
    };
    pending
        .sessions
        .retain(|other| !Arc::ptr_eq(other, session));
    let superseded_at = pending.superseded_at;
    if pending.sessions.is_empty() {
        slot.pending = None;
    }
    superseded_at
}

/// Builds the frame once per delivery; every session gets a reference-counted clone.
pub(crate) fn frame_for(payload: &Payload) -> Message {
    match payload.kind() {
        // `Payload` guarantees text is UTF-8, so this conversion cannot fail; an empty frame
        // is the harmless fallback if that guarantee were ever broken.
        FrameKind::Text => {
            Message::Text(Utf8Bytes::try_from(payload.data().clone()).unwrap_or_default())
        }
        FrameKind::Binary => Message::Binary(payload.data().clone()),
    }
}

impl SessionRegistry {
    /// Queues `payload` for each target held here, stamped with `route`.
    fn deliver_routed(
        &self,
        targets: &[SessionKey],
        payload: &Payload,
        mode: &DeliveryMode,
        route: SendRoute,
    ) -> Vec<DeliveryStatus> {
        let frame = frame_for(payload);
        let size = payload.len();
        let stamp = Stamp::now(route);
        targets
            .iter()
            .enumerate()
            .map(|(index, key)| {
                let stamp = stamp.for_target(index);
                if let Some(durable) = self.durable(key.as_str()) {
                    return self.deliver_durable(&durable, payload, mode, stamp);
                }
                let Some(session) = self.get(key.as_str()) else {
                    return DeliveryStatus::NotFound;
                };
                match mode {
                    DeliveryMode::Send => {
                        session.queue.push(frame.clone(), size, &self.limits, stamp)
                    }
                    // A plain WebSocket client has no way to answer.
                    DeliveryMode::Request { .. } => DeliveryStatus::Unsupported,
                    DeliveryMode::Close {
                        code,
                        reason,
                        send_payload,
                    } => {
                        let close =
                            CloseCommand::new(*code, reason.clone(), CloseCause::ClosedByBackend);
                        let last_word = send_payload.then(|| (frame.clone(), size, stamp));
                        session.queue.push_last(last_word, close)
                    }
                }
            })
            .collect()
    }
}

impl LocalSessions for SessionRegistry {
    fn deliver(
        &self,
        targets: &[SessionKey],
        payload: &Payload,
        mode: &DeliveryMode,
    ) -> Vec<DeliveryStatus> {
        self.deliver_routed(targets, payload, mode, SendRoute::Local)
    }

    fn deliver_forwarded(
        &self,
        targets: &[SessionKey],
        payload: &Payload,
        mode: &DeliveryMode,
    ) -> Vec<DeliveryStatus> {
        self.deliver_routed(targets, payload, mode, SendRoute::Forwarded)
    }

    fn holds(&self, key: &str) -> bool {
        if let Some(durable) = self.durable(key) {
            return durable.is_going();
        }
        self.get(key)
            .is_some_and(|session| !session.queue.is_closing())
    }

    fn broadcast(&self, payload: &Payload) -> usize {
        let frame = frame_for(payload);
        let size = payload.len();
        // A broadcast reaches every node over NATS, its origin included: all count as local.
        let stamp = Stamp::now(SendRoute::Local);
        // Collected first, so no shard lock is held while a durable session's lock is taken.
        type Target = (Option<Arc<Durable>>, Option<Arc<Session>>);
        let targets: Vec<Target> = self
            .slots
            .iter()
            .map(|slot| (slot.durable.clone(), slot.live.clone()))
            .collect();
        targets
            .into_iter()
            .enumerate()
            .filter(|(index, (durable, live))| match (durable, live) {
                (Some(durable), _) => durable
                    .push(
                        payload,
                        &self.limits,
                        &self.buffer_limits,
                        stamp.for_target(*index),
                    )
                    .is_success(),
                (None, Some(session)) => {
                    session
                        .queue
                        .push(frame.clone(), size, &self.limits, stamp.for_target(*index))
                        == DeliveryStatus::Ok
                }
                (None, None) => false,
            })
            .count()
    }

    fn close_all(&self) {
        // The cluster purged this node's sessions from the directory: durable ones end too,
        // since no resume can find them any more.
        let durables: Vec<Arc<Durable>> = self
            .slots
            .iter()
            .filter_map(|slot| slot.durable.clone())
            .collect();
        for durable in durables {
            if self.remove_durable(&durable) && durable.end(Some(CloseCommand::node_down())) {
                self.report_ended(durable, CloseCause::Shutdown, false);
            }
        }
        SessionRegistry::close_all(self, &CloseCommand::node_down());
    }

    fn hand_over(&self, key: &SessionKey, id: u64, seen: u64) -> Option<HandoverTail> {
        let (tail, channels) = SessionRegistry::hand_over(self, key, id, seen)?;
        Some(crate::durable::tail_to_wire(tail, channels))
    }

    fn stream(&self, request: oort_common::cluster::StreamRequest) -> oort_router::BoxedAnswer<'_> {
        Box::pin(self.serve_stream(request))
    }

    fn named_stream(
        &self,
        request: oort_common::cluster::NamedStreamRequest,
    ) -> oort_router::BoxedNamedAnswer<'_> {
        Box::pin(async move {
            match self.app.get().and_then(std::sync::Weak::upgrade) {
                Some(app) => {
                    crate::named_streams::serve_as_owner(
                        &app,
                        &request.name,
                        request.generation,
                        request.op,
                    )
                    .await
                }
                None => oort_common::cluster::NamedStreamAnswer::NotHere,
            }
        })
    }

    fn subscribe(
        &self,
        targets: &[SessionKey],
        channels: &[String],
        join: bool,
    ) -> Vec<DeliveryStatus> {
        targets
            .iter()
            .map(|key| {
                if !LocalSessions::holds(self, key.as_str()) {
                    return if self.slots.contains_key(key.as_str()) {
                        DeliveryStatus::Closed
                    } else {
                        DeliveryStatus::NotFound
                    };
                }
                if !join {
                    self.channels.leave(key, channels);
                    return DeliveryStatus::Ok;
                }
                match self.channels.join(key, channels) {
                    Ok(()) => DeliveryStatus::Ok,
                    Err(_) => DeliveryStatus::ChannelLimit,
                }
            })
            .collect()
    }

    fn publish(&self, channels: &[String], position: Option<usize>, payload: &Payload) -> u64 {
        let audience = self.channels.audience(channels, position);
        if audience.is_empty() {
            return 0;
        }
        LocalSessions::deliver(self, &audience, payload, &DeliveryMode::Send)
            .into_iter()
            .filter(|status| status.is_success())
            .count() as u64
    }

    fn presence(&self, channel: &str, after: Option<&str>, limit: usize) -> (u64, Vec<SessionKey>) {
        self.channels.presence(channel, after, limit)
    }

    fn holds_channel(&self, channel: &str) -> bool {
        self.channels.holds(channel)
    }

    fn client_reply(&self, id: &str, session: &SessionKey, payload: Payload) {
        self.replies.answer(id, session, payload);
    }

    fn evict(&self, key: &SessionKey, epoch: Epoch) {
        let durable = self
            .durable(key.as_str())
            .filter(|durable| durable.registered() == epoch);
        let live = self.get(key.as_str());
        match (durable, live) {
            // Connected: the connection ends with the cause, and sees the session out.
            (Some(durable), Some(live))
                if live
                    .durable()
                    .is_some_and(|held| Arc::ptr_eq(held, &durable)) =>
            {
                live.queue.close(CloseCommand::user_limit(), false);
            }
            // The directory dropped it already: nothing to unregister.
            (Some(durable), _) if self.remove_durable(&durable) && durable.end(None) => {
                self.report_ended(durable, CloseCause::UserLimit, false);
            }
            (None, Some(live)) if live.epoch == epoch => {
                live.queue.close(CloseCommand::user_limit(), false);
            }
            _ => {}
        }
    }

    fn superseded(&self, key: &SessionKey, index: u64) {
        if let Some(durable) = self.durable(key.as_str())
            && durable.committed_at() < index
        {
            // Resumed (or replaced) on another node: its buffer waits for that node.
            self.depart(&durable);
        }
        let Some(mut slot) = self.slots.get_mut(key.as_str()) else {
            return;
        };
        if slot
            .live
            .as_ref()
            .is_some_and(|live| live.committed_at() < index)
            && let Some(live) = slot.live.take()
        {
            self.live.fetch_sub(1, Ordering::Relaxed);
            live.queue.close(CloseCommand::replaced(), false);
        }
        if let Some(pending) = slot.pending.as_mut() {
            pending.superseded_at = pending.superseded_at.max(index);
        }
        let empty = slot.is_empty();
        drop(slot);
        if empty {
            self.drop_if_empty(key.as_str());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> SessionRegistry {
        SessionRegistry::new(
            QueueLimits {
                max_messages: 4,
                max_bytes: 1024,
                slow_consumer_timeout: Duration::from_secs(5),
            },
            BufferLimits {
                max_messages: 8,
                max_bytes: 1024,
                max_age: Duration::from_secs(60),
            },
            Arc::new(EpochSource::in_memory()),
            ChannelTable::new(4, false),
        )
    }

    fn live(registry: &SessionRegistry, key: &str, index: u64) -> Arc<Session> {
        let session = Session::new(SessionKey::from(key), registry.next_epoch(), None);
        registry.begin(session.clone());
        assert!(matches!(registry.commit(&session, index), Committed::Live));
        session
    }

    #[test]
    fn a_stale_remove_keeps_the_newer_registration() {
        let registry = registry();
        let key = SessionKey::from("dup");
        let older = live(&registry, "dup", 1);
        let newer = live(&registry, "dup", 2);
        assert!(older.queue.is_closing(), "the older connection is replaced");
        assert!(!registry.remove(&key, older.epoch));
        assert_eq!(registry.get("dup").map(|s| s.epoch), Some(newer.epoch));
        assert!(registry.remove(&key, newer.epoch));
        assert!(registry.get("dup").is_none());
        assert_eq!(registry.len(), 0);
    }

    #[test]
    fn a_pending_session_is_no_target_and_a_failed_one_leaves_the_older_alone() {
        let registry = registry();
        let older = live(&registry, "k", 1);
        let newer = Session::new(SessionKey::from("k"), registry.next_epoch(), None);
        registry.begin(newer.clone());
        let statuses = registry.deliver(
            &[SessionKey::from("k")],
            &Payload::text("to the older"),
            &DeliveryMode::Send,
        );
        assert_eq!(statuses, [DeliveryStatus::Ok]);
        assert_eq!(older.queue.depth().0, 1, "the live session got it");
        assert_eq!(newer.queue.depth().0, 0, "the pending one did not");
        registry.abandon(&newer);
        assert!(
            !older.queue.is_closing(),
            "a failed registration replaces nothing"
        );
        assert_eq!(registry.get("k").map(|s| s.epoch), Some(older.epoch));
        let only_pending = Session::new(SessionKey::from("p"), registry.next_epoch(), None);
        registry.begin(only_pending);
        assert!(!registry.holds("p"));
        assert_eq!(
            registry.deliver(
                &[SessionKey::from("p")],
                &Payload::text("x"),
                &DeliveryMode::Send
            ),
            [DeliveryStatus::NotFound]
        );
    }

    #[test]
    fn the_later_registration_in_the_log_wins_across_nodes() {
        let registry = registry();
        // Committed here at 5, registered elsewhere at 7: the local one goes.
        let here = live(&registry, "a", 5);
        registry.superseded(&SessionKey::from("a"), 7);
        assert!(here.queue.is_closing());
        assert!(registry.get("a").is_none());
        // Registered elsewhere at 3, committed here at 5: the local one stays.
        let kept = live(&registry, "b", 5);
        registry.superseded(&SessionKey::from("b"), 3);
        assert!(!kept.queue.is_closing());
        // Pending here while another node registers at 9; committed here at 8: refused.
        let pending = Session::new(SessionKey::from("c"), registry.next_epoch(), None);
        registry.begin(pending.clone());
        registry.superseded(&SessionKey::from("c"), 9);
        assert!(matches!(
            registry.commit(&pending, 8),
            Committed::Superseded
        ));
        assert!(registry.get("c").is_none());
        // The same, but committed here at 10: it wins.
        let later = Session::new(SessionKey::from("d"), registry.next_epoch(), None);
        registry.begin(later.clone());
        registry.superseded(&SessionKey::from("d"), 9);
        assert!(matches!(registry.commit(&later, 10), Committed::Live));
    }

    #[test]
    fn of_two_connections_here_the_newer_epoch_wins_whatever_commits_last() {
        let registry = registry();
        let first = Session::new(SessionKey::from("k"), registry.next_epoch(), None);
        let second = Session::new(SessionKey::from("k"), registry.next_epoch(), None);
        registry.begin(first.clone());
        registry.begin(second.clone());
        assert!(matches!(registry.commit(&second, 4), Committed::Live));
        assert!(matches!(registry.commit(&first, 4), Committed::Superseded));
        assert_eq!(registry.get("k").map(|s| s.epoch), Some(second.epoch));
    }

    #[test]
    fn deliver_reports_each_target() {
        let registry = registry();
        live(&registry, "a", 0);
        let closing = live(&registry, "c", 0);
        closing.queue.close(CloseCommand::shutdown(), false);
        let targets = ["a", "nobody", "c"].map(SessionKey::from);
        let statuses = registry.deliver(&targets, &Payload::text("hi"), &DeliveryMode::Send);
        assert_eq!(
            statuses,
            [
                DeliveryStatus::Ok,
                DeliveryStatus::NotFound,
                DeliveryStatus::Closed
            ]
        );
        assert!(registry.holds("a"));
        assert!(
            !registry.holds("c"),
            "a closing session does not count for strict mode"
        );
    }
}
