//! Requests that the node holding something answers, and may hold until it has news: reads of
//! HTTP-read session streams on `.stream.<raft_id>` (a client's HTTP request may land on any
//! pod, and the node that holds the session answers it), and operations on named Durable
//! Streams on `.dstream.<raft_id>` (the stream's owner applies them). A read may be held by the
//! owner until a message arrives, so these requests have their own subjects and a large
//! concurrency bound: a held read is a future waiting on a channel, and must never take a slot
//! that control requests need.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use oort_common::cluster::{
    NamedStreamAnswer, NamedStreamRequest, StreamAnswer, StreamRequest, SubjectKind,
};
use oort_common::wire;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::bus::RejectReason;
use super::bus::RequestError;
use super::core::Core;
use crate::RouterError;
use crate::request::LocalSessions;

/// Requests held at once for other nodes' clients, per subject; beyond this, requests wait
/// in NATS's buffer.
const CONCURRENT_READS: usize = 16_384;

/// Answers session-stream reads and named-stream operations addressed to this node until the
/// router stops.
pub(crate) async fn serve(
    core: &Arc<Core>,
    sessions: Arc<dyn LocalSessions>,
) -> Result<(), async_nats::SubscribeError> {
    let held = sessions.clone();
    serve_held(core, SubjectKind::Stream, move |request: StreamRequest| {
        let sessions = held.clone();
        async move { sessions.stream(request).await }
    })
    .await?;
    serve_held(
        core,
        SubjectKind::NamedStream,
        move |request: NamedStreamRequest| {
            let sessions = sessions.clone();
            async move { sessions.named_stream(request).await }
        },
    )
    .await
}

/// Subscribes to this node's subject of `kind` and answers each request with `handle`.
async fn serve_held<Request, Answer, Handle, Answering>(
    core: &Arc<Core>,
    kind: SubjectKind,
    handle: Handle,
) -> Result<(), async_nats::SubscribeError>
where
    Request: DeserializeOwned + Send + 'static,
    Answer: Serialize + Send,
    Handle: Fn(Request) -> Answering + Clone + Send + Sync + 'static,
    Answering: Future<Output = Answer> + Send,
{
    let subject = subject(core, kind, core.raft_id);
    let inbox = core.bus.subscribe(subject, kind).await?;
    let served = core.clone();
    inbox.serve_concurrently(core.stop.clone(), CONCURRENT_READS, move |message| {
        let core = served.clone();
        let handle = handle.clone();
        async move {
            let Some(reply_to) = message.reply else {
                return;
            };
            let request = match wire::decode::<Request>(&message.body) {
                Ok(request) => request,
                Err(err) => {
                    core.bus.reject(kind, RejectReason::Malformed, &err);
                    return;
                }
            };
            let answer = handle(request).await;
            core.bus.answer(reply_to, &wire::encode(&answer)).await;
        }
    });
    Ok(())
}

fn subject(core: &Core, kind: SubjectKind, raft_id: u64) -> String {
    match kind {
        SubjectKind::NamedStream => core.bus.subjects().named_stream(raft_id),
        _ => core.bus.subjects().stream(raft_id),
    }
}

/// Sends a session-stream `request` to the node with raft id `owner`; the owner may hold a
/// read for `wait`.
pub(crate) async fn call(
    core: &Core,
    owner: u64,
    request: &StreamRequest,
    wait: Duration,
) -> Result<StreamAnswer, RouterError> {
    ask(
        core,
        SubjectKind::Stream,
        owner,
        request,
        wait,
        "the session's node",
    )
    .await
}

/// Sends a named-stream `request` to its owner, the node with raft id `owner`; the owner may
/// hold a read for `wait`.
pub(crate) async fn call_named(
    core: &Core,
    owner: u64,
    request: &NamedStreamRequest,
    wait: Duration,
) -> Result<NamedStreamAnswer, RouterError> {
    ask(
        core,
        SubjectKind::NamedStream,
        owner,
        request,
        wait,
        "the stream's node",
    )
    .await
}

async fn ask<Request: Serialize, Answer: DeserializeOwned>(
    core: &Core,
    kind: SubjectKind,
    owner: u64,
    request: &Request,
    wait: Duration,
    who: &str,
) -> Result<Answer, RouterError> {
    let bus = &core.bus;
    let timeout = wait + core.config.route_timeout.0;
    let answer = bus
        .request(subject(core, kind, owner), &wire::encode(request), timeout)
        .await
        .map_err(|err| match err {
            RequestError::NoResponders => {
                RouterError::Unavailable(format!("{who} does not answer"))
            }
            other => RouterError::Unavailable(other.to_string()),
        })?;
    wire::decode(&answer).map_err(|err| {
        bus.reject(SubjectKind::Reply, RejectReason::Malformed, &err);
        RouterError::Unavailable(err.to_string())
    })
}
