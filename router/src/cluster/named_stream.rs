//! Named Durable Streams reached through any node: a client's `PUT`, `POST`, `GET` or
//! `DELETE` may land on any pod, and the node that owns the stream (in the directory) applies
//! it over `.dstream.<raft_id>`. Like session-stream reads, a read may be held by the owner
//! until an append arrives, so these requests have their own subject and a large concurrency
//! bound, never taking a slot that control requests need.

use std::sync::Arc;
use std::time::Duration;

use oort_common::cluster::{NamedStreamAnswer, NamedStreamRequest, SubjectKind};
use oort_common::wire;

use super::bus::{RejectReason, RequestError};
use super::core::Core;
use crate::RouterError;
use crate::request::LocalSessions;

/// Operations held at once for other nodes' clients (mostly long-polls and SSE readers
/// waiting at the tail); beyond this, requests wait in NATS's buffer.
const CONCURRENT_OPERATIONS: usize = 16_384;

/// Answers named-stream operations addressed to this node until the router stops.
pub(crate) async fn serve(
    core: &Arc<Core>,
    sessions: Arc<dyn LocalSessions>,
) -> Result<(), async_nats::SubscribeError> {
    let inbox = core
        .bus
        .subscribe(
            core.bus.subjects().named_stream(core.raft_id),
            SubjectKind::NamedStream,
        )
        .await?;
    let served = core.clone();
    inbox.serve_concurrently(core.stop.clone(), CONCURRENT_OPERATIONS, move |message| {
        let core = served.clone();
        let sessions = sessions.clone();
        async move {
            let Some(reply_to) = message.reply else {
                return;
            };
            let request = match wire::decode::<NamedStreamRequest>(&message.body) {
                Ok(request) => request,
                Err(err) => {
                    core.bus
                        .reject(SubjectKind::NamedStream, RejectReason::Malformed, &err);
                    return;
                }
            };
            let answer = sessions.named_stream(request).await;
            core.bus.answer(reply_to, &wire::encode(&answer)).await;
        }
    });
    Ok(())
}

/// Sends `request` to the node with raft id `owner`; the owner may hold a read for `wait`.
pub(crate) async fn call(
    core: &Core,
    owner: u64,
    request: &NamedStreamRequest,
    wait: Duration,
) -> Result<NamedStreamAnswer, RouterError> {
    let bus = &core.bus;
    let timeout = wait + core.config.route_timeout.0;
    let answer = bus
        .request(
            bus.subjects().named_stream(owner),
            &wire::encode(request),
            timeout,
        )
        .await
        .map_err(|err| match err {
            RequestError::NoResponders => {
                RouterError::Unavailable("the stream's node does not answer".into())
            }
            other => RouterError::Unavailable(other.to_string()),
        })?;
    wire::decode(&answer).map_err(|err| {
        bus.reject(SubjectKind::Reply, RejectReason::Malformed, &err);
        RouterError::Unavailable(err.to_string())
    })
}
