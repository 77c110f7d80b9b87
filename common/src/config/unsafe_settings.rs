//! Settings that are allowed, often for kuiperbelt's sake, but leave a node open to abuse. The
//! binary logs each one at start and `oort check-config` prints them; neither refuses the
//! config, so kuiperbelt configs keep working.

use super::Config;

/// Why the backend API with neither its own listener nor a token is dangerous, and the fix.
pub(crate) const OPEN_BACKEND_API: &str = "the backend API (/send, /close, /v1/*) is served on the \
public client listener without a token: anyone who can reach the client port can push to and \
close every session. Set `api_listen` to serve it on a private address, or `api_token` to \
require a bearer token";

impl Config {
    /// One sentence per unsafe setting in effect, naming the keys that fix it.
    pub fn unsafe_settings(&self) -> Vec<&'static str> {
        let mut found = Vec::new();
        // kuiperbelt's default, kept for compatibility: its /send sat on the public port.
        if self.api_listen.is_empty() && self.api_token.is_empty() {
            found.push(OPEN_BACKEND_API);
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_backend_api_is_reported_until_a_listener_or_a_token_closes_it() {
        let mut config = Config::default();
        assert_eq!(config.unsafe_settings(), [OPEN_BACKEND_API]);
        config.api_token = "secret".into();
        assert!(config.unsafe_settings().is_empty());
        config.api_token.clear();
        config.api_listen = "127.0.0.1:9181".into();
        assert!(config.unsafe_settings().is_empty());
    }
}
