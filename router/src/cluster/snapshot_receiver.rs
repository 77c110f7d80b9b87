//! Receiving a snapshot sent in chunks. openraft's own receiver writes each chunk at the offset
//! the sender names into a buffer (an offset of 2^40 asks for a terabyte), and hands the data to
//! the state machine only at the end, where data that does not decode stops raft for good. So
//! the chunks are put together here instead: each must continue the stream exactly where the
//! last one ended, the total is bounded, and the whole is decoded and compared with its
//! metadata before openraft installs it (`Raft::install_full_snapshot`).

use std::io::Cursor;

use oort_common::cluster::SubjectKind;
use oort_common::cluster::raft::{RaftError, RaftId, TypeConfig};
use oort_common::wire::MAX_SNAPSHOT_BYTES;
use openraft::error::{InstallSnapshotError, SnapshotMismatch};
use openraft::raft::{InstallSnapshotRequest, InstallSnapshotResponse};
use openraft::{Snapshot, SnapshotSegmentId};
use tokio::sync::Mutex;

use super::bus::RejectReason;
use super::core::Core;
use super::store::check_snapshot;

/// The snapshot being received, if any. One at a time: a new one (offset 0) replaces it.
#[derive(Default)]
pub(crate) struct SnapshotReceiver {
    stream: Mutex<Option<Stream>>,
}

struct Stream {
    id: String,
    data: Vec<u8>,
}

type Answer = Result<InstallSnapshotResponse<RaftId>, RaftError<InstallSnapshotError>>;

impl SnapshotReceiver {
    /// Takes one chunk (already checked by `raft_checks`).
    pub(crate) async fn receive(
        &self,
        core: &Core,
        chunk: InstallSnapshotRequest<TypeConfig>,
    ) -> Answer {
        let my_vote = core
            .raft
            .with_raft_state(|state| *state.vote_ref())
            .await
            .map_err(RaftError::Fatal)?;
        if chunk.vote < my_vote {
            // From a leader of the past: tell it the vote it has to beat.
            return Ok(InstallSnapshotResponse { vote: my_vote });
        }
        let mut stream = self.stream.lock().await;
        if chunk.offset == 0 {
            *stream = Some(Stream {
                id: chunk.meta.snapshot_id.clone(),
                data: Vec::new(),
            });
        }
        let current = match stream.as_mut() {
            Some(current)
                if current.id == chunk.meta.snapshot_id
                    && current.data.len() as u64 == chunk.offset
                    && current.data.len() + chunk.data.len() <= MAX_SNAPSHOT_BYTES =>
            {
                current
            }
            other => {
                let expect = other.as_ref().map_or_else(
                    || SnapshotSegmentId {
                        id: String::new(),
                        offset: 0,
                    },
                    |current| SnapshotSegmentId {
                        id: current.id.clone(),
                        offset: current.data.len() as u64,
                    },
                );
                // The sender starts the snapshot over from offset 0.
                return Err(mismatch(expect, &chunk));
            }
        };
        current.data.extend_from_slice(&chunk.data);
        if !chunk.done {
            return Ok(InstallSnapshotResponse { vote: my_vote });
        }
        let data = stream.take().map(|s| s.data).unwrap_or_default();
        drop(stream);
        if let Err(reason) = check_snapshot(&chunk.meta, &data) {
            core.bus
                .reject(SubjectKind::Raft, RejectReason::Invalid, &reason);
            let expect = SnapshotSegmentId {
                id: chunk.meta.snapshot_id.clone(),
                offset: 0,
            };
            return Err(mismatch(expect, &chunk));
        }
        let snapshot = Snapshot {
            meta: chunk.meta,
            snapshot: Box::new(Cursor::new(data)),
        };
        let installed = core
            .raft
            .install_full_snapshot(chunk.vote, snapshot)
            .await
            .map_err(RaftError::Fatal)?;
        Ok(InstallSnapshotResponse {
            vote: installed.vote,
        })
    }
}

fn mismatch(
    expect: SnapshotSegmentId,
    chunk: &InstallSnapshotRequest<TypeConfig>,
) -> RaftError<InstallSnapshotError> {
    RaftError::APIError(InstallSnapshotError::SnapshotMismatch(SnapshotMismatch {
        expect,
        got: SnapshotSegmentId {
            id: chunk.meta.snapshot_id.clone(),
            offset: chunk.offset,
        },
    }))
}
