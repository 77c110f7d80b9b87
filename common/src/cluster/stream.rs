//! Reads of a session's Durable Stream on the node that holds it, on
//! `oort.<cluster>.stream.<raft_id>`: a client's HTTP request may arrive at any node, and the
//! node that holds the session answers it (docs/router.md, "HTTP transports: sticky-free").

use serde::{Deserialize, Serialize};

use super::KeptMessage;
use crate::SessionKey;

/// What a node asks of the holder of a session's stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamRequest {
    /// The session.
    pub key: SessionKey,
    /// Its id (the epoch it was created under), as its token names it: never another session
    /// that reused the key.
    pub id: u64,
    /// What to do.
    pub op: StreamOp,
}

/// One operation on a session's stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamOp {
    /// Read what follows a position.
    Read {
        /// Where the read starts.
        from: StreamPosition,
        /// A client's new request: its position acknowledges every message up to it, and it
        /// takes the session from any other transport. A read that continues a response (an
        /// SSE stream's next events) is not fresh, and takes nothing from anyone.
        fresh: bool,
        /// How long to wait for a message when there is none (0: answer at once).
        wait_ms: u32,
        /// Bytes of messages one answer carries at most (always at least one message).
        max_bytes: u32,
    },
    /// The tail and whether the stream is closed (`HEAD`).
    Head,
    /// The client ends its session.
    End,
}

/// Where a read starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamPosition {
    /// The oldest message kept.
    Start,
    /// The tail.
    Now,
    /// After message N.
    After(u64),
}

/// The answer to a [`StreamRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamAnswer {
    /// Messages read (possibly none) and where the stream stands after them.
    Chunk {
        /// The messages, as `oort.v1` frames, oldest first.
        messages: Vec<KeptMessage>,
        /// The position after the last one.
        next: u64,
        /// Nothing more was there.
        up_to_date: bool,
        /// The backend closed the session and this reaches its end.
        closed: bool,
    },
    /// The last message's position and whether the backend closed the stream.
    Tail {
        /// The last sequence number.
        last: u64,
        /// Closed by the backend.
        closed: bool,
    },
    /// Done (the session ended).
    Done,
    /// Messages after the position are no longer kept.
    Gone,
    /// The position is past the last message.
    Ahead {
        /// The last sequence number.
        last: u64,
    },
    /// The session is not (or no longer) held by the node asked.
    Over,
    /// The session is moving to another node; ask again.
    Moving,
    /// The node holding the session is shutting down: the asking node takes the session over
    /// (as a WebSocket resume there would) and serves it itself.
    Draining,
    /// Another transport has the session (a newer reader, a WebSocket): this reader is done.
    Displaced,
}
