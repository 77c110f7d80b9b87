//! Session streams read through any node: a client's HTTP request (long-poll, SSE, catch-up)
//! may land on any pod, and the node that holds the session answers it over
//! `.stream.<raft_id>`. A read may be held by the owner until a message arrives, so these
//! requests have their own subject and a large concurrency bound: a held read is a future
//! waiting on a channel, and must never take a slot that control requests need.

use std::sync::Arc;
use std::time::Duration;

use oort_common::cluster::{StreamAnswer, StreamRequest, SubjectKind};
use oort_common::wire;

use super::bus::RejectReason;
use super::bus::RequestError;
use super::core::Core;
use crate::RouterError;
use crate::request::LocalSessions;

/// Reads held at once for other nodes' clients; beyond this, requests wait in NATS's buffer.
const CONCURRENT_READS: usize = 16_384;

/// Answers stream requests addressed to this node until the router stops.
pub(crate) async fn serve(
    core: &Arc<Core>,
    sessions: Arc<dyn LocalSessions>,
) -> Result<(), async_nats::SubscribeError> {
    let inbox = core
        .bus
        .subscribe(
            core.bus.subjects().stream(core.raft_id),
            SubjectKind::Stream,
        )
        .await?;
    let served = core.clone();
    inbox.serve_concurrently(core.stop.clone(), CONCURRENT_READS, move |message| {
        let core = served.clone();
        let sessions = sessions.clone();
        async move {
            let Some(reply_to) = message.reply else {
                return;
            };
            let request = match wire::decode::<StreamRequest>(&message.body) {
                Ok(request) => request,
                Err(err) => {
                    core.bus
                        .reject(SubjectKind::Stream, RejectReason::Malformed, &err);
                    return;
                }
            };
            let answer = sessions.stream(request).await;
            core.bus.answer(reply_to, &wire::encode(&answer)).await;
        }
    });
    Ok(())
}

/// Sends `request` to the node with raft id `owner`; the owner may hold a read for `wait`.
pub(crate) async fn call(
    core: &Core,
    owner: u64,
    request: &StreamRequest,
    wait: Duration,
) -> Result<StreamAnswer, RouterError> {
    let bus = &core.bus;
    let timeout = wait + core.config.route_timeout.0;
    let answer = bus
        .request(
            bus.subjects().stream(owner),
            &wire::encode(request),
            timeout,
        )
        .await
        .map_err(|err| match err {
            RequestError::NoResponders => {
                RouterError::Unavailable("the session's node does not answer".into())
            }
            other => RouterError::Unavailable(other.to_string()),
        })?;
    wire::decode(&answer).map_err(|err| {
        bus.reject(SubjectKind::Reply, RejectReason::Malformed, &err);
        RouterError::Unavailable(err.to_string())
    })
}
