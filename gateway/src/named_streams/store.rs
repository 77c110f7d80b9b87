//! The named streams this node owns: their messages, settings and waiting readers. Every
//! operation on one stream runs under its lock, so appends, closes and idempotent producers'
//! checks are atomic, and readers see one order. Nothing is kept on disk: a node that stops
//! loses its streams, and the directory then says their owner is gone (docs/streams.md).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use oort_common::cluster::{
    NamedPosition, NamedStreamAnswer, NamedStreamOp, ProducerClaim, StreamRefusal, StreamSettings,
    StreamStanding,
};
use oort_common::config::StreamsConfig;
use tokio::sync::watch;

/// What one stream and the whole node may keep.
#[derive(Clone, Debug)]
pub(crate) struct Retention {
    pub max_streams: usize,
    pub max_messages: usize,
    pub max_bytes: usize,
    pub max_age: Option<Duration>,
    pub max_total_bytes: usize,
}

impl Retention {
    pub(crate) fn from_config(config: &StreamsConfig) -> Self {
        Self {
            max_streams: config.max_streams,
            max_messages: config.max_messages,
            max_bytes: config.max_bytes,
            max_age: (!config.max_age.0.is_zero()).then_some(config.max_age.0),
            max_total_bytes: config.max_total_bytes,
        }
    }
}

/// How long a deleted or expired stream's generation is remembered (longer than its
/// directory entry's drop takes to commit).
const TOMBSTONE: Duration = Duration::from_secs(30);

/// Bytes a kept message costs beyond its payload (its `Vec` and its timestamp), counted
/// against the limits so a flood of empty JSON values is bounded too.
const MESSAGE_OVERHEAD: usize = 40;

struct Kept {
    data: Vec<u8>,
    at: Instant,
}

impl Kept {
    fn cost(&self) -> usize {
        self.data.len() + MESSAGE_OVERHEAD
    }
}

/// An idempotent producer's progress.
#[derive(Clone, Copy)]
struct Producer {
    epoch: u64,
    last_seq: u64,
}

struct StreamState {
    generation: u64,
    settings: StreamSettings,
    messages: VecDeque<Kept>,
    /// The position of `messages[0]`: what retention dropped is before it.
    first: u64,
    bytes: usize,
    closed: bool,
    /// The producer whose append or close closed the stream: its retry is a duplicate.
    closed_by: Option<ProducerClaim>,
    last_seq: Option<String>,
    producers: HashMap<String, Producer>,
    last_access: Instant,
    /// Deleted or expired: readers still holding the stream answer 404.
    removed: bool,
}

impl StreamState {
    fn tail(&self) -> u64 {
        self.first + self.messages.len() as u64
    }

    fn standing(&self) -> StreamStanding {
        StreamStanding {
            generation: self.generation,
            tail: self.tail(),
            closed: self.closed,
            settings: self.settings.clone(),
        }
    }

    fn expired(&self, now: Instant, unix_ms: i64) -> bool {
        self.settings
            .ttl_secs
            .is_some_and(|ttl| now.duration_since(self.last_access) >= Duration::from_secs(ttl))
            || self
                .settings
                .expires_at
                .as_ref()
                .is_some_and(|(_, at)| unix_ms >= *at)
    }
}

struct Stream {
    state: Mutex<StreamState>,
    /// Held across a channel publish's append and delivery, so publishes leave in the order
    /// they were appended.
    publishing: Arc<tokio::sync::Mutex<()>>,
    /// Bumped after every change readers wait for (an append, a close, a removal).
    changed: watch::Sender<u64>,
}

impl Stream {
    fn lock(&self) -> MutexGuard<'_, StreamState> {
        // A panic while holding the lock leaves the state consistent (every change is made
        // after its checks), so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn wake(&self) {
        self.changed.send_modify(|version| *version += 1);
    }
}

/// The named streams this node owns.
pub(crate) struct StreamStore {
    retention: Retention,
    streams: DashMap<String, Arc<Stream>>,
    total_bytes: AtomicUsize,
}

/// A stream that expired (or was removed) and whose directory entry the owner now drops.
pub(crate) struct Expired {
    pub name: String,
    pub generation: u64,
}

impl StreamStore {
    pub(crate) fn new(retention: Retention) -> Self {
        Self {
            retention,
            streams: DashMap::new(),
            total_bytes: AtomicUsize::new(0),
        }
    }

    /// The generation of `name` when this node holds it (and it has not expired).
    pub(crate) fn generation(&self, name: &str) -> Option<u64> {
        let stream = self.streams.get(name)?.clone();
        let state = stream.lock();
        (!state.removed && !state.expired(Instant::now(), unix_ms())).then_some(state.generation)
    }

    /// Streams held (not counting the tombstones of deleted ones), and bytes of messages kept.
    pub(crate) fn usage(&self) -> (usize, usize) {
        let held = self
            .streams
            .iter()
            .filter(|entry| !entry.value().lock().removed)
            .count();
        (held, self.total_bytes.load(Ordering::Relaxed))
    }

    /// Applies `op` to generation `generation` of `name` (a `Create` makes it when this node
    /// holds no stream of that name). A read may wait up to its `wait_ms`.
    pub(crate) async fn apply(
        &self,
        name: &str,
        generation: u64,
        op: NamedStreamOp,
    ) -> NamedStreamAnswer {
        match op {
            NamedStreamOp::Create {
                settings,
                messages,
                closed,
            } => self.create(name, generation, settings, messages, closed),
            NamedStreamOp::Append {
                content_type,
                seq,
                messages,
                close,
                producer,
            } => self.append(
                name,
                generation,
                Append {
                    content_type,
                    seq,
                    messages,
                    close,
                    producer,
                },
            ),
            // The append half of a channel publish (the owner delivers it: `owner.rs`).
            NamedStreamOp::Publish { text, payload, .. } => {
                let content_type = match self.held(name, generation) {
                    Ok(stream) => stream.lock().settings.content_type.clone(),
                    Err(missing) => return missing.into(),
                };
                let message = channel_message(&content_type, text, payload);
                self.append(
                    name,
                    generation,
                    Append {
                        content_type,
                        seq: None,
                        messages: vec![message],
                        close: false,
                        producer: None,
                    },
                )
            }
            NamedStreamOp::Delete => self.delete(name, generation),
            NamedStreamOp::Head { authorized } => match self.held(name, generation) {
                Ok(stream) => {
                    let state = stream.lock();
                    if !authorized && !state.settings.public {
                        return NamedStreamAnswer::Refused(StreamRefusal::Unauthorized);
                    }
                    NamedStreamAnswer::Head(state.standing())
                }
                Err(missing) => missing.into(),
            },
            NamedStreamOp::Read {
                from,
                wait_ms,
                max_bytes,
                authorized,
            } => {
                let wait = Duration::from_millis(u64::from(wait_ms));
                self.read(name, generation, from, wait, max_bytes as usize, authorized)
                    .await
            }
        }
    }

    /// Waits for the turn to publish on `name`'s channel; `None` when the stream is not here.
    pub(crate) async fn publish_turn(
        &self,
        name: &str,
    ) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        let lock = self.streams.get(name)?.publishing.clone();
        Some(lock.lock_owned().await)
    }

    /// The stream, unless it is not held here under `generation` (or has expired).
    fn held(&self, name: &str, generation: u64) -> Result<Arc<Stream>, Missing> {
        let Some(stream) = self.streams.get(name).map(|entry| entry.clone()) else {
            return Err(Missing::NotHere);
        };
        let state = stream.lock();
        if state.removed || state.generation != generation {
            return Err(Missing::NotHere);
        }
        if state.expired(Instant::now(), unix_ms()) {
            // The sweep removes it and drops its directory entry.
            return Err(Missing::Expired);
        }
        drop(state);
        Ok(stream)
    }

    fn create(
        &self,
        name: &str,
        generation: u64,
        settings: StreamSettings,
        messages: Vec<Vec<u8>>,
        closed: bool,
    ) -> NamedStreamAnswer {
        if let Some(existing) = self.streams.get(name).map(|entry| entry.clone()) {
            let mut state = existing.lock();
            let expired = state.expired(Instant::now(), unix_ms());
            if (state.removed || expired) && state.generation == generation {
                // That generation is over (deleted or expired, its directory entry's drop on
                // its way): the stream must be claimed again, under a newer one.
                return NamedStreamAnswer::NotHere;
            }
            if !state.removed && !expired && state.generation >= generation {
                if !same_settings(&state.settings, &settings) || state.closed != closed {
                    return NamedStreamAnswer::Refused(StreamRefusal::SettingsDiffer);
                }
                state.last_access = Instant::now();
                return NamedStreamAnswer::Created {
                    created: false,
                    standing: state.standing(),
                };
            }
            drop(state);
            // An older generation this node still had: replaced.
            self.remove(&existing);
            self.streams
                .remove_if(name, |_, held| Arc::ptr_eq(held, &existing));
        }
        if self.streams.len() >= self.retention.max_streams {
            return NamedStreamAnswer::Refused(StreamRefusal::Full {
                reason: format!(
                    "this node owns streams.max_streams ({}) streams",
                    self.retention.max_streams
                ),
            });
        }
        let (changed, _) = watch::channel(0);
        let stream = Arc::new(Stream {
            publishing: Arc::new(tokio::sync::Mutex::new(())),
            state: Mutex::new(StreamState {
                generation,
                settings,
                messages: VecDeque::new(),
                first: 0,
                bytes: 0,
                closed: false,
                closed_by: None,
                last_seq: None,
                producers: HashMap::new(),
                last_access: Instant::now(),
                removed: false,
            }),
            changed,
        });
        let mut state = stream.lock();
        if let Err(refusal) = self.push(&mut state, messages) {
            return NamedStreamAnswer::Refused(refusal);
        }
        state.closed = closed;
        let standing = state.standing();
        drop(state);
        self.streams.insert(name.to_owned(), stream);
        NamedStreamAnswer::Created {
            created: true,
            standing,
        }
    }

    fn append(&self, name: &str, generation: u64, append: Append) -> NamedStreamAnswer {
        let stream = match self.held(name, generation) {
            Ok(stream) => stream,
            Err(missing) => return missing.into(),
        };
        let mut state = stream.lock();
        state.last_access = Instant::now();
        if state.closed {
            if let Some(producer) = &append.producer {
                if state.closed_by.as_ref() == Some(producer) {
                    return NamedStreamAnswer::Appended {
                        standing: state.standing(),
                        duplicate: Some(producer.seq),
                    };
                }
                if let Some(known) = state.producers.get(&producer.id)
                    && producer.epoch < known.epoch
                {
                    return NamedStreamAnswer::Refused(StreamRefusal::StaleEpoch {
                        current: known.epoch,
                    });
                }
            }
            if append.messages.is_empty() && append.close && append.producer.is_none() {
                // Closing a closed stream is idempotent.
                return NamedStreamAnswer::Appended {
                    standing: state.standing(),
                    duplicate: None,
                };
            }
            return NamedStreamAnswer::Refused(StreamRefusal::Closed {
                standing: state.standing(),
            });
        }
        if !append.messages.is_empty() && append.content_type != state.settings.content_type {
            return NamedStreamAnswer::Refused(StreamRefusal::ContentTypeMismatch);
        }
        let accepted_producer = match &append.producer {
            Some(claim) => match check_producer(state.producers.get(&claim.id).copied(), claim) {
                ProducerCheck::Accept => Some(claim.clone()),
                ProducerCheck::Duplicate(last_seq) => {
                    return NamedStreamAnswer::Appended {
                        standing: state.standing(),
                        duplicate: Some(last_seq),
                    };
                }
                ProducerCheck::Refuse(refusal) => return NamedStreamAnswer::Refused(refusal),
            },
            None => None,
        };
        if let Some(seq) = &append.seq
            && state.last_seq.as_ref().is_some_and(|last| seq <= last)
        {
            return NamedStreamAnswer::Refused(StreamRefusal::SeqConflict);
        }
        if let Err(refusal) = self.push(&mut state, append.messages) {
            return NamedStreamAnswer::Refused(refusal);
        }
        if let Some(seq) = append.seq {
            state.last_seq = Some(seq);
        }
        if let Some(claim) = accepted_producer {
            state.producers.insert(
                claim.id.clone(),
                Producer {
                    epoch: claim.epoch,
                    last_seq: claim.seq,
                },
            );
            if append.close {
                state.closed_by = Some(claim);
            }
        }
        if append.close {
            state.closed = true;
        }
        let standing = state.standing();
        drop(state);
        stream.wake();
        NamedStreamAnswer::Appended {
            standing,
            duplicate: None,
        }
    }

    /// Appends `messages`, then drops the oldest beyond the stream's limits. Refused, with
    /// nothing appended, when the node's byte budget cannot take them.
    fn push(&self, state: &mut StreamState, messages: Vec<Vec<u8>>) -> Result<(), StreamRefusal> {
        let now = Instant::now();
        let adding: usize = messages.iter().map(|m| m.len() + MESSAGE_OVERHEAD).sum();
        if adding > self.retention.max_bytes {
            return Err(StreamRefusal::Full {
                reason: format!(
                    "the append is larger than streams.max_bytes ({})",
                    self.retention.max_bytes
                ),
            });
        }
        let total = self.total_bytes.fetch_add(adding, Ordering::Relaxed) + adding;
        if total > self.retention.max_total_bytes {
            self.total_bytes.fetch_sub(adding, Ordering::Relaxed);
            return Err(StreamRefusal::Full {
                reason: format!(
                    "this node keeps streams.max_total_bytes ({}) of stream messages",
                    self.retention.max_total_bytes
                ),
            });
        }
        state.bytes += adding;
        state
            .messages
            .extend(messages.into_iter().map(|data| Kept { data, at: now }));
        self.trim(state, now);
        Ok(())
    }

    /// Drops the oldest messages beyond the count, byte and age limits.
    fn trim(&self, state: &mut StreamState, now: Instant) {
        let mut dropped = 0;
        while let Some(oldest) = state.messages.front() {
            let too_old = self
                .retention
                .max_age
                .is_some_and(|age| now.duration_since(oldest.at) > age);
            if state.messages.len() <= self.retention.max_messages
                && state.bytes <= self.retention.max_bytes
                && !too_old
            {
                break;
            }
            let cost = oldest.cost();
            state.messages.pop_front();
            state.first += 1;
            state.bytes -= cost;
            dropped += cost;
        }
        self.total_bytes.fetch_sub(dropped, Ordering::Relaxed);
    }

    fn delete(&self, name: &str, generation: u64) -> NamedStreamAnswer {
        match self.held(name, generation) {
            Ok(stream) => {
                self.remove(&stream);
                NamedStreamAnswer::Deleted
            }
            Err(missing) => missing.into(),
        }
    }

    /// Empties `stream` and wakes its readers. It stays under `name` as a tombstone for
    /// [`TOMBSTONE`], so a create of its generation arriving late is told to claim a newer
    /// one instead of bringing the old generation back; the sweep forgets it after that.
    fn remove(&self, stream: &Arc<Stream>) {
        let mut state = stream.lock();
        if !state.removed {
            state.removed = true;
            state.last_access = Instant::now();
            self.total_bytes.fetch_sub(state.bytes, Ordering::Relaxed);
            state.bytes = 0;
            state.messages.clear();
        }
        drop(state);
        stream.wake();
    }

    async fn read(
        &self,
        name: &str,
        generation: u64,
        from: NamedPosition,
        wait: Duration,
        max_bytes: usize,
        authorized: bool,
    ) -> NamedStreamAnswer {
        let stream = match self.held(name, generation) {
            Ok(stream) => stream,
            Err(missing) => return missing.into(),
        };
        // Subscribed before looking, so an append between the look and the wait wakes it.
        let mut changed = stream.changed.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        let mut position = None;
        loop {
            {
                let mut state = stream.lock();
                if state.removed {
                    return NamedStreamAnswer::Refused(StreamRefusal::NotFound);
                }
                if !authorized && !state.settings.public {
                    return NamedStreamAnswer::Refused(StreamRefusal::Unauthorized);
                }
                state.last_access = Instant::now();
                let at = match position {
                    Some(at) => at,
                    None => match start(&state, from) {
                        Ok(at) => at,
                        Err(refusal) => return NamedStreamAnswer::Refused(refusal),
                    },
                };
                if at < state.first {
                    // Retention dropped what this reader waited for.
                    return NamedStreamAnswer::Refused(StreamRefusal::Gone);
                }
                position = Some(at);
                let tail = state.tail();
                if at < tail || state.closed || wait.is_zero() {
                    return chunk(&state, at, max_bytes);
                }
            }
            match tokio::time::timeout_at(deadline, changed.changed()).await {
                Ok(Ok(())) => {}
                // Timed out (or the stream is gone): answer what is there, nothing.
                _ => {
                    let state = stream.lock();
                    if state.removed {
                        return NamedStreamAnswer::Refused(StreamRefusal::NotFound);
                    }
                    return chunk(&state, position.unwrap_or(state.first), max_bytes);
                }
            }
        }
    }

    /// Removes expired streams and drops messages past `streams.max_age`; what expired, so
    /// the owner drops their directory entries.
    pub(crate) fn sweep(&self) -> Vec<Expired> {
        let now = Instant::now();
        let unix = unix_ms();
        let mut expired = Vec::new();
        let held: Vec<(String, Arc<Stream>)> = self
            .streams
            .iter()
            .map(|entry| (entry.key().clone(), entry.value().clone()))
            .collect();
        for (name, stream) in held {
            let mut state = stream.lock();
            if state.removed {
                if now.duration_since(state.last_access) >= TOMBSTONE {
                    drop(state);
                    self.streams
                        .remove_if(&name, |_, held| Arc::ptr_eq(held, &stream));
                }
            } else if state.expired(now, unix) {
                let generation = state.generation;
                drop(state);
                self.remove(&stream);
                expired.push(Expired { name, generation });
            } else if self.retention.max_age.is_some() {
                self.trim(&mut state, now);
            }
        }
        expired
    }
}

/// Why [`StreamStore::held`] found no stream.
enum Missing {
    /// Not this generation here: the directory knows more.
    NotHere,
    /// It expired just now.
    Expired,
}

impl From<Missing> for NamedStreamAnswer {
    fn from(missing: Missing) -> Self {
        match missing {
            Missing::NotHere => Self::NotHere,
            Missing::Expired => Self::Refused(StreamRefusal::NotFound),
        }
    }
}

struct Append {
    content_type: String,
    seq: Option<String>,
    messages: Vec<Vec<u8>>,
    close: bool,
    producer: Option<ProducerClaim>,
}

/// A channel publish as a message of the channel's stream: in a JSON stream, a text payload
/// that is JSON is that value and any other payload a JSON string (binary as base64); in any
/// other stream, the payload's bytes.
fn channel_message(content_type: &str, text: bool, payload: Vec<u8>) -> Vec<u8> {
    if content_type != "application/json" {
        return payload;
    }
    if text && serde_json::from_slice::<serde::de::IgnoredAny>(&payload).is_ok() {
        return payload;
    }
    let string = if text {
        String::from_utf8_lossy(&payload).into_owned()
    } else {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(&payload)
    };
    serde_json::Value::String(string).to_string().into_bytes()
}

/// Two `PUT`s name the same stream when their content type and lifetime agree.
fn same_settings(held: &StreamSettings, asked: &StreamSettings) -> bool {
    held.content_type == asked.content_type
        && held.ttl_secs == asked.ttl_secs
        && held.expires_at.as_ref().map(|(_, at)| at) == asked.expires_at.as_ref().map(|(_, at)| at)
}

/// Where a read of `from` starts, or why it cannot.
fn start(state: &StreamState, from: NamedPosition) -> Result<u64, StreamRefusal> {
    match from {
        NamedPosition::Start => Ok(state.first),
        NamedPosition::Now => Ok(state.tail()),
        NamedPosition::At {
            generation,
            position,
        } => {
            if generation < state.generation || position < state.first {
                Err(StreamRefusal::Gone)
            } else if generation > state.generation || position > state.tail() {
                Err(StreamRefusal::Ahead)
            } else {
                Ok(position)
            }
        }
    }
}

/// The messages from `at` on, up to `max_bytes` (at least one).
fn chunk(state: &StreamState, at: u64, max_bytes: usize) -> NamedStreamAnswer {
    let skip = usize::try_from(at - state.first).unwrap_or(usize::MAX);
    let mut messages = Vec::new();
    let mut bytes = 0;
    for kept in state.messages.iter().skip(skip) {
        if !messages.is_empty() && bytes + kept.data.len() > max_bytes {
            break;
        }
        bytes += kept.data.len();
        messages.push(kept.data.clone());
    }
    let next = at + messages.len() as u64;
    NamedStreamAnswer::Chunk {
        messages,
        next,
        up_to_date: next == state.tail(),
        standing: state.standing(),
    }
}

enum ProducerCheck {
    Accept,
    Duplicate(u64),
    Refuse(StreamRefusal),
}

/// An idempotent producer's append against what the stream knows of it (PROTOCOL.md, section
/// 5.2.1): a new epoch starts at 0, an older one is fenced, a repeat is a duplicate, a gap is
/// refused.
fn check_producer(known: Option<Producer>, claim: &ProducerClaim) -> ProducerCheck {
    match known {
        None if claim.seq == 0 => ProducerCheck::Accept,
        None => ProducerCheck::Refuse(StreamRefusal::SequenceGap {
            expected: 0,
            received: claim.seq,
        }),
        Some(known) if claim.epoch < known.epoch => {
            ProducerCheck::Refuse(StreamRefusal::StaleEpoch {
                current: known.epoch,
            })
        }
        Some(known) if claim.epoch > known.epoch => {
            if claim.seq == 0 {
                ProducerCheck::Accept
            } else {
                ProducerCheck::Refuse(StreamRefusal::EpochMustStartAtZero)
            }
        }
        Some(known) if claim.seq <= known.last_seq => ProducerCheck::Duplicate(known.last_seq),
        Some(known) if claim.seq == known.last_seq + 1 => ProducerCheck::Accept,
        Some(known) => ProducerCheck::Refuse(StreamRefusal::SequenceGap {
            expected: known.last_seq + 1,
            received: claim.seq,
        }),
    }
}

pub(crate) fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}
