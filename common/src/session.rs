//! Identities: the backend-chosen session key, the registration epoch and the node id.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The key a backend's connect callback assigns to a connection.
///
/// Opaque to Oort and compared byte for byte. Cloning is a reference-count increment, because
/// one key is held by the session table, the connection task and every in-flight delivery.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionKey(Arc<str>);

impl SessionKey {
    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for SessionKey {
    fn from(value: &str) -> Self {
        Self(Arc::from(value))
    }
}

impl From<String> for SessionKey {
    fn from(value: String) -> Self {
        Self(Arc::from(value))
    }
}

impl Borrow<str> for SessionKey {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for SessionKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// Tells successive registrations of one key apart.
///
/// A connection unregisters its key together with the epoch it registered under, so that the
/// close of an older connection can never remove a newer connection that reused the key.
/// Epochs only ever grow within a node, and start from the wall clock so that they keep growing
/// across restarts of that node.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
pub struct Epoch(pub u64);

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The name of one gateway node (its hostname unless configured).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(Arc<str>);

impl NodeId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for NodeId {
    fn from(value: &str) -> Self {
        Self(Arc::from(value))
    }
}

impl From<String> for NodeId {
    fn from(value: String) -> Self {
        Self(Arc::from(value))
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn session_keys_are_looked_up_by_str() {
        let mut map = HashMap::new();
        map.insert(SessionKey::from("alice, bob"), 1);
        assert_eq!(map.get("alice, bob"), Some(&1));
        assert_eq!(map.get("alice"), None);
    }

    #[test]
    fn session_keys_serialize_as_plain_strings() {
        let json = serde_json::to_string(&SessionKey::from("k\"1")).unwrap();
        assert_eq!(json, r#""k\"1""#);
    }
}
