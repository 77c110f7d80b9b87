//! The single-node router: the gateway's session table is the whole directory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use oort_common::cluster::{DirectoryCommand, UserLimit};
use oort_common::{DeliveryStatus, Epoch, NodeId, Payload, SessionKey};

use crate::directory::{Directory, StreamOwner};
use crate::{DeliveryRequest, LocalSessions, Presence, PublishOutcome, RouterError};

/// Routes everything to this node's own sessions.
pub struct LocalRouter {
    node_id: NodeId,
    sessions: Arc<dyn LocalSessions>,
    /// The sessions that have a user, in the cluster's directory type, so that one node
    /// applies the per-user limit exactly as a cluster does. Sessions without a user are not
    /// recorded: the gateway's table is their directory.
    users: Box<Mutex<Directory>>,
    user_limit: UserLimit,
    /// The next Durable Stream generation. Nothing is persisted single node, so it starts from
    /// the wall clock in milliseconds: a restarted process continues above its earlier run
    /// (unless the clock stepped back, or it claimed more than a thousand streams a second).
    stream_generations: AtomicU64,
}

impl LocalRouter {
    pub(crate) fn new(
        node_id: NodeId,
        sessions: Arc<dyn LocalSessions>,
        user_limit: UserLimit,
    ) -> Self {
        let mut users = Directory::default();
        users.apply(&DirectoryCommand::NodeUp {
            node: node_id.clone(),
            epoch: Epoch(0),
        });
        Self {
            node_id,
            sessions,
            users: Box::new(Mutex::new(users)),
            user_limit,
            stream_generations: AtomicU64::new(wall_clock_millis()),
        }
    }

    /// Single node, every claim wins: the gateway's store is the only record of its streams.
    pub(crate) fn claim_stream(&self) -> StreamOwner {
        StreamOwner {
            node: self.node_id.clone(),
            generation: self.stream_generations.fetch_add(1, Ordering::Relaxed),
            live: true,
        }
    }

    fn users(&self) -> MutexGuard<'_, Directory> {
        self.users
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn node_id(&self) -> &NodeId {
        &self.node_id
    }

    pub(crate) fn sessions(&self) -> &dyn LocalSessions {
        &*self.sessions
    }

    /// Nothing to replicate: the gateway's table already holds the session. A session with a
    /// user is recorded under it, within the user's limit.
    pub(crate) fn register(
        &self,
        key: &SessionKey,
        epoch: Epoch,
        user: Option<&str>,
    ) -> Result<(), RouterError> {
        let Some(user) = user else {
            return Ok(());
        };
        let response = self.users().apply(&DirectoryCommand::Admit {
            node: self.node_id.clone(),
            sessions: vec![(key.clone(), epoch, Some(user.to_owned()))],
            limit: self.user_limit,
        });
        for (evicted, owner) in &response.evicted {
            self.sessions.evict(evicted, owner.epoch);
        }
        if !response.over_user_limit.is_empty() {
            return Err(RouterError::UserLimit(user.to_owned()));
        }
        Ok(())
    }

    pub(crate) fn unregister(&self, key: &SessionKey, epoch: Epoch) {
        self.users().apply(&DirectoryCommand::Unregister {
            node: self.node_id.clone(),
            sessions: vec![(key.clone(), epoch)],
        });
    }

    pub(crate) fn user_sessions(&self, user: &str) -> Vec<(SessionKey, NodeId)> {
        self.users()
            .user_sessions(user)
            .into_iter()
            .map(|(key, owner)| (key, owner.node))
            .collect()
    }

    pub(crate) fn deliver(&self, request: &DeliveryRequest) -> Vec<DeliveryStatus> {
        deliver_to(&*self.sessions, request)
    }

    pub(crate) fn broadcast(&self, payload: &oort_common::Payload) -> usize {
        self.sessions.broadcast(payload)
    }

    pub(crate) fn owner(&self, key: &str) -> Option<NodeId> {
        self.sessions.holds(key).then(|| self.node_id.clone())
    }

    pub(crate) fn subscribe(
        &self,
        keys: &[SessionKey],
        channels: &[String],
        join: bool,
    ) -> Vec<DeliveryStatus> {
        self.sessions.subscribe(keys, channels, join)
    }

    pub(crate) fn publish(&self, channels: &[String], payload: &Payload) -> PublishOutcome {
        let sessions = self.sessions.publish(channels, None, payload);
        PublishOutcome {
            sessions,
            nodes: if sessions > 0 {
                vec![self.node_id.clone()]
            } else {
                Vec::new()
            },
            unreachable: Vec::new(),
        }
    }

    pub(crate) fn presence(&self, channel: &str, after: Option<&str>, limit: usize) -> Presence {
        let (count, keys) = self.sessions.presence(channel, after, limit);
        Presence {
            count,
            sessions: keys
                .into_iter()
                .map(|key| (key, self.node_id.clone()))
                .collect(),
            unreachable: Vec::new(),
        }
    }
}

/// Delivers to this node's sessions, checking every key first in strict mode.
pub(crate) fn deliver_to(
    sessions: &dyn LocalSessions,
    request: &DeliveryRequest,
) -> Vec<DeliveryStatus> {
    if request.strict {
        let held: Vec<bool> = request
            .targets
            .iter()
            .map(|key| sessions.holds(key.as_str()))
            .collect();
        if held.contains(&false) {
            return held
                .into_iter()
                .map(|held| {
                    if held {
                        DeliveryStatus::Skipped
                    } else {
                        DeliveryStatus::NotFound
                    }
                })
                .collect();
        }
    }
    sessions.deliver(&request.targets, &request.payload, &request.mode)
}

/// Milliseconds since the unix epoch, at least 1 (a clock before 1970 still gives generations
/// above 0).
fn wall_clock_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
        .max(1)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Mutex;

    use oort_common::DeliveryMode;

    use super::*;
    use crate::Router;

    /// A session table that records deliveries.
    struct Recorder {
        present: HashSet<&'static str>,
        delivered: Mutex<Vec<String>>,
    }

    impl LocalSessions for Recorder {
        fn deliver(
            &self,
            targets: &[SessionKey],
            _: &Payload,
            _: &DeliveryMode,
        ) -> Vec<DeliveryStatus> {
            targets
                .iter()
                .map(|key| {
                    if self.present.contains(key.as_str()) {
                        self.delivered.lock().unwrap().push(key.to_string());
                        DeliveryStatus::Ok
                    } else {
                        DeliveryStatus::NotFound
                    }
                })
                .collect()
        }

        fn holds(&self, key: &str) -> bool {
            self.present.contains(key)
        }

        fn broadcast(&self, _: &Payload) -> usize {
            self.present.len()
        }

        fn close_all(&self) {}

        fn superseded(&self, _: &SessionKey, _: u64) {}

        fn hand_over(
            &self,
            _: &SessionKey,
            _: u64,
            _: u64,
        ) -> Option<oort_common::cluster::HandoverTail> {
            None
        }

        fn stream(&self, _: oort_common::cluster::StreamRequest) -> crate::BoxedAnswer<'_> {
            Box::pin(async { oort_common::cluster::StreamAnswer::Over })
        }

        fn named_stream(
            &self,
            _: oort_common::cluster::NamedStreamRequest,
        ) -> crate::BoxedNamedAnswer<'_> {
            Box::pin(async { oort_common::cluster::NamedStreamAnswer::NotHere })
        }

        fn subscribe(&self, targets: &[SessionKey], _: &[String], _: bool) -> Vec<DeliveryStatus> {
            vec![DeliveryStatus::Ok; targets.len()]
        }

        fn publish(&self, _: &[String], _: Option<usize>, _: &Payload) -> u64 {
            0
        }

        fn presence(&self, _: &str, _: Option<&str>, _: usize) -> (u64, Vec<SessionKey>) {
            (0, Vec::new())
        }

        fn holds_channel(&self, _: &str) -> bool {
            false
        }

        fn evict(&self, _: &SessionKey, _: Epoch) {}

        fn client_reply(&self, _: &str, _: &SessionKey, _: Payload) {}
    }

    fn router() -> (Router, Arc<Recorder>) {
        let recorder = Arc::new(Recorder {
            present: HashSet::from(["a", "b"]),
            delivered: Mutex::default(),
        });
        (
            Router::local(NodeId::from("n1"), recorder.clone(), UserLimit::default()),
            recorder,
        )
    }

    fn request(targets: &[&str], strict: bool) -> DeliveryRequest {
        DeliveryRequest {
            targets: targets.iter().map(|t| SessionKey::from(*t)).collect(),
            payload: Payload::text("hi"),
            mode: DeliveryMode::Send,
            strict,
            request_id: String::new(),
        }
    }

    #[tokio::test]
    async fn lenient_delivery_reaches_every_known_session() {
        let (router, recorder) = router();
        let statuses = router.deliver(&request(&["a", "x", "b"], false)).await;
        assert_eq!(
            statuses,
            [
                DeliveryStatus::Ok,
                DeliveryStatus::NotFound,
                DeliveryStatus::Ok
            ]
        );
        assert_eq!(*recorder.delivered.lock().unwrap(), ["a", "b"]);
    }

    #[tokio::test]
    async fn strict_delivery_sends_nothing_when_one_is_unknown() {
        let (router, recorder) = router();
        let statuses = router.deliver(&request(&["a", "x"], true)).await;
        assert_eq!(
            statuses,
            [DeliveryStatus::Skipped, DeliveryStatus::NotFound]
        );
        assert!(recorder.delivered.lock().unwrap().is_empty());
        let statuses = router.deliver(&request(&["a", "b"], true)).await;
        assert_eq!(statuses, [DeliveryStatus::Ok, DeliveryStatus::Ok]);
    }

    #[tokio::test]
    async fn owner_is_this_node_for_held_sessions() {
        let (router, _) = router();
        assert_eq!(router.owner("a").await.unwrap(), Some(NodeId::from("n1")));
        assert_eq!(router.owner("zz").await.unwrap(), None);
    }

    #[tokio::test]
    async fn single_node_stream_claims_always_win_with_growing_generations() {
        let before = wall_clock_millis();
        let (router, _) = router();
        let first = router.claim_stream("s").await.unwrap();
        let second = router.claim_stream("s").await.unwrap();
        assert_eq!((first.node.as_str(), first.live), ("n1", true));
        assert!(first.generation >= before, "starts from the wall clock");
        assert!(second.generation > first.generation);
        assert_eq!(router.stream_owner("s").await.unwrap(), None);
        assert_eq!(router.stream_owner_in_replica("s"), None);
        router.drop_stream("s", second.generation).await.unwrap();
    }
}
