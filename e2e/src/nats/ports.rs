//! Ports a nats-server can be restarted on. A port found by binding port 0 and letting go is
//! the kernel's to hand out again, to anyone, while the server is down between a kill and a
//! restart. These ports are outside the kernel's ephemeral range (which it never hands out for
//! port 0), and each is held under a lock file for as long as its server lives, so no other
//! harness instance, in this process or another, takes it either.

use std::fs::{File, OpenOptions};
use std::net::TcpListener;
use std::ops::RangeInclusive;
use std::path::PathBuf;

/// Below this, ports tend to belong to well-known services.
const LOWEST: u16 = 10_000;

/// A port reserved for one server's lifetime: its lock is released when this is dropped.
pub(crate) struct PortLease {
    /// The port.
    pub(crate) port: u16,
    _lock: File,
}

/// Reserves a free loopback port outside the ephemeral range.
pub(crate) fn reserve_port() -> PortLease {
    let ephemeral = ephemeral_range();
    let candidates: Vec<u16> = (LOWEST..=u16::MAX)
        .filter(|port| !ephemeral.contains(port))
        .collect();
    assert!(
        !candidates.is_empty(),
        "no port outside the ephemeral range {ephemeral:?}"
    );
    let dir = lock_dir();
    for _ in 0..1_000 {
        let port = candidates[rand::random_range(0..candidates.len())];
        if let Some(lease) = try_reserve(&dir, port) {
            return lease;
        }
    }
    panic!("no free port outside the ephemeral range {ephemeral:?} after 1000 tries");
}

fn try_reserve(dir: &std::path::Path, port: u16) -> Option<PortLease> {
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(format!("{port}.lock")))
        .ok()?;
    // A lock held by another harness instance (or another NatsServer here) means: taken.
    lock.try_lock().ok()?;
    // Something outside the harness may listen there; the probe is released at once, and no
    // one else will be given the port while the lock is held.
    TcpListener::bind(("127.0.0.1", port)).ok()?;
    Some(PortLease { port, _lock: lock })
}

fn lock_dir() -> PathBuf {
    let dir = std::env::temp_dir().join("oort-e2e-ports");
    std::fs::create_dir_all(&dir).expect("create the port lock directory");
    dir
}

/// `/proc/sys/net/ipv4/ip_local_port_range`, or Linux's default when it cannot be read.
fn ephemeral_range() -> RangeInclusive<u16> {
    let text =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let bounds: Vec<u16> = text
        .split_whitespace()
        .filter_map(|word| word.parse().ok())
        .collect();
    match bounds.as_slice() {
        [low, high] => *low..=*high,
        _ => 32_768..=60_999,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reserved_port_is_outside_the_ephemeral_range_and_not_reserved_twice() {
        let first = reserve_port();
        assert!(!ephemeral_range().contains(&first.port));
        assert!(first.port >= LOWEST);
        assert!(
            try_reserve(&lock_dir(), first.port).is_none(),
            "a held port cannot be reserved again"
        );
        let port = first.port;
        drop(first);
        assert!(
            try_reserve(&lock_dir(), port).is_some(),
            "a released port can be reserved again"
        );
    }
}
