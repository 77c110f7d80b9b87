//! Deliveries bound for one owner node share NATS requests.
//!
//! Each owner has a link: a task with one request in flight at a time. Deliveries that arrive
//! while it is out wait, and then all go together in the next request. Under light load every
//! delivery goes alone and at once; under heavy load one request carries everything that
//! arrived during a round trip, so the fixed cost of a NATS message (the publish, the server's
//! hop, the reply, a wake-up on both nodes) is paid once per batch rather than once per send.
//! One request at a time also keeps deliveries to one owner in the order they were made.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oort_common::cluster::{SubjectKind, encode_records, raft_id};
use oort_common::{DeliveryStatus, NodeId, wire};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::OwnerHistograms;
use super::bus::{Bus, RejectReason, RequestError};
use crate::trace;

/// Deliveries in one request at most, and their bytes at most (NATS refuses messages above its
/// `max_payload`, 1 MiB by default; one larger delivery still goes, alone, and fails alone).
const MAX_BATCH: usize = 256;
const MAX_BATCH_BYTES: usize = 256 * 1024;

/// A link with nothing to do for this long ends; the next delivery starts a new one.
const IDLE_LINK: Duration = Duration::from_secs(60);

/// Bytes waiting for one owner at most. Beyond, a delivery is refused at once
/// (`owner_unreachable`: it was not sent) rather than queued without bound behind a slow owner.
const MAX_QUEUED_BYTES: usize = 64 << 20;

/// What became of one delivery handed to a link: its statuses in target order, or, when the
/// owner gave none, the status every target gets (`owner_unreachable` when the delivery was not
/// made, `owner_timeout` when it may have been).
pub(super) type LinkAnswer = Result<Vec<DeliveryStatus>, DeliveryStatus>;

/// The links to every owner this node has sent to lately.
pub(super) struct OwnerLinks {
    shared: Arc<Shared>,
}

struct Shared {
    links: Mutex<HashMap<NodeId, Link>>,
    next_generation: AtomicU64,
    bus: Bus,
    timeout: Duration,
    /// Deliveries forwarded, and the requests that carried them.
    counters: (metrics::Counter, metrics::Counter),
    round_trip: OwnerHistograms,
    stop: CancellationToken,
}

#[derive(Clone)]
struct Link {
    generation: u64,
    queue: mpsc::UnboundedSender<Pending>,
    /// Bytes of the deliveries in `queue` (bounded by [`MAX_QUEUED_BYTES`]).
    queued_bytes: Arc<AtomicUsize>,
}

/// One delivery waiting for its link.
struct Pending {
    /// A framed `DeliverHeader` and its payload.
    record: Vec<u8>,
    targets: usize,
    /// The `traceparent` of the span waiting for this delivery, when its send is traced.
    trace: Option<String>,
    answer: oneshot::Sender<LinkAnswer>,
}

impl OwnerLinks {
    pub(super) fn new(
        bus: Bus,
        timeout: Duration,
        counters: (metrics::Counter, metrics::Counter),
        round_trip: OwnerHistograms,
        stop: CancellationToken,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                links: Mutex::new(HashMap::new()),
                next_generation: AtomicU64::new(0),
                bus,
                timeout,
                counters,
                round_trip,
                stop,
            }),
        }
    }

    /// Hands one framed delivery of `targets` keys to the link to `node`, at once (deliveries
    /// to one owner go out in the order of these calls). The answer comes on the returned
    /// channel; a closed channel means the delivery was not made. `trace` is the
    /// `traceparent` the owner continues the send's trace from.
    pub(super) fn send(
        &self,
        node: &NodeId,
        record: Vec<u8>,
        targets: usize,
        trace: Option<String>,
    ) -> oneshot::Receiver<LinkAnswer> {
        let (answer, answered) = oneshot::channel();
        let size = record.len();
        let mut pending = Pending {
            record,
            targets,
            trace,
            answer,
        };
        // A link that just ended (idle) refuses the delivery; a fresh one takes it.
        for _ in 0..2 {
            let link = self.shared.link(node);
            if !admit(&link.queued_bytes, size) {
                debug!(%node, "too much waiting for this owner; delivery refused");
                let _ = pending.answer.send(Err(DeliveryStatus::OwnerUnreachable));
                break;
            }
            match link.queue.send(pending) {
                Ok(()) => break,
                Err(mpsc::error::SendError(refused)) => {
                    link.queued_bytes.fetch_sub(size, Ordering::AcqRel);
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
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let link = Link {
            generation,
            queue,
            queued_bytes: queued_bytes.clone(),
        };
        links.insert(node.clone(), link.clone());
        tokio::spawn(
            self.clone()
                .run(node.clone(), generation, deliveries, queued_bytes),
        );
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
        queued_bytes: Arc<AtomicUsize>,
    ) {
        let subject = self.bus.subjects().deliver(raft_id(&node));
        let round_trip = self.round_trip.for_owner(node.as_str());
        // A delivery that did not fit in the previous request leads the next.
        let mut carried: Option<Pending> = None;
        loop {
            if let Some(first) = carried.take() {
                let batch = fill(first, &mut deliveries, &mut carried);
                release(&queued_bytes, &batch);
                self.send(&node, &subject, batch, &round_trip).await;
                continue;
            }
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
            let batch = fill(first, &mut deliveries, &mut carried);
            release(&queued_bytes, &batch);
            self.send(&node, &subject, batch, &round_trip).await;
        }
    }

    /// One request carrying `batch`; each delivery gets its own statuses, or the status that
    /// says why the owner gave none.
    async fn send(
        &self,
        node: &NodeId,
        subject: &str,
        batch: Vec<Pending>,
        round_trip: &metrics::Histogram,
    ) {
        self.counters.0.increment(batch.len() as u64);
        self.counters.1.increment(1);
        let records: Vec<&[u8]> = batch.iter().map(|p| p.record.as_slice()).collect();
        let headers = trace::batch_headers(
            batch
                .iter()
                .enumerate()
                .filter_map(|(index, p)| Some((index, p.trace.as_deref()?))),
        );
        let started = Instant::now();
        let answer = self
            .bus
            .request_with_headers(
                subject.to_owned(),
                headers,
                &encode_records(&records),
                self.timeout,
            )
            .await;
        if answer.is_ok() {
            round_trip.record(started.elapsed().as_secs_f64());
        }
        let answers = match answer {
            Ok(reply) => match wire::decode::<Vec<Vec<DeliveryStatus>>>(&reply) {
                Ok(answers) if answers.len() == batch.len() => Ok(answers),
                Ok(_) => Err("an answer with the wrong number of deliveries".to_owned()),
                Err(err) => Err(err.to_string()),
            }
            .map_err(|reason| {
                self.bus
                    .reject(SubjectKind::Reply, RejectReason::Malformed, &reason);
                // The owner answered, so it did act on the deliveries: what it did is unknown.
                DeliveryStatus::OwnerTimeout
            }),
            Err(err) => {
                debug!(%node, reason = %err, deliveries = batch.len(), "owner did not answer");
                Err(match err {
                    // Nothing was delivered: nobody listens (the node is gone), the request
                    // was never sent, or NATS refused it as too large.
                    RequestError::NoResponders | RequestError::TooLarge => {
                        DeliveryStatus::OwnerUnreachable
                    }
                    // The owner may have delivered and its answer got lost or came too late.
                    RequestError::TimedOut | RequestError::Failed(_) => {
                        DeliveryStatus::OwnerTimeout
                    }
                })
            }
        };
        match answers {
            Ok(answers) => {
                for (pending, statuses) in batch.into_iter().zip(answers) {
                    let answer = if statuses.len() == pending.targets {
                        Ok(statuses)
                    } else {
                        Err(DeliveryStatus::OwnerTimeout)
                    };
                    let _ = pending.answer.send(answer);
                }
            }
            Err(status) => {
                for pending in batch {
                    let _ = pending.answer.send(Err(status));
                }
            }
        }
    }
}

/// Counts `size` more bytes waiting for an owner, unless that would pass [`MAX_QUEUED_BYTES`]
/// (a delivery larger than the bound is still taken when nothing else waits, and goes alone).
fn admit(queued_bytes: &AtomicUsize, size: usize) -> bool {
    let queued = queued_bytes.fetch_add(size, Ordering::AcqRel);
    if queued > 0 && queued + size > MAX_QUEUED_BYTES {
        queued_bytes.fetch_sub(size, Ordering::AcqRel);
        return false;
    }
    true
}

/// The bytes of a batch taken off the queue no longer count against its bound.
fn release(queued_bytes: &AtomicUsize, batch: &[Pending]) {
    let bytes: usize = batch.iter().map(|p| p.record.len()).sum();
    queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
}

/// `first` and whatever else is waiting, within [`MAX_BATCH`] and [`MAX_BATCH_BYTES`] (so
/// a request stays below NATS's payload limit); a delivery that would not fit is carried.
fn fill(
    first: Pending,
    deliveries: &mut mpsc::UnboundedReceiver<Pending>,
    carried: &mut Option<Pending>,
) -> Vec<Pending> {
    let mut bytes = first.record.len();
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        let Ok(next) = deliveries.try_recv() else {
            break;
        };
        if bytes + next.record.len() > MAX_BATCH_BYTES {
            *carried = Some(next);
            break;
        }
        bytes += next.record.len();
        batch.push(next);
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(bytes: usize) -> Pending {
        let (answer, _) = oneshot::channel();
        Pending {
            record: vec![0; bytes],
            targets: 1,
            trace: None,
            answer,
        }
    }

    fn queue_of(sizes: &[usize]) -> mpsc::UnboundedReceiver<Pending> {
        let (queue, deliveries) = mpsc::unbounded_channel();
        for size in sizes {
            queue.send(pending(*size)).unwrap();
        }
        deliveries
    }

    #[test]
    fn what_waits_for_one_owner_is_bounded_in_bytes() {
        let queued = AtomicUsize::new(0);
        assert!(admit(&queued, MAX_QUEUED_BYTES - 10));
        assert!(admit(&queued, 10));
        assert!(!admit(&queued, 1), "the bound is reached");
        assert_eq!(queued.load(Ordering::Relaxed), MAX_QUEUED_BYTES);
        queued.fetch_sub(MAX_QUEUED_BYTES, Ordering::Relaxed);
        assert!(
            admit(&queued, MAX_QUEUED_BYTES * 2),
            "one large delivery alone"
        );
        assert!(!admit(&queued, 1));
    }

    #[test]
    fn a_request_stays_within_its_bytes_and_the_delivery_that_does_not_fit_leads_the_next() {
        let mut deliveries = queue_of(&[100 << 10, 100 << 10, 100 << 10, 10]);
        let mut carried = None;
        let first = deliveries.try_recv().unwrap();
        let batch = fill(first, &mut deliveries, &mut carried);
        assert_eq!(
            batch.len(),
            2,
            "a third 100 KiB delivery would pass 256 KiB"
        );
        let next = carried.take().expect("the third was carried");
        assert_eq!(next.record.len(), 100 << 10);
        let batch = fill(next, &mut deliveries, &mut carried);
        assert_eq!(batch.len(), 2);
        assert!(carried.is_none() && deliveries.try_recv().is_err());
    }

    #[test]
    fn a_request_carries_at_most_max_batch_deliveries_and_a_big_one_goes_alone() {
        let mut deliveries = queue_of(&[1; 300]);
        let mut carried = None;
        let first = deliveries.try_recv().unwrap();
        assert_eq!(fill(first, &mut deliveries, &mut carried).len(), MAX_BATCH);
        let first = deliveries.try_recv().unwrap();
        assert_eq!(
            fill(first, &mut deliveries, &mut carried).len(),
            300 - MAX_BATCH
        );

        let mut deliveries = queue_of(&[1, 1]);
        let batch = fill(pending(2 << 20), &mut deliveries, &mut carried);
        assert_eq!(
            batch.len(),
            1,
            "nothing joins a delivery already past the bound"
        );
        assert!(carried.is_some());
    }
}
