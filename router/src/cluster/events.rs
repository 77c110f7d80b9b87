//! Client events for backend workers on NATS (`oort.<cluster>.events.<kind>`), the alternative
//! to HTTP callbacks: each event is a NATS request that one worker of a queue group answers.
//! Like the `.api.*` subjects, these carry plain JSON (workers cannot seal the cluster's
//! envelope); NATS permissions decide who may serve them.

use std::time::Duration;

use async_nats::{Client, RequestErrorKind};
use bytes::Bytes;
use oort_common::cluster::Subjects;

/// Why an event got no answer.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// No worker subscribes to the subject: nobody received it.
    #[error("nobody received it: no worker listens on {0}")]
    NoWorker(String),
    /// No answer within the callback timeout.
    #[error("no worker answered on {0} in time")]
    Timeout(String),
    /// The request could not be sent.
    #[error("the event could not be sent on {subject}: {reason}")]
    Failed {
        /// The subject.
        subject: String,
        /// What went wrong.
        reason: String,
    },
}

/// Sends client events to backend workers. Cheap to clone.
#[derive(Clone)]
pub struct EventChannel {
    nats: Client,
    subjects: Subjects,
}

impl EventChannel {
    pub(crate) fn new(nats: Client, subjects: Subjects) -> Self {
        Self { nats, subjects }
    }

    /// Publishes event `kind` without waiting for anyone (presence reports).
    pub async fn publish(&self, kind: &str, body: Bytes) -> Result<(), EventError> {
        let subject = self.subjects.events(kind);
        self.nats
            .publish(subject.clone(), body)
            .await
            .map_err(|err| EventError::Failed {
                subject,
                reason: err.to_string(),
            })
    }

    /// Sends event `kind` (`connect`, `message`, `close`) and waits up to `timeout` for a
    /// worker's answer.
    pub async fn request(
        &self,
        kind: &str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, EventError> {
        let subject = self.subjects.events(kind);
        let request = async_nats::Request::new()
            .payload(body)
            .timeout(Some(timeout));
        match self.nats.send_request(subject.clone(), request).await {
            Ok(answer) => Ok(answer.payload),
            Err(err) => Err(match err.kind() {
                RequestErrorKind::NoResponders => EventError::NoWorker(subject),
                RequestErrorKind::TimedOut => EventError::Timeout(subject),
                _ => EventError::Failed {
                    subject,
                    reason: err.to_string(),
                },
            }),
        }
    }

    /// Subscribes to event `kind` as a consumer (the event feed's `feed`): alone, every event;
    /// in queue `group`, each event goes to one member of the group. The stream ends when the
    /// connection to NATS is closed for good.
    pub async fn watch(
        &self,
        kind: &str,
        group: Option<String>,
    ) -> Result<futures_util::stream::BoxStream<'static, Bytes>, EventError> {
        use futures_util::StreamExt;
        let subject = self.subjects.events(kind);
        let subscribed = match group {
            Some(group) => self.nats.queue_subscribe(subject.clone(), group).await,
            None => self.nats.subscribe(subject.clone()).await,
        };
        let subscriber = subscribed.map_err(|err| EventError::Failed {
            subject: subject.clone(),
            reason: err.to_string(),
        })?;
        // Once the server has the subscription (a flush is a round trip), every event
        // published after this returns reaches the consumer.
        self.nats.flush().await.map_err(|err| EventError::Failed {
            subject,
            reason: err.to_string(),
        })?;
        Ok(subscriber.map(|message| message.payload).boxed())
    }

    /// The queue group name of a feed consumers' `group` (names are checked by the caller).
    pub fn queue_group(&self, group: &str) -> String {
        format!("{}.{group}", self.subjects.events("watchers"))
    }
}
