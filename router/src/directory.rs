//! The session directory: which node holds each session, and which nodes are up. This is the
//! raft state machine's data; applying a command here is deterministic, so every replica that
//! applies the same log holds the same directory.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use oort_common::cluster::{
    DirectoryCommand, DirectoryResponse, DirectorySnapshot, NodeRecord, NodeSessions, Owner,
    StreamEntry, UserLimit,
};
use oort_common::{Epoch, NodeId, SessionKey};

use crate::session_table::SessionTable;
use crate::snapshot_encoder::{self, HeldBy, NodeSessionsRef, SnapshotRef};

/// Who owns a Durable Stream, as the router answers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamOwner {
    /// The node that claimed it last.
    pub node: NodeId,
    /// The claim's generation: greater for every later claim of the name, by any node.
    pub generation: u64,
    /// Whether that node still holds it: it is up, in the run that claimed the stream. A stream
    /// whose owner is not live lost its contents with that run, and may be claimed again.
    pub live: bool,
}

/// Session key -> owner, the node table, which nodes hold subscribers of each channel, and
/// which node owns each Durable Stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Directory {
    sessions: SessionTable,
    nodes: BTreeMap<NodeId, NodeRecord>,
    /// Channel -> the nodes holding subscribers of it (never an empty set).
    channels: HashMap<String, BTreeSet<NodeId>>,
    /// User -> their sessions, oldest first (never an empty list).
    users: HashMap<String, Vec<SessionKey>>,
    /// Session -> its user, for the sessions that have one.
    user_of: HashMap<SessionKey, String>,
    /// Durable Stream name -> its owner. Kept when the owner goes down or restarts (the entry
    /// is then not live), so that a reader learns the owner is gone.
    streams: HashMap<String, StreamEntry>,
    /// The generation of the next successful claim; 0 stands for 1 (a `Default` directory and
    /// a snapshot from before streams both start there).
    next_stream_generation: u64,
}

impl Directory {
    /// Applies one command.
    pub fn apply(&mut self, command: &DirectoryCommand) -> DirectoryResponse {
        let mut refused = Vec::new();
        if let DirectoryCommand::Admit {
            node,
            sessions,
            limit,
        } = command
        {
            return self.admit(node, sessions, *limit);
        }
        let changed = match command {
            DirectoryCommand::Register { node, sessions } => {
                self.register(node, sessions, &mut refused)
            }
            DirectoryCommand::Unregister { node, sessions } => self.unregister(node, sessions),
            DirectoryCommand::NodeUp { node, epoch } => {
                let record = self.nodes.entry(node.clone()).or_insert(NodeRecord {
                    up: true,
                    since: *epoch,
                    sessions: 0,
                });
                record.up = true;
                let new_run = *epoch > record.since;
                record.since = record.since.max(*epoch);
                let since = record.since;
                if new_run {
                    // The earlier run's subscribers are gone with it.
                    self.drop_interest(node);
                }
                // Sessions of an earlier run (a crash and a restart within the node timeout)
                // died with it: the directory stops routing to them.
                let purged = self.drop_sessions_where(|owner, at| owner == node && at < since);
                if let Some(record) = self.nodes.get_mut(node) {
                    record.sessions = record.sessions.saturating_sub(purged);
                }
                purged
            }
            DirectoryCommand::NodeDown { node } => {
                self.drop_interest(node);
                self.purge(node)
            }
            DirectoryCommand::Interest { node, changes } => self.interest(node, changes),
            DirectoryCommand::ForgetNode { node } => {
                if self.nodes.get(node).is_some_and(|record| !record.up) {
                    self.nodes.remove(node);
                }
                0
            }
            DirectoryCommand::Admit { .. } => 0,
            DirectoryCommand::ClaimStream { node, name } => {
                if self.claim_stream(node, name) {
                    1
                } else {
                    refused.push(0);
                    0
                }
            }
            DirectoryCommand::DropStream {
                node,
                name,
                generation,
            } => self.drop_stream(node, name, *generation),
        };
        DirectoryResponse {
            changed,
            refused,
            ..DirectoryResponse::default()
        }
    }

    /// Registers new sessions with their users, within each user's limit.
    fn admit(
        &mut self,
        node: &NodeId,
        sessions: &[(SessionKey, Epoch, Option<String>)],
        limit: UserLimit,
    ) -> DirectoryResponse {
        let mut response = DirectoryResponse::default();
        for (position, (key, epoch, user)) in sessions.iter().enumerate() {
            let position = position as u32;
            if !self.can_register(node, key, *epoch) {
                response.refused.push(position);
                continue;
            }
            if let Some(user) = user {
                let held = self
                    .users
                    .get(user)
                    .map_or(0, |keys| keys.iter().filter(|k| *k != key).count());
                if limit.max_sessions > 0 && held >= limit.max_sessions as usize {
                    if !limit.close_oldest {
                        response.refused.push(position);
                        response.over_user_limit.push(position);
                        continue;
                    }
                    // Make room: the user's oldest sessions go (other than this key).
                    let excess = held + 1 - limit.max_sessions as usize;
                    let oldest: Vec<SessionKey> = self.users[user]
                        .iter()
                        .filter(|k| *k != key)
                        .take(excess)
                        .cloned()
                        .collect();
                    for old in oldest {
                        if let Some(owner) = self.sessions.remove(old.as_str()) {
                            self.count(&owner.node, -1);
                            response.evicted.push((old.clone(), owner));
                        }
                        self.forget_user(&old);
                    }
                }
            }
            let mut refused = Vec::new();
            response.changed += self.register(node, &[(key.clone(), *epoch)], &mut refused);
            self.forget_user(key);
            if let Some(user) = user {
                self.users
                    .entry(user.clone())
                    .or_default()
                    .push(key.clone());
                self.user_of.insert(key.clone(), user.clone());
            }
        }
        response
    }

    /// Whether `register` would take this registration (rather than refuse it).
    fn can_register(&self, node: &NodeId, key: &SessionKey, epoch: Epoch) -> bool {
        let up_since = match self.nodes.get(node) {
            Some(record) if record.up => record.since,
            _ => return false,
        };
        epoch >= up_since
            && !self
                .sessions
                .owned_by(key.as_str())
                .is_some_and(|(current, at)| current == node && at > epoch)
    }

    /// Gives `name` to `node` unless its owner is live; returns whether it did.
    fn claim_stream(&mut self, node: &NodeId, name: &str) -> bool {
        let run = match self.nodes.get(node) {
            Some(record) if record.up => record.since,
            // An unknown or down node could not serve the stream it claims.
            _ => return false,
        };
        if self
            .streams
            .get(name)
            .is_some_and(|entry| self.is_live(entry))
        {
            return false;
        }
        let generation = self.next_stream_generation.max(1);
        // Generations never repeat: at the (unreachable) end of the range, claims are refused
        // rather than handing one out twice.
        let Some(next) = generation.checked_add(1) else {
            return false;
        };
        self.next_stream_generation = next;
        self.streams.insert(
            name.to_owned(),
            StreamEntry {
                node: node.clone(),
                generation,
                run,
            },
        );
        true
    }

    /// Removes `name`'s entry if it is still `node`'s claim under `generation`.
    /// Generations are unique in the directory, so matching one is enough: any node may drop
    /// a generation (the node that served a delete does, whoever owned the stream), and a
    /// stale drop never removes a newer claim.
    fn drop_stream(&mut self, _node: &NodeId, name: &str, generation: u64) -> u64 {
        if self
            .streams
            .get(name)
            .is_some_and(|entry| entry.generation == generation)
        {
            self.streams.remove(name);
            1
        } else {
            0
        }
    }

    /// The owner's record is up, in the run that claimed the stream.
    fn is_live(&self, entry: &StreamEntry) -> bool {
        self.nodes
            .get(&entry.node)
            .is_some_and(|record| record.up && record.since == entry.run)
    }

    /// The owner of the Durable Stream `name`, and whether it is live.
    pub fn stream(&self, name: &str) -> Option<StreamOwner> {
        self.streams.get(name).map(|entry| StreamOwner {
            node: entry.node.clone(),
            generation: entry.generation,
            live: self.is_live(entry),
        })
    }

    /// The entry of the Durable Stream `name` as recorded.
    pub fn stream_entry(&self, name: &str) -> Option<&StreamEntry> {
        self.streams.get(name)
    }

    /// Number of Durable Streams with an entry (live or not).
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// Removes the sessions whose owner matches; returns how many.
    fn drop_sessions_where(&mut self, matches: impl Fn(&NodeId, Epoch) -> bool) -> u64 {
        let gone = self.sessions.remove_where(matches);
        if !self.user_of.is_empty() {
            for key in &gone {
                self.forget_user(key);
            }
        }
        gone.len() as u64
    }

    /// The key has no user any more.
    fn forget_user(&mut self, key: &SessionKey) {
        let Some(user) = self.user_of.remove(key) else {
            return;
        };
        if let Some(keys) = self.users.get_mut(&user) {
            keys.retain(|k| k != key);
            if keys.is_empty() {
                self.users.remove(&user);
            }
        }
    }

    /// The user's sessions, oldest first, with their owners.
    pub fn user_sessions(&self, user: &str) -> Vec<(SessionKey, Owner)> {
        self.users
            .get(user)
            .into_iter()
            .flatten()
            .filter_map(|key| Some((key.clone(), self.sessions.get(key.as_str())?)))
            .collect()
    }

    /// Registers what it can; the positions of refused registrations go to `refused`.
    fn register(
        &mut self,
        node: &NodeId,
        sessions: &[(SessionKey, Epoch)],
        refused: &mut Vec<u32>,
    ) -> u64 {
        let since = match self.nodes.get(node) {
            Some(record) if record.up => record.since,
            // An unknown or down node registers nothing: every registration is refused.
            _ => {
                refused.extend((0..sessions.len()).map(|i| i as u32));
                return 0;
            }
        };
        let mut changed = 0;
        for (position, (key, epoch)) in sessions.iter().enumerate() {
            if *epoch < since {
                refused.push(position as u32);
                continue;
            }
            let owner = Owner {
                node: node.clone(),
                epoch: *epoch,
            };
            match self.sessions.owned_by(key.as_str()) {
                // The same registration again (a write retried at a new leader) changes
                // nothing; an older one from the same node is stale.
                Some((current, at)) if current == node && at == *epoch => continue,
                Some((current, at)) if current == node && at > *epoch => {
                    refused.push(position as u32);
                    continue;
                }
                Some((current, _)) => {
                    let previous = current.clone();
                    self.count(&previous, -1);
                }
                None => {}
            }
            self.sessions.insert(key, owner);
            self.count(node, 1);
            changed += 1;
        }
        changed
    }

    fn unregister(&mut self, node: &NodeId, sessions: &[(SessionKey, Epoch)]) -> u64 {
        let mut changed = 0;
        for (key, epoch) in sessions {
            // Only the registration this unregister refers to is removed: a newer one (another
            // node, or the same node under a newer epoch) stays.
            if self
                .sessions
                .owned_by(key.as_str())
                .is_some_and(|(owner, at)| owner == node && at == *epoch)
            {
                self.sessions.remove(key.as_str());
                self.forget_user(key);
                self.count(node, -1);
                changed += 1;
            }
        }
        changed
    }

    fn purge(&mut self, node: &NodeId) -> u64 {
        let purged = self.drop_sessions_where(|owner, _| owner == node);
        let record = self.nodes.entry(node.clone()).or_insert(NodeRecord {
            up: false,
            since: Epoch(0),
            sessions: 0,
        });
        record.up = false;
        record.sessions = 0;
        purged
    }

    /// Records which channels `node` holds subscribers of. A node that is not up holds none.
    fn interest(&mut self, node: &NodeId, changes: &[(String, bool)]) -> u64 {
        if !self.nodes.get(node).is_some_and(|record| record.up) {
            return 0;
        }
        let mut changed = 0;
        for (channel, held) in changes {
            let was = if *held {
                !self
                    .channels
                    .entry(channel.clone())
                    .or_default()
                    .insert(node.clone())
            } else {
                let Some(nodes) = self.channels.get_mut(channel) else {
                    continue;
                };
                let was = nodes.remove(node);
                if nodes.is_empty() {
                    self.channels.remove(channel);
                }
                was
            };
            if was != *held {
                changed += 1;
            }
        }
        changed
    }

    /// Forgets every channel interest of `node`.
    fn drop_interest(&mut self, node: &NodeId) {
        self.channels.retain(|_, nodes| {
            nodes.remove(node);
            !nodes.is_empty()
        });
    }

    /// The nodes holding subscribers of `channel`.
    pub fn channel_nodes(&self, channel: &str) -> Vec<NodeId> {
        self.channels
            .get(channel)
            .map(|nodes| nodes.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Number of channels with subscribers somewhere.
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    fn count(&mut self, node: &NodeId, delta: i64) {
        if let Some(record) = self.nodes.get_mut(node) {
            record.sessions = record.sessions.saturating_add_signed(delta);
        }
    }

    /// The owner of `key`, if registered.
    pub fn owner(&self, key: &str) -> Option<Owner> {
        self.sessions.get(key)
    }

    /// Every node the directory has heard of.
    pub fn nodes(&self) -> &BTreeMap<NodeId, NodeRecord> {
        &self.nodes
    }

    /// Number of registered sessions, cluster-wide.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// True when no session is registered.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// The directory in its snapshot form (sessions grouped by owner): the owned reference
    /// `encode_snapshot` is held to, byte for byte, in the tests.
    #[cfg(test)]
    pub(crate) fn to_snapshot(&self, snapshot: &mut DirectorySnapshot) {
        let mut by_node: BTreeMap<&NodeId, Vec<(SessionKey, Epoch)>> = BTreeMap::new();
        for (key, node, epoch) in self.sessions.iter() {
            by_node
                .entry(node)
                .or_default()
                .push((SessionKey::from(key), epoch));
        }
        snapshot.nodes = self
            .nodes
            .iter()
            .map(|(node, record)| (node.clone(), record.clone()))
            .collect();
        snapshot.sessions = by_node
            .into_iter()
            .map(|(node, sessions)| NodeSessions {
                node: node.clone(),
                sessions,
            })
            .collect();
        let mut channels: Vec<(String, Vec<NodeId>)> = self
            .channels
            .iter()
            .map(|(channel, nodes)| (channel.clone(), nodes.iter().cloned().collect()))
            .collect();
        channels.sort();
        snapshot.channels = channels;
        let mut users: Vec<(String, Vec<SessionKey>)> = self
            .users
            .iter()
            .map(|(user, keys)| (user.clone(), keys.clone()))
            .collect();
        users.sort();
        snapshot.users = users;
        let mut streams: Vec<(String, StreamEntry)> = self
            .streams
            .iter()
            .map(|(name, entry)| (name.clone(), entry.clone()))
            .collect();
        streams.sort_by(|a, b| a.0.cmp(&b.0));
        snapshot.streams = streams;
        snapshot.next_stream_generation = self.next_stream_generation;
    }

    /// This directory's snapshot, encoded: the bytes `to_snapshot` and `wire::encode` give,
    /// written straight from the tables (no copy of the keys).
    pub fn encode_snapshot(
        &self,
        last_applied: &Option<oort_common::cluster::raft::LogId>,
        last_membership: &oort_common::cluster::raft::StoredMembership,
    ) -> Vec<u8> {
        let table = &self.sessions;
        let sessions = snapshot_encoder::counts(table)
            .into_iter()
            .map(|(node, count)| NodeSessionsRef {
                node,
                sessions: HeldBy { table, node, count },
            })
            .collect();
        let mut channels: Vec<(&String, Vec<&NodeId>)> = self
            .channels
            .iter()
            .map(|(channel, nodes)| (channel, nodes.iter().collect()))
            .collect();
        channels.sort();
        let mut users: Vec<(&String, &Vec<SessionKey>)> = self.users.iter().collect();
        users.sort();
        let mut streams: Vec<(&String, &StreamEntry)> = self.streams.iter().collect();
        streams.sort_by(|a, b| a.0.cmp(b.0));
        oort_common::wire::encode(&SnapshotRef {
            last_applied,
            last_membership,
            nodes: self.nodes.iter().collect(),
            sessions,
            channels,
            users,
            streams,
            next_stream_generation: self.next_stream_generation,
        })
    }

    /// Rebuilds a directory from its snapshot form.
    pub fn from_snapshot(snapshot: DirectorySnapshot) -> Self {
        let mut sessions = SessionTable::default();
        for NodeSessions {
            node,
            sessions: held,
        } in snapshot.sessions
        {
            for (key, epoch) in held {
                sessions.insert(
                    &key,
                    Owner {
                        node: node.clone(),
                        epoch,
                    },
                );
            }
        }
        Self {
            sessions,
            nodes: snapshot.nodes.into_iter().collect(),
            channels: snapshot
                .channels
                .into_iter()
                .filter(|(_, nodes)| !nodes.is_empty())
                .map(|(channel, nodes)| (channel, nodes.into_iter().collect()))
                .collect(),
            user_of: snapshot
                .users
                .iter()
                .flat_map(|(user, keys)| keys.iter().map(|key| (key.clone(), user.clone())))
                .collect(),
            users: snapshot
                .users
                .into_iter()
                .filter(|(_, keys)| !keys.is_empty())
                .collect(),
            // Never below a generation already handed out, whatever the snapshot says: a
            // repeated generation would let a stale drop remove a newer claim.
            next_stream_generation: snapshot
                .streams
                .iter()
                .map(|(_, entry)| entry.generation.saturating_add(1))
                .fold(snapshot.next_stream_generation, u64::max),
            streams: snapshot.streams.into_iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn key(k: &str) -> SessionKey {
        SessionKey::from(k)
    }

    fn node(n: &str) -> NodeId {
        NodeId::from(n)
    }

    fn up(directory: &mut Directory, n: &str, epoch: u64) {
        directory.apply(&DirectoryCommand::NodeUp {
            node: node(n),
            epoch: Epoch(epoch),
        });
    }

    fn register(directory: &mut Directory, n: &str, k: &str, epoch: u64) -> u64 {
        directory
            .apply(&DirectoryCommand::Register {
                node: node(n),
                sessions: vec![(key(k), Epoch(epoch))],
            })
            .changed
    }

    fn unregister(directory: &mut Directory, n: &str, k: &str, epoch: u64) -> u64 {
        directory
            .apply(&DirectoryCommand::Unregister {
                node: node(n),
                sessions: vec![(key(k), Epoch(epoch))],
            })
            .changed
    }

    #[test]
    fn a_stale_unregister_after_reregistration_elsewhere_is_ignored() {
        let mut directory = Directory::default();
        up(&mut directory, "a", 1);
        up(&mut directory, "b", 1);
        register(&mut directory, "a", "k", 10);
        register(&mut directory, "b", "k", 20);
        assert_eq!(unregister(&mut directory, "a", "k", 10), 0);
        assert_eq!(
            directory.owner("k").map(|o| o.node.to_string()).as_deref(),
            Some("b")
        );
        assert_eq!(directory.nodes()[&node("a")].sessions, 0);
        assert_eq!(directory.nodes()[&node("b")].sessions, 1);
        assert_eq!(unregister(&mut directory, "b", "k", 20), 1);
        assert!(directory.owner("k").is_none());
    }

    #[test]
    fn node_down_purges_its_sessions_and_refuses_its_registrations() {
        let mut directory = Directory::default();
        up(&mut directory, "a", 1);
        up(&mut directory, "b", 1);
        register(&mut directory, "a", "x", 5);
        register(&mut directory, "a", "y", 6);
        register(&mut directory, "b", "z", 7);
        let purged = directory
            .apply(&DirectoryCommand::NodeDown { node: node("a") })
            .changed;
        assert_eq!(purged, 2);
        assert!(directory.owner("x").is_none());
        assert_eq!(
            directory.owner("z").map(|o| o.node.to_string()).as_deref(),
            Some("b")
        );
        assert_eq!(
            register(&mut directory, "a", "late", 8),
            0,
            "a down node registers nothing"
        );
        up(&mut directory, "a", 100);
        assert_eq!(
            register(&mut directory, "a", "old-run", 50),
            0,
            "an earlier run's epoch is refused"
        );
        assert_eq!(register(&mut directory, "a", "new-run", 101), 1);
    }

    #[test]
    fn a_node_coming_up_again_drops_what_its_earlier_run_held() {
        let mut directory = Directory::default();
        up(&mut directory, "a", 1);
        register(&mut directory, "a", "before-the-crash", 5);
        register(&mut directory, "a", "also", 6);
        // Restarted within the node timeout: never declared down, up again with a new epoch.
        let purged = directory
            .apply(&DirectoryCommand::NodeUp {
                node: node("a"),
                epoch: Epoch(100),
            })
            .changed;
        assert_eq!(purged, 2);
        assert!(directory.owner("before-the-crash").is_none());
        assert_eq!(directory.nodes()[&node("a")].sessions, 0);
        let refused = directory.apply(&DirectoryCommand::Register {
            node: node("a"),
            sessions: vec![(key("late"), Epoch(7)), (key("fresh"), Epoch(101))],
        });
        assert_eq!(
            refused.refused,
            [0],
            "the earlier run's late registration is refused"
        );
        assert_eq!(directory.owner("fresh").map(|o| o.epoch), Some(Epoch(101)));
    }

    fn interest(directory: &mut Directory, n: &str, channel: &str, held: bool) -> u64 {
        directory
            .apply(&DirectoryCommand::Interest {
                node: node(n),
                changes: vec![(channel.to_owned(), held)],
            })
            .changed
    }

    #[test]
    fn channel_interest_follows_nodes_and_their_runs() {
        let mut directory = Directory::default();
        up(&mut directory, "a", 1);
        up(&mut directory, "b", 1);
        assert_eq!(interest(&mut directory, "a", "room", true), 1);
        assert_eq!(
            interest(&mut directory, "a", "room", true),
            0,
            "already held"
        );
        interest(&mut directory, "b", "room", true);
        interest(&mut directory, "b", "lobby", true);
        assert_eq!(directory.channel_nodes("room"), [node("a"), node("b")]);
        assert_eq!(interest(&mut directory, "a", "room", false), 1);
        assert_eq!(directory.channel_nodes("room"), [node("b")]);
        assert_eq!(
            interest(&mut directory, "ghost", "room", true),
            0,
            "unknown nodes hold nothing"
        );
        // The same run announcing itself again keeps its interest; a new run does not.
        up(&mut directory, "b", 1);
        assert_eq!(directory.channel_nodes("lobby"), [node("b")]);
        up(&mut directory, "b", 5);
        assert!(directory.channel_nodes("lobby").is_empty());
        assert_eq!(directory.channel_count(), 0);
        interest(&mut directory, "a", "room", true);
        directory.apply(&DirectoryCommand::NodeDown { node: node("a") });
        assert!(directory.channel_nodes("room").is_empty());
        let mut snapshot = DirectorySnapshot::default();
        interest(&mut directory, "b", "x", true);
        directory.to_snapshot(&mut snapshot);
        assert_eq!(Directory::from_snapshot(snapshot), directory);
    }

    fn admit(
        directory: &mut Directory,
        k: &str,
        epoch: u64,
        user: &str,
        limit: UserLimit,
    ) -> DirectoryResponse {
        directory.apply(&DirectoryCommand::Admit {
            node: node("a"),
            sessions: vec![(key(k), Epoch(epoch), Some(user.to_owned()))],
            limit,
        })
    }

    fn user_keys(directory: &Directory, user: &str) -> Vec<String> {
        directory
            .user_sessions(user)
            .into_iter()
            .map(|(key, _)| key.to_string())
            .collect()
    }

    #[test]
    fn a_user_past_the_limit_loses_the_oldest_session_or_the_new_one() {
        let mut directory = Directory::default();
        up(&mut directory, "a", 1);
        let close_oldest = UserLimit {
            max_sessions: 2,
            close_oldest: true,
        };
        admit(&mut directory, "k1", 1, "u", close_oldest);
        admit(&mut directory, "k2", 2, "u", close_oldest);
        let third = admit(&mut directory, "k3", 3, "u", close_oldest);
        assert_eq!(third.evicted.len(), 1);
        assert_eq!(third.evicted[0].0, key("k1"));
        assert!(
            directory.owner("k1").is_none(),
            "the evicted session left the directory"
        );
        assert_eq!(user_keys(&directory, "u"), ["k2", "k3"]);
        // The same key again does not count against itself.
        assert!(
            admit(&mut directory, "k3", 4, "u", close_oldest)
                .evicted
                .is_empty()
        );

        let refuse = UserLimit {
            max_sessions: 2,
            close_oldest: false,
        };
        let refused = admit(&mut directory, "k4", 5, "u", refuse);
        assert_eq!(
            (refused.refused, refused.over_user_limit),
            (vec![0], vec![0])
        );
        assert!(directory.owner("k4").is_none());
        // Sessions ending free their slots; a session moving between nodes keeps its user.
        unregister(&mut directory, "a", "k2", 2);
        assert!(
            admit(&mut directory, "k4", 6, "u", refuse)
                .refused
                .is_empty()
        );
        up(&mut directory, "b", 1);
        register(&mut directory, "b", "k4", 7);
        assert_eq!(user_keys(&directory, "u"), ["k3", "k4"]);
        assert_eq!(directory.user_sessions("u")[1].1.node, node("b"));
        directory.apply(&DirectoryCommand::NodeDown { node: node("b") });
        assert_eq!(user_keys(&directory, "u"), ["k3"]);
        let mut snapshot = DirectorySnapshot::default();
        directory.to_snapshot(&mut snapshot);
        assert_eq!(Directory::from_snapshot(snapshot), directory);
    }

    fn claim(directory: &mut Directory, n: &str, name: &str) -> DirectoryResponse {
        directory.apply(&DirectoryCommand::ClaimStream {
            node: node(n),
            name: name.to_owned(),
        })
    }

    fn drop_stream(directory: &mut Directory, n: &str, name: &str, generation: u64) -> u64 {
        directory
            .apply(&DirectoryCommand::DropStream {
                node: node(n),
                name: name.to_owned(),
                generation,
            })
            .changed
    }

    fn stream(directory: &Directory, name: &str) -> Option<(String, u64, bool)> {
        directory
            .stream(name)
            .map(|owner| (owner.node.to_string(), owner.generation, owner.live))
    }

    #[test]
    fn a_stream_is_claimed_once_while_its_owner_is_live() {
        let mut directory = Directory::default();
        up(&mut directory, "a", 1);
        up(&mut directory, "b", 1);
        let first = claim(&mut directory, "a", "s");
        assert_eq!((first.changed, first.refused), (1, vec![]));
        assert_eq!(stream(&directory, "s"), Some(("a".into(), 1, true)));
        for claimer in ["a", "b"] {
            let again = claim(&mut directory, claimer, "s");
            assert_eq!(
                (again.changed, again.refused),
                (0, vec![0]),
                "{claimer} claims a stream a holds"
            );
        }
        assert_eq!(stream(&directory, "s"), Some(("a".into(), 1, true)));
        assert_eq!(claim(&mut directory, "b", "t").refused, Vec::<u32>::new());
        assert_eq!(stream(&directory, "t"), Some(("b".into(), 2, true)));
        assert_eq!(
            claim(&mut directory, "ghost", "u").refused,
            [0],
            "an unknown node claims nothing"
        );
        assert!(directory.stream("u").is_none());
    }

    #[test]
    fn a_stale_drop_leaves_a_newer_claim() {
        let mut directory = Directory::default();
        up(&mut directory, "a", 1);
        up(&mut directory, "b", 1);
        claim(&mut directory, "a", "s");
        assert_eq!(
            drop_stream(&mut directory, "a", "s", 2),
            0,
            "not that claim"
        );
        // Any node may drop the current generation (the one that served the delete does).
        assert_eq!(drop_stream(&mut directory, "b", "s", 1), 1);
        assert!(directory.stream("s").is_none());
        // Claimed again (by b), then a's late drop of its own old claim arrives.
        claim(&mut directory, "b", "s");
        assert_eq!(drop_stream(&mut directory, "a", "s", 1), 0);
        assert_eq!(stream(&directory, "s"), Some(("b".into(), 2, true)));
    }

    #[test]
    fn a_stream_outlives_its_owner_as_not_live_and_is_claimed_anew() {
        let mut directory = Directory::default();
        up(&mut directory, "a", 1);
        up(&mut directory, "b", 1);
        claim(&mut directory, "a", "s");
        claim(&mut directory, "a", "t");
        directory.apply(&DirectoryCommand::NodeDown { node: node("a") });
        assert_eq!(
            stream(&directory, "s"),
            Some(("a".into(), 1, false)),
            "kept, not live"
        );
        assert_eq!(claim(&mut directory, "a", "s").refused, [0], "a is down");
        directory.apply(&DirectoryCommand::ForgetNode { node: node("a") });
        assert_eq!(stream(&directory, "s"), Some(("a".into(), 1, false)));
        assert_eq!(claim(&mut directory, "b", "s").refused, Vec::<u32>::new());
        assert_eq!(stream(&directory, "s"), Some(("b".into(), 3, true)));

        // b restarts under the same id (a new epoch, never declared down): its streams died
        // with its earlier run, and its new run claims them again under a greater generation.
        up(&mut directory, "b", 1);
        assert_eq!(
            stream(&directory, "s"),
            Some(("b".into(), 3, true)),
            "the same run again"
        );
        up(&mut directory, "b", 7);
        assert_eq!(stream(&directory, "s"), Some(("b".into(), 3, false)));
        assert_eq!(claim(&mut directory, "b", "s").refused, Vec::<u32>::new());
        assert_eq!(stream(&directory, "s"), Some(("b".into(), 4, true)));
        assert_eq!(directory.stream_entry("s").map(|e| e.run), Some(Epoch(7)));
        assert_eq!(
            drop_stream(&mut directory, "b", "s", 3),
            0,
            "the earlier run's drop"
        );

        let mut snapshot = DirectorySnapshot::default();
        directory.to_snapshot(&mut snapshot);
        assert_eq!(snapshot.next_stream_generation, 5);
        let mut restored = Directory::from_snapshot(snapshot);
        assert_eq!(restored, directory);
        up(&mut restored, "a", 9);
        assert_eq!(claim(&mut restored, "a", "t").refused, Vec::<u32>::new());
        assert_eq!(stream(&restored, "t"), Some(("a".into(), 5, true)));
    }

    #[test]
    fn a_snapshot_never_lowers_the_next_generation() {
        let mut directory = Directory::default();
        up(&mut directory, "a", 1);
        claim(&mut directory, "a", "s");
        claim(&mut directory, "a", "t");
        let mut snapshot = DirectorySnapshot::default();
        directory.to_snapshot(&mut snapshot);
        snapshot.next_stream_generation = 0;
        let mut restored = Directory::from_snapshot(snapshot);
        drop_stream(&mut restored, "a", "t", 2);
        restored.apply(&DirectoryCommand::NodeDown { node: node("a") });
        up(&mut restored, "a", 2);
        claim(&mut restored, "a", "s");
        assert_eq!(stream(&restored, "s"), Some(("a".into(), 3, true)));
    }

    #[test]
    fn unknown_nodes_register_nothing() {
        let mut directory = Directory::default();
        assert_eq!(register(&mut directory, "ghost", "k", 1), 0);
        assert!(directory.is_empty());
    }

    #[derive(Clone, Debug)]
    enum Op {
        Up(u8, u8),
        Down(u8),
        Register(u8, u8, u8),
        Unregister(u8, u8, u8),
        Admit(u8, u8, u8, u8, bool),
        Claim(u8, u8),
        DropStream(u8, u8, u8),
        Forget(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..3u8, 0..50u8).prop_map(|(n, e)| Op::Up(n, e)),
            (0..3u8).prop_map(Op::Down),
            (0..3u8, 0..6u8, 0..50u8).prop_map(|(n, k, e)| Op::Register(n, k, e)),
            (0..3u8, 0..6u8, 0..50u8).prop_map(|(n, k, e)| Op::Unregister(n, k, e)),
            (0..3u8, 0..6u8, 0..50u8, 0..2u8, any::<bool>())
                .prop_map(|(n, k, e, u, close)| Op::Admit(n, k, e, u, close)),
            (0..3u8, 0..3u8).prop_map(|(n, s)| Op::Claim(n, s)),
            (0..3u8, 0..3u8, 0..12u8).prop_map(|(n, s, g)| Op::DropStream(n, s, g)),
            (0..3u8).prop_map(Op::Forget),
        ]
    }

    fn command(op: &Op) -> DirectoryCommand {
        let n = |i: u8| node(&format!("n{i}"));
        let k = |i: u8| key(&format!("k{i}"));
        match *op {
            Op::Up(i, e) => DirectoryCommand::NodeUp {
                node: n(i),
                epoch: Epoch(u64::from(e)),
            },
            Op::Down(i) => DirectoryCommand::NodeDown { node: n(i) },
            Op::Register(i, j, e) => DirectoryCommand::Register {
                node: n(i),
                sessions: vec![(k(j), Epoch(u64::from(e)))],
            },
            Op::Unregister(i, j, e) => DirectoryCommand::Unregister {
                node: n(i),
                sessions: vec![(k(j), Epoch(u64::from(e)))],
            },
            Op::Admit(i, j, e, u, close_oldest) => DirectoryCommand::Admit {
                node: n(i),
                sessions: vec![(k(j), Epoch(u64::from(e)), Some(format!("u{u}")))],
                limit: UserLimit {
                    max_sessions: 2,
                    close_oldest,
                },
            },
            Op::Claim(i, j) => DirectoryCommand::ClaimStream {
                node: n(i),
                name: format!("s{j}"),
            },
            Op::DropStream(i, j, g) => DirectoryCommand::DropStream {
                node: n(i),
                name: format!("s{j}"),
                generation: u64::from(g),
            },
            Op::Forget(i) => DirectoryCommand::ForgetNode { node: n(i) },
        }
    }

    proptest! {
        /// Replicas applying the same log agree, and the per-node counts always match the
        /// sessions actually held; a down node holds nothing.
        #[test]
        fn apply_is_deterministic_and_counts_stay_exact(ops in proptest::collection::vec(op(), 0..80)) {
            let mut first = Directory::default();
            let mut second = Directory::default();
            let mut generations: HashMap<String, u64> = HashMap::new();
            for op in &ops {
                let command = command(op);
                prop_assert_eq!(first.apply(&command), second.apply(&command));
                for (name, record) in first.nodes() {
                    let held = first.sessions.iter().filter(|(_, owner, _)| *owner == name).count() as u64;
                    prop_assert_eq!(record.sessions, held);
                    if !record.up {
                        prop_assert_eq!(held, 0);
                    }
                }
                // The user index names registered sessions only, each once, within the limit.
                for (user, keys) in &first.users {
                    prop_assert!(keys.len() <= 2);
                    for key in keys {
                        prop_assert!(first.sessions.get(key.as_str()).is_some());
                        prop_assert_eq!(first.user_of.get(key), Some(user));
                    }
                }
                prop_assert_eq!(first.user_of.len(), first.users.values().map(Vec::len).sum::<usize>());
                // Every generation handed out is below the next one, and each name's
                // generation only grows.
                for (name, entry) in &first.streams {
                    prop_assert!(entry.generation >= 1 && entry.generation < first.next_stream_generation);
                    if let Some(before) = generations.get(name) {
                        prop_assert!(entry.generation >= *before);
                    }
                    generations.insert(name.clone(), entry.generation);
                }
            }
            prop_assert_eq!(&first, &second);
            let mut snapshot = DirectorySnapshot::default();
            first.to_snapshot(&mut snapshot);
            // The encoder that writes straight from the tables gives the owned form's bytes.
            prop_assert_eq!(
                first.encode_snapshot(&snapshot.last_applied, &snapshot.last_membership),
                oort_common::wire::encode(&snapshot)
            );
            prop_assert_eq!(Directory::from_snapshot(snapshot), first);
        }

        /// A claim succeeds exactly when the stream has no live owner and the claimer is up,
        /// and then with a generation greater than any before; a drop removes only the claim
        /// it names.
        #[test]
        fn claims_and_drops_follow_liveness_and_generations(ops in proptest::collection::vec(op(), 0..80), i in 0..3u8, j in 0..3u8, g in 0..12u8) {
            let mut directory = Directory::default();
            for op in &ops {
                directory.apply(&command(op));
            }
            let name = format!("s{j}");
            let claimer = node(&format!("n{i}"));
            let before = directory.stream(&name);
            let highest = directory.streams.values().map(|entry| entry.generation).max().unwrap_or(0);
            let claimer_up = directory.nodes().get(&claimer).is_some_and(|record| record.up);
            let mut claimed = directory.clone();
            let response = claimed.apply(&command(&Op::Claim(i, j)));
            let expect_won = claimer_up && !before.as_ref().is_some_and(|owner| owner.live);
            prop_assert_eq!(response.refused.is_empty(), expect_won);
            let after = claimed.stream(&name);
            if expect_won {
                let after = after.expect("a won claim leaves an entry");
                prop_assert_eq!(&after.node, &claimer);
                prop_assert!(after.live);
                prop_assert!(after.generation > highest);
            } else {
                prop_assert_eq!(after, before.clone());
            }
            let named = before.as_ref().is_some_and(|owner| owner.generation == u64::from(g));
            directory.apply(&command(&Op::DropStream(i, j, g)));
            if named {
                prop_assert!(directory.stream(&name).is_none());
            } else {
                prop_assert_eq!(directory.stream(&name), before);
            }
        }

        /// An unregister only ever removes the exact registration it names.
        #[test]
        fn unregister_removes_only_its_own_registration(ops in proptest::collection::vec(op(), 0..60), i in 0..3u8, j in 0..6u8, e in 0..50u8) {
            let mut directory = Directory::default();
            for op in &ops {
                directory.apply(&command(op));
            }
            let target = key(&format!("k{j}"));
            let before = directory.owner(target.as_str());
            directory.apply(&command(&Op::Unregister(i, j, e)));
            let after = directory.owner(target.as_str());
            let named = Owner { node: node(&format!("n{i}")), epoch: Epoch(u64::from(e)) };
            if before.as_ref() == Some(&named) {
                prop_assert!(after.is_none());
            } else {
                prop_assert_eq!(after, before);
            }
        }
    }
}
