//! Clients' replies to requests (`/v1/request`), carried to the node that waits for them.
//!
//! A request's correlation id starts with the waiting node's raft id (hex) and a dot, so the
//! node whose client answers knows where to send the reply, even when the client moved to
//! another node meanwhile. The waiting node checks the reply came from the session it asked.

use std::sync::Arc;

use async_nats::HeaderMap;
use oort_common::cluster::{ClientReplyHeader, SubjectKind, decode_framed, encode_framed};
use oort_common::{Payload, SessionKey};
use tracing::debug;

use super::bus::RejectReason;
use super::core::Core;
use crate::request::LocalSessions;

/// This node's prefix for correlation ids.
pub(crate) fn prefix(core: &Core) -> String {
    format!("{:x}", core.raft_id)
}

/// Sends a reply to the node waiting for it (this one included).
pub(crate) async fn forward(
    core: &Core,
    sessions: &dyn LocalSessions,
    id: &str,
    session: &SessionKey,
    payload: Payload,
) {
    let Some(target) = id
        .split_once('.')
        .and_then(|(node, _)| u64::from_str_radix(node, 16).ok())
    else {
        debug!(id, "a reply to a request id no node made");
        sessions.client_reply(id, session, payload);
        return;
    };
    if target == core.raft_id {
        sessions.client_reply(id, session, payload);
        return;
    }
    let header = ClientReplyHeader {
        id: id.to_owned(),
        session: session.clone(),
        kind: payload.kind(),
    };
    let bus = &core.bus;
    let subject = bus.subjects().client_replies(target);
    if let Err(err) = bus
        .publish_with_headers(
            subject,
            HeaderMap::new(),
            &encode_framed(&header, payload.data()),
        )
        .await
    {
        debug!(error = %err, "a client's reply was not forwarded");
    }
}

/// Hands replies for this node's requests to the gateway.
pub(crate) async fn serve(
    core: &Arc<Core>,
    sessions: Arc<dyn LocalSessions>,
) -> Result<(), async_nats::SubscribeError> {
    let mut inbox = core
        .bus
        .subscribe(
            core.bus.subjects().client_replies(core.raft_id),
            SubjectKind::ClientReply,
        )
        .await?;
    let core = core.clone();
    tokio::spawn(async move {
        let stop = core.stop.clone();
        while let Some(message) = inbox.next(&stop).await {
            let reject = |reason, detail: &dyn std::fmt::Display| {
                core.bus.reject(SubjectKind::ClientReply, reason, detail);
            };
            match decode_framed::<ClientReplyHeader>(&message.body) {
                Ok((header, data)) => match Payload::new(header.kind, data) {
                    Ok(payload) => sessions.client_reply(&header.id, &header.session, payload),
                    Err(err) => reject(RejectReason::Invalid, &err),
                },
                Err(err) => reject(RejectReason::Malformed, &err),
            }
        }
    });
    Ok(())
}
