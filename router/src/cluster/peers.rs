//! What this node has heard from the others on `oort.<cluster>.hello`: who is alive, who is
//! leaving, and whether another process announces itself under this node's own id.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use oort_common::cluster::Hello;
use oort_common::{Epoch, NodeId};

/// The latest announcement of every peer, and when it arrived.
pub(crate) struct PeerTable {
    me: NodeId,
    incarnation: Epoch,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    seen: HashMap<NodeId, (Instant, Hello)>,
    /// Another run of this node's id announced itself (its incarnation, when).
    impostor: Option<(Epoch, Instant)>,
}

impl PeerTable {
    pub(crate) fn new(me: NodeId, incarnation: Epoch) -> Self {
        Self {
            me,
            incarnation,
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update is a single insert or retain: a poisoned table is still consistent.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records an announcement. One under this node's own id but another incarnation comes
    /// from a second process configured with the same `node_id`, unless it is leaving (the
    /// previous run of this node saying goodbye).
    pub(crate) fn record(&self, hello: Hello) {
        let mut state = self.lock();
        if hello.node == self.me {
            if hello.incarnation != self.incarnation && !hello.leaving {
                state.impostor = Some((hello.incarnation, Instant::now()));
            }
            return;
        }
        state
            .seen
            .insert(hello.node.clone(), (Instant::now(), hello));
    }

    /// The incarnation of another process announcing this node's id within `window`.
    pub(crate) fn impostor_within(&self, window: Duration) -> Option<Epoch> {
        self.lock()
            .impostor
            .filter(|(_, at)| at.elapsed() < window)
            .map(|(incarnation, _)| incarnation)
    }

    /// Peers heard from within `timeout` that are not leaving.
    pub(crate) fn alive(&self, timeout: Duration) -> Vec<(NodeId, Hello)> {
        self.lock()
            .seen
            .iter()
            .filter(|(_, (at, hello))| at.elapsed() < timeout && !hello.leaving)
            .map(|(node, (_, hello))| (node.clone(), hello.clone()))
            .collect()
    }

    /// Names of the peers heard from within `timeout` that are not leaving.
    pub(crate) fn alive_names(&self, timeout: Duration) -> Vec<NodeId> {
        self.alive(timeout)
            .into_iter()
            .map(|(node, _)| node)
            .collect()
    }

    /// True when `node` was heard from within `timeout` (leaving or not).
    pub(crate) fn heard_within(&self, node: &NodeId, timeout: Duration) -> bool {
        self.lock()
            .seen
            .get(node)
            .is_some_and(|(at, _)| at.elapsed() < timeout)
    }

    /// Peers that announced they are leaving, with the incarnation that is leaving.
    pub(crate) fn leaving(&self) -> Vec<(NodeId, Epoch)> {
        self.lock()
            .seen
            .iter()
            .filter(|(_, (_, hello))| hello.leaving)
            .map(|(node, (_, hello))| (node.clone(), hello.incarnation))
            .collect()
    }

    /// The incarnation a peer last announced.
    pub(crate) fn incarnation_of(&self, node: &NodeId) -> Option<Epoch> {
        self.lock()
            .seen
            .get(node)
            .map(|(_, hello)| hello.incarnation)
    }

    /// True when some live peer reports membership of an initialized cluster.
    pub(crate) fn cluster_seen(&self, timeout: Duration) -> bool {
        self.alive(timeout)
            .iter()
            .any(|(_, hello)| hello.in_cluster)
    }

    /// A leader some live peer announces.
    pub(crate) fn announced_leader(&self, timeout: Duration) -> Option<NodeId> {
        self.alive(timeout)
            .into_iter()
            .find_map(|(_, hello)| hello.leader)
    }

    /// When each peer was last heard from, and the index it had applied.
    pub(crate) fn last_seen(&self) -> BTreeMap<NodeId, (Duration, u64)> {
        self.lock()
            .seen
            .iter()
            .map(|(node, (at, hello))| (node.clone(), (at.elapsed(), hello.applied)))
            .collect()
    }

    pub(crate) fn forget_older_than(&self, age: Duration) {
        self.lock().seen.retain(|_, (at, _)| at.elapsed() < age);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(node: &str, incarnation: u64, leaving: bool) -> Hello {
        Hello {
            node: NodeId::from(node),
            incarnation: Epoch(incarnation),
            in_cluster: true,
            leader: None,
            term: 1,
            applied: 0,
            leaving,
        }
    }

    #[test]
    fn another_process_with_this_nodes_id_is_noticed_unless_it_is_leaving() {
        let peers = PeerTable::new(NodeId::from("n1"), Epoch(10));
        let window = Duration::from_secs(60);
        peers.record(hello("n1", 10, false));
        assert_eq!(peers.impostor_within(window), None, "our own announcement");
        peers.record(hello("n1", 5, true));
        assert_eq!(
            peers.impostor_within(window),
            None,
            "an earlier run leaving"
        );
        peers.record(hello("n1", 7, false));
        assert_eq!(peers.impostor_within(window), Some(Epoch(7)));
        assert!(peers.alive(window).is_empty(), "not listed as a peer");
    }

    #[test]
    fn leaving_peers_are_not_alive() {
        let peers = PeerTable::new(NodeId::from("n1"), Epoch(1));
        peers.record(hello("n2", 3, false));
        peers.record(hello("n3", 4, true));
        let window = Duration::from_secs(60);
        assert_eq!(peers.alive_names(window), vec![NodeId::from("n2")]);
        assert_eq!(peers.leaving(), vec![(NodeId::from("n3"), Epoch(4))]);
        assert!(peers.heard_within(&NodeId::from("n3"), window));
    }
}
