//! How attacking connections ended, counted by label.

use std::collections::BTreeMap;

use serde::Serialize;

/// Counts by label (`status_431`, `closed`, `held_open`, `close_1009`, ...).
#[derive(Debug, Default, Serialize)]
#[serde(transparent)]
pub struct Outcomes(BTreeMap<String, usize>);

impl Outcomes {
    /// Adds `count` to `label`.
    pub fn add(&mut self, label: impl Into<String>, count: usize) {
        *self.0.entry(label.into()).or_insert(0) += count;
    }

    /// The count of `label` (0 if never seen).
    pub fn get(&self, label: &str) -> usize {
        self.0.get(label).copied().unwrap_or(0)
    }

    /// The sum over every label.
    pub fn total(&self) -> usize {
        self.0.values().sum()
    }

    /// Counts the labels in `labels`.
    pub fn from_labels(labels: impl IntoIterator<Item = String>) -> Self {
        let mut outcomes = Self::default();
        for label in labels {
            outcomes.add(label, 1);
        }
        outcomes
    }
}
