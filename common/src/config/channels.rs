//! `channels.*`: how many channels a session may be in, and how many one request may name.

use serde::{Deserialize, Serialize};

use super::{ConfigError, lenient};

/// `channels.*`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChannelsConfig {
    /// Channels one session may be in at once; a subscribe past it is refused for that
    /// session (`channel_limit`), a connect callback naming more gets the connect refused.
    #[serde(deserialize_with = "lenient::number")]
    pub max_per_session: usize,
    /// Channels one request may name (`/v1/publish`, `/v1/subscribe`, `/v1/unsubscribe`, the
    /// connect callback's `X-Oort-Channels`).
    #[serde(deserialize_with = "lenient::number")]
    pub max_per_request: usize,
    /// Sessions one `/v1/subscribe` or `/v1/unsubscribe` may name.
    #[serde(deserialize_with = "lenient::number")]
    pub max_sessions_per_request: usize,
    /// Channels whose subscriber count on this node `/metrics` shows (as
    /// `oort_channel_sessions{channel=...}`): only these, so label sets stay bounded.
    pub metrics: Vec<String>,
}

impl Default for ChannelsConfig {
    fn default() -> Self {
        Self {
            max_per_session: 128,
            max_per_request: 128,
            max_sessions_per_request: 10_000,
            metrics: Vec::new(),
        }
    }
}

impl ChannelsConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        for (key, value) in [
            ("channels.max_per_session", self.max_per_session),
            ("channels.max_per_request", self.max_per_request),
            (
                "channels.max_sessions_per_request",
                self.max_sessions_per_request,
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(key, "0", "allow at least one"));
            }
        }
        for name in &self.metrics {
            crate::channel::check_channel_name(name)
                .map_err(|reason| ConfigError::invalid("channels.metrics", name, reason))?;
        }
        Ok(())
    }
}
