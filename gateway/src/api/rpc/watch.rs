//! `WatchEvents`: a consumer's queue of the event feed as a server stream.

use std::sync::atomic::Ordering;

use buffa::Message as _;
use connectrpc::{ConnectError, ErrorCode, ServiceStream};
use futures_util::StreamExt;
use oort_common::rpc::{Event, WatchEventsResponse};

use super::convert::coded;
use crate::error_code::ErrorCode as OortCode;
use crate::feed::{QUEUE, Watch, WatchError};

pub(super) fn refusal(err: WatchError) -> ConnectError {
    let (code, oort) = match err {
        WatchError::Off => (ErrorCode::FailedPrecondition, OortCode::FeedOff),
        WatchError::BadGroup(_) => (ErrorCode::InvalidArgument, OortCode::InvalidRequest),
        WatchError::Unavailable(_) => (ErrorCode::Unavailable, OortCode::Unavailable),
    };
    coded(code, oort, err.to_string())
}

/// The consumer's events, in the order its queue got them; when the consumer fell behind
/// and was dropped, a `resource_exhausted` error ends the stream after what was queued.
pub(super) fn events(watch: Watch) -> ServiceStream<WatchEventsResponse> {
    let Watch { events, overflowed } = watch;
    let stream = futures_util::stream::unfold(Some(events), move |events| {
        let overflowed = overflowed.clone();
        async move {
            let mut events = events?;
            loop {
                let Some(bytes) = events.recv().await else {
                    if overflowed.load(Ordering::Acquire) {
                        let error = coded(
                            ErrorCode::ResourceExhausted,
                            OortCode::FeedOverflow,
                            format!(
                                "this consumer fell {QUEUE} events behind and was dropped; \
                                 watch again (events in between are not kept)"
                            ),
                        );
                        return Some((Err(error), None));
                    }
                    let error = coded(
                        ErrorCode::Unavailable,
                        OortCode::Unavailable,
                        "the event feed ended",
                    );
                    return Some((Err(error), None));
                };
                // Events from other nodes crossed NATS: one that does not decode is not ours.
                let Ok(event) = Event::decode_from_slice(&bytes) else {
                    tracing::debug!("an event on the feed did not decode; skipped");
                    continue;
                };
                let response = WatchEventsResponse {
                    event: event.into(),
                    ..Default::default()
                };
                return Some((Ok(response), Some(events)));
            }
        }
    });
    stream.boxed()
}
