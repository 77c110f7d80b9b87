//! A session's stream served on the node that holds it: for an HTTP request that arrived here,
//! or at another node and travelled over NATS (the same code either way).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Message;
use oort_common::FrameKind;
use oort_common::cluster::{KeptMessage, StreamAnswer, StreamOp, StreamPosition, StreamRequest};

use super::{CloseCause, SessionRegistry};
use crate::durable::{Durable, Kept, Read, StreamChunk, StreamFrom, StreamRefusal};

impl SessionRegistry {
    /// Serves `request` on the session it names, if this node holds that very session.
    pub(crate) async fn serve_stream(&self, request: StreamRequest) -> StreamAnswer {
        let Some(durable) = self
            .durable(request.key.as_str())
            .filter(|durable| durable.id == request.id)
        else {
            return StreamAnswer::Over;
        };
        if self.is_draining() && !matches!(request.op, StreamOp::End) {
            return StreamAnswer::Draining;
        }
        match request.op {
            StreamOp::Head => match durable.tail() {
                Ok((last, closed)) => StreamAnswer::Tail { last, closed },
                Err(refusal) => refused(refusal),
            },
            StreamOp::End => {
                if durable.end(Some(super::CloseCommand::client_ended()))
                    && self.remove_durable(&durable)
                {
                    self.report_ended(durable, CloseCause::ClientClosed, true);
                }
                StreamAnswer::Done
            }
            StreamOp::Read {
                from,
                fresh,
                wait_ms,
                max_bytes,
            } => {
                let wait = Duration::from_millis(u64::from(wait_ms));
                let from = match from {
                    StreamPosition::Start => StreamFrom::Start,
                    StreamPosition::Now => StreamFrom::Now,
                    StreamPosition::After(seq) => StreamFrom::After(seq),
                };
                match self
                    .read(&durable, from, fresh, wait, max_bytes as usize)
                    .await
                {
                    Ok(chunk) => {
                        if chunk.closed && durable.finish_closed() && self.remove_durable(&durable)
                        {
                            // The reader saw the end: the backend's close is complete.
                            self.report_ended(durable, CloseCause::ClosedByBackend, true);
                        }
                        chunk_answer(chunk)
                    }
                    Err(refusal) => refused(refusal),
                }
            }
        }
    }

    /// Reads, waiting up to `wait` for a message when there is none.
    async fn read(
        &self,
        durable: &Arc<Durable>,
        from: StreamFrom,
        fresh: bool,
        wait: Duration,
        max_bytes: usize,
    ) -> Result<StreamChunk, StreamRefusal> {
        let deadline = tokio::time::Instant::now() + wait;
        let (woken, at) = match durable.read(from, fresh, !wait.is_zero(), max_bytes)? {
            Read::Chunk(chunk) => return Ok(chunk),
            Read::Wait { woken, at } => (woken, at),
        };
        match tokio::time::timeout_at(deadline, woken).await {
            // A message arrived.
            Ok(Ok(())) => match durable.read(StreamFrom::After(at), false, false, max_bytes)? {
                Read::Chunk(chunk) => Ok(chunk),
                Read::Wait { .. } => Ok(StreamChunk::empty(at)),
            },
            // The backend's close (this reader reports it), or another transport took the
            // session (a newer reader, a WebSocket, another node): this reader is done.
            Ok(Err(_)) => match durable.tail() {
                Ok((_, true)) => {
                    match durable.read(StreamFrom::After(at), false, false, max_bytes)? {
                        Read::Chunk(chunk) => Ok(chunk),
                        Read::Wait { .. } => Ok(StreamChunk::empty(at)),
                    }
                }
                // Released by the drain: the client reads again, through another node.
                Ok(_) if self.is_draining() => Ok(StreamChunk::empty(at)),
                Ok(_) => Err(StreamRefusal::Displaced),
                Err(refusal) => Err(refusal),
            },
            Err(_elapsed) => {
                durable.stop_waiting();
                Ok(StreamChunk::empty(at))
            }
        }
    }
}

fn refused(refusal: StreamRefusal) -> StreamAnswer {
    match refusal {
        StreamRefusal::Gone => StreamAnswer::Gone,
        StreamRefusal::Ahead { last } => StreamAnswer::Ahead { last },
        StreamRefusal::Over => StreamAnswer::Over,
        StreamRefusal::Moving => StreamAnswer::Moving,
        StreamRefusal::Displaced => StreamAnswer::Displaced,
    }
}

fn chunk_answer(chunk: StreamChunk) -> StreamAnswer {
    StreamAnswer::Chunk {
        messages: chunk
            .messages
            .into_iter()
            .filter_map(kept_message)
            .collect(),
        next: chunk.next,
        up_to_date: chunk.up_to_date,
        closed: chunk.closed,
    }
}

/// A kept `oort.v1` frame as it travels (and as the HTTP transports render it).
fn kept_message(kept: Kept) -> Option<KeptMessage> {
    let (kind, frame) = match kept.frame {
        Message::Text(text) => (FrameKind::Text, text.as_bytes().to_vec()),
        Message::Binary(data) => (FrameKind::Binary, data.to_vec()),
        _ => return None,
    };
    Some(KeptMessage {
        seq: kept.seq,
        kind,
        frame,
    })
}
