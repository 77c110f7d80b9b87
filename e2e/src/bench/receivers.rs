//! Client-side accounting: every opened client is read by a task that counts data frames and,
//! for frames stamped by [`stamp`], records how long the frame took from the moment it was
//! sent to the backend API until it arrived.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use super::clients::Client;

/// At most this many latency samples are kept (evenly thinned beyond that).
const MAX_SAMPLES: usize = 1_000_000;

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
        let tally = Arc::new(Tally {
            frames: AtomicU64::new(0),
            clients: clients.iter().map(|_| ClientTally::default()).collect(),
        });
        let tasks = clients
            .into_iter()
            .enumerate()
            .map(|(index, mut client)| {
                let tally = tally.clone();
                tokio::spawn(async move {
                    while let Some(Ok(message)) = client.next().await {
                        if !(message.is_text() || message.is_binary()) {
                            continue;
                        }
                        let arrived = Instant::now();
                        tally.frames.fetch_add(1, Ordering::Relaxed);
                        let Some(mine) = tally.clients.get(index) else {
                            continue;
                        };
                        *lock(&mine.last_arrival) = Some(arrived);
                        if let Some(latency) = latency_of(&message.into_data()) {
                            let mut samples = lock(&mine.latencies);
                            if samples.len() < MAX_SAMPLES {
                                samples.push(latency);
                            }
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
