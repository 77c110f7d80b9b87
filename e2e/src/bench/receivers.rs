//! Client-side accounting: every opened client is read by a task that counts data frames and,
//! for frames stamped by [`stamp`], records how long the frame took from the moment it was
//! sent to the backend API until it arrived.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use super::clients::Client;

/// At most this many latency samples are kept (evenly thinned beyond that).
const MAX_SAMPLES: usize = 1_000_000;

/// An `oort.v1` reader acknowledges every this many messages...
const ACK_EVERY: u64 = 32;

/// ...and whatever it has not acknowledged once its client is quiet for this long.
const ACK_IDLE: Duration = Duration::from_millis(100);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// A payload of `size` bytes (at least 20) that starts with the send time.
pub fn stamp(size: usize) -> String {
    let micros = epoch().elapsed().as_micros();
    let mut text = format!("{micros:020}");
    text.extend(std::iter::repeat_n('x', size.saturating_sub(20)));
    text
}

/// The sequence number and payload of an `oort.v1` message: `{"seq":N,"data":"..."}` as
/// text (the stamp's digits need no escaping, so the payload's start is read as it is), or
/// the sequence number as 8 bytes big-endian and the payload as binary. Cheap: no JSON parse.
fn durable_message(message: &Message) -> Option<(u64, &[u8])> {
    match message {
        Message::Text(text) => {
            let rest = text.as_str().strip_prefix(r#"{"seq":"#)?;
            let (seq, data) = rest.split_once(',')?;
            let data = data.strip_prefix(r#""data":""#)?.strip_suffix(r#""}"#)?;
            Some((seq.parse().ok()?, data.as_bytes()))
        }
        Message::Binary(frame) => {
            let (seq, payload) = frame.split_first_chunk::<8>()?;
            Some((u64::from_be_bytes(*seq), payload))
        }
        _ => None,
    }
}

/// A cumulative acknowledgement of every message up to `seq`.
fn ack(seq: u64) -> Message {
    Message::text(format!(r#"{{"type":"ack","seq":{seq}}}"#))
}

fn latency_of(frame: &[u8]) -> Option<Duration> {
    let sent: u64 = std::str::from_utf8(frame.get(..20)?).ok()?.parse().ok()?;
    let now = u64::try_from(epoch().elapsed().as_micros()).ok()?;
    Some(Duration::from_micros(now.saturating_sub(sent)))
}

/// What one client's reader saw (its locks are never contended: one reader writes them).
#[derive(Default)]
struct ClientTally {
    latencies: Mutex<Vec<Duration>>,
    last_arrival: Mutex<Option<Instant>>,
}

/// What the readers saw.
#[derive(Default)]
pub struct Tally {
    /// Data frames received, all clients together.
    pub frames: AtomicU64,
    clients: Vec<ClientTally>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Tally {
    fn for_clients(count: usize) -> Self {
        Self {
            frames: AtomicU64::new(0),
            clients: (0..count).map(|_| ClientTally::default()).collect(),
        }
    }

    /// Counts a data frame that client `index` received, and times it if it is stamped.
    fn record(&self, index: usize, payload: &[u8]) {
        let arrived = Instant::now();
        self.frames.fetch_add(1, Ordering::Relaxed);
        let Some(mine) = self.clients.get(index) else {
            return;
        };
        *lock(&mine.last_arrival) = Some(arrived);
        if let Some(latency) = latency_of(payload) {
            let mut samples = lock(&mine.latencies);
            if samples.len() < MAX_SAMPLES {
                samples.push(latency);
            }
        }
    }

    /// Takes the latency samples collected so far (at most `MAX_SAMPLES`).
    pub fn take_latencies(&self) -> Vec<Duration> {
        let mut all = Vec::new();
        for client in &self.clients {
            all.append(&mut lock(&client.latencies));
        }
        if all.len() > MAX_SAMPLES {
            let step = all.len() / MAX_SAMPLES + 1;
            all = all.into_iter().step_by(step).collect();
        }
        all
    }

    /// Forgets arrival times (before a new fan-out round).
    pub fn reset_arrivals(&self) {
        for client in &self.clients {
            *lock(&client.last_arrival) = None;
        }
    }

    /// Arrival times since the last reset, for the clients that received something.
    pub fn arrivals(&self) -> Vec<Instant> {
        self.clients
            .iter()
            .filter_map(|client| *lock(&client.last_arrival))
            .collect()
    }

    /// Data frames received so far.
    pub fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }
}

/// Reads every client in the background until dropped.
pub struct Receivers {
    /// The counters.
    pub tally: Arc<Tally>,
    tasks: Vec<JoinHandle<()>>,
}

impl Receivers {
    /// Clients being read.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether no client is being read.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Starts one reader per client.
    pub fn start(clients: Vec<Client>) -> Self {
        Self::start_streams(clients)
    }

    /// Starts one reader per stream (the read halves of split clients, say).
    pub fn start_streams<S>(clients: Vec<S>) -> Self
    where
        S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>>
            + Unpin
            + Send
            + 'static,
    {
        let tally = Arc::new(Tally::for_clients(clients.len()));
        let tasks = clients
            .into_iter()
            .enumerate()
            .map(|(index, mut client)| {
                let tally = tally.clone();
                tokio::spawn(async move {
                    while let Some(Ok(message)) = client.next().await {
                        if message.is_text() || message.is_binary() {
                            tally.record(index, &message.into_data());
                        }
                    }
                })
            })
            .collect();
        Self { tally, tasks }
    }

    /// Starts one reader per `oort.v1` client (opened with `durable`, welcome read): each
    /// takes the sequence number off every message, counts and times its payload like
    /// [`Receivers::start`], and acknowledges every [`ACK_EVERY`] messages, and whatever is
    /// unacknowledged once its client has been quiet for [`ACK_IDLE`], so that the gateway's
    /// replay buffers stay small.
    pub fn start_durable(clients: Vec<Client>) -> Self {
        let tally = Arc::new(Tally::for_clients(clients.len()));
        let tasks = clients
            .into_iter()
            .enumerate()
            .map(|(index, mut client)| {
                let tally = tally.clone();
                tokio::spawn(async move {
                    let (mut seen, mut acked) = (0, 0);
                    loop {
                        let next = if seen > acked {
                            match tokio::time::timeout(ACK_IDLE, client.next()).await {
                                Ok(next) => next,
                                Err(_) => {
                                    if client.send(ack(seen)).await.is_err() {
                                        break;
                                    }
                                    acked = seen;
                                    continue;
                                }
                            }
                        } else {
                            client.next().await
                        };
                        let Some(Ok(message)) = next else {
                            break;
                        };
                        // Control frames (a fresh resume token) carry no sequence number.
                        let Some((seq, payload)) = durable_message(&message) else {
                            continue;
                        };
                        tally.record(index, payload);
                        seen = seq;
                        if seen.saturating_sub(acked) >= ACK_EVERY {
                            if client.send(ack(seen)).await.is_err() {
                                break;
                            }
                            acked = seen;
                        }
                    }
                })
            })
            .collect();
        Self { tally, tasks }
    }

    /// Waits until `expected` frames arrived in total, or `timeout` passed; true if they did.
    pub async fn wait_for(&self, expected: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.tally.frames() < expected {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        true
    }
}

impl Drop for Receivers {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durable_messages_give_their_sequence_number_and_payload() {
        let text = Message::text(r#"{"seq":42,"data":"00000000000000000123xx"}"#);
        assert_eq!(
            durable_message(&text),
            Some((42, &b"00000000000000000123xx"[..]))
        );
        let mut frame = 7u64.to_be_bytes().to_vec();
        frame.extend_from_slice(b"payload");
        let binary = Message::binary(frame);
        assert_eq!(durable_message(&binary), Some((7, &b"payload"[..])));
        let token = Message::text(r#"{"type":"token","resume":"abc"}"#);
        assert_eq!(durable_message(&token), None);
        assert_eq!(ack(5), Message::text(r#"{"type":"ack","seq":5}"#));
    }
}
