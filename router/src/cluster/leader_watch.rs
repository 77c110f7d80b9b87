//! Fast failover. openraft's followers wait out the leader's lease and then a random election
//! timeout on top before they campaign: with `election_timeout` 1.5 s that was 4.5 to 6 s of
//! no leader after a leader died. Here every voting follower watches the raft appends it
//! receives; when none came for a whole lease (the moment the other voters stop rejecting
//! votes too), it campaigns at once. Followers take turns by rank (a heartbeat or two apart),
//! so they do not split the vote.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tracing::info;

use super::core::Core;
use super::membership::Membership;

/// Watches for a silent leader and starts an election when its lease has run out.
pub(crate) async fn run(core: Arc<Core>, membership: Arc<Membership>) {
    let heartbeat = core.config.raft_heartbeat.0;
    // openraft's leader lease is `election_timeout_max`, which Oort sets to twice the minimum.
    let lease = core.config.election_timeout.0 * 2;
    let mut tick = tokio::time::interval(heartbeat / 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_campaign: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = core.stop.cancelled() => return,
        }
        if !membership.elections_enabled.load(Ordering::Acquire)
            || !core.nats.is_connected()
            || membership.is_leaving()
            || core.is_leader()
        {
            continue;
        }
        let Some(rank) = rank(&core) else { continue };
        let due = lease + heartbeat + heartbeat * 2 * rank;
        let silent = core.last_append.elapsed();
        let campaigned_recently = last_campaign.is_some_and(|at| at.elapsed() < lease * 2);
        if silent < due || campaigned_recently {
            continue;
        }
        info!(
            silent_ms = silent.as_millis() as u64,
            "no word from a leader for its whole lease; starting an election"
        );
        last_campaign = Some(Instant::now());
        let _ = core.raft.trigger().elect().await;
    }
}

/// This node's turn among the voters that could replace the leader (the leader, if known, is
/// left out), or `None` when it is not a voter.
fn rank(core: &Core) -> Option<u32> {
    let metrics = core.raft.metrics().borrow().clone();
    let membership = metrics.membership_config.membership();
    let mut voters: Vec<u64> = membership
        .voter_ids()
        .filter(|id| Some(*id) != metrics.current_leader)
        .collect();
    voters.sort_unstable();
    voters
        .iter()
        .position(|id| *id == core.raft_id)
        .map(|position| position as u32)
}
