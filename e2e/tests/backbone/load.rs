//! A steady stream of `/v1/send`s, recorded in a [`Ledger`], that a fault test runs across
//! the fault. Tests wait on its progress (sends answered all `ok`) rather than for a time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::CONVERGE;
use crate::ledger::Ledger;

/// The stream name of the load's messages.
const STREAM: &str = "load";

/// Sends to the same sessions through each API in turn until finished.
pub(crate) struct Load {
    stop: Arc<AtomicBool>,
    ok_sends: watch::Receiver<usize>,
    task: JoinHandle<Vec<Option<Vec<String>>>>,
}

impl Load {
    /// Starts sending to `keys` through `apis`, one request at a time.
    pub(crate) fn start(ledger: Arc<Ledger>, apis: Vec<String>, keys: Vec<String>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (counter, ok_sends) = watch::channel(0);
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let http = oort_e2e::http_client();
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            let mut outcomes = Vec::new();
            for api in apis.iter().cycle() {
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
                let statuses = ledger.send(&http, api, STREAM, &keys).await;
                if statuses
                    .as_ref()
                    .is_some_and(|s| s.iter().all(|status| status == "ok"))
                {
                    counter.send_modify(|count| *count += 1);
                }
                outcomes.push(statuses);
                // Pacing, not synchronisation: a steady rate of a hundred or so sends a second.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            outcomes
        });
        Self {
            stop,
            ok_sends,
            task,
        }
    }

    /// Waits until `more` further sends were answered `ok` for every session.
    pub(crate) async fn wait_for_ok_sends(&mut self, more: usize) {
        let target = *self.ok_sends.borrow() + more;
        tokio::time::timeout(CONVERGE, self.ok_sends.wait_for(|count| *count >= target))
            .await
            .unwrap_or_else(|_| panic!("the load did not get {more} more ok sends in time"))
            .expect("the load runs");
    }

    /// Stops; returns how many sends were made and the answers of those that were not all
    /// `ok` (`None`: the request failed).
    pub(crate) async fn finish(self) -> (usize, Vec<Option<Vec<String>>>) {
        self.stop.store(true, Ordering::Relaxed);
        let outcomes = self.task.await.expect("the load task");
        let sends = outcomes.len();
        let failures = outcomes
            .into_iter()
            .filter(|statuses| {
                !statuses
                    .as_ref()
                    .is_some_and(|s| s.iter().all(|status| status == "ok"))
            })
            .collect();
        (sends, failures)
    }
}
