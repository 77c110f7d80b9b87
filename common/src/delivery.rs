//! What a delivery asks for and what became of it, per session.

use serde::{Deserialize, Serialize};

/// The outcome of delivering one payload to one session.
///
/// `Ok` means the owning node put the payload on the session's outbound queue; it is never
/// answered for any other reason.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Queued for the client.
    Ok,
    /// No connected session has this key.
    NotFound,
    /// The session's outbound queue is full (a slow client); nothing was queued.
    QueueFull,
    /// The session is closing and accepts nothing more.
    Closed,
    /// The owning node could not be reached: the message was not delivered (cluster mode).
    OwnerUnreachable,
    /// The owning node did not answer in time: whether it queued the message is unknown, so a
    /// retry may deliver it twice (cluster mode).
    OwnerTimeout,
    /// Not attempted: strict mode found unknown sessions in the same request.
    Skipped,
    /// The session exists but has no connection right now (an `oort.v1` session between its
    /// client's connections): the message is kept and delivered when the client resumes.
    /// Appended last: the backbone encodes statuses by position.
    Buffered,
    /// A subscribe that would take the session past `channels.max_per_session`; the session's
    /// channels are unchanged. Appended last: the backbone encodes statuses by position.
    ChannelLimit,
    /// The session's client cannot do what was asked: a request (`/v1/request`) to a session
    /// that does not speak `oort.v1` over WebSocket. Appended last.
    Unsupported,
}

impl DeliveryStatus {
    /// All statuses, in a stable order (for counters and documentation).
    pub const ALL: [Self; 10] = [
        Self::Ok,
        Self::NotFound,
        Self::QueueFull,
        Self::Closed,
        Self::OwnerUnreachable,
        Self::OwnerTimeout,
        Self::Skipped,
        Self::Buffered,
        Self::ChannelLimit,
        Self::Unsupported,
    ];

    /// The status as it appears in JSON and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::NotFound => "not_found",
            Self::QueueFull => "queue_full",
            Self::Closed => "closed",
            Self::OwnerUnreachable => "owner_unreachable",
            Self::OwnerTimeout => "owner_timeout",
            Self::Skipped => "skipped",
            Self::Buffered => "buffered",
            Self::ChannelLimit => "channel_limit",
            Self::Unsupported => "unsupported",
        }
    }

    /// Whether the message will reach the client (as far as this node can promise).
    pub fn is_success(self) -> bool {
        matches!(self, Self::Ok | Self::Buffered)
    }

    /// The `error` text of kuiperbelt's `errors` list, or `None` for success.
    ///
    /// The first two are kuiperbelt's own strings, which backends match to prune dead sessions.
    pub fn kuiperbelt_error(self) -> Option<&'static str> {
        match self {
            Self::Ok | Self::Buffered => None,
            Self::NotFound => Some("kuiperbelt: session is not found"),
            Self::Closed => Some("kuiperbelt: session is closed"),
            Self::QueueFull => Some("kuiperbelt: session queue is full"),
            Self::OwnerUnreachable => Some("kuiperbelt: session owner is unreachable"),
            Self::OwnerTimeout => Some("kuiperbelt: session owner did not answer in time"),
            Self::Skipped => Some("kuiperbelt: not sent because of strict broadcast"),
            Self::ChannelLimit => Some("kuiperbelt: the session is in too many channels"),
            Self::Unsupported => Some("kuiperbelt: the session's client cannot do this"),
        }
    }
}

/// Whether a delivery is an ordinary message or a session's last word.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum DeliveryMode {
    /// Queue the payload.
    Send,
    /// Queue the payload as the final frame (unless `send_payload` is false), then close with
    /// this code and reason.
    Close {
        /// The WebSocket close code (1000 for kuiperbelt's `/close`).
        code: u16,
        /// The close reason (at most 123 bytes on the wire).
        reason: String,
        /// kuiperbelt's `/close` always sends its body, even an empty one; `/v1/close` sends a
        /// final message only when it has one.
        send_payload: bool,
    },
    /// Queue the payload as a request (`/v1/request`): an `oort.v1` request frame carrying
    /// `id`, which the client's reply names. Appended last: variants are encoded by position.
    Request {
        /// The correlation id: the waiting node's reply prefix, a dot, and random hex.
        id: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_serialize_as_their_names() {
        for status in DeliveryStatus::ALL {
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
            assert_eq!(
                serde_json::from_str::<DeliveryStatus>(&json).unwrap(),
                status
            );
        }
    }

    #[test]
    fn only_ok_has_no_kuiperbelt_error() {
        for status in DeliveryStatus::ALL {
            assert_eq!(status.kuiperbelt_error().is_none(), status.is_success());
        }
    }
}
