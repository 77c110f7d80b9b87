//! Operations on a named Durable Stream (created with `PUT`, docs/streams.md), carried to the
//! node that owns the stream on `oort.<cluster>.dstream.<raft_id>`. The node a client's
//! request lands on parses and answers the HTTP; the owner keeps the messages and applies
//! every operation in one order.

use serde::{Deserialize, Serialize};

/// What a node asks of the owner of a named stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedStreamRequest {
    /// The stream's name.
    pub name: String,
    /// The generation the asking node found in the directory: an owner holding another
    /// generation of the stream answers [`NamedStreamAnswer::NotHere`].
    pub generation: u64,
    /// What to do.
    pub op: NamedStreamOp,
}

/// The settings a stream is created with; a second `PUT` must name the same ones.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamSettings {
    /// The content type, lowercased, without parameters.
    pub content_type: String,
    /// `Stream-TTL`: seconds without a read or write after which the stream is deleted.
    pub ttl_secs: Option<u64>,
    /// `Stream-Expires-At` as given, and as Unix milliseconds.
    pub expires_at: Option<(String, i64)>,
    /// Readable without a read token.
    pub public: bool,
}

/// An idempotent producer's headers (`Producer-Id`, `Producer-Epoch`, `Producer-Seq`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerClaim {
    /// The producer.
    pub id: String,
    /// Its epoch (a newer one fences older instances).
    pub epoch: u64,
    /// The sequence number of this append within the epoch.
    pub seq: u64,
}

/// One operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NamedStreamOp {
    /// `PUT`: create (or confirm) the stream.
    Create {
        /// Its settings.
        settings: StreamSettings,
        /// Messages to start with (already split: one per JSON value, or the whole body).
        messages: Vec<Vec<u8>>,
        /// Created closed.
        closed: bool,
    },
    /// `POST`: append, and or close.
    Append {
        /// The request's content type, as [`StreamSettings::content_type`] (empty: none).
        content_type: String,
        /// `Stream-Seq`.
        seq: Option<String>,
        /// The messages (none: a close only).
        messages: Vec<Vec<u8>>,
        /// `Stream-Closed: true`.
        close: bool,
        /// Idempotent producer headers.
        producer: Option<ProducerClaim>,
    },
    /// `DELETE`.
    Delete,
    /// `HEAD`.
    Head {
        /// The reader presented a token for this stream (or the API token).
        authorized: bool,
    },
    /// `/v1/publish` to the channel whose stream this is: the owner appends the payload and
    /// then publishes it to the channel's subscribers, one publish at a time, so the stream's
    /// readers and the channel's WebSocket subscribers see the same order.
    Publish {
        /// The channel.
        channel: String,
        /// A text frame (`true`) or binary.
        text: bool,
        /// The payload.
        payload: Vec<u8>,
        /// The backend request's id, logged where the publish goes.
        request_id: String,
    },
    /// `GET`: what follows a position, waiting up to `wait_ms` when there is nothing yet.
    Read {
        /// Where to start.
        from: NamedPosition,
        /// How long to wait for a message at the tail (0: answer at once).
        wait_ms: u32,
        /// Bytes one answer carries at most (always at least one message).
        max_bytes: u32,
        /// The reader presented a token for this stream (or the API token).
        authorized: bool,
    },
}

/// Where a read starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NamedPosition {
    /// The oldest message kept (`-1`).
    Start,
    /// The tail (`now`).
    Now,
    /// After `position` messages of generation `generation`.
    At {
        /// The stream's generation the offset was minted under.
        generation: u64,
        /// Messages before it.
        position: u64,
    },
}

/// Where a stream stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamStanding {
    /// Its generation (offsets carry it).
    pub generation: u64,
    /// Messages appended so far (the tail position).
    pub tail: u64,
    /// Closed: no more appends.
    pub closed: bool,
    /// Its settings.
    pub settings: StreamSettings,
}

/// The answer to a [`NamedStreamRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NamedStreamAnswer {
    /// `PUT` made the stream (`created`) or found it with the same settings.
    Created {
        /// New.
        created: bool,
        /// Where it stands.
        standing: StreamStanding,
    },
    /// `POST` appended or closed.
    Appended {
        /// Where it stands after.
        standing: StreamStanding,
        /// An idempotent producer's retry of an append already made: nothing was added.
        duplicate: Option<u64>,
    },
    /// A channel publish appended and delivered.
    Published {
        /// Where the stream stands after the append.
        standing: StreamStanding,
        /// Sessions that took the message.
        sessions: u64,
        /// Nodes where at least one session took it.
        nodes: Vec<crate::NodeId>,
        /// Nodes holding subscribers that did not answer in time.
        unreachable: Vec<crate::NodeId>,
    },
    /// `DELETE` done.
    Deleted,
    /// `HEAD`.
    Head(StreamStanding),
    /// Messages read (possibly none).
    Chunk {
        /// The messages, oldest first.
        messages: Vec<Vec<u8>>,
        /// The position after the last one.
        next: u64,
        /// Nothing more was there.
        up_to_date: bool,
        /// Where the stream stands.
        standing: StreamStanding,
    },
    /// The operation is refused; what an HTTP client is told.
    Refused(StreamRefusal),
    /// This node does not hold that generation of the stream (it was deleted, expired, or
    /// the node restarted); the directory knows more.
    NotHere,
}

/// Why an operation is refused, with the detail its HTTP answer carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamRefusal {
    /// 404.
    NotFound,
    /// 409: the stream exists with other settings.
    SettingsDiffer,
    /// 409: the content type does not match the stream's.
    ContentTypeMismatch,
    /// 409: `Stream-Seq` not above the last one.
    SeqConflict,
    /// 409: the stream is closed (its tail for `Stream-Next-Offset`).
    Closed {
        /// Its tail.
        standing: StreamStanding,
    },
    /// 410: the position is before what is kept (retention, or an earlier generation).
    Gone,
    /// 400: the position is after the tail.
    Ahead,
    /// 401/403: no read token for a stream that is not public.
    Unauthorized,
    /// 403: an idempotent producer's epoch is older than the stream's.
    StaleEpoch {
        /// The producer's current epoch.
        current: u64,
    },
    /// 409: an idempotent producer skipped sequence numbers.
    SequenceGap {
        /// What the stream expected.
        expected: u64,
        /// What it got.
        received: u64,
    },
    /// 400: a new producer epoch must start at sequence 0.
    EpochMustStartAtZero,
    /// 507: the node's stream storage is full, or 413: the stream's.
    Full {
        /// What limit.
        reason: String,
    },
}
