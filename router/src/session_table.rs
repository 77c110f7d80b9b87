//! The directory's session → owner map, compact: every node holds every entry, so an entry's
//! size is multiplied by the sessions of the whole cluster (docs/scale.md).
//!
//! A `HashMap<SessionKey, Owner>` cost 118 bytes per entry at a million 7-byte keys: a 40-byte
//! slot (the key's `Arc<str>`, the owner's `NodeId` and epoch) at the table's load, plus a
//! 32-byte allocation per key. Here a slot is 16 bytes (where the key's bytes are, which node
//! by index, the epoch), and the keys' bytes sit end to end in one arena, with no allocation or
//! header of their own. Keys removed leave garbage in the arena, which is compacted once it is
//! half of it. A key longer than 65,535 bytes, or one that would take the arena past 4 GiB,
//! goes to an ordinary map beside the table, so nothing is ever refused.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;
use oort_common::cluster::Owner;
use oort_common::{Epoch, NodeId, SessionKey};

/// Arena garbage below this is never compacted (compacting costs a pass over every slot).
const MIN_COMPACTION: usize = 1 << 20;

/// Where a key's bytes are in the arena (offset: 32 bits, length: 16), and its owner's node
/// index (16), in one word.
#[derive(Clone, Copy)]
struct Slot {
    place: u64,
    epoch: Epoch,
}

impl Slot {
    fn new(offset: u32, len: u16, node: u16, epoch: Epoch) -> Self {
        Self {
            place: u64::from(offset) << 32 | u64::from(len) << 16 | u64::from(node),
            epoch,
        }
    }

    fn offset(self) -> usize {
        (self.place >> 32) as usize
    }

    fn len(self) -> usize {
        ((self.place >> 16) & 0xffff) as usize
    }

    fn node(self) -> u16 {
        (self.place & 0xffff) as u16
    }

    fn with_owner(self, node: u16, epoch: Epoch) -> Self {
        Self {
            place: (self.place & !0xffff) | u64::from(node),
            epoch,
        }
    }

    fn key(self, arena: &[u8]) -> &[u8] {
        &arena[self.offset()..self.offset() + self.len()]
    }
}

/// Session key → owner.
#[derive(Clone, Default)]
pub(crate) struct SessionTable {
    slots: HashTable<Slot>,
    arena: Vec<u8>,
    /// Bytes of the arena no slot points at any more.
    garbage: usize,
    /// Interned owners: a slot names its node by index. Indexes are never reused, so a slot
    /// never comes to name another node (a cluster sees far fewer than 65,536 node ids).
    nodes: Vec<NodeId>,
    node_index: HashMap<NodeId, u16>,
    /// Entries that do not fit a slot (see the module's comment), or whose node would need a
    /// 65,537th index.
    overflow: HashMap<SessionKey, Owner>,
    hasher: RandomState,
}

impl std::fmt::Debug for SessionTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionTable")
            .field("entries", &self.len())
            .field("arena_bytes", &self.arena.len())
            .finish()
    }
}

/// Equal when they map the same keys to the same owners (however stored).
impl PartialEq for SessionTable {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len()
            && self
                .iter()
                .all(|(key, node, epoch)| other.owned_by(key) == Some((node, epoch)))
    }
}

impl Eq for SessionTable {}

impl SessionTable {
    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    fn find(&self, key: &str) -> Option<Slot> {
        let bytes = key.as_bytes();
        self.slots
            .find(self.hash(bytes), |slot| slot.key(&self.arena) == bytes)
            .copied()
    }

    fn owner_of(&self, slot: Slot) -> Owner {
        Owner {
            node: self.nodes[usize::from(slot.node())].clone(),
            epoch: slot.epoch,
        }
    }

    /// The owner of `key`.
    pub(crate) fn get(&self, key: &str) -> Option<Owner> {
        match self.find(key) {
            Some(slot) => Some(self.owner_of(slot)),
            None => self.overflow.get(key).cloned(),
        }
    }

    /// The node and epoch of `key`'s owner, without making an `Owner`.
    pub(crate) fn owned_by(&self, key: &str) -> Option<(&NodeId, Epoch)> {
        match self.find(key) {
            Some(slot) => Some((&self.nodes[usize::from(slot.node())], slot.epoch)),
            None => self
                .overflow
                .get(key)
                .map(|owner| (&owner.node, owner.epoch)),
        }
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.slots.len() + self.overflow.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn intern(&mut self, node: &NodeId) -> Option<u16> {
        if let Some(index) = self.node_index.get(node) {
            return Some(*index);
        }
        let index = u16::try_from(self.nodes.len()).ok()?;
        self.nodes.push(node.clone());
        self.node_index.insert(node.clone(), index);
        Some(index)
    }

    /// Sets `key`'s owner.
    pub(crate) fn insert(&mut self, key: &SessionKey, owner: Owner) {
        let bytes = key.as_str().as_bytes();
        let hash = self.hash(bytes);
        let Some(node) = self.intern(&owner.node) else {
            self.remove(key.as_str());
            self.overflow.insert(key.clone(), owner);
            return;
        };
        let arena = &self.arena;
        if let Some(slot) = self.slots.find_mut(hash, |slot| slot.key(arena) == bytes) {
            *slot = slot.with_owner(node, owner.epoch);
            return;
        }
        // A key already in the overflow map stays there; so does one that does not fit a slot
        // (longer than a u16 length, or ending past a u32 offset).
        let fits = (
            u16::try_from(bytes.len()),
            u32::try_from(self.arena.len()),
            u32::try_from(self.arena.len() + bytes.len()),
        );
        let (Ok(len), Ok(offset), Ok(_)) = fits else {
            self.overflow.insert(key.clone(), owner);
            return;
        };
        if let Some(overflowed) = self.overflow.get_mut(key.as_str()) {
            *overflowed = owner;
            return;
        }
        self.arena.extend_from_slice(bytes);
        let slot = Slot::new(offset, len, node, owner.epoch);
        let (arena, hasher) = (&self.arena, &self.hasher);
        self.slots
            .insert_unique(hash, slot, |slot| hasher.hash_one(slot.key(arena)));
    }

    /// Removes `key`; its owner, if it had one.
    pub(crate) fn remove(&mut self, key: &str) -> Option<Owner> {
        let bytes = key.as_bytes();
        let hash = self.hash(bytes);
        let arena = &self.arena;
        let removed = match self.slots.find_entry(hash, |slot| slot.key(arena) == bytes) {
            Ok(entry) => entry.remove().0,
            Err(_) => return self.overflow.remove(key),
        };
        self.garbage += removed.len();
        let owner = self.owner_of(removed);
        self.compact_if_wasteful();
        Some(owner)
    }

    /// Removes every entry whose owner matches; returns their keys.
    pub(crate) fn remove_where(
        &mut self,
        matches: impl Fn(&NodeId, Epoch) -> bool,
    ) -> Vec<SessionKey> {
        let mut gone = Vec::new();
        let (arena, nodes) = (&self.arena, &self.nodes);
        let mut garbage = 0;
        self.slots.retain(|slot| {
            if !matches(&nodes[usize::from(slot.node())], slot.epoch) {
                return true;
            }
            garbage += slot.len();
            gone.push(SessionKey::from(
                String::from_utf8_lossy(slot.key(arena)).as_ref(),
            ));
            false
        });
        self.garbage += garbage;
        self.overflow.retain(|key, owner| {
            if matches(&owner.node, owner.epoch) {
                gone.push(key.clone());
                false
            } else {
                true
            }
        });
        self.compact_if_wasteful();
        gone
    }

    /// Every entry: its key, its owner's node and its epoch.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &NodeId, Epoch)> {
        let in_slots = self.slots.iter().map(|slot| {
            (
                // Keys enter as `&str` and are copied whole: the bytes are UTF-8.
                std::str::from_utf8(slot.key(&self.arena)).unwrap_or_default(),
                &self.nodes[usize::from(slot.node())],
                slot.epoch,
            )
        });
        let in_overflow = self
            .overflow
            .iter()
            .map(|(key, owner)| (key.as_str(), &owner.node, owner.epoch));
        in_slots.chain(in_overflow)
    }

    /// Rewrites the arena without its garbage once that is half of it.
    fn compact_if_wasteful(&mut self) {
        if self.garbage < MIN_COMPACTION || self.garbage * 2 < self.arena.len() {
            return;
        }
        let mut arena = Vec::with_capacity(self.arena.len() - self.garbage);
        for slot in self.slots.iter_mut() {
            let offset = arena.len() as u32;
            arena.extend_from_slice(slot.key(&self.arena));
            *slot = Slot::new(offset, slot.len() as u16, slot.node(), slot.epoch);
        }
        self.arena = arena;
        self.garbage = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(node: &str, epoch: u64) -> Owner {
        Owner {
            node: NodeId::from(node),
            epoch: Epoch(epoch),
        }
    }

    #[test]
    fn a_slot_is_two_words() {
        assert_eq!(std::mem::size_of::<Slot>(), 16);
    }

    #[test]
    fn entries_are_set_replaced_and_removed_like_a_map() {
        let mut table = SessionTable::default();
        table.insert(&SessionKey::from("a"), owner("n1", 1));
        table.insert(&SessionKey::from("b"), owner("n2", 2));
        table.insert(&SessionKey::from("a"), owner("n3", 3));
        assert_eq!(table.len(), 2);
        assert_eq!(table.get("a"), Some(owner("n3", 3)));
        assert_eq!(table.get("b"), Some(owner("n2", 2)));
        assert_eq!(table.get("c"), None);
        assert_eq!(table.remove("a"), Some(owner("n3", 3)));
        assert_eq!(table.remove("a"), None);
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn a_key_too_long_for_a_slot_still_has_its_entry() {
        let mut table = SessionTable::default();
        let long = SessionKey::from("k".repeat(70_000));
        table.insert(&long, owner("n1", 1));
        table.insert(&long, owner("n2", 2));
        assert_eq!(table.get(long.as_str()), Some(owner("n2", 2)));
        assert_eq!(table.len(), 1);
        let gone = table.remove_where(|node, _| node.as_str() == "n2");
        assert_eq!(gone, [long]);
        assert!(table.is_empty());
    }

    #[test]
    fn removals_by_owner_return_the_keys_and_the_arena_is_compacted() {
        let mut table = SessionTable::default();
        let keys: Vec<SessionKey> = (0..200_000)
            .map(|n| SessionKey::from(format!("session-{n}")))
            .collect();
        for (n, key) in keys.iter().enumerate() {
            table.insert(
                key,
                owner(if n % 2 == 0 { "even" } else { "odd" }, n as u64),
            );
        }
        let arena_before = table.arena.len();
        let mut gone = table.remove_where(|node, _| node.as_str() == "even");
        gone.sort();
        let mut expected: Vec<SessionKey> = keys.iter().step_by(2).cloned().collect();
        expected.sort();
        assert_eq!(gone, expected);
        // Half the bytes were garbage: compacted.
        assert!(
            table.arena.len() < arena_before * 2 / 3,
            "{}",
            table.arena.len()
        );
        for (n, key) in keys.iter().enumerate() {
            let expected = (n % 2 == 1).then(|| owner("odd", n as u64));
            assert_eq!(table.get(key.as_str()), expected, "{key:?}");
        }
        assert_eq!(table.iter().count(), 100_000);
    }
}
