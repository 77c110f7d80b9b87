//! Settings that are allowed, often for kuiperbelt's sake, but leave a node open to abuse. The
//! binary logs each one at start and `oort check-config` prints them; neither refuses the
//! config, so kuiperbelt configs keep working.

use super::Config;

/// Why the backend API with neither its own listener nor a token is dangerous, and the fix.
pub(crate) const OPEN_BACKEND_API: &str = "the backend API (/send, /close, /v1/*) is served on the \
public client listener without a token: anyone who can reach the client port can push to and \
close every session. Set `api_listen` to serve it on a private address, or `api_token` to \
require a bearer token";

/// Why the backend API on the client listener is risky even with a token: what it needs from a
/// request head is what an attacker would want from it.
pub(crate) const SHARED_API_LISTENER: &str = "the backend API shares the public client \
listener: a connection whose first request is not a connect keeps the backend API's head limit \
(limits.api_max_head, 512 KiB) for its life, and anyone's such connections compete with the \
backend's for limits.shared_api_connections. Set `api_listen` to serve the API on a private \
address";

/// Why synthetic sessions do not belong in production.
pub(crate) const SYNTHETIC_SESSIONS: &str = "cluster.synthetic_sessions is on: \
POST /v1/cluster/synthetic-sessions registers sessions that have no connection, for \
oort-bench's directory scenario. Turn it off outside benchmarks";

impl Config {
    /// One sentence per unsafe setting in effect, naming the keys that fix it.
    pub fn unsafe_settings(&self) -> Vec<&'static str> {
        let mut found = Vec::new();
        // kuiperbelt's default, kept for compatibility: its /send sat on the public port.
        if self.api_listen.is_empty() && self.api_token.is_empty() {
            found.push(OPEN_BACKEND_API);
        } else if self.api_listen.is_empty() {
            found.push(SHARED_API_LISTENER);
        }
        if self.cluster.synthetic_sessions {
            found.push(SYNTHETIC_SESSIONS);
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backend_api_on_the_client_listener_is_reported_until_it_has_its_own() {
        let mut config = Config::default();
        assert_eq!(config.unsafe_settings(), [OPEN_BACKEND_API]);
        config.api_token = "secret".into();
        assert_eq!(config.unsafe_settings(), [SHARED_API_LISTENER]);
        config.api_token.clear();
        config.api_listen = "127.0.0.1:9181".into();
        assert!(config.unsafe_settings().is_empty());
    }
}
