//! Request bodies on the backend API's HTTP/1.1 connections that the answer did not read to
//! the end: a body over `limits.max_send_body` refused with 413 (or `resource_exhausted`), or
//! one sent with a wrong token. HTTP/1.1 cannot go on after an unread body, so the answer says
//! `Connection: close` (a client reusing the connection would otherwise write its next request
//! into a closing socket), and the rest of the body is read and dropped, within a bound, so the
//! client reads the answer rather than a reset from unread data in the socket.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};

/// Most bytes read and dropped after the answer.
const DRAIN_BYTES: usize = 16 << 20;
/// Longest time spent reading them.
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// A request body that records whether it was read to its end.
pub(crate) struct TrackedBody {
    inner: Option<Incoming>,
    finished: Arc<AtomicBool>,
}

impl TrackedBody {
    /// The body, and the flag that tells whether it was read to its end.
    pub(crate) fn new(inner: Incoming) -> (Self, Arc<AtomicBool>) {
        let finished = Arc::new(AtomicBool::new(inner.is_end_stream()));
        let body = Self {
            inner: Some(inner),
            finished: finished.clone(),
        };
        (body, finished)
    }
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) {
            self.finished.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Incoming::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Incoming::size_hint)
    }
}

impl Drop for TrackedBody {
    fn drop(&mut self) {
        if self.finished.load(Ordering::Acquire) {
            return;
        }
        let Some(rest) = self.inner.take() else {
            return;
        };
        if rest.is_end_stream() {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(drain(rest));
        }
    }
}

/// Reads and drops what is left of a body, within [`DRAIN_BYTES`] and [`DRAIN_TIME`].
async fn drain(mut rest: Incoming) {
    let reading = async {
        let mut left = DRAIN_BYTES;
        while let Some(Ok(frame)) = rest.frame().await {
            let read = frame.data_ref().map_or(0, Bytes::len);
            left = left.saturating_sub(read);
            if left == 0 {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, reading).await;
}
