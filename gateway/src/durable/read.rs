//! Reading a session as a Durable Stream: what an HTTP reader (catch-up, long-poll or SSE)
//! gets from the replay buffer, and how it waits for more.
//!
//! The stream's positions are the session's sequence numbers: "after message N" is one offset
//! whatever the transport, so a client can move between WebSocket and HTTP on one session.
//! A read at position N acknowledges every message up to N, as an `oort.v1` ack does; the buffer
//! is the stream's retention, so a position before what it still holds is gone (410).

use tokio::sync::oneshot;

use super::{Durable, Kept, Phase, State};
use crate::sessions::CloseCommand;

/// Where a read starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StreamFrom {
    /// The oldest message still kept (`-1`).
    Start,
    /// The tail: only what is sent from now on (`now`).
    Now,
    /// After message N (0: before the first).
    After(u64),
}

/// Messages read, and where the stream stands after them.
#[derive(Debug)]
pub(crate) struct StreamChunk {
    pub messages: Vec<Kept>,
    /// The position after the last message returned (the next read's start).
    pub next: u64,
    /// Nothing more was there when the chunk was taken.
    pub up_to_date: bool,
    /// The backend closed the session and this chunk reaches its end.
    pub closed: bool,
}

/// Why a read cannot be served.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum StreamRefusal {
    /// Messages after the position were dropped by a bound (410).
    Gone,
    /// The position is past the last message (400).
    Ahead { last: u64 },
    /// The session is over here (404).
    Over,
    /// It is being taken over by another node (a WebSocket resume there): read again there.
    Moving,
    /// Another transport has the session (a newer reader, or a WebSocket that resumed it): this
    /// reader is done (409).
    Displaced,
}

/// What a read found.
pub(crate) enum Read {
    Chunk(StreamChunk),
    /// Nothing after `at` yet: `woken` resolves when a message arrives, or fails when the
    /// session closes or a newer reader, a WebSocket or another node takes it.
    Wait {
        woken: oneshot::Receiver<()>,
        at: u64,
    },
}

impl StreamChunk {
    /// Nothing after `at`.
    pub(crate) fn empty(at: u64) -> Self {
        Self {
            messages: Vec::new(),
            next: at,
            up_to_date: true,
            closed: false,
        }
    }
}

impl Durable {
    /// Reads what is kept after `from`, at most `max_bytes` (but always one message when there
    /// is one). With `wait` and nothing to read, registers this reader as the one to wake.
    ///
    /// A `fresh` read is a client's new request: its position acknowledges everything up to
    /// it, and it takes the session from any other transport (an older reader is answered at
    /// once; a WebSocket is closed with 4001: the client moved here). A read that continues a
    /// response (the next events of an SSE stream) takes nothing from anyone: when another
    /// transport has the session, it is displaced.
    pub(crate) fn read(
        &self,
        from: StreamFrom,
        fresh: bool,
        wait: bool,
        max_bytes: usize,
    ) -> Result<Read, StreamRefusal> {
        let mut state = self.lock();
        match &state.phase {
            Phase::Ended | Phase::Departed => return Err(StreamRefusal::Over),
            Phase::Receiving { .. } => return Err(StreamRefusal::Moving),
            Phase::Attached(_) | Phase::Waiting { .. } if !fresh => {
                return Err(StreamRefusal::Displaced);
            }
            Phase::Attached(connection) => {
                connection.queue.close(CloseCommand::taken_over(), false);
                state.go_away();
            }
            Phase::Waiting { .. } => {
                // Dropping the older reader's wake answers it at once.
                state.go_away();
            }
            Phase::Away { .. } | Phase::Closed { .. } => {}
        }
        state.read_over_http = true;
        let after = position(&state, from)?;
        if fresh && after > 0 {
            // Cannot fail: `position` checked it is not past the last message.
            let _ = state.buffer.ack(after);
        }
        let closed = matches!(state.phase, Phase::Closed { .. });
        let mut bytes = 0;
        let messages: Vec<Kept> = state
            .buffer
            .kept_after(after)
            .take_while(|kept| {
                let first = bytes == 0;
                bytes += kept.size.max(1);
                first || bytes <= max_bytes
            })
            .cloned()
            .collect();
        if messages.is_empty() && wait && !closed {
            let (wake, woken) = oneshot::channel();
            state.phase = Phase::Waiting { wake };
            return Ok(Read::Wait { woken, at: after });
        }
        let next = messages.last().map_or(after, |kept| kept.seq);
        let up_to_date = next == state.buffer.last_seq();
        if !closed {
            state.go_away();
        }
        Ok(Read::Chunk(StreamChunk {
            messages,
            next,
            up_to_date,
            closed: closed && up_to_date,
        }))
    }

    /// The stream's tail and whether the backend closed it (for `HEAD`), without reading.
    pub(crate) fn tail(&self) -> Result<(u64, bool), StreamRefusal> {
        let state = self.lock();
        match state.phase {
            Phase::Ended | Phase::Departed => Err(StreamRefusal::Over),
            Phase::Closed { .. } => Ok((state.buffer.last_seq(), true)),
            _ => Ok((state.buffer.last_seq(), false)),
        }
    }

    /// A reader that stopped waiting (its time was up) lets the session linger, unless a newer
    /// reader waits meanwhile.
    pub(crate) fn stop_waiting(&self) {
        let mut state = self.lock();
        if let Phase::Waiting { wake } = &state.phase
            && wake.is_closed()
        {
            state.go_away();
        }
    }

    /// A waiting reader is answered at once (the node is shutting down).
    pub(crate) fn release_reader(&self) {
        let mut state = self.lock();
        if matches!(state.phase, Phase::Waiting { .. }) {
            state.go_away();
        }
    }

    /// The reader saw the end of a closed stream: the session is over. True if it was still
    /// going (the caller withdraws it).
    pub(crate) fn finish_closed(&self) -> bool {
        let mut state = self.lock();
        if matches!(state.phase, Phase::Closed { .. }) {
            state.phase = Phase::Ended;
            return true;
        }
        false
    }
}

/// The position a read starts after, checked against the buffer.
fn position(state: &State, from: StreamFrom) -> Result<u64, StreamRefusal> {
    let buffer = &state.buffer;
    let last = buffer.last_seq();
    match from {
        StreamFrom::Now => Ok(last),
        StreamFrom::Start => Ok(buffer
            .kept_after(0)
            .next()
            .map_or(last, |oldest| oldest.seq - 1)),
        StreamFrom::After(after) if after > last => Err(StreamRefusal::Ahead { last }),
        // Before what is kept: dropped by a bound, or acknowledged by an earlier read.
        StreamFrom::After(after) if after < buffer.dropped_through().max(buffer.acked()) => {
            Err(StreamRefusal::Gone)
        }
        StreamFrom::After(after) => Ok(after),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use oort_common::{Epoch, Payload, SessionKey};

    use super::*;
    use crate::durable::BufferLimits;
    use crate::sessions::{QueueLimits, SendRoute, Stamp};

    fn local() -> Stamp {
        Stamp::now(SendRoute::Local)
    }

    const LIMITS: BufferLimits = BufferLimits {
        max_messages: 3,
        max_bytes: 1 << 20,
        max_age: Duration::from_secs(60),
    };
    const QUEUE: QueueLimits = QueueLimits {
        max_messages: 8,
        max_bytes: 1 << 20,
        slow_consumer_timeout: Duration::from_secs(5),
    };

    fn session(first: Option<&str>) -> std::sync::Arc<Durable> {
        let first = first.map(Payload::text);
        Durable::start_detached(SessionKey::from("k"), Epoch(7), first.as_ref(), &LIMITS)
    }

    fn chunk(read: Result<Read, StreamRefusal>) -> StreamChunk {
        match read {
            Ok(Read::Chunk(chunk)) => chunk,
            Ok(Read::Wait { .. }) => panic!("expected a chunk, the read waits"),
            Err(refusal) => panic!("expected a chunk, got {refusal:?}"),
        }
    }

    fn seqs(chunk: &StreamChunk) -> Vec<u64> {
        chunk.messages.iter().map(|kept| kept.seq).collect()
    }

    #[test]
    fn the_first_message_is_the_connect_answer_and_positions_are_sequence_numbers() {
        let durable = session(Some("hello"));
        durable.push(&Payload::text("two"), &QUEUE, &LIMITS, local());
        let all = chunk(durable.read(StreamFrom::Start, true, false, 1 << 20));
        assert_eq!(
            (seqs(&all), all.next, all.up_to_date),
            (vec![1, 2], 2, true)
        );
        let rest = chunk(durable.read(StreamFrom::After(1), true, false, 1 << 20));
        assert_eq!(seqs(&rest), [2]);
        assert_eq!(
            durable
                .read(StreamFrom::After(0), true, false, 1 << 20)
                .err(),
            Some(StreamRefusal::Gone),
            "reading at 1 acknowledged message 1"
        );
        let none = chunk(durable.read(StreamFrom::Now, true, false, 1 << 20));
        assert_eq!((seqs(&none), none.next), (vec![], 2));
    }

    #[test]
    fn positions_past_the_tail_or_before_the_retention_are_refused() {
        let durable = session(None);
        assert_eq!(
            durable.read(StreamFrom::After(1), true, false, 1).err(),
            Some(StreamRefusal::Ahead { last: 0 })
        );
        for n in 0..5 {
            durable.push(&Payload::text(format!("m{n}")), &QUEUE, &LIMITS, local());
        }
        // Three kept (3, 4, 5): messages 1 and 2 were dropped unread.
        assert_eq!(
            durable.read(StreamFrom::After(1), true, false, 1).err(),
            Some(StreamRefusal::Gone)
        );
        let from_start = chunk(durable.read(StreamFrom::Start, false, false, 1));
        assert_eq!(
            seqs(&from_start),
            [3],
            "a small limit still returns one message"
        );
        assert!(!from_start.up_to_date);
    }

    #[tokio::test]
    async fn a_waiting_reader_is_woken_by_a_send_and_an_older_one_by_a_newer_reader() {
        let durable = session(None);
        let Ok(Read::Wait { woken: older, .. }) =
            durable.read(StreamFrom::After(0), true, true, 1024)
        else {
            panic!("nothing to read: the reader waits")
        };
        let Ok(Read::Wait { woken: newer, .. }) =
            durable.read(StreamFrom::After(0), true, true, 1024)
        else {
            panic!("still nothing")
        };
        assert!(older.await.is_err(), "the older reader is answered at once");
        let status = durable.push(&Payload::text("x"), &QUEUE, &LIMITS, local());
        assert_eq!(status, oort_common::DeliveryStatus::Ok);
        assert!(newer.await.is_ok());
        let got = chunk(durable.read(StreamFrom::After(0), true, true, 1024));
        assert_eq!(seqs(&got), [1]);
    }

    #[tokio::test]
    async fn the_rest_of_a_response_never_takes_the_session_from_a_newer_reader() {
        let durable = session(None);
        let Ok(Read::Wait { woken: newer, .. }) =
            durable.read(StreamFrom::After(0), true, true, 1024)
        else {
            panic!("waits")
        };
        assert_eq!(
            durable.read(StreamFrom::After(0), false, true, 1024).err(),
            Some(StreamRefusal::Displaced)
        );
        assert_eq!(
            durable.push(&Payload::text("x"), &QUEUE, &LIMITS, local()),
            oort_common::DeliveryStatus::Ok
        );
        assert!(newer.await.is_ok(), "the newer reader kept the session");
    }

    #[tokio::test]
    async fn a_backend_close_ends_the_stream_after_its_last_word() {
        let durable = session(None);
        let Ok(Read::Wait { woken, .. }) = durable.read(StreamFrom::After(0), true, true, 1024)
        else {
            panic!("waits")
        };
        let close = CloseCommand::new(1000, "bye", crate::sessions::CloseCause::ClosedByBackend);
        let (status, ended) = durable.close(Some(&Payload::text("last")), close, &LIMITS, local());
        assert_eq!((status, ended), (oort_common::DeliveryStatus::Ok, false));
        assert!(woken.await.is_err(), "the waiting reader is answered");
        let last = chunk(durable.read(StreamFrom::After(0), true, true, 1024));
        assert_eq!((seqs(&last), last.closed), (vec![1], true));
        assert_eq!(
            durable.push(&Payload::text("late"), &QUEUE, &LIMITS, local()),
            oort_common::DeliveryStatus::NotFound
        );
        assert!(durable.finish_closed());
        assert_eq!(
            durable.read(StreamFrom::After(1), true, true, 1024).err(),
            Some(StreamRefusal::Over)
        );
    }
}
