//! Resume tokens: stateless, so any node of the cluster can check one.
//!
//! A token is `v1.<key>.<id>.<expiry>.<tag>`: the session key (base64url), the session's id
//! (the epoch it was created under, so a token never resumes a later session that reused the
//! key), the expiry in Unix seconds, and an HMAC-SHA256 tag over the cluster name and those
//! three, keyed by `session.resume_secret`. Tokens made with a previous secret
//! (`session.previous_resume_secrets`) are still accepted, so the secret can be rotated.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use oort_common::SessionKey;
use ring::hmac;

/// What a valid token names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Claims {
    pub key: SessionKey,
    pub id: u64,
    /// When the token expires, in Unix seconds.
    pub expiry: u64,
}

impl Claims {
    /// True once less than half of `ttl` is left: time to hand the client a fresh token.
    pub(crate) fn wants_renewal(&self, ttl: Duration) -> bool {
        self.expiry.saturating_sub(unix_now()) < ttl.as_secs() / 2
    }
}

/// Why a token is refused. Every case answers 401; the text goes in the body.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TokenError {
    #[error("the resume token is malformed")]
    Malformed,
    #[error("the resume token is not valid here (forged, or from another cluster or secret)")]
    BadTag,
    #[error("the resume token has expired")]
    Expired,
}

/// Makes and checks tokens for one cluster.
pub(crate) struct TokenKeys {
    cluster: String,
    current: hmac::Key,
    previous: Vec<hmac::Key>,
    ttl: Duration,
}

impl TokenKeys {
    pub(crate) fn new(cluster: &str, current: &[u8], previous: &[&[u8]], ttl: Duration) -> Self {
        Self {
            cluster: cluster.to_owned(),
            current: hmac::Key::new(hmac::HMAC_SHA256, current),
            previous: previous
                .iter()
                .map(|secret| hmac::Key::new(hmac::HMAC_SHA256, secret))
                .collect(),
            ttl,
        }
    }

    /// How long a token lives.
    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A token for session `key` created under `id`, valid for the configured lifetime.
    pub(crate) fn issue(&self, key: &SessionKey, id: u64) -> String {
        let expiry = unix_now().saturating_add(self.ttl.as_secs());
        let tag = hmac::sign(&self.current, &self.signed(key.as_str(), id, expiry));
        format!(
            "v1.{}.{id}.{expiry}.{}",
            URL_SAFE_NO_PAD.encode(key.as_str()),
            URL_SAFE_NO_PAD.encode(tag.as_ref())
        )
    }

    /// Checks `token`; what it names when it is genuine and unexpired.
    pub(crate) fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some("v1"), Some(key), Some(id), Some(expiry), Some(tag), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(TokenError::Malformed);
        };
        let key = URL_SAFE_NO_PAD
            .decode(key)
            .ok()
            .and_then(|key| String::from_utf8(key).ok())
            .ok_or(TokenError::Malformed)?;
        let id: u64 = id.parse().map_err(|_| TokenError::Malformed)?;
        let expiry: u64 = expiry.parse().map_err(|_| TokenError::Malformed)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| TokenError::Malformed)?;
        let signed = self.signed(&key, id, expiry);
        let genuine = std::iter::once(&self.current)
            .chain(&self.previous)
            .any(|secret| hmac::verify(secret, &signed, &tag).is_ok());
        if !genuine {
            return Err(TokenError::BadTag);
        }
        if expiry <= unix_now() {
            return Err(TokenError::Expired);
        }
        Ok(Claims {
            key: SessionKey::from(key),
            id,
            expiry,
        })
    }

    /// A tag over `name` and `expiry` for tokens of another kind (`scope` tells them apart,
    /// so no token of one kind is ever valid as another).
    pub(crate) fn scoped_tag(&self, scope: &str, name: &str, expiry: u64) -> Vec<u8> {
        hmac::sign(&self.current, &self.scoped(scope, name, expiry))
            .as_ref()
            .to_vec()
    }

    /// True when `tag` is [`Self::scoped_tag`]'s under the current or a previous secret.
    pub(crate) fn scoped_tag_is_genuine(
        &self,
        scope: &str,
        name: &str,
        expiry: u64,
        tag: &[u8],
    ) -> bool {
        let signed = self.scoped(scope, name, expiry);
        std::iter::once(&self.current)
            .chain(&self.previous)
            .any(|secret| hmac::verify(secret, &signed, tag).is_ok())
    }

    fn scoped(&self, scope: &str, name: &str, expiry: u64) -> Vec<u8> {
        let mut signed = Vec::with_capacity(48 + scope.len() + self.cluster.len() + name.len());
        signed.extend_from_slice(b"oort-scoped-v1\0");
        signed.extend_from_slice(&(scope.len() as u64).to_be_bytes());
        signed.extend_from_slice(scope.as_bytes());
        signed.extend_from_slice(self.cluster.as_bytes());
        signed.push(0);
        signed.extend_from_slice(&(name.len() as u64).to_be_bytes());
        signed.extend_from_slice(name.as_bytes());
        signed.extend_from_slice(&expiry.to_be_bytes());
        signed
    }

    /// What the tag covers. The cluster name cannot hold a NUL (it is a NATS subject token);
    /// the key can hold anything, so its length goes first.
    fn signed(&self, key: &str, id: u64, expiry: u64) -> Vec<u8> {
        let mut signed = Vec::with_capacity(48 + self.cluster.len() + key.len());
        signed.extend_from_slice(b"oort-resume-v1\0");
        signed.extend_from_slice(self.cluster.as_bytes());
        signed.push(0);
        signed.extend_from_slice(&(key.len() as u64).to_be_bytes());
        signed.extend_from_slice(key.as_bytes());
        signed.extend_from_slice(&id.to_be_bytes());
        signed.extend_from_slice(&expiry.to_be_bytes());
        signed
    }
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn a_token_names_its_session_and_id() {
        let keys = TokenKeys::new("oort", b"secret-one", &[], DAY);
        let token = keys.issue(&SessionKey::from("user.1/α"), 42);
        let claims = keys.verify(&token).unwrap();
        assert_eq!(
            (&claims.key, claims.id),
            (&SessionKey::from("user.1/α"), 42)
        );
        assert!(!claims.wants_renewal(DAY), "a fresh token needs no renewal");
        assert!(
            claims.wants_renewal(DAY * 3),
            "past half of a longer life it does"
        );
    }

    #[test]
    fn forged_foreign_and_expired_tokens_are_refused() {
        let keys = TokenKeys::new("oort", b"secret-one", &[], DAY);
        let token = keys.issue(&SessionKey::from("k"), 1);
        let other_cluster = TokenKeys::new("other", b"secret-one", &[], DAY);
        assert_eq!(other_cluster.verify(&token), Err(TokenError::BadTag));
        let other_secret = TokenKeys::new("oort", b"secret-two", &[], DAY);
        assert_eq!(other_secret.verify(&token), Err(TokenError::BadTag));
        // Another session's key with this token's tag.
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged_key = URL_SAFE_NO_PAD.encode("admin");
        parts[1] = &forged_key;
        assert_eq!(keys.verify(&parts.join(".")), Err(TokenError::BadTag));
        let expired = TokenKeys::new("oort", b"secret-one", &[], Duration::ZERO);
        let token = expired.issue(&SessionKey::from("k"), 1);
        assert_eq!(expired.verify(&token), Err(TokenError::Expired));
        for bad in [
            "",
            "v1",
            "v2.a.1.2.x",
            "v1.!!.1.2.x",
            "v1.aw.x.2.x",
            "v1.aw.1.2.x.y",
        ] {
            assert_eq!(keys.verify(bad), Err(TokenError::Malformed), "{bad}");
        }
    }

    #[test]
    fn a_previous_secret_still_verifies_during_rotation() {
        let old = TokenKeys::new("oort", b"old-secret", &[], DAY);
        let token = old.issue(&SessionKey::from("k"), 9);
        let rotated = TokenKeys::new("oort", b"new-secret", &[b"old-secret"], DAY);
        assert!(rotated.verify(&token).is_ok());
        let forgotten = TokenKeys::new("oort", b"new-secret", &[], DAY);
        assert_eq!(forgotten.verify(&token), Err(TokenError::BadTag));
    }
}
