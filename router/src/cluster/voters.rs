//! Which voters the cluster should have after a node leaves or dies, and whether a change is
//! safe to make. Pure decisions over a view of the membership; the leader gathers the view
//! (liveness is probed, not guessed from announcements) and applies the decision.
//!
//! The rule: a change from voters `old` to voters `new` goes through raft's joint consensus,
//! which needs a quorum of live voters in `old` *and* in `new`. A change that could not reach
//! both is never proposed: proposing it would wedge the group (it can neither commit the change
//! nor anything after it). A voter that leaves is replaced by a caught-up learner in the same
//! change, so the group keeps its size; without one it shrinks, but only if that is safe, and
//! otherwise it stays a voter (a restart brings it back, which restores the quorum).

use std::collections::BTreeSet;

use super::types::RaftId;

/// The membership as the leader sees it.
#[derive(Clone, Debug, Default)]
pub(crate) struct VoterView {
    pub voters: BTreeSet<RaftId>,
    pub learners: BTreeSet<RaftId>,
    /// Members that answered a probe just now.
    pub live: BTreeSet<RaftId>,
    /// Learners whose log is close to the leader's.
    pub caught_up: BTreeSet<RaftId>,
    /// Voters the cluster should have.
    pub target: usize,
}

/// What to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// Make `voters` the voter set; `removed`, if any, leaves the membership altogether.
    Voters {
        voters: BTreeSet<RaftId>,
        removed: Option<RaftId>,
    },
    /// Remove a learner from the membership.
    RemoveLearner(RaftId),
    /// Nothing can be done safely now, and why.
    Keep(&'static str),
}

/// Votes needed to decide among `voters` voters.
pub(crate) fn quorum(voters: usize) -> usize {
    voters / 2 + 1
}

fn live_count(set: &BTreeSet<RaftId>, live: &BTreeSet<RaftId>) -> usize {
    set.intersection(live).count()
}

/// A learner that can take a voter's place: live and caught up (the lowest id, so that every
/// decision is reproducible).
fn replacement(view: &VoterView, excluded: RaftId) -> Option<RaftId> {
    view.learners
        .iter()
        .copied()
        .find(|id| *id != excluded && view.live.contains(id) && view.caught_up.contains(id))
}

/// `node` is leaving or dead: the change that takes it out of the voters safely, if any.
/// `view.live` says whether `node` itself can still vote in the change (a draining node can; a
/// dead one cannot).
pub(crate) fn remove(view: &VoterView, node: RaftId) -> Change {
    if view.learners.contains(&node) {
        return Change::RemoveLearner(node);
    }
    if !view.voters.contains(&node) {
        return Change::Keep("not a member");
    }
    let mut new: BTreeSet<RaftId> = view.voters.iter().copied().filter(|v| *v != node).collect();
    if let Some(learner) = replacement(view, node) {
        new.insert(learner);
    }
    if new.is_empty() {
        return Change::Keep("the last voter cannot leave");
    }
    let live_after: BTreeSet<RaftId> = view.live.iter().copied().filter(|v| *v != node).collect();
    let old_ok = live_count(&view.voters, &view.live) >= quorum(view.voters.len());
    let new_ok = live_count(&new, &live_after) >= quorum(new.len());
    if old_ok && new_ok {
        Change::Voters {
            voters: new,
            removed: Some(node),
        }
    } else {
        Change::Keep("removing it would leave fewer live voters than a quorum")
    }
}

/// Fewer voters than wanted: the change that promotes a live, caught-up learner, if any.
pub(crate) fn promote(view: &VoterView) -> Option<Change> {
    if view.voters.len() >= view.target {
        return None;
    }
    let learner = replacement(view, RaftId::MAX)?;
    let mut new = view.voters.clone();
    new.insert(learner);
    let old_ok = live_count(&view.voters, &view.live) >= quorum(view.voters.len());
    (old_ok && live_count(&new, &view.live) >= quorum(new.len())).then_some(Change::Voters {
        voters: new,
        removed: None,
    })
}

/// More voters than wanted (a promotion and a replacement that overlapped under load can leave
/// one too many, and nothing else would ever take it back): the change that makes one of them
/// a learner again, if that is safe. The highest id other than `leader` goes, so that every
/// decision is reproducible.
pub(crate) fn demote(view: &VoterView, leader: RaftId) -> Option<Change> {
    if view.voters.len() <= view.target {
        return None;
    }
    let node = view.voters.iter().rev().copied().find(|id| *id != leader)?;
    let new: BTreeSet<RaftId> = view.voters.iter().copied().filter(|v| *v != node).collect();
    let old_ok = live_count(&view.voters, &view.live) >= quorum(view.voters.len());
    let new_ok = live_count(&new, &view.live) >= quorum(new.len());
    (old_ok && new_ok).then_some(Change::Voters {
        voters: new,
        removed: None,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn set(ids: &[u64]) -> BTreeSet<RaftId> {
        ids.iter().copied().collect()
    }

    fn view(voters: &[u64], learners: &[u64], live: &[u64], caught_up: &[u64]) -> VoterView {
        VoterView {
            voters: set(voters),
            learners: set(learners),
            live: set(live),
            caught_up: set(caught_up),
            target: 3,
        }
    }

    #[test]
    fn one_voter_too_many_goes_back_to_learning_if_that_is_safe() {
        let four = view(&[1, 2, 3, 4], &[5], &[1, 2, 3, 4, 5], &[5]);
        assert_eq!(
            demote(&four, 4),
            Some(Change::Voters {
                voters: set(&[1, 2, 4]),
                removed: None,
            }),
            "the highest id that does not lead"
        );
        assert_eq!(
            demote(&four, 1),
            Some(Change::Voters {
                voters: set(&[1, 2, 3]),
                removed: None,
            })
        );
        assert_eq!(demote(&view(&[1, 2, 3], &[], &[1, 2, 3], &[]), 1), None);
        // Two of four voters are down: three voters would have one live, no quorum.
        assert_eq!(demote(&view(&[1, 2, 3, 4], &[], &[1, 4], &[]), 1), None);
    }

    #[test]
    fn a_leaving_voter_is_replaced_by_a_caught_up_learner_in_one_change() {
        // The wedge from the issue: voter 1 was just killed, voter 3 drains.
        let view = view(&[1, 2, 3], &[4, 5], &[2, 3, 4, 5], &[4, 5]);
        assert_eq!(
            remove(&view, 3),
            Change::Voters {
                voters: set(&[1, 2, 4]),
                removed: Some(3)
            }
        );
    }

    #[test]
    fn a_removal_that_would_lose_the_quorum_is_not_made() {
        // Voter 1 is dead, voter 3 drains, and no learner can take its place: removing 3 would
        // leave {1, 2} with one live voter. Keeping 3 lets its restart restore the quorum.
        let view = view(&[1, 2, 3], &[], &[2, 3], &[]);
        assert!(matches!(remove(&view, 3), Change::Keep(_)));
        // A learner that is not caught up cannot help.
        let view = VoterView {
            learners: set(&[4]),
            live: set(&[2, 3, 4]),
            ..view
        };
        assert!(matches!(remove(&view, 3), Change::Keep(_)));
    }

    #[test]
    fn without_learners_a_healthy_group_shrinks() {
        let healthy = view(&[1, 2, 3], &[], &[1, 2, 3], &[]);
        assert_eq!(
            remove(&healthy, 3),
            Change::Voters {
                voters: set(&[1, 2]),
                removed: Some(3)
            }
        );
        assert!(matches!(
            remove(&view(&[1], &[], &[1], &[]), 1),
            Change::Keep(_)
        ));
    }

    #[test]
    fn learners_just_go_and_promotion_needs_a_live_caught_up_learner() {
        let base = view(&[1, 2], &[4, 5], &[1, 2, 5], &[4, 5]);
        assert_eq!(remove(&base, 4), Change::RemoveLearner(4));
        assert_eq!(
            promote(&base),
            Some(Change::Voters {
                voters: set(&[1, 2, 5]),
                removed: None
            }),
            "4 is not live"
        );
        assert_eq!(promote(&view(&[1, 2, 3], &[4], &[1, 2, 3, 4], &[4])), None);
    }

    fn arbitrary_view() -> impl Strategy<Value = VoterView> {
        let ids = proptest::collection::btree_set(1..9u64, 1..8);
        (ids, any::<u8>(), any::<u8>(), any::<u8>(), 1..6usize).prop_map(
            |(members, voter_bits, live_bits, caught_bits, target)| {
                let bit = |bits: u8, id: u64| bits & (1 << (id - 1)) != 0;
                let mut voters: BTreeSet<_> = members
                    .iter()
                    .copied()
                    .filter(|id| bit(voter_bits, *id))
                    .collect();
                if voters.is_empty() {
                    voters.insert(*members.iter().next().unwrap_or(&1));
                }
                VoterView {
                    learners: members.difference(&voters).copied().collect(),
                    live: members
                        .iter()
                        .copied()
                        .filter(|id| bit(live_bits, *id))
                        .collect(),
                    caught_up: members
                        .iter()
                        .copied()
                        .filter(|id| bit(caught_bits, *id))
                        .collect(),
                    voters,
                    target,
                }
            },
        )
    }

    proptest! {
        /// Whatever the view, a proposed change can commit: both the old and the new voter set
        /// have a live quorum (the removed node not counted in the new one), and only live,
        /// caught-up learners are ever promoted.
        #[test]
        fn every_proposed_change_keeps_a_live_quorum(view in arbitrary_view(), pick in any::<usize>()) {
            let members: Vec<RaftId> = view.voters.union(&view.learners).copied().collect();
            let node = members[pick % members.len()];
            let changes = [Some(remove(&view, node)), promote(&view)];
            for change in changes.into_iter().flatten() {
                if let Change::Voters { voters, removed } = change {
                    let live_new: BTreeSet<_> = view.live.iter().copied().filter(|id| Some(*id) != removed).collect();
                    prop_assert!(!voters.is_empty());
                    prop_assert!(live_count(&view.voters, &view.live) >= quorum(view.voters.len()));
                    prop_assert!(live_count(&voters, &live_new) >= quorum(voters.len()));
                    for added in voters.difference(&view.voters) {
                        prop_assert!(view.learners.contains(added));
                        prop_assert!(view.live.contains(added) && view.caught_up.contains(added));
                    }
                }
            }
        }
    }
}
