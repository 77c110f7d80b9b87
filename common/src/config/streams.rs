//! `streams.*`: named Durable Streams (docs/streams.md): where they are served, how long a
//! live read waits, and what one stream and one node may keep.

use serde::{Deserialize, Serialize};

use super::duration::GoDuration;
use super::{ConfigError, lenient};

/// `streams.*`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamsConfig {
    /// The path prefix: stream `name` is `<path>/<name>`, on the client listener and on the
    /// API listener. Empty: no named streams.
    #[serde(deserialize_with = "lenient::string")]
    pub path: String,
    /// Streams named `<channel_prefix><channel>` are channels' streams: `/v1/publish` to the
    /// channel appends to the stream, through its owner, before the channel's subscribers get
    /// it. Empty: channels are never streams.
    #[serde(deserialize_with = "lenient::string")]
    pub channel_prefix: String,
    /// How long a long-poll read waits at the tail before answering 204.
    pub long_poll_timeout: GoDuration,
    /// How long one SSE response lasts before the server ends it (the client reconnects from
    /// its last offset; the protocol recommends about a minute, so proxies never cut it).
    pub sse_max_duration: GoDuration,
    /// Streams one node may own at once; creating more answers 507.
    #[serde(deserialize_with = "lenient::number")]
    pub max_streams: usize,
    /// Messages one stream keeps; older ones are dropped (reads before them: 410).
    #[serde(deserialize_with = "lenient::number")]
    pub max_messages: usize,
    /// Bytes of messages one stream keeps; older messages are dropped beyond it.
    #[serde(deserialize_with = "lenient::number")]
    pub max_bytes: usize,
    /// How long a message is kept (0: as long as the count and byte limits allow).
    pub max_age: GoDuration,
    /// Bytes of messages all streams of one node keep; an append past it answers 507.
    #[serde(deserialize_with = "lenient::number")]
    pub max_total_bytes: usize,
    /// The largest body one `PUT` or `POST` may carry (413 beyond). Clustered, an append
    /// through another node travels in one NATS message: keep it under NATS's `max_payload`.
    #[serde(deserialize_with = "lenient::number")]
    pub max_append_bytes: usize,
    /// Bytes one catch-up response carries at most (always at least one message); the
    /// client reads on from the offset it is given.
    #[serde(deserialize_with = "lenient::number")]
    pub max_read_bytes: usize,
    /// How long a read token (`POST /v1/stream-tokens`) is valid.
    pub read_token_ttl: GoDuration,
}

impl Default for StreamsConfig {
    fn default() -> Self {
        Self {
            path: "/v1/stream".into(),
            channel_prefix: "channels/".into(),
            long_poll_timeout: GoDuration::from_secs(30),
            sse_max_duration: GoDuration::from_secs(60),
            max_streams: 100_000,
            max_messages: 100_000,
            max_bytes: 16 << 20,
            max_age: GoDuration::from_secs(0),
            max_total_bytes: 1 << 30,
            max_append_bytes: 512 << 10,
            max_read_bytes: 256 << 10,
            read_token_ttl: GoDuration::from_secs(3600),
        }
    }
}

impl StreamsConfig {
    /// True when named streams are served.
    pub fn enabled(&self) -> bool {
        !self.path.is_empty()
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.enabled()
            && (!self.path.starts_with('/') || self.path.ends_with('/') || self.path.contains('{'))
        {
            return Err(ConfigError::invalid(
                "streams.path",
                &self.path,
                "must start with `/`, not end with one, and hold no `{`",
            ));
        }
        for (key, value) in [
            ("streams.max_streams", self.max_streams),
            ("streams.max_messages", self.max_messages),
            ("streams.max_bytes", self.max_bytes),
            ("streams.max_total_bytes", self.max_total_bytes),
            ("streams.max_append_bytes", self.max_append_bytes),
            ("streams.max_read_bytes", self.max_read_bytes),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(key, "0", "allow at least one"));
            }
        }
        if self.long_poll_timeout.0.is_zero() || self.sse_max_duration.0.is_zero() {
            return Err(ConfigError::invalid(
                "streams.long_poll_timeout",
                self.long_poll_timeout.to_string(),
                "long_poll_timeout and sse_max_duration must be above zero",
            ));
        }
        Ok(())
    }
}
