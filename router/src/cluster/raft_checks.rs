//! Checks on raft RPCs before openraft sees them. openraft trusts its network: a request that
//! no correct peer sends can make it allocate without bound or stop its core. Such a request
//! is dropped (and counted) here; the sender, if it is a real peer, retries.

use oort_common::cluster::raft::RaftRequest;
use oort_common::wire::MAX_SNAPSHOT_BYTES;

use super::core::Core;

/// Why a request is refused, for the log.
pub(crate) type Refusal = String;

/// Accepts a request that a correct peer could have sent.
pub(crate) fn check(request: &RaftRequest, _core: &Core) -> Result<(), Refusal> {
    match request {
        RaftRequest::Append(_) | RaftRequest::Vote(_) => Ok(()),
        RaftRequest::Snapshot(rpc) => {
            // A chunk is written at its offset into an in-memory buffer: an offset of 2^40
            // would have it grow to a terabyte.
            let end = usize::try_from(rpc.offset)
                .ok()
                .and_then(|offset| offset.checked_add(rpc.data.len()));
            match end {
                Some(end) if end <= MAX_SNAPSHOT_BYTES => Ok(()),
                _ => Err(format!(
                    "snapshot chunk at offset {} would pass {MAX_SNAPSHOT_BYTES} bytes",
                    rpc.offset
                )),
            }
        }
    }
}
