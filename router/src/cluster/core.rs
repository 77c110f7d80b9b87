//! What every part of a cluster node shares: who it is, its raft, its replica of the directory,
//! its NATS bus, its metrics, and the token that stops it all.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use oort_common::cluster::NodeInfo;
use oort_common::config::ClusterConfig;
use oort_common::{Epoch, NodeId};
use openraft::Membership;
use tokio_util::sync::CancellationToken;

use super::ClusterMetrics;
use super::bus::Bus;
use super::store::DirectoryReader;
use super::types::{Raft, RaftId};

/// The parts of a node that membership, control, registration and delivery all use.
pub(crate) struct Core {
    /// This node's configured id.
    pub node: NodeId,
    /// Its raft id.
    pub raft_id: RaftId,
    /// Its first epoch in this run (tells restarts apart in announcements).
    pub incarnation: Epoch,
    pub config: ClusterConfig,
    pub raft: Raft,
    /// This node's replica of the directory.
    pub directory: DirectoryReader,
    pub bus: Bus,
    pub metrics: ClusterMetrics,
    /// NATS connection state, kept by the connection's event callback.
    pub nats: Arc<NatsState>,
    /// When a raft append (a heartbeat, at least) last arrived here from a leader.
    pub last_append: AppendClock,
    /// Cancelled when the router stops.
    pub stop: CancellationToken,
}

impl Core {
    /// The current leader's raft id, as this node knows it.
    pub(crate) fn leader(&self) -> Option<RaftId> {
        self.raft.metrics().borrow().current_leader
    }

    pub(crate) fn is_leader(&self) -> bool {
        self.leader() == Some(self.raft_id)
    }

    /// A leader is known, and if it is this node, a quorum acknowledged it lately: openraft
    /// keeps a leader that lost its quorum in office (it cannot commit anything), so its
    /// readiness must not rest on the title alone.
    pub(crate) fn has_working_leader(&self) -> bool {
        let metrics = self.raft.metrics().borrow().clone();
        match metrics.current_leader {
            None => false,
            Some(leader) if leader == self.raft_id => {
                // openraft's lease is election_timeout_max (twice election_timeout); a quorum
                // that stayed silent for two leases is gone.
                let lease = self.config.election_timeout.0 * 2;
                let silent = lease * 2;
                metrics
                    .millis_since_quorum_ack
                    .is_some_and(|ms| u128::from(ms) < silent.as_millis())
            }
            Some(_) => true,
        }
    }

    /// Waits until `condition` holds for this node's raft metrics, or until `deadline`; returns
    /// whether it holds. (openraft's own `Raft::wait` formats the whole metrics at every
    /// change, for each waiter: with hundreds of sends waiting for a new leader, that alone
    /// kept both cores busy.)
    pub(crate) async fn wait_until(
        &self,
        deadline: tokio::time::Instant,
        condition: impl Fn(&openraft::RaftMetrics<RaftId, NodeInfo>) -> bool,
    ) -> bool {
        let mut metrics = self.raft.metrics();
        loop {
            if condition(&metrics.borrow_and_update()) {
                return true;
            }
            match tokio::time::timeout_at(deadline, metrics.changed()).await {
                Ok(Ok(())) => continue,
                // The deadline passed, or raft stopped.
                Ok(Err(_)) | Err(_) => return false,
            }
        }
    }

    /// The membership this node's raft has applied.
    pub(crate) fn membership(&self) -> Membership<RaftId, NodeInfo> {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .clone()
    }

    /// True when this node belongs to the raft membership (voter or learner).
    pub(crate) fn is_member(&self) -> bool {
        self.membership().get_node(&self.raft_id).is_some()
    }

    /// The name of a member by raft id.
    pub(crate) fn member_name(&self, id: RaftId) -> Option<NodeId> {
        self.membership()
            .get_node(&id)
            .map(|info| NodeId::from(info.name.as_str()))
    }
}

/// This node's NATS connection, as its event callback reports it.
#[derive(Default)]
pub(crate) struct NatsState {
    connected: AtomicBool,
    /// Milliseconds since `origin` of the last (re)connection.
    connected_at_ms: AtomicU64,
    origin: OnceInstant,
}

impl NatsState {
    pub(crate) fn set_connected(&self, connected: bool) {
        if connected {
            self.connected_at_ms
                .store(self.origin.millis(), Ordering::Release);
        }
        self.connected.store(connected, Ordering::Release);
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// How long the connection has been up without a break (zero while down).
    pub(crate) fn connected_for(&self) -> Duration {
        if !self.is_connected() {
            return Duration::ZERO;
        }
        let since = self.connected_at_ms.load(Ordering::Acquire);
        Duration::from_millis(self.origin.millis().saturating_sub(since))
    }
}

/// When a raft append last arrived from a leader: a follower's view of the leader's lease.
#[derive(Default)]
pub(crate) struct AppendClock {
    at_ms: AtomicU64,
    origin: OnceInstant,
}

impl AppendClock {
    pub(crate) fn record(&self) {
        self.at_ms.store(self.origin.millis(), Ordering::Release);
    }

    /// Time since the last append (since start when none arrived yet).
    pub(crate) fn elapsed(&self) -> Duration {
        let at = self.at_ms.load(Ordering::Acquire);
        Duration::from_millis(self.origin.millis().saturating_sub(at))
    }
}

/// An instant fixed at construction, for millisecond clocks in atomics.
struct OnceInstant(Instant);

impl Default for OnceInstant {
    fn default() -> Self {
        Self(Instant::now())
    }
}

impl OnceInstant {
    fn millis(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}
