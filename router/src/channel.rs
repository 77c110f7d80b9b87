//! What a publish and a presence query answer, single node or clustered.

use oort_common::{NodeId, SessionKey};

/// What became of one publish.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PublishOutcome {
    /// Sessions that took the message (`ok` or `buffered`), each counted once however many
    /// of the channels it is in.
    pub sessions: u64,
    /// Nodes where at least one session took it.
    pub nodes: Vec<NodeId>,
    /// Nodes holding subscribers (as this node's replica of the directory says) that did not
    /// answer in time: their sessions may or may not have the message.
    pub unreachable: Vec<NodeId>,
}

/// Who is subscribed to a channel, cluster-wide.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Presence {
    /// Sessions subscribed, on every node that answered.
    pub count: u64,
    /// Up to the asked limit of them, in key order after the asked key, with their nodes.
    pub sessions: Vec<(SessionKey, NodeId)>,
    /// Nodes holding subscribers that did not answer: `count` lacks theirs.
    pub unreachable: Vec<NodeId>,
}

/// Merges one node's page of subscribers into `pages`, keeping the first `limit` keys.
pub(crate) fn merge_page(
    pages: &mut Vec<(SessionKey, NodeId)>,
    node: &NodeId,
    keys: Vec<SessionKey>,
    limit: usize,
) {
    pages.extend(keys.into_iter().map(|key| (key, node.clone())));
    pages.sort();
    pages.truncate(limit);
}
