//! Discovery and membership. Every node announces itself on `oort.<cluster>.hello`; a node
//! outside the cluster bootstraps it (when `bootstrap_expect` nodes are seen and none has a
//! cluster) or asks the leader to join; the leader keeps `voters` voters, adds learners,
//! replaces voters that left or died without ever giving up the quorum, and purges the
//! sessions of nodes that are gone.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use oort_common::cluster::{
    ControlRequest, ControlResponse, DirectoryCommand, Hello, NodeInfo, SubjectKind, raft_id,
};
use oort_common::{NodeId, wire};
use openraft::ServerState;
use tracing::{debug, error, info, warn};

use super::bus::RejectReason;
use super::control::Control;
use super::core::Core;
use super::peers::PeerTable;
use super::types::RaftId;
use crate::RouterError;
use crate::epochs::EpochSource;

/// A node whose announcements stopped this many node timeouts ago is forgotten, and a node
/// the directory lists as down is dropped from it.
const FORGET_AFTER_TIMEOUTS: u32 = 6;

/// Membership state of this node, and the loops that keep it.
pub(crate) struct Membership {
    core: Arc<Core>,
    control: Arc<Control>,
    pub peers: Arc<PeerTable>,
    epochs: Arc<EpochSource>,
    /// Our `NodeUp` is committed and applied here, and no `NodeDown` came after it:
    /// registrations may flow. Read on every registration; changed under `up_log`.
    up: AtomicBool,
    /// Where our latest `NodeUp` and `NodeDown` are in the log: a `NodeDown` before our
    /// latest `NodeUp` is history (an earlier run's, applied late), and a `NodeUp` that a later
    /// `NodeDown` overtook on its way here does not bring the node up.
    up_log: std::sync::Mutex<UpLog>,
    /// A `NodeUp` attempt is running.
    coming_up: AtomicBool,
    /// Draining: announced as leaving, takes no new registrations.
    leaving: AtomicBool,
    /// This node may campaign (see [`ElectionGate`]).
    pub elections_enabled: AtomicBool,
    started: Instant,
}

impl Membership {
    pub(crate) fn new(
        core: Arc<Core>,
        control: Arc<Control>,
        peers: Arc<PeerTable>,
        epochs: Arc<EpochSource>,
    ) -> Self {
        Self {
            core,
            control,
            peers,
            epochs,
            up: AtomicBool::new(false),
            up_log: std::sync::Mutex::new(UpLog::default()),
            coming_up: AtomicBool::new(false),
            leaving: AtomicBool::new(false),
            elections_enabled: AtomicBool::new(false),
            started: Instant::now(),
        }
    }

    /// True once this node is up in the directory (and not leaving).
    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire) && !self.is_leaving()
    }

    pub(crate) fn is_leaving(&self) -> bool {
        self.leaving.load(Ordering::Acquire)
    }

    /// The cluster declared this node down at log index `index`: it must come up again before
    /// registering. Returns false, and changes nothing, for a `NodeDown` older than this node's
    /// latest `NodeUp` (an earlier run's, applied late).
    pub(crate) fn declared_down(&self, index: u64) -> bool {
        let mut log = self.up_log();
        if index < log.up_index {
            return false;
        }
        log.down_index = log.down_index.max(index);
        self.up.store(false, Ordering::Release);
        true
    }

    /// Our `NodeUp` at log index `index` is applied here.
    fn came_up(&self, index: u64) -> bool {
        let mut log = self.up_log();
        log.up_index = log.up_index.max(index);
        let up = log.down_index < index;
        self.up.store(up, Ordering::Release);
        up
    }

    fn up_log(&self) -> std::sync::MutexGuard<'_, UpLog> {
        self.up_log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Listens to announcements from now on.
    pub(crate) async fn listen(self: &Arc<Self>) -> Result<(), RouterError> {
        let core = &self.core;
        let mut inbox = core
            .bus
            .subscribe(core.bus.subjects().hello(), SubjectKind::Hello)
            .await
            .map_err(|err| {
                RouterError::Unavailable(format!("cannot subscribe for announcements: {err}"))
            })?;
        let membership = self.clone();
        let stop = core.stop.clone();
        tokio::spawn(async move {
            while let Some(message) = inbox.next(&stop).await {
                match wire::decode::<Hello>(&message.body) {
                    Ok(hello) => membership.peers.record(hello),
                    Err(err) => membership.core.bus.reject(
                        SubjectKind::Hello,
                        RejectReason::Malformed,
                        &err,
                    ),
                }
            }
        });
        Ok(())
    }

    /// Waits until no other process announces this node's id: for two heartbeats at first,
    /// then for as long as one does (it may be a previous run still shutting down). Two
    /// processes with one id would answer each other's raft traffic and corrupt the directory.
    pub(crate) async fn wait_until_unique(&self) {
        let core = &self.core;
        let heartbeat = core.config.heartbeat_interval.0;
        let window = core.config.node_timeout.0;
        tokio::time::sleep(heartbeat * 2).await;
        let mut complained = false;
        while let Some(incarnation) = self.peers.impostor_within(window) {
            if !complained {
                error!(
                    node = %core.node,
                    other_incarnation = %incarnation,
                    "another process is running with this node_id; this one stays not ready until it is gone (give every node a unique cluster.node_id)"
                );
                complained = true;
            }
            tokio::select! {
                () = tokio::time::sleep(heartbeat) => {}
                () = core.stop.cancelled() => return,
            }
        }
        if complained {
            info!("the other process with this node_id is gone");
        }
    }

    /// Starts announcing this node and the periodic membership work.
    pub(crate) fn start(self: &Arc<Self>) {
        tokio::spawn(self.clone().announce_forever());
        tokio::spawn(self.clone().run());
    }

    async fn run(self: Arc<Self>) {
        let core = self.core.clone();
        let mut tick = tokio::time::interval(core.config.heartbeat_interval.0);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut bootstrap_view: Option<(BTreeSet<NodeId>, u32)> = None;
        let mut last_leader = None;
        let mut elections = ElectionGate::new(&self);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = core.stop.cancelled() => return,
            }
            self.peers
                .forget_older_than(core.config.node_timeout.0 * FORGET_AFTER_TIMEOUTS);
            let leader = core.leader();
            if leader != last_leader {
                if leader.is_some() {
                    core.metrics.leader_changes.increment(1);
                }
                info!(leader = ?leader.and_then(|id| core.member_name(id)), "leader changed");
                last_leader = leader;
            }
            elections.update(&self);
            if !core.nats.is_connected() {
                continue;
            }
            if !core.is_member() {
                self.join_or_bootstrap(&mut bootstrap_view).await;
                continue;
            }
            bootstrap_view = None;
            if !self.up.load(Ordering::Acquire) && !self.is_leaving() {
                // Not awaited here: announcing and leader duties must go on while it is retried.
                self.clone().come_up_in_background();
            }
            if core.is_leader() {
                self.maintain().await;
            }
        }
    }

    /// Announces this node every heartbeat interval, whatever else is going on.
    async fn announce_forever(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.core.config.heartbeat_interval.0);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.announce().await,
                () = self.core.stop.cancelled() => return,
            }
        }
    }

    /// Publishes this node's announcement.
    pub(crate) async fn announce(&self) {
        let core = &self.core;
        let metrics = core.raft.metrics().borrow().clone();
        let hello = Hello {
            node: core.node.clone(),
            incarnation: core.incarnation,
            in_cluster: metrics
                .membership_config
                .membership()
                .get_node(&core.raft_id)
                .is_some(),
            leader: metrics.current_leader.and_then(|id| core.member_name(id)),
            term: metrics.current_term,
            applied: metrics.last_applied.map_or(0, |log| log.index),
            leaving: self.is_leaving(),
        };
        if let Err(err) = core
            .bus
            .publish(core.bus.subjects().hello(), &wire::encode(&hello))
            .await
        {
            debug!(error = %err, "cannot announce");
        }
    }

    /// Outside the cluster: join it if one exists, else bootstrap it when this node is the one
    /// to.
    async fn join_or_bootstrap(&self, view: &mut Option<(BTreeSet<NodeId>, u32)>) {
        let core = &self.core;
        let timeout = core.config.node_timeout.0;
        if self.peers.cluster_seen(timeout) {
            *view = None;
            // The leader adds us as a learner; our raft learns the membership from it.
            if let Some(leader) = self.peers.announced_leader(timeout) {
                let request = ControlRequest::Join {
                    node: core.node.clone(),
                };
                match self.control.call(raft_id(&leader), &request).await {
                    Ok(ControlResponse::Done) => debug!(%leader, "join accepted"),
                    Ok(other) => debug!(answer = ?other, "join not accepted yet"),
                    Err(err) => debug!(error = %err, "join failed"),
                }
            }
            return;
        }
        let mut nodes: BTreeSet<NodeId> = self.peers.alive_names(timeout).into_iter().collect();
        nodes.insert(core.node.clone());
        if nodes.len() < core.config.bootstrap_expect {
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
        let first_voters = core.config.bootstrap_expect.min(core.config.voters);
        let members: Vec<NodeId> = nodes.iter().take(first_voters).cloned().collect();
        if members.first() != Some(&core.node) || stable < 3 {
            return;
        }
        self.bootstrap(members).await;
    }

    /// Asks every proposed member for its grant, and initializes raft only with all of them.
    async fn bootstrap(&self, members: Vec<NodeId>) {
        let core = &self.core;
        let request = ControlRequest::BootstrapGrant {
            candidate: core.node.clone(),
            members: members.clone(),
        };
        for member in &members {
            let granted = if *member == core.node {
                matches!(
                    self.control.handle(request.clone()).await,
                    ControlResponse::Grant(true)
                )
            } else {
                matches!(
                    self.control.call(raft_id(member), &request).await,
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
                let info = NodeInfo {
                    name: member.to_string(),
                };
                (raft_id(member), info)
            })
            .collect();
        match core.raft.initialize(voters).await {
            Ok(()) => info!(members = ?members, "bootstrapped the cluster"),
            Err(err) => warn!(error = %err, "bootstrap failed"),
        }
    }

    /// Runs [`Self::come_up`] unless an attempt is already running.
    fn come_up_in_background(self: Arc<Self>) {
        if self.coming_up.swap(true, Ordering::AcqRel) {
            return;
        }
        tokio::spawn(async move {
            self.come_up().await;
            self.coming_up.store(false, Ordering::Release);
        });
    }

    /// Commits this node's `NodeUp` once it is a member, then opens it for registrations.
    async fn come_up(&self) {
        let core = &self.core;
        if self
            .peers
            .impostor_within(core.config.node_timeout.0)
            .is_some()
        {
            // `wait_until_unique` let this node start, but another process with its id has
            // appeared since: neither may come up.
            warn!("another process announces this node_id; not coming up");
            return;
        }
        let command = DirectoryCommand::NodeUp {
            node: core.node.clone(),
            epoch: self.epochs.next(),
        };
        match self
            .control
            .call_leader(ControlRequest::Write(command))
            .await
        {
            Ok(ControlResponse::Written { index, .. }) => {
                // Wait until our own replica applied it, so reads here see it.
                let deadline = tokio::time::Instant::now() + core.config.route_timeout.0;
                core.wait_until(deadline, |m| {
                    m.last_applied.is_some_and(|applied| applied.index >= index)
                })
                .await;
                if self.came_up(index) {
                    info!("this node is up in the directory");
                }
            }
            Ok(other) => warn!(answer = ?other, "NodeUp refused"),
            Err(err) => debug!(error = %err, "NodeUp failed; retrying"),
        }
    }

    /// Enters the draining state: no more registrations, announced as leaving.
    pub(crate) async fn start_leaving(&self) {
        self.leaving.store(true, Ordering::Release);
        self.announce().await;
    }

    /// The leader's periodic membership work. Each step returns after a change: one
    /// membership change at a time, re-evaluated on the next tick.
    async fn maintain(&self) {
        let core = &self.core;
        if core.raft.metrics().borrow().state != ServerState::Leader {
            return;
        }
        let timeout = core.config.node_timeout.0;
        let membership = core.membership();
        let names: BTreeMap<RaftId, NodeId> = membership
            .nodes()
            .map(|(id, info)| (*id, NodeId::from(info.name.as_str())))
            .collect();

        // Members announcing that they leave go at once.
        for (node, incarnation) in self.peers.leaving() {
            let listed = names.contains_key(&raft_id(&node))
                || core.directory.nodes().get(&node).is_some_and(|r| r.up);
            if listed {
                let request = ControlRequest::Leave { node, incarnation };
                let _ = self.control.handle(request).await;
                return;
            }
        }
        // Nobody is judged dead until this node has had a node timeout, with NATS up, to hear
        // from everyone: after a start, or after an outage of its own.
        let judging = self.started.elapsed() >= timeout && core.nats.connected_for() >= timeout;
        if judging && self.remove_silent_members(&names).await {
            return;
        }
        if judging && self.tidy_directory(&names).await {
            return;
        }
        // Alive nodes outside the membership become learners: new nodes asking to join, and
        // restarted nodes whose stale log still lists them.
        let outsider = self
            .peers
            .alive_names(timeout)
            .into_iter()
            .find(|node| !names.contains_key(&raft_id(node)));
        if let Some(node) = outsider {
            let _ = self.control.handle(ControlRequest::Join { node }).await;
            return;
        }
        self.control.promote_if_needed().await;
    }

    /// Removes one member not heard from within the node timeout that does not answer a ping
    /// either. Returns whether it did.
    async fn remove_silent_members(&self, names: &BTreeMap<RaftId, NodeId>) -> bool {
        let timeout = self.core.config.node_timeout.0;
        let silent: Vec<RaftId> = names
            .iter()
            .filter(|(id, name)| {
                **id != self.core.raft_id && !self.peers.heard_within(name, timeout)
            })
            .map(|(id, _)| *id)
            .collect();
        if silent.is_empty() {
            return false;
        }
        let answering = self.control.probe(&silent).await;
        let Some(dead) = silent.iter().find(|id| !answering.contains(id)) else {
            return false;
        };
        let Some(name) = names.get(dead).cloned() else {
            return false;
        };
        warn!(node = %name, "removing a node that is gone");
        let _ = self.control.remove_node(name, false).await;
        true
    }

    /// Purges nodes the directory lists as up that are neither members nor alive, and drops
    /// records of nodes down and gone for long. Returns whether it changed anything.
    async fn tidy_directory(&self, names: &BTreeMap<RaftId, NodeId>) -> bool {
        let core = &self.core;
        let timeout = core.config.node_timeout.0;
        for (name, record) in core.directory.nodes() {
            let id = raft_id(&name);
            if names.contains_key(&id) {
                continue;
            }
            let command = if record.up && !self.peers.heard_within(&name, timeout) {
                if !self.control.probe(&[id]).await.is_empty() {
                    continue;
                }
                warn!(node = %name, "purging the sessions of a node that is gone");
                DirectoryCommand::NodeDown { node: name }
            } else if !record.up
                && !self
                    .peers
                    .heard_within(&name, timeout * FORGET_AFTER_TIMEOUTS)
            {
                debug!(node = %name, "forgetting a node that is long gone");
                DirectoryCommand::ForgetNode { node: name }
            } else {
                continue;
            };
            let _ = self.control.write_here(command).await;
            return true;
        }
        false
    }
}

/// Log indexes of this node's latest `NodeUp` and `NodeDown`.
#[derive(Default)]
struct UpLog {
    up_index: u64,
    down_index: u64,
}

/// Keeps a restarted node from campaigning with a stale log. A node that restarts with its
/// data directory believes the membership its log last recorded; if the cluster removed it
/// meanwhile, its elections could only disturb the leader. So elections stay off until this
/// node has heard from a leader, or until no peer has announced any leader for a few
/// heartbeats (the whole cluster restarting), whichever comes first.
struct ElectionGate {
    quiet_ticks: u32,
}

impl ElectionGate {
    fn new(membership: &Membership) -> Self {
        let restarted = membership.core.is_member();
        membership.core.raft.runtime_config().elect(!restarted);
        membership
            .elections_enabled
            .store(!restarted, Ordering::Release);
        Self { quiet_ticks: 0 }
    }

    fn update(&mut self, membership: &Membership) {
        if membership.elections_enabled.load(Ordering::Acquire) {
            return;
        }
        let core = &membership.core;
        let leader_announced = membership
            .peers
            .announced_leader(core.config.node_timeout.0)
            .is_some();
        self.quiet_ticks = if leader_announced {
            0
        } else {
            self.quiet_ticks + 1
        };
        if core.leader().is_some() || self.quiet_ticks >= 5 {
            core.raft.runtime_config().elect(true);
            membership.elections_enabled.store(true, Ordering::Release);
            info!("elections enabled");
        }
    }
}
