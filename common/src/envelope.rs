//! The envelope around every message one node sends another over NATS.
//!
//! `[version: u8][tag: 32 bytes, only when authenticated][body]`. The version byte says which
//! protocol the body speaks, so a node can refuse what it does not understand instead of
//! misreading it. With a cluster secret, the high bit of the version byte is set and the tag is
//! HMAC-SHA256 over the message's context and its body, keyed by a key derived from the secret
//! and the cluster's name. The context is the subject a request or announcement is published on
//! (so a message cannot be replayed onto another subject or another cluster), and for a reply,
//! the tag of the request it answers (so a reply cannot answer another request).
//!
//! NATS permissions decide who may publish and read the cluster's subjects at all; the secret
//! makes sure that even a client allowed on those subjects cannot forge a node's messages. It
//! does not hide them, and it does not stop someone who can read them from replaying one on
//! the same subject; that is what NATS permissions are for (docs/deploy.md).

use ring::hmac;
use subtle::ConstantTimeEq;

/// The protocol spoken by this build.
pub const VERSION: u8 = 1;
const AUTHENTICATED: u8 = 0x80;
const TAG_LEN: usize = 32;

/// The tag of an authenticated request, which its reply is bound to; empty when unauthenticated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestTag(Vec<u8>);

impl RequestTag {
    /// The tag's bytes (the context a reply is sealed and opened with).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Why a message was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Shorter than its envelope.
    #[error("shorter than its envelope")]
    Truncated,
    /// A protocol version this build does not speak.
    #[error("unknown protocol version {0}")]
    UnknownVersion(u8),
    /// Not authenticated, but this node requires it (`cluster.secret` is set).
    #[error("not authenticated, and this cluster requires a secret")]
    Unauthenticated,
    /// Authenticated with another secret, or altered on the way.
    #[error("the authentication tag does not match this cluster's secret")]
    BadTag,
    /// Authenticated, but this node has no secret to check it with.
    #[error("authenticated, but this node has no cluster secret")]
    UnexpectedTag,
}

/// Seals and opens envelopes with this node's view of the cluster secret.
#[derive(Clone)]
pub struct Sealer {
    key: Option<hmac::Key>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("authenticated", &self.key.is_some())
            .finish()
    }
}

impl Sealer {
    /// A sealer for cluster `cluster`; with `secret`, every message is authenticated.
    pub fn new(secret: Option<&[u8]>, cluster: &str) -> Self {
        let key = secret.map(|secret| {
            // A key per cluster name: two clusters that share a secret still cannot talk to
            // each other by mistake.
            let master = hmac::Key::new(hmac::HMAC_SHA256, secret);
            let derived = hmac::sign(&master, format!("oort-cluster-v1:{cluster}").as_bytes());
            hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref())
        });
        Self { key }
    }

    /// True when messages are authenticated.
    pub fn authenticates(&self) -> bool {
        self.key.is_some()
    }

    /// Wraps `body`, sent in `context` (a subject, or the request tag a reply answers). Returns
    /// the message and its tag (for binding the reply).
    pub fn seal(&self, context: &[u8], body: &[u8]) -> (Vec<u8>, RequestTag) {
        match &self.key {
            None => {
                let mut message = Vec::with_capacity(1 + body.len());
                message.push(VERSION);
                message.extend_from_slice(body);
                (message, RequestTag::default())
            }
            Some(key) => {
                let tag = sign(key, context, body);
                let mut message = Vec::with_capacity(1 + TAG_LEN + body.len());
                message.push(VERSION | AUTHENTICATED);
                message.extend_from_slice(tag.as_ref());
                message.extend_from_slice(body);
                (message, RequestTag(tag.as_ref().to_vec()))
            }
        }
    }

    /// Checks a message received in `context` and returns its body (a range of `message`) and
    /// its tag.
    pub fn open(
        &self,
        context: &[u8],
        message: &[u8],
    ) -> Result<(std::ops::Range<usize>, RequestTag), OpenError> {
        let (&first, rest) = message.split_first().ok_or(OpenError::Truncated)?;
        let version = first & !AUTHENTICATED;
        if version != VERSION {
            return Err(OpenError::UnknownVersion(version));
        }
        let authenticated = first & AUTHENTICATED != 0;
        match (&self.key, authenticated) {
            (None, false) => Ok((1..message.len(), RequestTag::default())),
            (None, true) => Err(OpenError::UnexpectedTag),
            (Some(_), false) => Err(OpenError::Unauthenticated),
            (Some(key), true) => {
                let (tag, body) = rest.split_at_checked(TAG_LEN).ok_or(OpenError::Truncated)?;
                let mut data = hmac::Context::with_key(key);
                data.update(&length_prefix(context));
                data.update(context);
                data.update(body);
                let expected = data.sign();
                // Compared in constant time, so timing does not reveal how much of a forged
                // tag was right.
                if !bool::from(expected.as_ref().ct_eq(tag)) {
                    return Err(OpenError::BadTag);
                }
                Ok((1 + TAG_LEN..message.len(), RequestTag(tag.to_vec())))
            }
        }
    }
}

fn sign(key: &hmac::Key, context: &[u8], body: &[u8]) -> hmac::Tag {
    let mut data = hmac::Context::with_key(key);
    // The context's length first, so that context and body cannot be shifted into each other.
    data.update(&length_prefix(context));
    data.update(context);
    data.update(body);
    data.sign()
}

fn length_prefix(context: &[u8]) -> [u8; 8] {
    (context.len() as u64).to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(sealer: &Sealer, context: &[u8], message: &[u8]) -> Result<Vec<u8>, OpenError> {
        sealer
            .open(context, message)
            .map(|(range, _)| message[range].to_vec())
    }

    #[test]
    fn plain_messages_round_trip_and_carry_the_version() {
        let sealer = Sealer::new(None, "c");
        let (message, tag) = sealer.seal(b"oort.c.hello", b"hi");
        assert_eq!(message[0], VERSION);
        assert!(tag.as_bytes().is_empty());
        assert_eq!(body(&sealer, b"any", &message).unwrap(), b"hi");
        assert_eq!(
            body(&sealer, b"x", &[9, 1, 2]),
            Err(OpenError::UnknownVersion(9))
        );
        assert_eq!(body(&sealer, b"x", &[]), Err(OpenError::Truncated));
    }

    #[test]
    fn authenticated_messages_are_bound_to_secret_cluster_and_context() {
        let sealer = Sealer::new(Some(b"s3cret"), "c");
        let (message, tag) = sealer.seal(b"oort.c.ctl.1", b"body");
        assert_eq!(tag.as_bytes().len(), TAG_LEN);
        assert_eq!(body(&sealer, b"oort.c.ctl.1", &message).unwrap(), b"body");
        assert_eq!(
            body(&sealer, b"oort.c.ctl.2", &message),
            Err(OpenError::BadTag),
            "another subject"
        );
        let other_secret = Sealer::new(Some(b"other"), "c");
        assert_eq!(
            body(&other_secret, b"oort.c.ctl.1", &message),
            Err(OpenError::BadTag)
        );
        let other_cluster = Sealer::new(Some(b"s3cret"), "d");
        assert_eq!(
            body(&other_cluster, b"oort.c.ctl.1", &message),
            Err(OpenError::BadTag)
        );
        let mut altered = message.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert_eq!(
            body(&sealer, b"oort.c.ctl.1", &altered),
            Err(OpenError::BadTag)
        );
        let (plain, _) = Sealer::new(None, "c").seal(b"oort.c.ctl.1", b"body");
        assert_eq!(
            body(&sealer, b"oort.c.ctl.1", &plain),
            Err(OpenError::Unauthenticated)
        );
        assert_eq!(
            body(&Sealer::new(None, "c"), b"oort.c.ctl.1", &message),
            Err(OpenError::UnexpectedTag)
        );
        assert_eq!(
            body(&sealer, b"oort.c.ctl.1", &message[..10]),
            Err(OpenError::Truncated)
        );
    }

    #[test]
    fn a_reply_is_bound_to_its_request() {
        let sealer = Sealer::new(Some(b"k"), "c");
        let (_, first) = sealer.seal(b"subject", b"request one");
        let (_, second) = sealer.seal(b"subject", b"request two");
        let (reply, _) = sealer.seal(first.as_bytes(), b"answer");
        assert!(sealer.open(first.as_bytes(), &reply).is_ok());
        assert_eq!(
            sealer.open(second.as_bytes(), &reply).map(|_| ()),
            Err(OpenError::BadTag)
        );
    }
}
