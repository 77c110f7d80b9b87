//! Read tokens for named streams: `s1.<name>.<expiry>.<tag>` (the name base64url, the expiry
//! in Unix seconds, an HMAC-SHA256 tag under `session.resume_secret`, scoped so that no
//! resume token is ever a read token or the reverse). Stateless, so every node checks them.
//! A backend gets one from `POST /v1/stream-tokens` and hands it to its client.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::durable::token::{TokenKeys, unix_now};

const SCOPE: &str = "stream-read";

/// A token that lets its holder read stream `name` for `ttl_secs`.
pub(crate) fn issue(keys: &TokenKeys, name: &str, ttl_secs: u64) -> (String, u64) {
    let expiry = unix_now().saturating_add(ttl_secs);
    let tag = keys.scoped_tag(SCOPE, name, expiry);
    let token = format!(
        "s1.{}.{expiry}.{}",
        URL_SAFE_NO_PAD.encode(name),
        URL_SAFE_NO_PAD.encode(tag)
    );
    (token, expiry)
}

/// True when `token` is a genuine, unexpired read token for `name`.
pub(crate) fn allows(keys: &TokenKeys, token: &str, name: &str) -> bool {
    let mut parts = token.split('.');
    let (Some("s1"), Some(named), Some(expiry), Some(tag), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let (Ok(named), Ok(expiry), Ok(tag)) = (
        URL_SAFE_NO_PAD.decode(named),
        expiry.parse::<u64>(),
        URL_SAFE_NO_PAD.decode(tag),
    ) else {
        return false;
    };
    named == name.as_bytes()
        && expiry > unix_now()
        && keys.scoped_tag_is_genuine(SCOPE, name, expiry, &tag)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_read_token_opens_its_stream_only() {
        let keys = TokenKeys::new("oort", b"secret", &[], Duration::from_secs(60));
        let (token, _) = issue(&keys, "room/1", 60);
        assert!(allows(&keys, &token, "room/1"));
        assert!(!allows(&keys, &token, "room/2"));
        let other = TokenKeys::new("oort", b"another", &[], Duration::from_secs(60));
        assert!(!allows(&other, &token, "room/1"));
        let (expired, _) = issue(&keys, "room/1", 0);
        assert!(!allows(&keys, &expired, "room/1"));
        assert!(!allows(&keys, "s1.x.y", "room/1"));
        let resume = keys.issue(&oort_common::SessionKey::from("room/1"), 1);
        assert!(!allows(&keys, &resume, "room/1"));
    }
}
