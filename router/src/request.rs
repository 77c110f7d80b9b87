//! The delivery request and the gateway's side of the contract.

use std::future::Future;
use std::pin::Pin;

use oort_common::cluster::{
    HandoverTail, NamedStreamAnswer, NamedStreamRequest, StreamAnswer, StreamRequest,
};
use oort_common::{DeliveryMode, DeliveryStatus, Payload, SessionKey};

/// One payload for a list of sessions.
#[derive(Clone, Debug)]
pub struct DeliveryRequest {
    /// Target session keys, in the caller's order (duplicates allowed).
    pub targets: Vec<SessionKey>,
    /// What to send, shared by every target.
    pub payload: Payload,
    /// A plain message, or a last word followed by a close.
    pub mode: DeliveryMode,
    /// All-or-nothing: if any target is unknown, deliver to none.
    pub strict: bool,
    /// Carried to every node the delivery touches and logged there (`X-Request-Id`).
    pub request_id: String,
}

/// The sessions held by this node, as the gateway exposes them to the router.
pub trait LocalSessions: Send + Sync + 'static {
    /// Queues `payload` for each target held here, never waiting: a full queue answers
    /// [`DeliveryStatus::QueueFull`] at once. Statuses line up with `targets`.
    fn deliver(
        &self,
        targets: &[SessionKey],
        payload: &Payload,
        mode: &DeliveryMode,
    ) -> Vec<DeliveryStatus>;

    /// [`LocalSessions::deliver`] for a delivery another node forwarded here (its route is
    /// labelled apart in the send-latency metric).
    fn deliver_forwarded(
        &self,
        targets: &[SessionKey],
        payload: &Payload,
        mode: &DeliveryMode,
    ) -> Vec<DeliveryStatus> {
        self.deliver(targets, payload, mode)
    }

    /// True if a session with this key is held here and accepting messages.
    fn holds(&self, key: &str) -> bool;

    /// Queues `payload` for every session held here; returns how many accepted it.
    fn broadcast(&self, payload: &Payload) -> usize;

    /// Closes every session held here: the cluster declared this node dead and purged them
    /// from the directory, so their clients must reconnect (possibly elsewhere).
    fn close_all(&self);

    /// Another node registered `key` at log index `index`. The newer registration wins: a
    /// local session committed before `index` is closed, and one whose registration is still in
    /// flight is closed if it commits before `index` (its commit index tells).
    fn superseded(&self, key: &SessionKey, index: u64);

    /// Another node took the `oort.v1` session `key` (created under `id`) over: what its
    /// client has not seen after `seen`, or `None` when this node no longer has it. The
    /// session is over here once this returns.
    fn hand_over(&self, key: &SessionKey, id: u64, seen: u64) -> Option<HandoverTail>;

    /// Adds the sessions held here among `targets` to `channels` (`join`), or removes them;
    /// one status per target: `ok`, `not_found`, `closed`, or `channel_limit` when joining
    /// would take a session past its limit (its channels are then unchanged).
    fn subscribe(
        &self,
        targets: &[SessionKey],
        channels: &[String],
        join: bool,
    ) -> Vec<DeliveryStatus>;

    /// Queues a publish for the sessions held here: with `position`, those subscribed to
    /// `channels[position]` and to none of the channels before it (each session then gets a
    /// publish to several channels once, through the first it is in); without, those
    /// subscribed to any of `channels`. Returns how many took it.
    fn publish(&self, channels: &[String], position: Option<usize>, payload: &Payload) -> u64;

    /// How many sessions held here are subscribed to `channel`, and up to `limit` of their
    /// keys after `after`, in key order.
    fn presence(&self, channel: &str, after: Option<&str>, limit: usize) -> (u64, Vec<SessionKey>);

    /// The directory dropped the session registered here under `epoch` to make room for a
    /// newer session of its user (`limits.max_sessions_per_user`): it ends.
    fn evict(&self, key: &SessionKey, epoch: oort_common::Epoch);

    /// A client's reply to request `id`, from `session`, reached the node waiting for it.
    fn client_reply(&self, id: &str, session: &SessionKey, payload: Payload);

    /// True while a session held here is subscribed to `channel`.
    fn holds_channel(&self, channel: &str) -> bool;

    /// Serves an operation on the stream of a session held here, for an HTTP client whose
    /// request arrived at another node. A read may wait (up to the request's `wait_ms`).
    fn stream(&self, request: StreamRequest) -> BoxedAnswer<'_>;

    /// Serves an operation on a named Durable Stream this node owns, for a client whose
    /// request arrived at another node. A read may wait (up to its `wait_ms`).
    fn named_stream(&self, request: NamedStreamRequest) -> BoxedNamedAnswer<'_>;
}

/// The future of [`LocalSessions::named_stream`].
pub type BoxedNamedAnswer<'a> = Pin<Box<dyn Future<Output = NamedStreamAnswer> + Send + 'a>>;

/// The future of [`LocalSessions::stream`].
pub type BoxedAnswer<'a> = Pin<Box<dyn Future<Output = StreamAnswer> + Send + 'a>>;
