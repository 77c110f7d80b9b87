//! A session's replay buffer: the messages sent to it that the client has not acknowledged,
//! bounded by count, bytes and age.
//!
//! A bound never drops silently: the highest sequence number dropped unacknowledged is kept,
//! and a client resuming from below it is told continuity is lost. This is the only place that
//! holds unacknowledged messages, so a store that outlives the process (JetStream) replaces
//! this type and nothing else.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use axum::extract::ws::Message;

/// The bounds of every session's buffer (`session.buffer_*`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct BufferLimits {
    pub max_messages: usize,
    pub max_bytes: usize,
    pub max_age: Duration,
}

/// One message kept for replay, already framed with its sequence number.
#[derive(Clone, Debug)]
pub(crate) struct Kept {
    pub seq: u64,
    pub frame: Message,
    pub size: usize,
    pub at: Instant,
}

/// Why a resume cannot continue the stream.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Gap {
    /// Messages after the client's position were dropped by a bound.
    Dropped { through: u64 },
    /// The client claims a message that was never sent.
    Ahead { last: u64 },
}

#[derive(Debug)]
pub(crate) struct ReplayBuffer {
    kept: VecDeque<Kept>,
    bytes: usize,
    /// The sequence number the next message gets (the first is 1).
    next_seq: u64,
    /// The highest sequence number dropped before it was acknowledged (0: none).
    dropped_through: u64,
    /// The highest sequence number the client acknowledged.
    acked: u64,
}

impl ReplayBuffer {
    pub(crate) fn new() -> Self {
        Self::starting_at(1, 0)
    }

    /// A buffer that continues a stream taken over from another node.
    pub(crate) fn starting_at(next_seq: u64, dropped_through: u64) -> Self {
        Self {
            kept: VecDeque::new(),
            bytes: 0,
            next_seq,
            dropped_through,
            acked: 0,
        }
    }

    /// The sequence number the next message gets.
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The last sequence number given out (0: none yet).
    pub(crate) fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    pub(crate) fn dropped_through(&self) -> u64 {
        self.dropped_through
    }

    /// The highest sequence number the client acknowledged (0: none).
    pub(crate) fn acked(&self) -> u64 {
        self.acked
    }

    /// Messages and bytes kept.
    pub(crate) fn depth(&self) -> (usize, usize) {
        (self.kept.len(), self.bytes)
    }

    /// Keeps message `next_seq` (already framed), then applies the bounds.
    pub(crate) fn keep(&mut self, frame: Message, size: usize, limits: &BufferLimits) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.kept.push_back(Kept {
            seq,
            frame,
            size,
            at: Instant::now(),
        });
        self.bytes += size;
        self.enforce(limits);
    }

    /// Drops the oldest messages past a bound. The newest message is always kept, however
    /// large, so a resume can still deliver what was sent last.
    pub(crate) fn enforce(&mut self, limits: &BufferLimits) {
        let now = Instant::now();
        while let Some(oldest) = self.kept.front() {
            let over = self.kept.len() > limits.max_messages
                || (self.kept.len() > 1 && self.bytes > limits.max_bytes)
                || now.duration_since(oldest.at) > limits.max_age;
            if !over {
                break;
            }
            self.drop_oldest();
        }
    }

    fn drop_oldest(&mut self) {
        if let Some(oldest) = self.kept.pop_front() {
            self.bytes -= oldest.size;
            if oldest.seq > self.acked {
                self.dropped_through = self.dropped_through.max(oldest.seq);
            }
        }
    }

    /// The client has every message up to `seq`. `Err` if it acknowledges one never sent.
    pub(crate) fn ack(&mut self, seq: u64) -> Result<(), Gap> {
        if seq > self.last_seq() {
            return Err(Gap::Ahead {
                last: self.last_seq(),
            });
        }
        self.acked = self.acked.max(seq);
        while self.kept.front().is_some_and(|kept| kept.seq <= seq) {
            if let Some(kept) = self.kept.pop_front() {
                self.bytes -= kept.size;
            }
        }
        // An idle session should cost what a new one does, not what its busiest moment did.
        if self.kept.is_empty() && self.kept.capacity() > 8 {
            self.kept = VecDeque::new();
        }
        Ok(())
    }

    /// What a client that has every message up to `seen` must be sent, in order; a gap if
    /// that is no longer possible.
    pub(crate) fn replay_after(
        &mut self,
        seen: u64,
        limits: &BufferLimits,
    ) -> Result<Vec<Kept>, Gap> {
        self.ack(seen)?;
        self.enforce(limits);
        if seen < self.dropped_through {
            return Err(Gap::Dropped {
                through: self.dropped_through,
            });
        }
        Ok(self.kept.iter().cloned().collect())
    }

    /// Everything kept after `seen`, for the node taking the session over.
    pub(crate) fn kept_after(&self, seen: u64) -> impl Iterator<Item = &Kept> {
        self.kept.iter().filter(move |kept| kept.seq > seen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: BufferLimits = BufferLimits {
        max_messages: 3,
        max_bytes: 100,
        max_age: Duration::from_secs(60),
    };

    fn filled(count: u64) -> ReplayBuffer {
        let mut buffer = ReplayBuffer::new();
        for seq in 1..=count {
            buffer.keep(Message::Text(seq.to_string().into()), 10, &LIMITS);
        }
        buffer
    }

    fn seqs(kept: &[Kept]) -> Vec<u64> {
        kept.iter().map(|kept| kept.seq).collect()
    }

    #[test]
    fn replays_what_the_client_has_not_seen() {
        let mut buffer = filled(3);
        assert_eq!(seqs(&buffer.replay_after(1, &LIMITS).unwrap()), [2, 3]);
        assert_eq!(
            buffer.depth(),
            (2, 20),
            "the client's position acknowledges"
        );
        assert_eq!(
            seqs(&buffer.replay_after(3, &LIMITS).unwrap()),
            [] as [u64; 0]
        );
    }

    #[test]
    fn a_bound_that_drops_unacknowledged_messages_makes_a_visible_gap() {
        let mut buffer = filled(5);
        assert_eq!(buffer.depth().0, 3);
        assert_eq!(buffer.dropped_through(), 2);
        assert_eq!(
            buffer.replay_after(1, &LIMITS).map(|k| seqs(&k)),
            Err(Gap::Dropped { through: 2 })
        );
        assert_eq!(seqs(&buffer.replay_after(2, &LIMITS).unwrap()), [3, 4, 5]);
    }

    #[test]
    fn acknowledged_messages_leave_no_gap_when_dropped() {
        let mut buffer = filled(2);
        buffer.ack(2).unwrap();
        for _ in 0..5 {
            buffer.keep(Message::Text("x".into()), 10, &LIMITS);
        }
        assert_eq!(buffer.dropped_through(), 4);
        assert!(buffer.replay_after(4, &LIMITS).is_ok());
    }

    #[test]
    fn bytes_and_age_bound_too() {
        let mut buffer = ReplayBuffer::new();
        buffer.keep(Message::Text("a".into()), 60, &LIMITS);
        buffer.keep(Message::Text("b".into()), 60, &LIMITS);
        assert_eq!(buffer.depth(), (1, 60));
        assert_eq!(buffer.dropped_through(), 1);
        let ageless = BufferLimits {
            max_age: Duration::ZERO,
            ..LIMITS
        };
        std::thread::sleep(Duration::from_millis(2));
        buffer.enforce(&ageless);
        assert_eq!(buffer.depth(), (0, 0));
        assert_eq!(buffer.dropped_through(), 2);
    }

    #[test]
    fn an_ack_beyond_the_last_message_is_refused() {
        let mut buffer = filled(2);
        assert_eq!(buffer.ack(3), Err(Gap::Ahead { last: 2 }));
        assert_eq!(buffer.ack(2), Ok(()));
    }
}
