//! Which of this node's sessions are in which channels.
//!
//! Membership belongs to a session key while this node holds it (live, pending or lingering),
//! whatever its transport; it is forgotten when the key's last session here goes. One lock
//! guards both directions of the table, so they always agree; a publish holds it only to copy
//! the member list.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use oort_common::SessionKey;

use super::presence::PresenceLog;

/// Channel members, both ways.
#[derive(Default)]
struct Table {
    members: HashMap<Arc<str>, HashSet<SessionKey>>,
    joined: HashMap<SessionKey, Vec<Arc<str>>>,
}

/// A session would exceed `channels.max_per_session`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct OverLimit;

/// This node's channel memberships.
pub(crate) struct ChannelTable {
    table: Mutex<Table>,
    max_per_session: usize,
    /// Joins and leaves waiting to be reported, when the backend wants them.
    presence: Option<PresenceLog>,
}

impl ChannelTable {
    /// A table allowing `max_per_session` channels per session, recording joins and leaves
    /// for the backend when `report_presence`.
    pub(crate) fn new(max_per_session: usize, report_presence: bool) -> Self {
        Self {
            table: Mutex::new(Table::default()),
            max_per_session,
            presence: report_presence.then(PresenceLog::default),
        }
    }

    /// The joins and leaves waiting to be reported (when reporting).
    pub(crate) fn presence_log(&self) -> Option<&PresenceLog> {
        self.presence.as_ref()
    }

    fn report(&self, channel: &Arc<str>, key: &SessionKey, joined: bool) {
        if let Some(log) = &self.presence {
            log.record(channel, key, joined);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds `key` to every one of `channels`, or to none if that would put it in more than
    /// the limit.
    pub(crate) fn join(&self, key: &SessionKey, channels: &[String]) -> Result<(), OverLimit> {
        let mut table = self.lock();
        let Table { members, joined } = &mut *table;
        let current = joined.get(key).map_or(&[][..], Vec::as_slice);
        let new: Vec<&String> = {
            let mut seen = HashSet::new();
            channels
                .iter()
                .filter(|c| seen.insert(c.as_str()))
                .filter(|c| !current.iter().any(|have| **have == ***c))
                .collect()
        };
        if current.len() + new.len() > self.max_per_session {
            return Err(OverLimit);
        }
        if new.is_empty() {
            return Ok(());
        }
        let list = joined.entry(key.clone()).or_default();
        for channel in new {
            let name: Arc<str> = match members.get_key_value(channel.as_str()) {
                Some((name, _)) => name.clone(),
                None => Arc::from(channel.as_str()),
            };
            members.entry(name.clone()).or_default().insert(key.clone());
            self.report(&name, key, true);
            list.push(name);
        }
        Ok(())
    }

    /// Takes `key` out of `channels`.
    pub(crate) fn leave(&self, key: &SessionKey, channels: &[String]) {
        let mut table = self.lock();
        let Table { members, joined } = &mut *table;
        let Some(list) = joined.get_mut(key) else {
            return;
        };
        let mut left = Vec::new();
        list.retain(|name| {
            let stays = !channels.iter().any(|c| **name == **c);
            if !stays {
                left.push(name.clone());
            }
            stays
        });
        if list.is_empty() {
            joined.remove(key);
        }
        for name in left {
            if let Some(set) = members.get_mut(&name) {
                set.remove(key);
                if set.is_empty() {
                    members.remove(&name);
                }
            }
            self.report(&name, key, false);
        }
    }

    /// The key's session left this node: it is in no channel here any more.
    pub(crate) fn forget(&self, key: &str) {
        let mut table = self.lock();
        let Table { members, joined } = &mut *table;
        let Some((key, list)) = joined.remove_entry(key) else {
            return;
        };
        for name in list {
            if let Some(set) = members.get_mut(&name) {
                set.remove(&key);
                if set.is_empty() {
                    members.remove(&name);
                }
            }
            self.report(&name, &key, false);
        }
    }

    /// The channels `key` is in here.
    pub(crate) fn of(&self, key: &str) -> Vec<String> {
        self.lock()
            .joined
            .get(key)
            .map(|list| list.iter().map(|name| name.to_string()).collect())
            .unwrap_or_default()
    }

    /// The sessions a publish reaches here: with `position`, members of `channels[position]`
    /// in none of the channels before it; without, members of any of them (each once).
    pub(crate) fn audience(&self, channels: &[String], position: Option<usize>) -> Vec<SessionKey> {
        let table = self.lock();
        let set = |channel: &String| table.members.get(channel.as_str());
        match position {
            Some(position) => {
                let Some(members) = channels.get(position).and_then(set) else {
                    return Vec::new();
                };
                let earlier: Vec<&HashSet<SessionKey>> =
                    channels[..position].iter().filter_map(set).collect();
                members
                    .iter()
                    .filter(|key| !earlier.iter().any(|other| other.contains(*key)))
                    .cloned()
                    .collect()
            }
            None => {
                let mut seen = HashSet::new();
                channels
                    .iter()
                    .filter_map(set)
                    .flatten()
                    .filter(|key| seen.insert(*key))
                    .cloned()
                    .collect()
            }
        }
    }

    /// How many sessions are in `channel`, and up to `limit` of their keys after `after`.
    pub(crate) fn presence(
        &self,
        channel: &str,
        after: Option<&str>,
        limit: usize,
    ) -> (u64, Vec<SessionKey>) {
        let table = self.lock();
        let Some(members) = table.members.get(channel) else {
            return (0, Vec::new());
        };
        let count = members.len() as u64;
        let mut page: Vec<SessionKey> = members
            .iter()
            .filter(|key| after.is_none_or(|after| key.as_str() > after))
            .cloned()
            .collect();
        drop(table);
        page.sort_unstable();
        page.truncate(limit);
        (count, page)
    }

    /// True while a session here is in `channel`.
    pub(crate) fn holds(&self, channel: &str) -> bool {
        self.lock().members.contains_key(channel)
    }

    /// Sessions in `channel` here.
    pub(crate) fn count(&self, channel: &str) -> usize {
        self.lock().members.get(channel).map_or(0, HashSet::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> SessionKey {
        SessionKey::from(k)
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn join_is_all_or_nothing_at_the_limit() {
        let table = ChannelTable::new(2, false);
        assert_eq!(table.join(&key("a"), &names(&["x", "x"])), Ok(()));
        assert_eq!(table.join(&key("a"), &names(&["y", "z"])), Err(OverLimit));
        assert_eq!(table.of("a"), ["x"]);
        assert_eq!(table.join(&key("a"), &names(&["x", "y"])), Ok(()));
        assert_eq!(table.of("a"), ["x", "y"]);
    }

    #[test]
    fn a_session_in_several_channels_is_reached_once() {
        let table = ChannelTable::new(8, false);
        table.join(&key("a"), &names(&["x", "y"])).unwrap();
        table.join(&key("b"), &names(&["y"])).unwrap();
        let channels = names(&["x", "y"]);
        let mut all = table.audience(&channels, None);
        all.sort();
        assert_eq!(all, [key("a"), key("b")]);
        assert_eq!(table.audience(&channels, Some(0)), [key("a")]);
        assert_eq!(
            table.audience(&channels, Some(1)),
            [key("b")],
            "a had it through x"
        );
    }

    #[test]
    fn leaving_and_forgetting_empty_channels() {
        let table = ChannelTable::new(8, false);
        table.join(&key("a"), &names(&["x", "y"])).unwrap();
        table.join(&key("b"), &names(&["x"])).unwrap();
        table.leave(&key("a"), &names(&["x"]));
        assert_eq!(table.count("x"), 1);
        table.forget("a");
        assert!(!table.holds("y"));
        table.forget("b");
        assert!(!table.holds("x"));
        assert!(table.lock().joined.is_empty());
    }

    #[test]
    fn presence_pages_in_key_order() {
        let table = ChannelTable::new(8, false);
        for k in ["d", "b", "a", "c"] {
            table.join(&key(k), &names(&["x"])).unwrap();
        }
        assert_eq!(table.presence("x", None, 2), (4, vec![key("a"), key("b")]));
        assert_eq!(
            table.presence("x", Some("b"), 2),
            (4, vec![key("c"), key("d")])
        );
        assert_eq!(table.presence("nobody", None, 2), (0, vec![]));
    }
}
