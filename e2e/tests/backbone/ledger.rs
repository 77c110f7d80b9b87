//! What a fault test sent and what its clients received, matched at the end. Every message is
//! unique (`stream#n`) and is recorded with the status the API answered for each of its
//! sessions. A message answered `ok` must have arrived; one answered with a status that says it
//! was not delivered (`not_found`, `queue_full`, `closed`, `owner_unreachable`, `skipped`)
//! must not have; `owner_timeout` and a request that failed as a whole may have gone either
//! way. A session gets each message at most once, and the messages of one stream (one sender
//! sending one at a time) in the order they were sent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use oort_e2e::{TIMEOUT, WsClient};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::v1_send_at;

/// Recorded for every session of a request that got no answer at all.
pub(crate) const REQUEST_FAILED: &str = "request_failed";
/// The last message each reader gets; it ends the reading.
const END: &str = "end of the test";

/// Statuses that say the message was not delivered.
const NOT_DELIVERED: [&str; 5] = [
    "not_found",
    "queue_full",
    "closed",
    "owner_unreachable",
    "skipped",
];

struct Entry {
    key: String,
    body: String,
    status: String,
}

/// Every message sent, with its outcome per session.
#[derive(Default)]
pub(crate) struct Ledger {
    entries: Mutex<Vec<Entry>>,
    next: Mutex<HashMap<String, u64>>,
}

impl Ledger {
    /// An empty ledger, shared by the test and its load.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Sends the next message of `stream` to `keys` through `api` and records the outcome.
    /// Returns the statuses, or `None` when the request itself failed.
    pub(crate) async fn send(
        &self,
        http: &reqwest::Client,
        api: &str,
        stream: &str,
        keys: &[&str],
    ) -> Option<Vec<String>> {
        let number = {
            let mut next = self.next.lock().unwrap();
            let number = next.entry(stream.to_owned()).or_default();
            *number += 1;
            *number
        };
        let body = format!("{stream}#{number}");
        let answer = v1_send_at(http, api, keys, &body).await;
        let mut entries = self.entries.lock().unwrap();
        for (index, key) in keys.iter().enumerate() {
            let status = answer
                .as_ref()
                .map_or(REQUEST_FAILED, |statuses| statuses[index].as_str());
            entries.push(Entry {
                key: (*key).to_owned(),
                body: body.clone(),
                status: status.to_owned(),
            });
        }
        answer
    }

    /// Ends every reader (an end message to each session through the node that holds it,
    /// which must be `ok`), then checks what each received against what was sent.
    pub(crate) async fn finish(&self, http: &reqwest::Client, readers: Vec<Reader>) {
        let mut received = HashMap::new();
        for reader in readers {
            let end = v1_send_at(http, &reader.owner_api, &[&reader.key], END).await;
            assert_eq!(
                end,
                Some(vec!["ok".to_owned()]),
                "the end of {}",
                reader.key
            );
            let frames = tokio::time::timeout(TIMEOUT, reader.task)
                .await
                .unwrap_or_else(|_| panic!("{} got no end message", reader.key))
                .expect("the reader task");
            received.insert(reader.key, frames);
        }
        self.verify(&received);
    }

    fn verify(&self, received: &HashMap<String, Vec<String>>) {
        let entries = self.entries.lock().unwrap();
        for (key, frames) in received {
            check_order(key, frames);
            for entry in entries.iter().filter(|entry| entry.key == *key) {
                let arrived = frames.contains(&entry.body);
                if entry.status == "ok" {
                    assert!(
                        arrived,
                        "{key}: {} was answered ok but never arrived",
                        entry.body
                    );
                } else if NOT_DELIVERED.contains(&entry.status.as_str()) {
                    assert!(
                        !arrived,
                        "{key}: {} was answered {} but arrived",
                        entry.body, entry.status
                    );
                }
            }
            for frame in frames {
                assert!(
                    entries.iter().any(|e| e.key == *key && e.body == *frame),
                    "{key} got {frame}, which was never sent to it"
                );
            }
        }
    }
}

/// Each message once, and each stream's messages in the order they were sent.
fn check_order(key: &str, frames: &[String]) {
    let mut last: HashMap<&str, u64> = HashMap::new();
    for frame in frames {
        let (stream, number) = frame
            .rsplit_once('#')
            .and_then(|(stream, number)| Some((stream, number.parse::<u64>().ok()?)))
            .unwrap_or_else(|| panic!("{key} got {frame:?}, not a test message"));
        let previous = last.insert(stream, number).unwrap_or(0);
        assert!(
            number > previous,
            "{key} got {frame} after {stream}#{previous}: out of order or twice"
        );
    }
}

/// A client read in the background until the test ends it.
pub(crate) struct Reader {
    key: String,
    owner_api: String,
    task: JoinHandle<Vec<String>>,
}

impl Reader {
    /// Reads `client` (session `key`, held by the node at `owner_api`) so its queue never
    /// fills, keeping every text frame until the end message.
    pub(crate) fn start(client: WsClient, key: &str, owner_api: String) -> Self {
        let task = tokio::spawn(async move {
            let mut client = client;
            let mut frames = Vec::new();
            while let Some(Ok(message)) = client.stream().next().await {
                if let Message::Text(text) = message {
                    if text.as_str() == END {
                        break;
                    }
                    frames.push(text.to_string());
                }
            }
            frames
        });
        Self {
            key: key.to_owned(),
            owner_api,
            task,
        }
    }
}
