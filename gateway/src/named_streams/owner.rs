//! What the owner of a named stream does with an operation, whichever node the client's
//! request arrived at: everything is the store's, except a channel publish, which the owner
//! also delivers, under the stream's publish turn, so that its readers and the channel's
//! WebSocket subscribers see one order.

use std::sync::Arc;

use bytes::Bytes;
use oort_common::cluster::{NamedStreamAnswer, NamedStreamOp};
use oort_common::{FrameKind, Payload};

use crate::state::AppState;

/// Applies `op` to generation `generation` of `name`, held (or created) here.
pub(crate) async fn serve(
    state: &Arc<AppState>,
    name: &str,
    generation: u64,
    op: NamedStreamOp,
) -> NamedStreamAnswer {
    let NamedStreamOp::Publish {
        channel,
        text,
        payload,
        request_id,
    } = op
    else {
        return state.streams.apply(name, generation, op).await;
    };
    let kind = if text {
        FrameKind::Text
    } else {
        FrameKind::Binary
    };
    let Ok(delivered) = Payload::new(kind, Bytes::from(payload.clone())) else {
        return NamedStreamAnswer::Refused(oort_common::cluster::StreamRefusal::Full {
            reason: "a text publish must be UTF-8".into(),
        });
    };
    let Some(_turn) = state.streams.publish_turn(name).await else {
        return NamedStreamAnswer::NotHere;
    };
    let append = NamedStreamOp::Publish {
        channel: channel.clone(),
        text,
        payload,
        request_id: request_id.clone(),
    };
    let answer = state.streams.apply(name, generation, append).await;
    let NamedStreamAnswer::Appended { standing, .. } = answer else {
        return answer;
    };
    let outcome = state
        .router
        .publish(std::slice::from_ref(&channel), &delivered, &request_id)
        .await;
    state.metrics.count_publish(outcome.sessions);
    NamedStreamAnswer::Published {
        standing,
        sessions: outcome.sessions,
        nodes: outcome.nodes,
        unreachable: outcome.unreachable,
    }
}
