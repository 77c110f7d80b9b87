//! The backend API as a NATS service (the Gilmour way: "call a service, not a server").
//!
//! Every node subscribes to `oort.<cluster>.api.*` in one queue group, so NATS hands each
//! request to one node, any of them. The request's body is what the HTTP API takes, the reply
//! what it answers, with the HTTP status in the `Oort-Status` header; the gateway serves both
//! surfaces with the same handlers. These subjects carry plain JSON, not the cluster's sealed
//! envelope: NATS permissions decide who may call them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_nats::HeaderMap;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use super::core::Core;
use crate::RouterError;

/// API requests served at once per node; beyond, NATS buffers them (and hands them to other
/// members of the queue group as they ask for more).
const CONCURRENT_REQUESTS: usize = 256;

/// The header a reply's HTTP status travels in.
pub const STATUS_HEADER: &str = "Oort-Status";

/// The future an [`ApiService`] answers with.
pub type ApiAnswer = Pin<Box<dyn Future<Output = (u16, Bytes)> + Send>>;

/// What serves an API operation: the gateway's HTTP handlers, called in process.
pub trait ApiService: Send + Sync + 'static {
    /// Runs `operation` (the subject's last token, e.g. `send`) on `body`; answers the status
    /// and body the HTTP API would. `request_id` comes from the request's `Oort-Request-Id`
    /// header, if any.
    fn call(&self, operation: String, request_id: Option<String>, body: Bytes) -> ApiAnswer;
}

/// Serves the API subjects until the router stops.
pub(crate) async fn serve(
    core: &Arc<Core>,
    service: Arc<dyn ApiService>,
) -> Result<(), RouterError> {
    let subjects = core.bus.subjects();
    let mut requests = core
        .bus
        .plain()
        .queue_subscribe(subjects.api(), subjects.api_group())
        .await
        .map_err(|err| RouterError::Unavailable(format!("cannot serve the NATS API: {err}")))?;
    let core = core.clone();
    let permits = Arc::new(Semaphore::new(CONCURRENT_REQUESTS));
    tokio::spawn(async move {
        let stop = core.stop.clone();
        loop {
            let message = tokio::select! {
                message = requests.next() => message,
                () = stop.cancelled() => None,
            };
            let Some(message) = message else { return };
            let Some(reply) = message.reply.clone() else {
                debug!(subject = %message.subject, "an API request without a reply subject");
                continue;
            };
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let operation = message
                .subject
                .rsplit('.')
                .next()
                .unwrap_or_default()
                .to_owned();
            let request_id = message
                .headers
                .as_ref()
                .and_then(|h| h.get(oort_common::cluster::REQUEST_ID_HEADER))
                .map(|v| v.as_str().to_owned());
            let answer = service.call(operation, request_id, message.payload);
            let nats = core.bus.plain().clone();
            tokio::spawn(async move {
                let (status, body) = answer.await;
                let mut headers = HeaderMap::new();
                headers.insert(STATUS_HEADER, status.to_string().as_str());
                if let Err(err) = nats.publish_with_headers(reply, headers, body).await {
                    warn!(error = %err, "cannot answer an API request over NATS");
                }
                drop(permit);
            });
        }
    });
    Ok(())
}
