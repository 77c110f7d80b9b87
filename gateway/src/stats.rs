//! kuiperbelt's six `/stats` counters, with its exact JSON and TSV renderings (monitoring
//! plugins such as mackerel-plugin-kuiperbelt parse them).

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// The counters. `connections` and `closing_connections` go up and down; the rest only grow.
#[derive(Default)]
pub(crate) struct Stats {
    connections: AtomicI64,
    total_connections: AtomicU64,
    total_messages: AtomicU64,
    connect_errors: AtomicU64,
    message_errors: AtomicU64,
    closing_connections: AtomicI64,
}

/// Keeps `connections` counted for as long as a connect request or its socket lives.
pub(crate) struct ConnectionCount(Arc<Stats>);

impl Drop for ConnectionCount {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Keeps `closing_connections` counted while a close callback is in flight.
pub(crate) struct ClosingCount(Arc<Stats>);

impl Drop for ClosingCount {
    fn drop(&mut self) {
        self.0.closing_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Stats {
    /// Counts one request to the connect path, as kuiperbelt does for every such request.
    pub(crate) fn connection_started(self: &Arc<Self>) -> ConnectionCount {
        self.connections.fetch_add(1, Ordering::Relaxed);
        self.total_connections.fetch_add(1, Ordering::Relaxed);
        ConnectionCount(self.clone())
    }

    /// Counts a close callback in flight.
    pub(crate) fn closing_started(self: &Arc<Self>) -> ClosingCount {
        self.closing_connections.fetch_add(1, Ordering::Relaxed);
        ClosingCount(self.clone())
    }

    /// A first message or a per-session dispatch attempt.
    pub(crate) fn add_messages(&self, count: u64) {
        self.total_messages.fetch_add(count, Ordering::Relaxed);
    }

    /// A failed connect (see the kuiperbelt reference, section 2).
    pub(crate) fn connect_error(&self) {
        self.connect_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// A failed write to a client.
    pub(crate) fn message_error(&self) {
        self.message_errors.fetch_add(1, Ordering::Relaxed);
    }

    fn values(&self) -> [(&'static str, &'static str, i64); 6] {
        let get = |counter: &AtomicU64| {
            i64::try_from(counter.load(Ordering::Relaxed)).unwrap_or(i64::MAX)
        };
        [
            (
                "connections",
                "kuiperbelt.conn.current",
                self.connections.load(Ordering::Relaxed),
            ),
            (
                "total_connections",
                "kuiperbelt.conn.total",
                get(&self.total_connections),
            ),
            (
                "total_messages",
                "kuiperbelt.messages.total",
                get(&self.total_messages),
            ),
            (
                "connect_errors",
                "kuiperbelt.conn.errors",
                get(&self.connect_errors),
            ),
            (
                "message_errors",
                "kuiperbelt.messages.errors",
                get(&self.message_errors),
            ),
            (
                "closing_connections",
                "kuiperbelt.conn.closing",
                self.closing_connections.load(Ordering::Relaxed),
            ),
        ]
    }

    /// `{"connections":0,...}` plus a newline, keys in kuiperbelt's order.
    pub(crate) fn to_json(&self) -> String {
        let mut out = String::from("{");
        for (index, (name, _, value)) in self.values().iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            let _ = write!(out, "\"{name}\":{value}");
        }
        out.push_str("}\n");
        out
    }

    /// `name\tvalue\tunixtime` lines in kuiperbelt's order (the mackerel/sensu format).
    pub(crate) fn to_tsv(&self, unix_time: u64) -> String {
        const ORDER: [&str; 6] = [
            "kuiperbelt.conn.current",
            "kuiperbelt.conn.total",
            "kuiperbelt.conn.errors",
            "kuiperbelt.conn.closing",
            "kuiperbelt.messages.total",
            "kuiperbelt.messages.errors",
        ];
        let values = self.values();
        let mut out = String::new();
        for metric in ORDER {
            let value = values
                .iter()
                .find(|(_, name, _)| *name == metric)
                .map_or(0, |(_, _, v)| *v);
            let _ = writeln!(out, "{metric}\t{value}\t{unix_time}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_matches_kuiperbelt_byte_for_byte() {
        let stats = Arc::new(Stats::default());
        assert_eq!(
            stats.to_json(),
            "{\"connections\":0,\"total_connections\":0,\"total_messages\":0,\"connect_errors\":0,\"message_errors\":0,\"closing_connections\":0}\n"
        );
        let guard = stats.connection_started();
        stats.add_messages(3);
        stats.connect_error();
        assert!(stats.to_json().starts_with(
            "{\"connections\":1,\"total_connections\":1,\"total_messages\":3,\"connect_errors\":1,"
        ));
        drop(guard);
        assert!(
            stats
                .to_json()
                .starts_with("{\"connections\":0,\"total_connections\":1,")
        );
    }

    #[test]
    fn tsv_lists_six_metrics_in_order() {
        let stats = Stats::default();
        stats.message_error();
        let tsv = stats.to_tsv(1700000000);
        let lines: Vec<&str> = tsv.lines().collect();
        assert_eq!(lines.len(), 6);
        assert_eq!(lines[0], "kuiperbelt.conn.current\t0\t1700000000");
        assert_eq!(lines[3], "kuiperbelt.conn.closing\t0\t1700000000");
        assert_eq!(lines[5], "kuiperbelt.messages.errors\t1\t1700000000");
    }
}
