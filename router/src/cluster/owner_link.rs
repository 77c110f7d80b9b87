//! Deliveries bound for one owner node share NATS requests.
//!
//! Each owner has a link: a task with one request in flight at a time. Deliveries that arrive
//! while it is out wait, and then all go together in the next request. Under light load every
//! delivery goes alone and at once; under heavy load one request carries everything that
//! arrived during a round trip, so the fixed cost of a NATS message (the publish, the server's
//! hop, the reply, a wake-up on both nodes) is paid once per batch rather than once per send.
//! One request at a time also keeps deliveries to one owner in the order they were made.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::{Client, RequestErrorKind};
use oort_common::cluster::{Subjects, encode_records, raft_id};
use oort_common::{DeliveryStatus, NodeId, wire};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// Deliveries in one request at most, and their bytes at most (NATS refuses messages above its
/// `max_payload`, 1 MiB by default; one larger delivery still goes, alone).
const MAX_BATCH: usize = 256;
const MAX_BATCH_BYTES: usize = 256 * 1024;

/// A link with nothing to do for this long ends; the next delivery starts a new one.
const IDLE_LINK: Duration = Duration::from_secs(60);

/// The links to every owner this node has sent to lately.
pub(super) struct OwnerLinks {
    shared: Arc<Shared>,
}

struct Shared {
    links: Mutex<HashMap<NodeId, Link>>,
    next_generation: AtomicU64,
    nats: Client,
    subjects: Subjects,
    timeout: Duration,
    /// Deliveries forwarded, and the requests that carried them.
    counters: (metrics::Counter, metrics::Counter),
    stop: CancellationToken,
}

#[derive(Clone)]
struct Link {
    generation: u64,
    queue: mpsc::UnboundedSender<Pending>,
}

/// One delivery waiting for its link.
struct Pending {
    /// A framed `DeliverHeader` and its payload.
    record: Vec<u8>,
    targets: usize,
    answer: oneshot::Sender<Vec<DeliveryStatus>>,
}

impl OwnerLinks {
    pub(super) fn new(
        nats: Client,
        subjects: Subjects,
        timeout: Duration,
        counters: (metrics::Counter, metrics::Counter),
        stop: CancellationToken,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                links: Mutex::new(HashMap::new()),
                next_generation: AtomicU64::new(0),
                nats,
                subjects,
                timeout,
                counters,
                stop,
            }),
        }
    }

    /// Hands one framed delivery of `targets` keys to the link to `node`, at once (deliveries
    /// to one owner go out in the order of these calls). The answer: its statuses in target
    /// order, or a closed channel when the owner did not answer (gone, timed out, or an
    /// unreadable answer).
    pub(super) fn send(
        &self,
        node: &NodeId,
        record: Vec<u8>,
        targets: usize,
    ) -> oneshot::Receiver<Vec<DeliveryStatus>> {
        let (answer, answered) = oneshot::channel();
        let mut pending = Pending {
            record,
            targets,
            answer,
        };
        // A link that just ended (idle) refuses the delivery; a fresh one takes it.
        for _ in 0..2 {
            let link = self.shared.link(node);
            match link.queue.send(pending) {
                Ok(()) => break,
                Err(mpsc::error::SendError(refused)) => {
                    self.shared.forget(node, link.generation);
                    pending = refused;
                }
            }
        }
        answered
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, Link>> {
        // Every update is a single insert or remove: a poisoned map is still consistent.
        self.links
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The link to `node`, started if there is none.
    fn link(self: &Arc<Self>, node: &NodeId) -> Link {
        let mut links = self.lock();
        if let Some(link) = links.get(node) {
            return link.clone();
        }
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let (queue, deliveries) = mpsc::unbounded_channel();
        let link = Link { generation, queue };
        links.insert(node.clone(), link.clone());
        tokio::spawn(self.clone().run(node.clone(), generation, deliveries));
        link
    }

    /// Removes the link of `generation` (not a newer one that replaced it).
    fn forget(&self, node: &NodeId, generation: u64) {
        let mut links = self.lock();
        if links.get(node).is_some_and(|l| l.generation == generation) {
            links.remove(node);
        }
    }

    async fn run(
        self: Arc<Self>,
        node: NodeId,
        generation: u64,
        mut deliveries: mpsc::UnboundedReceiver<Pending>,
    ) {
        let subject = self.subjects.deliver(raft_id(&node));
        loop {
            let first = tokio::select! {
                first = tokio::time::timeout(IDLE_LINK, deliveries.recv()) => first,
                () = self.stop.cancelled() => return,
            };
            let first = match first {
                Ok(Some(first)) => first,
                Ok(None) => return,
                Err(_idle) => {
                    // New deliveries start a new link; late ones sent here are refused and go
                    // there too; whatever is queued already is still served below, and then
                    // `recv` ends the loop.
                    self.forget(&node, generation);
                    deliveries.close();
                    continue;
                }
            };
            let mut bytes = first.record.len();
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
                match deliveries.try_recv() {
                    Ok(next) => {
                        bytes += next.record.len();
                        batch.push(next);
                    }
                    Err(_) => break,
                }
            }
            self.send(&node, &subject, batch).await;
        }
    }

    /// One request carrying `batch`; each delivery gets its own statuses, or none if the owner
    /// did not answer.
    async fn send(&self, node: &NodeId, subject: &str, batch: Vec<Pending>) {
        self.counters.0.increment(batch.len() as u64);
        self.counters.1.increment(1);
        let records: Vec<&[u8]> = batch.iter().map(|p| p.record.as_slice()).collect();
        let request = async_nats::Request::new()
            .payload(encode_records(&records).into())
            .timeout(Some(self.timeout));
        let answers = match self.nats.send_request(subject.to_owned(), request).await {
            Ok(reply) => wire::decode::<Vec<Vec<DeliveryStatus>>>(&reply.payload)
                .ok()
                .filter(|answers| answers.len() == batch.len()),
            Err(err) => {
                // No responders means the node is gone: answered at once, not after a timeout.
                let reason = if err.kind() == RequestErrorKind::NoResponders {
                    "no responders"
                } else {
                    "timed out or failed"
                };
                debug!(%node, reason, deliveries = batch.len(), "owner unreachable");
                None
            }
        };
        let Some(answers) = answers else {
            // Dropping the senders tells every waiting delivery the owner did not answer.
            return;
        };
        for (pending, statuses) in batch.into_iter().zip(answers) {
            if statuses.len() == pending.targets {
                let _ = pending.answer.send(statuses);
            }
        }
    }
}
