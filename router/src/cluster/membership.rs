//! Discovery and membership. Every node announces itself on `oort.<cluster>.hello`; a node
//! outside the cluster bootstraps it (when `bootstrap_expect` nodes are seen and none has a
//! cluster) or asks the leader to join; the leader keeps `voters` voters, adds learners,
//! replaces voters that went silent, and purges the sessions of nodes that are gone.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use oort_common::cluster::{
    ControlRequest, ControlResponse, DirectoryCommand, Hello, NodeInfo, raft_id,
};
use oort_common::{NodeId, wire};
use openraft::{ChangeMembers, ServerState};
use tracing::{debug, info, warn};

use super::Inner;
use super::types::RaftId;
use crate::RouterError;

/// What this node has heard from the others.
#[derive(Default)]
pub(crate) struct Peers {
    seen: HashMap<NodeId, (Instant, Hello)>,
}

impl Peers {
    fn record(&mut self, hello: Hello) {
        self.seen
            .insert(hello.node.clone(), (Instant::now(), hello));
    }

    /// Peers heard from within `timeout` that are not leaving.
    pub(crate) fn alive(&self, timeout: Duration) -> impl Iterator<Item = (&NodeId, &Hello)> {
        self.seen
            .iter()
            .filter(move |(_, (at, hello))| at.elapsed() < timeout && !hello.leaving)
            .map(|(node, (_, hello))| (node, hello))
    }

    /// Peers that announced they are leaving.
    fn leaving(&self) -> Vec<NodeId> {
        self.seen
            .iter()
            .filter(|(_, (_, hello))| hello.leaving)
            .map(|(node, _)| node.clone())
            .collect()
    }

    /// When each peer was last heard from.
    pub(crate) fn last_seen(&self) -> BTreeMap<NodeId, (Duration, u64)> {
        self.seen
            .iter()
            .map(|(node, (at, hello))| (node.clone(), (at.elapsed(), hello.applied)))
            .collect()
    }

    fn forget_older_than(&mut self, age: Duration) {
        self.seen.retain(|_, (at, _)| at.elapsed() < age);
    }
}

/// Starts listening to announcements and the periodic membership work.
pub(super) async fn start(inner: Arc<Inner>) -> Result<(), RouterError> {
    let mut hellos = inner
        .nats
        .subscribe(inner.subjects.hello())
        .await
        .map_err(|err| {
            RouterError::Unavailable(format!("cannot subscribe for announcements: {err}"))
        })?;
    let listener = inner.clone();
    tokio::spawn(async move {
        while let Some(message) = hellos.next().await {
            match wire::decode::<Hello>(&message.payload) {
                Ok(hello) if hello.node != listener.node => listener.peers().record(hello),
                Ok(_) => {}
                Err(err) => debug!(error = %err, "undecodable announcement"),
            }
        }
    });
    tokio::spawn(run(inner));
    Ok(())
}

async fn run(inner: Arc<Inner>) {
    tokio::spawn(announce_forever(inner.clone()));
    let mut tick = tokio::time::interval(inner.config.heartbeat_interval.0);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut bootstrap_view: Option<(BTreeSet<NodeId>, u32)> = None;
    let mut last_leader = None;
    let mut elections = ElectionGate::new(&inner);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = inner.stop.cancelled() => return,
        }
        inner
            .peers()
            .forget_older_than(inner.config.node_timeout.0 * 6);
        let leader = inner.leader();
        if leader != last_leader {
            if leader.is_some() {
                inner.metrics.leader_changes.increment(1);
            }
            info!(leader = ?leader.and_then(|id| inner.member_name(id)), "leader changed");
            last_leader = leader;
        }
        elections.update(&inner);
        if !is_member(&inner) {
            join_or_bootstrap(&inner, &mut bootstrap_view).await;
            continue;
        }
        bootstrap_view = None;
        if !inner.node_up.load(Ordering::Acquire) && !inner.leaving.load(Ordering::Acquire) {
            // Not awaited here: announcing and leader duties must go on while it is retried.
            inner.clone().come_up_in_background();
        }
        if inner.is_leader() {
            maintain(&inner).await;
        }
    }
}

/// Announces this node every heartbeat interval, whatever else is going on.
async fn announce_forever(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(inner.config.heartbeat_interval.0);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => announce(&inner).await,
            () = inner.stop.cancelled() => return,
        }
    }
}

/// Keeps a restarted node from campaigning with a stale log. A node that restarts with its
/// data directory believes the membership its log last recorded; if the cluster removed it
/// meanwhile, its elections could only disturb the leader. So elections stay off until this
/// node has heard from a leader, or until no peer has announced any leader for a few
/// heartbeats (the whole cluster restarting), whichever comes first.
struct ElectionGate {
    enabled: bool,
    quiet_ticks: u32,
}

impl ElectionGate {
    fn new(inner: &Inner) -> Self {
        let restarted = is_member(inner);
        if restarted {
            inner.raft.runtime_config().elect(false);
        }
        Self {
            enabled: !restarted,
            quiet_ticks: 0,
        }
    }

    fn update(&mut self, inner: &Inner) {
        if self.enabled {
            return;
        }
        let leader_announced = inner
            .peers()
            .alive(inner.config.node_timeout.0)
            .any(|(_, hello)| hello.leader.is_some());
        self.quiet_ticks = if leader_announced {
            0
        } else {
            self.quiet_ticks + 1
        };
        if inner.leader().is_some() || self.quiet_ticks >= 5 {
            inner.raft.runtime_config().elect(true);
            self.enabled = true;
            info!("elections enabled");
        }
    }
}

/// Publishes this node's announcement.
pub(super) async fn announce(inner: &Inner) {
    let metrics = inner.raft.metrics().borrow().clone();
    let hello = Hello {
        node: inner.node.clone(),
        incarnation: inner.incarnation,
        in_cluster: metrics
            .membership_config
            .membership()
            .get_node(&inner.raft_id)
            .is_some(),
        leader: metrics.current_leader.and_then(|id| inner.member_name(id)),
        term: metrics.current_term,
        applied: metrics.last_applied.map_or(0, |log| log.index),
        leaving: inner.leaving.load(Ordering::Acquire),
    };
    if let Err(err) = inner
        .nats
        .publish(inner.subjects.hello(), wire::encode(&hello).into())
        .await
    {
        debug!(error = %err, "cannot announce");
    }
}

fn is_member(inner: &Inner) -> bool {
    inner
        .raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .get_node(&inner.raft_id)
        .is_some()
}

/// Outside the cluster: join it if one exists, else bootstrap it when this node is the one to.
async fn join_or_bootstrap(inner: &Inner, view: &mut Option<(BTreeSet<NodeId>, u32)>) {
    if inner.cluster_seen() {
        *view = None;
        // The leader adds us as a learner; our raft learns the membership from it.
        let leader = inner
            .peers()
            .alive(inner.config.node_timeout.0)
            .find_map(|(_, hello)| hello.leader.clone());
        if let Some(leader) = leader {
            match inner
                .call(
                    raft_id(&leader),
                    &ControlRequest::Join {
                        node: inner.node.clone(),
                    },
                )
                .await
            {
                Ok(ControlResponse::Done) => debug!(%leader, "join accepted"),
                Ok(other) => debug!(answer = ?other, "join not accepted yet"),
                Err(err) => debug!(error = %err, "join failed"),
            }
        }
        return;
    }
    let mut nodes: BTreeSet<NodeId> = inner.alive_nodes().into_iter().collect();
    nodes.insert(inner.node.clone());
    if nodes.len() < inner.config.bootstrap_expect {
        *view = None;
        return;
    }
    // The view must hold still for a few announcements before anyone acts on it, so that
    // every node has had time to hear every other.
    let stable = match view {
        Some((previous, count)) if *previous == nodes => {
            *count += 1;
            *count
        }
        _ => {
            *view = Some((nodes.clone(), 1));
            1
        }
    };
    // The first voters: the lowest ids, no more than `voters`; the others join as learners.
    let first_voters = inner.config.bootstrap_expect.min(inner.config.voters);
    let members: Vec<NodeId> = nodes.iter().take(first_voters).cloned().collect();
    if members.first() != Some(&inner.node) || stable < 3 {
        return;
    }
    bootstrap(inner, members).await;
}

/// Asks every proposed member for its grant, and initializes raft only with all of them.
async fn bootstrap(inner: &Inner, members: Vec<NodeId>) {
    let request = ControlRequest::BootstrapGrant {
        candidate: inner.node.clone(),
        members: members.clone(),
    };
    for member in &members {
        let granted = if *member == inner.node {
            matches!(
                inner.handle_control(request.clone()).await,
                ControlResponse::Grant(true)
            )
        } else {
            matches!(
                inner.call(raft_id(member), &request).await,
                Ok(ControlResponse::Grant(true))
            )
        };
        if !granted {
            info!(%member, "bootstrap not granted; waiting");
            return;
        }
    }
    let voters: BTreeMap<RaftId, NodeInfo> = members
        .iter()
        .map(|member| {
            (
                raft_id(member),
                NodeInfo {
                    name: member.to_string(),
                },
            )
        })
        .collect();
    match inner.raft.initialize(voters).await {
        Ok(()) => info!(members = ?members, "bootstrapped the cluster"),
        Err(err) => warn!(error = %err, "bootstrap failed"),
    }
}

/// The leader's periodic membership work. Each step returns early after a change: one
/// membership change at a time, re-evaluated on the next tick.
async fn maintain(inner: &Inner) {
    let metrics = inner.raft.metrics().borrow().clone();
    if metrics.state != ServerState::Leader {
        return;
    }
    let membership = metrics.membership_config.membership().clone();
    let timeout = inner.config.node_timeout.0;
    let alive: BTreeSet<RaftId> = {
        let peers = inner.peers();
        peers
            .alive(timeout)
            .map(|(node, _)| raft_id(node))
            .chain(std::iter::once(inner.raft_id))
            .collect()
    };
    let leaving: Vec<NodeId> = inner.peers().leaving();
    let names: BTreeMap<RaftId, NodeId> = membership
        .nodes()
        .map(|(id, info)| (*id, NodeId::from(info.name.as_str())))
        .collect();

    // Gone or leaving members are removed (and their sessions purged), once this node has
    // been up long enough to have heard from everyone alive.
    let judging = inner.started.elapsed() >= timeout;
    for (id, name) in &names {
        if !judging && !leaving.contains(name) {
            continue;
        }
        if *id != inner.raft_id && (!alive.contains(id) || leaving.contains(name)) {
            warn!(node = %name, "removing a node that is gone");
            let _ = inner.remove_node(name.clone()).await;
            return;
        }
    }
    // Nodes up in the directory but no longer members or alive: purge their sessions.
    let directory_nodes = inner.directory.nodes();
    for (name, record) in directory_nodes {
        let id = raft_id(&name);
        if judging && record.up && !names.contains_key(&id) && !alive.contains(&id) {
            warn!(node = %name, "purging the sessions of a node that is gone");
            let _ = inner
                .write_here(DirectoryCommand::NodeDown { node: name })
                .await;
            return;
        }
    }
    // Alive nodes outside the membership become learners: new nodes asking to join, and
    // restarted nodes whose stale log still lists them.
    let outsiders: Vec<NodeId> = {
        let peers = inner.peers();
        peers
            .alive(timeout)
            .map(|(node, _)| node.clone())
            .filter(|node| !names.contains_key(&raft_id(node)))
            .collect()
    };
    if let Some(node) = outsiders.into_iter().next() {
        let _ = inner.handle_control(ControlRequest::Join { node }).await;
        return;
    }
    // Promote learners until there are enough voters (learners that caught up first).
    let voters: BTreeSet<RaftId> = membership.voter_ids().collect();
    if voters.len() < inner.config.voters {
        let leader_index = metrics.last_log_index.unwrap_or(0);
        let matched = metrics.replication.clone().unwrap_or_default();
        let ready = membership.learner_ids().find(|id| {
            alive.contains(id)
                && matched
                    .get(id)
                    .copied()
                    .flatten()
                    .is_some_and(|log| log.index + 100 >= leader_index)
        });
        if let Some(learner) = ready {
            let mut new_voters = voters.clone();
            new_voters.insert(learner);
            info!(node = ?names.get(&learner), "promoting a learner to voter");
            if let Err(err) = inner
                .raft
                .change_membership(ChangeMembers::ReplaceAllVoters(new_voters), true)
                .await
            {
                warn!(error = %err, "promotion failed");
            }
        }
    }
}
